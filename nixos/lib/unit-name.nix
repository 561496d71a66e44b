# The unit names restart_service accepts, as a regex for builtins.match /
# types.strMatching: the dispatcher's grammar (services/policy, schema.rs)
# as far as a regular expression can say it. Either a bare name (the
# dispatcher appends .service) or a name with a restartable type suffix; a
# name with any other suffix (.mount, .scope, ...) is refused. The rest
# (no "..", templates need an instance, 255 bytes) the dispatcher checks
# itself at start-up.
let
  first = "[A-Za-z0-9:_@\\]";
  bare = "${first}[-A-Za-z0-9:_@\\]*";
  suffixed = "${first}[-A-Za-z0-9:_.@\\]*\\.(service|socket|target|timer|path)";
in
"${bare}|${suffixed}"

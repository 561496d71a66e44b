# The unit-name patterns allowedUnits and callers.<name>.units accept, as a
# regex for builtins.match / types.strMatching: the dispatcher's grammar
# (services/policy, units.rs: UnitPattern::parse) as far as a regular
# expression can say it. Either an exact unit name (./unit-name.nix: a bare
# name means `name.service`) or a shell glob over whole unit names: the
# characters of unit names, `*`, `?` and closed `[...]`/`[!...]` sets. A
# glob without a type suffix that does not end in `*` means a `.service`
# (`worker@?` is `worker@?.service`); `app-*` matches units of every type,
# and restart_service then refuses whatever is not a service.
#
# Stricter than the dispatcher in two places, so that a pattern this accepts
# is always one the dispatcher accepts: `**` is refused (the glob library
# accepts it only as a whole pattern, where it means the same as `*`), and so
# is a `]` outside a set (a literal `]`, which no unit name contains).
let
  name = import ./unit-name.nix;
  plain = "[-A-Za-z0-9:_.@\\]";
  set = "\\[!?${plain}+]";
  # A token other than `*`; after a `*` comes one of these or the end, so
  # there is never `**`.
  nonStar = "(${plain}|\\?|${set})";
  afterStar = "(${nonStar}+\\*?)*";
  glob = "${plain}*(\\*${afterStar}|(\\?|${set})\\*?${afterStar})";
in
"(${name})|(${glob})"

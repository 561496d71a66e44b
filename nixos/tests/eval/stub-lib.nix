# A stand-in for the few nixpkgs `lib` functions the modules' *option
# declarations* use, so that tests/nix_eval.sh can list the declared options
# (names, types, defaults) on a machine without nixpkgs.
#
# It models shape only: it neither type-checks nor merges, and the modules'
# `config` sections are never evaluated with it. The real evaluation is
# the flake's checks (lib.evalModules through nixosSystem and the VM test).
# Functions are named and called exactly as in nixpkgs, so nothing here
# lets a module use an API the real lib lacks: a missing name is an error.
let
  type = name: extra: { _type = "option-type"; inherit name; } // extra;
in
rec {
  mkOption = attrs: attrs // { _type = "option"; };
  mkEnableOption = name: mkOption {
    type = types.bool;
    default = false;
    description = "Whether to enable ${name}.";
  };
  # The representation nixpkgs uses, so a test can see the priority.
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkDefault = mkOverride 1000;
  literalExpression = text: { _type = "literalExpression"; inherit text; };

  optionalAttrs = cond: attrs: if cond then attrs else { };
  optional = cond: x: if cond then [ x ] else [ ];
  optionalString = cond: s: if cond then s else "";
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  getBin = drv: drv;

  # For evaluating package.nix: what its attribute set and install script
  # read. Same names and semantics as nixpkgs' lib.
  importTOML = path: builtins.fromTOML (builtins.readFile path);
  escapeShellArg = arg: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
  escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
  concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);
  licenses.mit = "mit";
  platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  # toSource is never forced by the test (it would need the store); the
  # others only build its argument.
  fileset = {
    toSource = _: throw "fileset.toSource is not evaluated here";
    unions = list: list;
    maybeMissing = path: path;
  };

  types = {
    str = type "str" { };
    bool = type "bool" { };
    package = type "package" { };
    path = type "path" { };
    attrs = type "attrs" { };
    ints.positive = type "positiveInt" { };
    ints.between = lowest: highest: type "intBetween" { inherit lowest highest; };
    nullOr = t: type "nullOr" { elem = t; };
    listOf = t: type "listOf" { elem = t; };
    attrsOf = t: type "attrsOf" { elem = t; };
    nonEmptyListOf = t: type "nonEmptyListOf" { elem = t; };
    enum = values: type "enum" { inherit values; };
    strMatching = regex: type "strMatching" { inherit regex; };
    addCheck = t: check: t // { inherit check; };
    submodule = module: type "submodule" { inherit module; };
  };
}

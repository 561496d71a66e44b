# Renders the `config` section of nixos/luminous-healing.nix for given
# option values, with builtins only: what the module defines (drop-ins,
# sockets, users, /etc files, assertions, warnings) once its mkIf/mkMerge
# are resolved. tests/nix_eval.sh asserts on the result.
#
# What this is not: the NixOS module system. Option values are the
# declared defaults updated with `set` (no type checking, no merging with
# other modules), mkIf/mkMerge are resolved structurally and priorities
# (mkDefault, mkForce) are dropped. It checks the module's own logic: which
# units get which settings for which options. The real evaluation is the
# flake's checks.
{
  set ? { },
  # users.users.<name>.uid of the fake host
  uids ? { },
}:
let
  stub = import ./stub-lib.nix;

  # The module-system constructors, as data, and a resolver for them.
  lib = stub // {
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkForce = stub.mkOverride 50;
    mkBefore = content: { _type = "order"; priority = 500; inherit content; };
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    nameValuePair = name: value: { inherit name value; };
    optionals = cond: list: if cond then list else [ ];
    unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
    recursiveUpdate =
      a: b:
      a
      // builtins.mapAttrs (
        n: v: if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) then lib.recursiveUpdate a.${n} v else v
      ) b;
  };

  isType = t: v: builtins.isAttrs v && (v._type or null) == t;
  # Merges resolved definitions the way list- and attrset-typed options do.
  merge =
    a: b:
    if builtins.isAttrs a && builtins.isAttrs b then
      a // builtins.mapAttrs (n: v: if a ? ${n} then merge a.${n} v else v) b
    else if builtins.isList a && builtins.isList b then
      a ++ b
    else
      b;
  absent = { _type = "absent"; };
  resolve =
    v:
    if isType "if" v then
      (if v.condition then resolve v.content else absent)
    else if isType "merge" v then
      builtins.foldl' (acc: c: let r = resolve c; in if isType "absent" r then acc else merge acc r) { } v.contents
    else if isType "override" v || isType "order" v then
      resolve v.content
    else if builtins.isAttrs v && !(v ? _type) then
      let
        resolved = builtins.mapAttrs (_: resolve) v;
      in
      builtins.removeAttrs resolved (builtins.filter (n: isType "absent" resolved.${n}) (builtins.attrNames resolved))
    else if builtins.isList v then
      map resolve v
    else
      v;

  # Derivations become recognisable strings or records.
  pkgs = {
    formats.toml = _: {
      type = stub.types.attrs;
      generate = name: value: { _generated = name; inherit value; };
    };
    callPackage = _: _: "/nix/store/eval-luminous-healing";
    writeText = name: _text: "/nix/store/eval-${name}";
    runCommand = name: _: _: "/nix/store/eval-${name}";
    coreutils = "/nix/store/eval-coreutils";
  };

  # Declared defaults of the module's options, then the caller's values.
  declared = (import ../../luminous-healing.nix {
    inherit lib pkgs;
    config = throw "declarations read config";
  }).options.services.luminous-healing;
  defaults =
    o:
    if (o._type or null) == "option" then
      (
        if o.type.name == "submodule" then
          let
            m = o.type.module;
          in
          defaults (if builtins.isFunction m then m { } else m).options
        else
          o.default or null
      )
    else
      builtins.mapAttrs (_: defaults) o;
  cfg = lib.recursiveUpdate (defaults declared) set;

  config = {
    services.luminous-healing = cfg;
    systemd.package = "/nix/store/eval-systemd";
    systemd.packages = [ cfg.package ];
    # The module declares the dispatcher's user; its uid is null unless set.
    users.users = { ${cfg.user}.uid = null; } // builtins.mapAttrs (_: uid: { inherit uid; }) uids;
  };

  module = import ../../luminous-healing.nix {
    inherit lib pkgs config;
  };
in
resolve module.config

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
  inherit (import ./modlib.nix) lib resolve defaults;
  stub = import ./stub-lib.nix;

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

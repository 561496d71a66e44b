# Lists what the modules declare (option names, types, defaults), evaluated
# with builtins and eval/stub-lib.nix only. tests/nix_eval.sh asserts on the
# JSON this returns.
let
  lib = import ./stub-lib.nix;
  pkgs = {
    formats.toml = _: {
      type = lib.types.attrs;
      generate = name: _: "/nix/store/eval-only-${name}";
    };
    callPackage = _: _: "eval-only-package";
    ollama-cuda = "eval-only-ollama-cuda";
    bash = "/eval-only-bash";
  };
  # Option declarations must not depend on config: a declaration that did
  # would hit these throws.
  config = throw "an option declaration reads config";
  args = {
    inherit lib pkgs config;
    utils = { };
    options = { };
  };

  optionsOf = file: (import file args).options;

  # The declared option tree, each option as { type, default?,
  # defaultText? }. A default given with defaultText may be computed from
  # config (legitimately, as in nixpkgs): only its text is reported, the way
  # the manual shows it.
  isPlain = v: builtins.isString v || builtins.isBool v || builtins.isInt v || builtins.isList v;
  describe =
    o:
    if (o._type or null) != "option" then
      builtins.mapAttrs (_: describe) o
    else if o ? defaultText then
      { type = o.type.name; defaultText = o.defaultText.text or o.defaultText; }
    else if o ? default && isPlain o.default then
      { type = o.type.name; inherit (o) default; }
    else
      { type = o.type.name; };

  healing = (optionsOf ../../luminous-healing.nix).services.luminous-healing;
  actionOptions = builtins.mapAttrs (
    _: o: builtins.attrNames ((o.type.module { }).options)
  ) healing.actions.type.module.options;
  actionEnable = builtins.mapAttrs (
    _: o: ((o.type.module { }).options).enable.default
  ) healing.actions.type.module.options;
  callerOpts = healing.callers.type.elem.module.options;
  callerOptions = {
    actions = {
      type = callerOpts.actions.type.name;
      elem.enum = callerOpts.actions.type.elem.values;
    };
    units = describe callerOpts.units // { default = callerOpts.units.default; };
  };

  servicesFiles = [ "ml" "development" "security" "system" "hardware" "virtualization" "monitoring" ];
  services = builtins.listToAttrs (map (g: {
    name = g;
    value = describe (optionsOf (../../services + "/${g}.nix")).luminous.services.${g};
  }) servicesFiles);
in
{
  healing = describe healing;
  healingActions = actionOptions;
  healingActionEnable = actionEnable;
  inherit callerOptions;
  inherit services;
}

# The flake's outputs, computed with a stand-in nixpkgs input (nixpkgs
# cannot be fetched here): which outputs exist for which systems, and what
# the checks are. Nothing is built or evaluated beyond the output shape.
let
  stub = import ./stub-lib.nix;
  fakePkgs = system: {
    stdenv.hostPlatform.system = system;
    callPackage = _: _: { type = "package"; inherit system; };
    testers.runNixOSTest = test: { type = "nixos-test"; inherit (test) name; nodes = builtins.attrNames test.nodes; };
    writeText = name: text: { type = "text"; inherit name text; };
    nixfmt = "nixfmt";
  };
  nixpkgs = {
    lib = stub // {
      nixosSystem = args: {
        config.system.build.toplevel.drvPath = "/nix/store/eval-only-${args.system}.drv";
        modules = args.modules;
      };
    };
    legacyPackages = stub.genAttrs [ "x86_64-linux" "aarch64-linux" ] fakePkgs;
  };
  flake = import ../../../flake.nix;
  self = flake.outputs { inherit self nixpkgs; };
in
{
  outputs = builtins.attrNames self;
  packages = builtins.mapAttrs (_: builtins.attrNames) self.packages;
  nixosModules = builtins.attrNames self.nixosModules;
  servicesModule = toString self.nixosModules.services;
  checks = builtins.mapAttrs (_: c: builtins.mapAttrs (_: v: v.type) c) self.checks;
  vmTest = self.checks.x86_64-linux.vm;
  servicesVmTest = self.checks.x86_64-linux.services-vm;
  servicesEval = self.checks.x86_64-linux.services-eval.text;
  defaultModule =
    let
      m = self.nixosModules.default {
        lib = nixpkgs.lib;
        pkgs = fakePkgs "aarch64-linux";
      };
    in
    {
      imports = map toString m.imports;
      package = m.services.luminous-healing.package;
    };
  inputs = builtins.attrNames flake.inputs;
  nixpkgsUrl = flake.inputs.nixpkgs.url;
}

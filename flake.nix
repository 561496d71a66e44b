{
  description = "luminous-healing: least-privilege executor of repairs for NixOS/systemd hosts";

  # No flake.lock is committed: nixpkgs cannot be fetched where this
  # repository is developed, so a lock could not be generated honestly.
  # The first `nix flake check` / `nix build` on a machine with network
  # access writes one (see docs/nixos.md).
  # Consumers normally make this follow their own nixpkgs
  # (`inputs.luminous-healing.inputs.nixpkgs.follows = "nixpkgs"`), so the
  # modules use only long-standing option paths and lib functions.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # Linux only: the executor is systemd-native, and the VM test needs KVM.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        luminous-healing = pkgs.callPackage ./nixos/package.nix { };
        default = luminous-healing;
      });

      overlays.default = final: _prev: {
        luminous-healing = final.callPackage ./nixos/package.nix { };
      };

      nixosModules = {
        # The executor. Its package defaults to the flake's own build for
        # the host's platform, so importing the module is all it takes.
        default =
          { lib, pkgs, ... }:
          {
            imports = [ ./nixos/luminous-healing.nix ];
            services.luminous-healing.package =
              lib.mkDefault
                self.packages.${pkgs.stdenv.hostPlatform.system}.luminous-healing;
          };
        luminous-healing = self.nixosModules.default;

        # The host services (luminous.services.*), independent of the executor.
        services = ./nixos/services;
      };

      checks = forAllSystems (
        pkgs:
        let
          # Evaluates a whole system with every host service enabled and
          # forces its top-level derivation path: all option paths, types
          # and assertions are checked by the real module system, and
          # nothing is built (CUDA and model weights included).
          servicesSystem = lib.nixosSystem {
            inherit (pkgs.stdenv.hostPlatform) system;
            modules = [
              self.nixosModules.default
              self.nixosModules.services
              ./nixos/tests/all-services.nix
            ];
          };
        in
        {
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          vm = pkgs.testers.runNixOSTest (import ./nixos/tests/vm.nix { inherit self; });
          services-vm = pkgs.testers.runNixOSTest (import ./nixos/tests/services-vm.nix { inherit self; });
          services-eval = pkgs.writeText "luminous-services-eval" (
            builtins.unsafeDiscardStringContext servicesSystem.config.system.build.toplevel.drvPath
          );
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}

# The attributes of nixos/package.nix that need no nixpkgs to compute:
# version (read from Cargo.toml), the lock file it pins and the install
# script. tests/nix_eval.sh runs that script against a fake build output
# and the real units/, docs/.
let
  lib = import ./stub-lib.nix;
  attrs = import ../../package.nix {
    inherit lib;
    rustPlatform.buildRustPackage = a: a;
    installShellFiles = "installShellFiles";
    pandoc = "pandoc";
  };
in
{
  inherit (attrs) pname version postInstall;
  lockFile = toString attrs.cargoLock.lockFile;
  mainProgram = attrs.meta.mainProgram;
}

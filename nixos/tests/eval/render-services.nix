# Renders the `config` sections of every nixos/services/*.nix for given
# option values (luminous.services.* defaults updated with `set`), with
# builtins only; see render.nix for what such a rendering is and is not.
# The distribution's options the modules read (llama-cpp's port, the users,
# clamav's switches, the Prometheus and Grafana addresses) are given the
# values the modules themselves set or the distribution defaults to.
{
  set ? { },
}:
let
  inherit (import ./modlib.nix) lib resolve defaults;
  stub = import ./stub-lib.nix;

  pkgs = {
    bash = "/nix/store/eval-bash";
    coreutils = "/nix/store/eval-coreutils";
    findutils = "/nix/store/eval-findutils";
    clamav = "/nix/store/eval-clamav";
    ollama-cuda = "/nix/store/eval-ollama-cuda";
    writeShellScript = name: _text: "/nix/store/eval-${name}";
  };
  # Shell-quotes like nixpkgs' utils.escapeSystemdExecArgs for these
  # arguments (none holds a quote, a backslash or a specifier).
  utils.escapeSystemdExecArgs = args: builtins.concatStringsSep " " (map (a: "\"${a}\"") args);

  groups = [ "ml" "development" "security" "system" "hardware" "virtualization" "monitoring" ];
  file = g: ../../services + "/${g}.nix";
  declarations = builtins.foldl' (acc: g:
    # Some defaults are computed from config (gpuMonitor.nvidiaSmi), as in
    # nixpkgs: declarations get the same fake config.
    acc // (import (file g) {
      inherit lib pkgs utils config;
    }).options.luminous.services) { } groups;
  own = lib.recursiveUpdate (defaults declarations) set;

  config = {
    luminous.services = own;
    systemd.package = "/nix/store/eval-systemd";
    services.llama-cpp.port = 8080;
    services.clamav = {
      daemon.enable = true;
      updater.enable = true;
    };
    services.prometheus = {
      listenAddress = "127.0.0.1";
      port = 9090;
      exporters.node = {
        listenAddress = "127.0.0.1";
        port = 9100;
      };
    };
    services.grafana.dataDir = "/var/lib/grafana";
    users.users.alice = {
      home = "/home/alice";
      group = "users";
    };
    users.groups = if own.hardware.cudaCache.enable then { nvidia = { }; } else { };
    hardware.nvidia.package = "/nix/store/eval-nvidia";
    virtualisation.docker.package = "/nix/store/eval-docker";
  };

  rendered = map (g: resolve (import (file g) {
    inherit lib pkgs utils config;
  }).config) groups;
in
builtins.listToAttrs (map (i: { name = builtins.elemAt groups i; value = builtins.elemAt rendered i; })
  (builtins.genList (i: i) (builtins.length groups)))

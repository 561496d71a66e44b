# luminous.services.development: JupyterLab for one user, with its token
# as a systemd credential.
#
# Extends the distribution's services.jupyter, which runs the server as a
# system service under a chosen user (what units/development/jupyter@ does
# too: a --user service could not read the root-only /etc/credstore). What
# it lacks is a secret that stays out of the store: its `password` option is
# written into a store file. Here the password is left empty and the token
# is handed over with LoadCredential=; jupyter_server reads it from the file
# JUPYTER_TOKEN_FILE names, so it appears in no unit, store path,
# environment value or command line.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    mkMerge
    mkDefault
    types
    ;
  cfg = config.luminous.services.development.jupyter;
  common = import ./common.nix {
    inherit lib pkgs;
    systemd = config.systemd.package;
  };
  user = config.users.users.${cfg.user} or null;
  home = if user == null then "/home/${cfg.user}" else user.home;
  backendPort = if cfg.onDemand then 8889 else 8888;
  credstore = config.luminous.services.system.credstore;
in
{
  options.luminous.services.development.jupyter = {
    enable = mkEnableOption "JupyterLab on 127.0.0.1:8888 for one user, token from /etc/credstore/jupyter-token";
    user = mkOption {
      type = types.str;
      example = "alice";
      description = "The (existing) user the server runs as, in whose home the notebooks live.";
    };
    tokenFile = mkOption {
      type = types.str;
      default = "/etc/credstore/jupyter-token";
      description = ''
        Root-only file holding the access token, loaded as the credential
        `jupyter-token`. jupyter_server takes the file's content verbatim:
        write it without a trailing newline. With luminous.services.system.credstore enabled,
        a random token is created there on first boot if the file is absent.
      '';
    };
    onDemand = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Start JupyterLab on the first connection to 127.0.0.1:8888 and stop
        it after `idleTimeout` without traffic (the server then listens on
        127.0.0.1:8889 behind the proxy). Stopping ends the kernels: hence
        the long default idle time.
      '';
    };
    idleTimeout = mkOption {
      type = types.str;
      default = "1h";
      description = "Idle time after which on-demand JupyterLab stops.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = user != null;
          message = "luminous.services.development.jupyter.user: no user ${cfg.user} in users.users; JupyterLab runs as an existing user.";
        }
      ];

      services.jupyter = {
        enable = true;
        user = cfg.user;
        group = mkDefault (if user == null || user.group == "" then "users" else user.group);
        ip = mkDefault "127.0.0.1";
        port = backendPort;
        # The token (below) is the credential; no password hash in the store.
        password = mkDefault "";
        notebookDir = mkDefault home;
      };

      # The default token location is the credential store: set it up, and
      # give the token a random value on first boot.
      luminous.services.system.credstore = mkIf (cfg.tokenFile == "/etc/credstore/jupyter-token") {
        enable = mkDefault true;
        generate = [ "jupyter-token" ];
      };

      systemd.services.jupyter = {
        after = lib.optional credstore.enable "setup-system-credentials.service";
        wants = lib.optional credstore.enable "setup-system-credentials.service";
        # Specifiers are expanded in Environment=: %d is the credentials
        # directory of this very service.
        environment.JUPYTER_TOKEN_FILE = "%d/jupyter-token";
        serviceConfig = common.sandbox // {
          LoadCredential = [ "jupyter-token:${cfg.tokenFile}" ];
          # Notebooks are the user's own code working on the user's own
          # files: the home stays writable, the rest of the system does not.
          ProtectHome = false;
          ReadWritePaths = [ home ];
          # The user is a real login user: RemoveIPC= would delete the IPC
          # objects of all their other processes (desktop session included)
          # whenever Jupyter stops.
          RemoveIPC = false;
          DevicePolicy = "closed";
          DeviceAllow = config.luminous.services.ml.gpuDevices;
          SupplementaryGroups = [ "video" ];
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
            "AF_UNIX"
            "AF_NETLINK"
          ];
          SystemCallFilter = [
            "@system-service"
            "~@privileged"
          ];
          # No MemoryDenyWriteExecute: numba, triton and torch.compile JIT.
        };
      };
    }

    (mkIf cfg.onDemand (mkMerge [
      { systemd.services.jupyter.serviceConfig.TimeoutStartSec = "2min"; }
      (common.onDemand {
        name = "jupyter";
        socketDescription = "JupyterLab socket (starts it on demand)";
        proxyDescription = "JupyterLab on-demand proxy";
        listenAddress = "127.0.0.1:8888";
        port = backendPort;
        idle = cfg.idleTimeout;
      })
    ]))
  ]);
}

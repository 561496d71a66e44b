# luminous.services.ml: llama.cpp (on demand) and ollama (NVIDIA).
#
# Both build on the distribution's modules (services.llama-cpp,
# services.ollama), which already carry a good sandbox; what is added here
# is what they lack: on-demand start and stop through a socket and
# systemd-socket-proxyd, the private network namespace of llama.cpp, and
# access to exactly the NVIDIA device nodes.
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
    mkForce
    types
    literalExpression
    ;
  inherit (import ../lib/options.nix lib) strOption;
  cfg = config.luminous.services.ml;
  common = import ./common.nix {
    inherit lib pkgs;
    systemd = config.systemd.package;
  };
  llamaPort = config.services.llama-cpp.port;
  # Where ollama listens when the proxy owns the public port.
  ollamaBackendPort = 11435;
in
{
  options.luminous.services.ml = {
    gpuDevices = mkOption {
      type = types.listOf types.str;
      default = common.nvidiaDevices;
      description = ''
        DeviceAllow= entries for the GPU-using services (DevicePolicy=closed
        admits nothing else). The default is the NVIDIA nodes CUDA opens;
        an AMD host would list /dev/kfd and /dev/dri/renderD128 instead.
      '';
    };

    llama-cpp = {
      enable = mkEnableOption ''
        llama.cpp's server on 127.0.0.1:8080, started on the first
        connection and stopped when idle. Set `services.llama-cpp.model`
        (and `extraFlags`) as for the distribution's module'';
      listenAddress = strOption "127.0.0.1:8080" "Address of the socket clients connect to (ListenStream=).";
      idleTimeout = strOption "5min" "Idle time after which the proxy exits and the model is unloaded (systemd time span).";
    };

    ollama = {
      enable = mkEnableOption "ollama on 127.0.0.1:11434 with NVIDIA (CUDA) access";
      package = mkOption {
        type = types.package;
        default = pkgs.ollama-cuda;
        defaultText = literalExpression "pkgs.ollama-cuda";
        description = ''
          ollama build. The CUDA build is unfree: allow it with
          `nixpkgs.config.allowUnfree` (or an allowUnfreePredicate).
        '';
      };
      onDemand = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Start ollama on the first connection to 127.0.0.1:11434 and stop it
          when idle, instead of running it all the time. ollama itself then
          listens on 127.0.0.1:${toString ollamaBackendPort}.
        '';
      };
      idleTimeout = strOption "5min" "Idle time after which on-demand ollama stops.";
    };
  };

  config = mkMerge [
    (mkIf cfg.llama-cpp.enable (mkMerge [
      {
        services.llama-cpp = {
          enable = true;
          # Inside its own network namespace (below): this address is not the
          # host's, so it does not clash with the socket on the same port.
          host = mkDefault "127.0.0.1";
        };

        systemd.services.llama-cpp = {
          serviceConfig = {
            # The distribution's Type = "idle" delays the start until no job
            # is running, up to 5 s, and the proxy's start job is running
            # (waiting for this one): every cold start would lose those 5 s.
            # units/ml/llama-cpp.service is a plain simple service.
            Type = mkForce "simple";
            # The model gets no network at all: the proxy joins this
            # namespace and is the only way in.
            PrivateNetwork = true;
            IPAddressDeny = "any";
            IPAddressAllow = "localhost";
            # Loading a multi-GB model can take minutes.
            TimeoutStartSec = "10min";
            # --mlock of a large model needs the limit, not CAP_IPC_LOCK.
            LimitMEMLOCK = "infinity";
            DevicePolicy = "closed";
            DeviceAllow = cfg.gpuDevices;
            SupplementaryGroups = [ "video" ];
            # The distribution's ProcSubset = "pid" hides /proc/meminfo,
            # /proc/cpuinfo and /proc/driver/nvidia, which CUDA and NUMA
            # placement read (units/ml/llama-cpp.service: ProcSubset=all).
            ProcSubset = mkForce "all";
            # Not set by the distribution's unit (systemd's default is 0022).
            UMask = "0077";
            # The rest of units/ml/llama-cpp.service (DynamicUser=, no
            # capabilities, PrivateUsers=, PrivateMounts=, ProtectSystem=strict,
            # the Protect*/Restrict* set, MemoryDenyWriteExecute=, RemoveIPC=,
            # @system-service ~@privileged) is the distribution's own already.
            # Its SystemCallErrorNumber=EPERM (a denied call fails instead of
            # killing the server) stays: the set of allowed calls is the same.
          };
        };
      }

      (common.onDemand {
        name = "llama-cpp";
        # Same names as units/ml: llama-cpp.socket hands its connections to
        # the proxy (Service=), not to llama-cpp.service, which takes no fds.
        socketName = "llama-cpp";
        socketDescription = "llama.cpp server socket (starts the model on demand)";
        proxyDescription = "llama.cpp on-demand proxy";
        listenAddress = cfg.llama-cpp.listenAddress;
        port = llamaPort;
        idle = cfg.llama-cpp.idleTimeout;
        joinNamespace = true;
      })
    ]))

    (mkIf cfg.ollama.enable (mkMerge [
      {
        services.ollama = {
          enable = true;
          package = mkDefault cfg.ollama.package;
          host = mkDefault "127.0.0.1";
        };
        # The distribution's unit already closes /dev, admits the NVIDIA
        # device classes and carries the rest of units/ml/ollama.service.d/
        # nvidia.conf (that drop-in repeats it for distributions whose unit
        # is bare). Added as there: the exact device nodes (lists merge with
        # the distribution's classes), the groups owning them, and a private
        # mount namespace, which the distribution's unit lacks.
        systemd.services.ollama.serviceConfig = {
          DeviceAllow = cfg.gpuDevices;
          # nvidia only where the group exists (hardware.cudaCache declares
          # it): systemd refuses to start a unit with an unknown group, and
          # on NixOS nothing else creates one.
          SupplementaryGroups = [
            "video"
          ] ++ lib.optional (config.users.groups ? nvidia) "nvidia";
          PrivateMounts = true;
        };
      }

      # ollama keeps its network (it downloads models), so a port shift
      # rather than a private namespace keeps the two listeners apart.
      (mkIf cfg.ollama.onDemand (mkMerge [
        { services.ollama.port = ollamaBackendPort; }
        (common.onDemand {
          name = "ollama";
          socketDescription = "ollama API socket (starts ollama on demand)";
          proxyDescription = "ollama on-demand proxy";
          listenAddress = "127.0.0.1:11434";
          port = ollamaBackendPort;
          idle = cfg.ollama.idleTimeout;
        })
      ]))
    ]))
  ];
}

# luminous.services.hardware: the shared CUDA cache, and an optional GPU
# monitor that logs to the journal.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge types literalExpression;
  cfg = config.luminous.services.hardware;
  common = import ./common.nix {
    inherit pkgs;
    systemd = config.systemd.package;
  };
in
{
  options.luminous.services.hardware = {
    cudaCache.enable = mkEnableOption ''
      the CUDA JIT cache /var/cache/cuda (0770 root:nvidia, outliving
      /var/tmp cleaning) with /var/tmp/cuda-cache pointing at it, and the
      nvidia group that shares it'';

    gpuMonitor = {
      enable = mkEnableOption "a once-a-minute log of NVIDIA GPU use, memory and temperature to the journal";
      nvidiaSmi = mkOption {
        type = types.str;
        default = "${lib.getBin config.hardware.nvidia.package}/bin/nvidia-smi";
        defaultText = literalExpression ''"''${lib.getBin config.hardware.nvidia.package}/bin/nvidia-smi"'';
        description = "nvidia-smi of the driver the host runs (it must match the kernel module).";
      };
    };
  };

  config = mkMerge [
    (mkIf cfg.cudaCache.enable {
      users.groups.nvidia = { };
      systemd.tmpfiles.rules = [
        "d /var/cache/cuda 0770 root nvidia -"
        "L+ /var/tmp/cuda-cache - - - - /var/cache/cuda"
      ];
    })

    (mkIf cfg.gpuMonitor.enable {
      systemd.services.gpu-monitor = {
        description = "NVIDIA GPU monitor (journal)";
        wantedBy = [ "multi-user.target" ];
        unitConfig.ConditionPathExists = "/dev/nvidiactl";
        serviceConfig = common.sandbox // {
          ExecStart = "${cfg.gpuMonitor.nvidiaSmi} --query-gpu=index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw --format=csv,noheader -l 60";
          Restart = "on-failure";
          RestartSec = "30s";
          DynamicUser = true;
          DevicePolicy = "closed";
          DeviceAllow = [
            "/dev/nvidia0 rw"
            "/dev/nvidiactl rw"
          ];
          SupplementaryGroups = [ "video" ];
          PrivateNetwork = true;
          IPAddressDeny = "any";
          RestrictAddressFamilies = [ "AF_UNIX" ];
          PrivateUsers = true;
          MemoryDenyWriteExecute = true;
          SystemCallFilter = [
            "@system-service"
            "~@privileged @resources"
          ];
        };
      };
    })
  ];
}

# A host with the executor and every host service enabled, as the example
# in docs/nixos.md. Used by the flake's `services-eval` check, which
# evaluates it with the real module system (all option paths, types,
# merges and assertions) without building anything.
{ ... }:
{
  # Enough of a machine for the evaluation to be meaningful; never booted.
  boot.loader.grub.enable = false;
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  system.stateVersion = "25.05";
  # The CUDA builds of ollama and the NVIDIA driver are unfree.
  nixpkgs.config.allowUnfree = true;

  users.users.alice.isNormalUser = true;

  services.luminous-healing = {
    enable = true;
    secretKeyFile = "/etc/credstore/luminous-healing-secret";
    allowedUsers = [ "alice" ];
    actions.restart_service.allowedUnits = [
      "ollama.service"
      "llama-cpp.service"
      "app-*"
    ];
    actions.restart_service.breaker = {
      max = 2;
      windowSecs = 3600;
    };
    actions.kill_process.allowedUnits = [ "app-*.service" ];
    actions.rollback_generation = {
      enable = true;
      rateLimit = {
        max = 1;
        windowSecs = 3600;
      };
    };
    callers = {
      alice = {
        actions = [
          "restart_service"
          "clear_system_cache"
        ];
        units = [ "ollama.service" ];
      };
      "@wheel".actions = [
        "restart_service"
        "kill_process"
        "rollback_generation"
      ];
    };
    statusRateLimit = {
      max = 60;
      windowSecs = 60;
    };
    maxIdsPerCaller = 1000;
  };

  services.llama-cpp.model = "/var/lib/llama-cpp/models/model.gguf";
  hardware.nvidia.open = true;
  services.xserver.videoDrivers = [ "nvidia" ];

  luminous.services = {
    ml.llama-cpp.enable = true;
    ml.ollama.enable = true;
    development.jupyter = {
      enable = true;
      user = "alice";
    };
    security.clamav.enable = true;
    security.sshd.enable = true;
    system.credstore.enable = true;
    hardware.cudaCache.enable = true;
    hardware.gpuMonitor.enable = true;
    virtualization.dockerPrePull.enable = true;
    virtualization.vmShared.enable = true;
    monitoring.prometheus.enable = true;
    monitoring.grafana.enable = true;
  };
}

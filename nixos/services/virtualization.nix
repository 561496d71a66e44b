# luminous.services.virtualization: Docker image pre-pull and the shared
# folder for libvirt guests.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge mkDefault types;
  cfg = config.luminous.services.virtualization;
  common = import ./common.nix {
    inherit pkgs;
    systemd = config.systemd.package;
  };
in
{
  options.luminous.services.virtualization = {
    dockerPrePull = {
      enable = mkEnableOption "pulling the ML container images once per boot, after Docker is up (enables Docker)";
      images = mkOption {
        # Spelled into ExecStart=: no spaces or specifiers (%) can slip in.
        type = types.listOf (types.strMatching "[A-Za-z0-9._/:@-]+");
        default = [
          "nvcr.io/nvidia/pytorch:25.09-py3"
          "ghcr.io/huggingface/text-generation-inference:latest"
        ];
        description = "Images to pull, in order.";
      };
    };

    vmShared.enable = mkEnableOption "the shared folder /srv/vms/shared for libvirt guests (0755 root:libvirtd)";
  };

  config = mkMerge [
    (mkIf cfg.dockerPrePull.enable {
      virtualisation.docker.enable = mkDefault true;

      # The docker CLI only asks dockerd, over /run/docker.sock, to pull:
      # docker-group membership is root-equivalent through that socket and
      # no unit setting narrows what the daemon does. What the sandbox can
      # do is keep the client itself away from everything but that socket.
      systemd.services.docker-pull-images = {
        description = "Pull the ML container images";
        requires = [ "docker.service" ];
        after = [
          "docker.service"
          "network-online.target"
        ];
        wants = [ "network-online.target" ];
        wantedBy = [ "multi-user.target" ];
        environment = {
          HOME = "/tmp";
          DOCKER_CONFIG = "/tmp/.docker";
        };
        serviceConfig = common.sandbox // {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = map (image: "${config.virtualisation.docker.package}/bin/docker pull --quiet ${image}") cfg.dockerPrePull.images;
          # Multi-GB layers on a slow link.
          TimeoutStartSec = "2h";
          DynamicUser = true;
          SupplementaryGroups = [ "docker" ];
          # A unix socket in the file system is reachable from a private
          # network namespace: the client needs no network of its own.
          PrivateNetwork = true;
          IPAddressDeny = "any";
          RestrictAddressFamilies = [ "AF_UNIX" ];
          PrivateDevices = true;
          ProcSubset = "pid";
          MemoryDenyWriteExecute = true;
          SystemCallFilter = [
            "@system-service"
            "~@privileged @resources"
          ];
        };
      };
    })

    (mkIf cfg.vmShared.enable {
      # Declared here so the rule resolves even before libvirtd is enabled;
      # the libvirtd module's own declaration (fixed gid) merges with it.
      users.groups.libvirtd = { };
      systemd.tmpfiles.rules = [ "d /srv/vms/shared 0755 root libvirtd -" ];
    })
  ];
}

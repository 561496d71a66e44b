# luminous.services.security: ClamAV (daemon hardening and a weekly scan of
# /home) and sshd hardening.
{
  config,
  lib,
  pkgs,
  utils,
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
  cfg = config.luminous.services.security;
  common = import ./common.nix {
    inherit pkgs;
    systemd = config.systemd.package;
  };
  clamavPackage = config.services.clamav.package or pkgs.clamav;
  scan = cfg.clamav.scan;
in
{
  options.luminous.services.security = {
    clamav = {
      enable = mkEnableOption "ClamAV: clamd and freshclam from the distribution's module, with clamd confined further";

      scan = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to scan weekly (when luminous.services.security.clamav is enabled).";
        };
        paths = mkOption {
          type = types.listOf types.str;
          default = [ "/home" ];
          description = "What to scan.";
        };
        excludeDirs = mkOption {
          type = types.listOf types.str;
          default = [
            "/sys"
            "/proc"
            "/dev"
            "/run"
            "/nix/store"
          ];
          description = ''
            Trees never scanned (they matter once `paths` includes `/`):
            kernel interfaces, and the store, whose content is fixed by hash.
          '';
        };
        maxFileSize = mkOption {
          type = types.str;
          default = "100M";
          description = "clamscan --max-filesize.";
        };
        maxScanSize = mkOption {
          type = types.str;
          default = "300M";
          description = "clamscan --max-scansize.";
        };
        logFile = mkOption {
          type = types.str;
          default = "/var/log/clamav/scan.log";
          description = "Where clamscan logs (in addition to the journal).";
        };
        onCalendar = mkOption {
          type = types.str;
          default = "weekly";
          description = "When to scan (systemd.time(7)).";
        };
        randomizedDelay = mkOption {
          type = types.str;
          default = "2h";
          description = "RandomizedDelaySec= of the timer: hosts sharing storage do not all scan at once.";
        };
      };
    };

    sshd = {
      enable = mkEnableOption "OpenSSH with a hardened configuration (keys only, no root login)";
      sandbox = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Also confine sshd.service itself as units/security/sshd.service.d
          does (read-only system, reduced capabilities, NoNewPrivileges=).
          Every login session inherits that confinement: in particular
          NoNewPrivileges= makes sudo (and so `sudo nixos-rebuild` over SSH)
          impossible. Off by default for that reason; turn it on for hosts
          administered some other way.
        '';
      };
    };
  };

  config = mkMerge [
    (mkIf cfg.clamav.enable {
      services.clamav = {
        daemon.enable = mkDefault true;
        updater.enable = mkDefault true;
      };

      # On top of the distribution's unit, which already gives clamd a
      # private /tmp, /dev and network (and only if it exists: a drop-in
      # alone would become a unit without ExecStart=). mkDefault throughout: where the
      # distribution sets a key itself, its choice stands (and no two
      # definitions conflict when it starts setting one of these).
      systemd.services.clamav-daemon.serviceConfig = mkIf config.services.clamav.daemon.enable (lib.mapAttrs (_: mkDefault) {
        # Enough to prepare its run directory and drop to the clamav user
        # when started as root (older modules); nothing when started as
        # clamav (newer ones).
        CapabilityBoundingSet = [ "CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        RuntimeDirectory = "clamav";
        ReadWritePaths = [
          "-/var/log/clamav"
          "-/var/lib/clamav"
          "-/run/clamav"
        ];
        ProtectHome = "read-only";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RestrictAddressFamilies = [ "AF_UNIX AF_INET AF_INET6" ];
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        # Not ~@privileged: the privilege drop (setgroups, setuid) is in it.
        SystemCallFilter = [ "@system-service" ];
        UMask = "0027";
      });

      systemd.tmpfiles.rules = [ "d /var/log/clamav 0755 clamav clamav -" ];
    })

    (mkIf (cfg.clamav.enable && scan.enable) {
      # The distribution's services.clamav.scanner runs clamdscan with fixed
      # flags through the daemon: no per-scan size limits, exclusions or log
      # file, and no idle scheduling. A clamscan unit of its own (as in
      # units/security) does all of that without touching the daemon.
      systemd.services.clamav-scan = {
        description = "ClamAV scan of ${lib.concatStringsSep " " scan.paths}";
        documentation = [ "man:clamscan(1)" ];
        after = lib.optional config.services.clamav.updater.enable "clamav-freshclam.service";
        # A detection exits 1 and is deliberately NOT a success: the unit
        # fails, which shows in `systemctl --failed`, monitoring and
        # OnFailure= hooks instead of only in the log file.
        serviceConfig = common.sandbox // {
          Type = "oneshot";
          ExecStart = utils.escapeSystemdExecArgs (
            [
              "${clamavPackage}/bin/clamscan"
              "--recursive"
              "--infected"
              "--database=/var/lib/clamav"
              "--max-filesize=${scan.maxFileSize}"
              "--max-scansize=${scan.maxScanSize}"
              "--log=${scan.logFile}"
            ]
            ++ map (d: "--exclude-dir=^${d}/") scan.excludeDirs
            ++ scan.paths
          );
          Nice = 19;
          IOSchedulingClass = "idle";
          CPUSchedulingPolicy = "idle";
          # Reading every user's files needs CAP_DAC_READ_SEARCH, not root.
          User = "clamav";
          Group = "clamav";
          # clamd runs as clamav too: RemoveIPC= at the end of a scan would
          # reach into the daemon's IPC objects.
          RemoveIPC = false;
          AmbientCapabilities = [ "CAP_DAC_READ_SEARCH" ];
          CapabilityBoundingSet = [ "CAP_DAC_READ_SEARCH" ];
          LogsDirectory = "clamav";
          LogsDirectoryMode = "0755";
          # Only matters when logFile is moved out of /var/log/clamav.
          ReadWritePaths = [ "-${dirOf scan.logFile}" ];
          ProtectHome = "read-only";
          PrivateDevices = true;
          # Local signatures only: no network at all.
          PrivateNetwork = true;
          IPAddressDeny = "any";
          RestrictAddressFamilies = [ "AF_UNIX" ];
          ProcSubset = "pid";
          MemoryDenyWriteExecute = true;
          SystemCallFilter = [
            "@system-service"
            "~@privileged @resources"
          ];
          UMask = "0027";
        };
      };

      systemd.timers.clamav-scan = {
        description = "Scheduled ClamAV scan";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = scan.onCalendar;
          RandomizedDelaySec = scan.randomizedDelay;
          # A machine that was off at the scheduled time scans at next boot.
          Persistent = true;
        };
      };
    })

    (mkIf cfg.sshd.enable {
      services.openssh = {
        enable = true;
        settings = {
          PermitRootLogin = mkDefault "no";
          PasswordAuthentication = mkDefault false;
          KbdInteractiveAuthentication = mkDefault false;
          X11Forwarding = mkDefault false;
          MaxAuthTries = mkDefault 3;
          LoginGraceTime = mkDefault 30;
        };
      };
    })

    (mkIf (cfg.sshd.enable && cfg.sshd.sandbox) {
      # units/security/sshd.service.d/hardening.conf, with the NixOS
      # difference that host keys are generated into /etc/ssh at start.
      systemd.services.sshd.serviceConfig = {
        CapabilityBoundingSet = [
          "CAP_NET_BIND_SERVICE CAP_DAC_READ_SEARCH"
          "CAP_SETUID CAP_SETGID"
          "CAP_SYS_CHROOT"
          "CAP_CHOWN CAP_FOWNER"
          "CAP_AUDIT_CONTROL CAP_AUDIT_WRITE"
          "CAP_KILL CAP_SYS_RESOURCE"
        ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = [
          "-/etc/ssh"
          "-/home"
          "-/root"
          "-/run/user"
          "-/var/log/lastlog"
          "-/var/log/wtmp"
          "-/var/log/btmp"
          "-/run/utmp"
        ];
        ProtectHome = false;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        RemoveIPC = false;
        RestrictAddressFamilies = [ "AF_INET AF_INET6 AF_UNIX AF_NETLINK" ];
        SystemCallArchitectures = "native";
        # chroot is outside @system-service; the privilege-separated child
        # is killed with SIGSYS before authentication without it.
        SystemCallFilter = [ "@system-service chroot" ];
      };
    })
  ];
}

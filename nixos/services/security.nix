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
  inherit (import ../lib/options.nix lib) strOption;
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
        maxFileSize = strOption "100M" "clamscan --max-filesize.";
        maxScanSize = strOption "300M" "clamscan --max-scansize.";
        logFile = strOption "/var/log/clamav/scan.log" "Where clamscan logs (in addition to the journal).";
        onCalendar = strOption "weekly" "When to scan (systemd.time(7)).";
        randomizedDelay = strOption "2h" "RandomizedDelaySec= of the timer: hosts sharing storage do not all scan at once.";
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

      # units/security/clamav-daemon.service.d/hardening.conf, on top of the
      # distribution's unit (and only if it exists: a drop-in alone would
      # become a unit without ExecStart=). That unit already starts clamd
      # as the clamav user (User=, RuntimeDirectory=, StateDirectory=) with
      # a private /tmp, /dev and network, which is what the drop-in
      # arranges on Debian: clamd never holds root's powers, so it needs no
      # capability at all. mkDefault throughout: where the distribution sets
      # a key itself, its choice stands (and no two definitions conflict
      # when it starts setting one of these).
      systemd.services.clamav-daemon.serviceConfig = mkIf config.services.clamav.daemon.enable (lib.mapAttrs (_: mkDefault) (common.baseline // {
        User = "clamav";
        Group = "clamav";
        CapabilityBoundingSet = [ "" ];
        # Log and pid file; the database is freshclam's to write (the
        # distribution's StateDirectory= keeps /var/lib/clamav writable).
        ReadWritePaths = [
          "-/var/log/clamav"
          "-/run/clamav"
        ];
        ProtectHome = "read-only";
        PrivateDevices = true;
        # TCPSocket= in clamd.conf needs AF_INET*; the default is the unix socket.
        RestrictAddressFamilies = [ "AF_UNIX AF_INET AF_INET6" ];
        MemoryDenyWriteExecute = true;
        # Started as clamav, clamd drops no privileges: nothing of
        # @privileged is needed.
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        PrivateUsers = true;
        UMask = "0027";
      }));

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
          # clamscan, when not root, first asks access(2) about each file,
          # and the kernel evaluates that check without capabilities for a
          # non-root uid: without this bit every file in a 0700 home is
          # "Access denied" (found by tests/host_clamav_scan.sh).
          SecureBits = "no-setuid-fixup";
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
      # difference that host keys are generated into /etc/ssh at start
      # (preStart runs under the same confinement, hence -/etc/ssh below).
      # This applies to sshd.service only, not to the per-connection
      # sshd@.service of services.openssh.startWhenNeeded.
      # The baseline's ProtectProc=invisible: sessions see only their own
      # users' processes (root sees all).
      systemd.services.sshd.serviceConfig = common.baseline // {
        # Exactly the set tests/host_sshd_login.sh proves (a key login over
        # a pty through PAM fails without any one of them): port 22;
        # pam_unix reading a mode-0000 /etc/shadow; becoming the user;
        # the pre-auth child's chroot; chown of the pty; the monitor
        # killing the pre-auth child at LoginGraceTime (without CAP_KILL an
        # unauthenticated connection stays open indefinitely); and
        # CAP_AUDIT_WRITE for PAM's login records. Left out because the
        # login works without them: CAP_AUDIT_CONTROL, CAP_FOWNER, and
        # CAP_SYS_RESOURCE (only for limits.conf raising hard limits above
        # sshd's own: add it on such hosts).
        CapabilityBoundingSet = [
          "CAP_NET_BIND_SERVICE CAP_DAC_READ_SEARCH"
          "CAP_SETUID CAP_SETGID"
          "CAP_SYS_CHROOT"
          "CAP_CHOWN"
          "CAP_KILL"
          "CAP_AUDIT_WRITE"
        ];
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
        PrivateDevices = true;
        RestrictAddressFamilies = [ "AF_INET AF_INET6 AF_UNIX AF_NETLINK" ];
        # chroot is outside @system-service; the privilege-separated child
        # is killed with SIGSYS before authentication without it.
        SystemCallFilter = [ "@system-service chroot" ];
        # No MemoryDenyWriteExecute=: sessions run JIT runtimes (node, java).
      };
    })
  ];
}

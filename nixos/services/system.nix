# luminous.services.system: the credential store /etc/credstore.
#
# NixOS has no module for it. systemd's LoadCredential= can name any path,
# but one root-only directory for all of a host's service secrets is what
# the units here (jupyter's token, the executor's secret if you like) point
# at, and it must exist, 0700 root, before any of them starts.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.luminous.services.system.credstore;
  common = import ./common.nix {
    inherit pkgs;
    systemd = config.systemd.package;
  };

  # Run before sysinit.target, so with nothing but coreutils and absolute
  # paths. Creates missing secrets only: an existing file is never touched.
  generate = pkgs.writeShellScript "credstore-generate" ''
    set -eu
    umask 077
    for name in "$@"; do
      target=/etc/credstore/$name
      [ -e "$target" ] && continue
      # No trailing newline: some readers (jupyter_server) take the file
      # content verbatim as the token.
      ${pkgs.coreutils}/bin/head -c 32 /dev/urandom \
        | ${pkgs.coreutils}/bin/base64 -w0 \
        | ${pkgs.coreutils}/bin/tr -d '=+/' > "$target.tmp"
      ${pkgs.coreutils}/bin/mv "$target.tmp" "$target"
    done
  '';
in
{
  options.luminous.services.system.credstore = {
    enable = mkEnableOption "the root-only credential store /etc/credstore (0700), set up at boot";
    generate = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z0-9_.-]+");
      default = [ ];
      example = [ "jupyter-token" ];
      description = ''
        Credentials to create with a random value when absent (never
        overwritten). Modules add their own, e.g. jupyter-token.
      '';
    };
  };

  config = mkIf cfg.enable {
    systemd.services.setup-system-credentials = {
      description = "Create the system credential store /etc/credstore";
      wantedBy = [ "sysinit.target" ];
      before = [ "sysinit.target" ];
      after = [ "local-fs.target" ];
      unitConfig = {
        DefaultDependencies = false;
        ConditionPathIsReadWrite = "/etc";
      };
      serviceConfig = common.sandbox // {
        Type = "oneshot";
        RemainAfterExit = true;
        # systemd creates it 0700 root and makes it (only it) writable.
        ConfigurationDirectory = "credstore";
        ConfigurationDirectoryMode = "0700";
        # systemd leaves an existing directory's mode and owner alone. As
        # units/system/setup-system-credentials.service (tested by
        # tests/host_credentials.sh): an owner other than root is NOT
        # repaired but fails the unit (whoever owned it may have read or
        # planted secrets: a human must look), and a wrong mode is repaired
        # only when wrong, so a second run changes nothing, not even the
        # ctime. Numeric comparison, no NSS lookup, hence no socket needed.
        ExecStart = [
          "${pkgs.coreutils}/bin/test -O /etc/credstore -a -G /etc/credstore"
          "${pkgs.findutils}/bin/find /etc/credstore -maxdepth 0 ! -perm 0700 -exec ${pkgs.coreutils}/bin/chmod 0700 {} +"
        ] ++ lib.optional (cfg.generate != [ ]) "${generate} ${lib.escapeShellArgs cfg.generate}";
        # Root owns the directory and what it creates in it: chmod and the
        # new secrets need no capability (the sandbox's empty
        # CapabilityBoundingSet=).
        User = "root";
        PrivateDevices = true;
        PrivateNetwork = true;
        IPAddressDeny = "any";
        RestrictAddressFamilies = [ "none" ];
        ProcSubset = "pid";
        MemoryDenyWriteExecute = true;
        SystemCallFilter = [
          "@system-service"
          "~@privileged @resources"
        ];
      };
    };
  };
}

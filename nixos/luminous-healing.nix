# services.luminous-healing: the privileged-repair executor.
#
# The units themselves come from the package (systemd.packages): this module
# only adds what a NixOS configuration decides (secret, socket path, user,
# group, which actions are enabled) as drop-ins, and the policy file. The
# option names of the earlier Python module (enable, socketPath, secretKey,
# user, group, allowedUsers) keep their meaning, so existing configurations
# still evaluate.
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
    types
    literalExpression
    ;

  cfg = config.services.luminous-healing;
  inherit (import ./lib/options.nix lib) strOption;
  varlinkGroup = if cfg.varlink.group == null then cfg.group else cfg.varlink.group;
  actionNames = import ./actions.nix;
  settingsFormat = pkgs.formats.toml { };

  defaultSocketPath = "/run/luminous-healing.sock";
  # Where the package's dispatcher unit loads the credential from.
  defaultSecretPath = "/etc/luminous-healing/secret";

  # A string, not a Nix path: a path literal would be copied into the
  # world-readable store the moment it is interpolated, which is the very
  # thing secretKeyFile exists to avoid.
  absolutePathString = types.addCheck types.str (s: builtins.substring 0 1 s == "/") // {
    description = "absolute path (as a string, not a Nix path literal)";
  };

  # An optional path: `null` keeps the executor's own default.
  pathOption =
    description:
    mkOption {
      type = types.nullOr absolutePathString;
      default = null;
      inherit description;
    };

  # The dispatcher's grammar, checked at evaluation time so that a typo
  # fails `nixos-rebuild` rather than the dispatcher's start.
  # allowedUnits and callers.<name>.units are globs over unit names
  # (`app-*`, `worker@?`), the exact names being the special case.
  unitGlobRegex = import ./lib/unit-glob.nix;
  unitGlob = types.strMatching unitGlobRegex;

  # { max, windowSecs }, rendered as { max, window_secs }.
  limitType = types.submodule {
    options = {
      max = mkOption {
        type = types.ints.positive;
        description = "Requests allowed per window.";
      };
      windowSecs = mkOption {
        type = types.ints.between 1 86400;
        description = "Length of the sliding window, in seconds (at most a day).";
      };
    };
  };

  # An optional { max, windowSecs }; null keeps the executor's default.
  limitOption =
    example: description:
    mkOption {
      type = types.nullOr limitType;
      default = null;
      inherit example description;
    };

  # The names `[callers.*] actions` may list: every configurable action,
  # status included (status is always allowed; listing it changes nothing).
  # pause and resume are root's alone and cannot be granted.
  callerActionNames = actionNames ++ [ "status" ];

  # What the dispatcher accepts as a `[callers]` key (config.rs:
  # valid_account_name), with the `@` of a group.
  callerKeyRegex = "@?[A-Za-z0-9._$][-A-Za-z0-9._$]{0,31}";
  badCallerKeys = builtins.filter (k: builtins.match callerKeyRegex k == null) (builtins.attrNames cfg.callers);

  actionModule =
    name:
    { ... }:
    {
      options =
        {
          enable = mkOption {
            type = types.bool;
            # Off unless asked for: a rollback changes what the whole host
            # runs, and every step back makes the next one worse (the
            # generation it leaves is the one with the fixes newer than the
            # fault). The policy (services/policy/src/authorize.rs,
            # rule one-step-back) goes one step back only, never further.
            default = name != "rollback_generation";
            description =
              ''
                Whether callers may request `${name}`. A disabled action is
                refused by the dispatcher with "Action ${name} not allowed"
                (rule `actions.enabled`), and its socket is not started at all.
              ''
              + lib.optionalString (name == "rollback_generation") ''

                Off by default, unlike every other action: a rollback
                changes what the whole host runs, and every step back makes
                the next one worse, since the generation it leaves is the
                newest, the one that carries whatever was fixed last. When
                enabled, the executor still goes one step back only: it
                refuses while the running system is already older than the
                newest generation (rule `one-step-back`), so repeated
                requests cannot walk the host back through its history.
                See docs/policy.md.
              '';
          };
          rateLimit =
            limitOption
              {
                max = 3;
                windowSecs = 3600;
              }
              ''
                Per-action rate limit, counted before the action runs. `null`
                keeps the executor's default (10 per 300 s, as the earlier
                service did).
              '';
          timeoutSecs = mkOption {
            type = types.nullOr types.ints.positive;
            default = null;
            description = "How long the action may run before it is reported as failed; `null` keeps the executor's default.";
          };
        }
        // lib.optionalAttrs (name == "restart_service") {
          allowedUnits = mkOption {
            type = types.nullOr (types.listOf unitGlob);
            default = null;
            example = [
              "nginx.service"
              "ollama.service"
              "app-*"
            ];
            description = ''
              Units `restart_service` may restart: unit names or shell globs
              over whole unit names (`app-*`, `worker@?`; a name or glob
              without a type suffix and not ending in `*` means a
              `.service`). `null` allows any service the rest of the policy
              permits; an allow-list is strongly recommended. Whatever the
              list says, only services are restarted (rule
              `services-only`), never a unit on the built-in protected list
              (`protected-units`: the dispatcher, dbus, journald, logind,
              gettys, rescue shells, ...), and never one that is not
              running or failed (`never-start`).
            '';
          };
          breaker =
            limitOption
              {
                max = 2;
                windowSecs = 3600;
              }
              ''
                Circuit breaker: at most `max` restarts of one unit per
                sliding window; the next is refused (rule `breaker`) so the
                caller escalates instead of restarting in a loop. Counted per
                unit, whoever asks. `null` keeps the executor's default (3
                per 900 s).
              '';
        }
        // lib.optionalAttrs (name == "kill_process") {
          allowedUnits = mkOption {
            type = types.listOf unitGlob;
            default = [ ];
            example = [ "app-*.service" ];
            description = ''
              Units whose processes `kill_process` may signal for any
              caller (globs as for restart_service). Without a match a
              caller may signal only processes whose real, effective and
              saved uids are all its own (rule `process-owner`); pid 1,
              kernel threads and processes of protected units are refused
              always.
            '';
          };
        }
        // lib.optionalAttrs (name == "rollback_generation") {
          nixosRebuild = pathOption ''
            `nixos-rebuild` to run for the rollback. `null` uses
            `/run/current-system/sw/bin/nixos-rebuild`, i.e. the one of
            the generation currently running.
          '';
        }
        // lib.optionalAttrs (name == "clean_nix_store") {
          nixCollectGarbage = pathOption ''
            `nix-collect-garbage` to run. `null` uses
            `/run/current-system/sw/bin/nix-collect-garbage`.
          '';
        };
    };

  generatedSettings = import ./lib/config.nix {
    extraGroups = lib.optional (cfg.varlink.enable && varlinkGroup != cfg.group) varlinkGroup;
    inherit (cfg)
      group
      allowedUsers
      protocols
      idleTimeout
      actions
      callers
      statusRateLimit
      maxIdsPerCaller
      nixProfilesDir
      currentSystem
      ;
  };

  # User-supplied `settings` win over what the typed options generate, key
  # by key, so any schema key without a dedicated option stays reachable.
  finalSettings = lib.recursiveUpdate generatedSettings cfg.settings;

  configFile = settingsFormat.generate "luminous-healing-config.toml" finalSettings;

  # The deprecated inline secret still goes through LoadCredential, so the
  # dispatcher has a single code path and the secret stays out of the unit
  # file and the process environment; it is in the store all the same,
  # which is what the warning below says.
  legacySecretFile = pkgs.writeText "luminous-healing-secret" cfg.secretKey;

  secretSource =
    if cfg.secretKeyFile != null then
      cfg.secretKeyFile
    else if cfg.secretKey != null then
      "${legacySecretFile}"
    else
      null;

  # The journal catalog database with the explanations `journalctl -x`
  # shows: systemd's own catalogs, those of every systemd.packages entry
  # (this package's among them), compiled at build time.
  journalCatalog =
    pkgs.runCommand "journal-catalog-database" { nativeBuildInputs = [ config.systemd.package ]; }
      ''
        bash ${./lib/journal-catalog.sh} "$out" ${
          lib.escapeShellArgs (
            map (p: "${p}/lib/systemd/catalog") (lib.unique ([ config.systemd.package ] ++ config.systemd.packages))
          )
        }
      '';

  enabledActions = builtins.filter (a: cfg.actions.${a}.enable) actionNames;

  # The earlier module let the dispatcher's user be renamed; the action
  # services only know its uid when told, so a renamed user needs a fixed uid.
  customUser = cfg.user != "luminous-healing";
in
{
  options.services.luminous-healing = {
    enable = mkEnableOption "the luminous-healing privileged-repair executor";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./package.nix { }  # built from this checkout";
      description = "The luminous-healing package; its units are the ones the host runs.";
    };

    socketPath = mkOption {
      type = absolutePathString;
      default = defaultSocketPath;
      description = "Path of the dispatcher's Unix socket (the one clients connect to).";
    };

    secretKeyFile = mkOption {
      type = types.nullOr absolutePathString;
      default = null;
      example = "/run/secrets/luminous-healing";
      description = ''
        File holding the shared HMAC secret, read by systemd and handed to
        the dispatcher as the credential `secret` (`LoadCredential=`), so it
        never enters the store, the unit file or the environment. Give it
        as a string. Clients (healctl, the monitoring engine) need to read
        it too: make it `0640 root:''${group}` or give them their own copy.
      '';
    };

    secretKey = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = ''
        Deprecated: the secret inline. It ends up in the world-readable Nix
        store. Accepted so that configurations written for the earlier
        module keep working; use {option}`secretKeyFile` instead.
      '';
    };

    user = strOption "luminous-healing" "User the dispatcher runs as. It holds no capabilities; the action services run with their own, narrower identities.";

    group = strOption "luminous-healing" "Group that may connect to the socket and that the dispatcher admits.";

    varlink = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Serve the Varlink interface io.luminous.Healing on
          /run/luminous-healing/io.luminous.Healing, for `varlinkctl` and
          `healctl --varlink`. There is no key: the caller is who the kernel
          says it is (SO_PEERCRED, SO_PEERPIDFD), so access is this socket's
          group plus the dispatcher's policy ({option}`callers`,
          `allowedUnits`). Off: the socket unit is masked and only the JSON
          protocol is served.
        '';
      };
      group = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "monitoring";
        description = ''
          Group that may connect to the Varlink socket (mode 0660); `null`:
          {option}`group`, the JSON socket's. When it
          is not {option}`group`, it is also added to the dispatcher's
          `allowed_groups`: its members need no key on this socket, and
          cannot connect to the JSON one.
        '';
      };
    };

    allowedUsers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "alice" ];
      description = "Users allowed to make requests: added to {option}`group` and to the dispatcher's `allowed_users`.";
    };

    protocols = mkOption {
      type = types.nonEmptyListOf (
        types.enum [
          "v1"
          "v2"
        ]
      );
      default = [
        "v1"
        "v2"
      ];
      description = ''
        Protocol versions the dispatcher accepts. `v1` is the earlier
        client's format, whose signature does not cover the parameters;
        drop it once every client speaks `v2`.
      '';
    };

    idleTimeout = mkOption {
      type = types.ints.positive;
      default = 60;
      description = "Seconds of inactivity after which the dispatcher and the action services exit (their sockets start them again on the next request).";
    };

    actions = mkOption {
      type = types.submodule {
        options = lib.genAttrs actionNames (
          name:
          mkOption {
            type = types.submodule (actionModule name);
            default = { };
            description = "Policy for the `${name}` action.";
          }
        );
      };
      default = { };
      example = literalExpression ''
        {
          restart_service.allowedUnits = [ "nginx.service" "ollama.service" ];
          rollback_generation.enable = false;
          kill_process.rateLimit = { max = 3; windowSecs = 600; };
        }
      '';
      description = "Per-action enablement and policy, by wire name.";
    };

    callers = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            actions = mkOption {
              type = types.listOf (types.enum callerActionNames);
              description = ''
                The actions this caller may ask for. `status` is always
                allowed; `pause` and `resume` are root's alone and cannot be
                listed.
              '';
            };
            units = mkOption {
              type = types.nullOr (types.listOf unitGlob);
              default = null;
              example = [ "app-*" ];
              description = ''
                Narrows `restart_service` for this caller to these units
                (globs as for allowedUnits), within what
                actions.restart_service.allowedUnits allows. `null`: every
                unit the rest of the policy permits.
              '';
            };
          };
        }
      );
      default = { };
      example = literalExpression ''
        {
          monitor = { actions = [ "restart_service" "clear_system_cache" ]; units = [ "app-*" ]; };
          "@ops".actions = [ "restart_service" "kill_process" "clean_nix_store" ];
        }
      '';
      description = ''
        Per-caller rules, keyed by user name or `@` and a group name
        (`[callers."NAME"]` in config.toml). A caller with a rule of its
        own gets exactly that rule; otherwise the rules of all its groups
        add up; a caller no rule names may ask for every enabled action.
        They narrow, never widen: a caller must still be admitted by
        {option}`group` or {option}`allowedUsers`, and every name must exist
        when the dispatcher starts (a typo stops it, naming the key).
        Refusals name the rule `callers.actions` or `callers.units`. See
        docs/policy.md.
      '';
    };

    statusRateLimit =
      limitOption
        {
          max = 60;
          windowSecs = 60;
        }
        ''
          `status` requests allowed per caller uid per sliding window.
          status counts against no action's budget and no caller budget,
          only against this one. `null` keeps the executor's default (600 per
          60 s).
        '';

    maxIdsPerCaller = mkOption {
      type = types.nullOr (types.ints.between 1 1000000);
      default = null;
      description = ''
        Request ids one caller uid may hold in the replay cache at once (an
        id is held for the timestamp window). A caller over it is refused
        with "Server busy", nobody else. `null` keeps the executor's
        default (10000).
      '';
    };

    nixProfilesDir = pathOption ''
      Directory of the `system` profile and its `system-N-link`s, read
      and locked by rollback_generation and clean_nix_store. `null` keeps
      the executor's default, `/nix/var/nix/profiles`, which is NixOS's.
    '';

    currentSystem = pathOption ''
      The link to the running system's store path. `null` keeps the
      executor's default, `/run/current-system`, which is NixOS's.
    '';

    settings = mkOption {
      type = settingsFormat.type;
      default = { };
      example = {
        max_connections = 16;
        caller_rate_limit = {
          max = 20;
          window_secs = 300;
        };
      };
      description = ''
        Extra keys for /etc/luminous-healing/config.toml, merged over what
        the options above generate. The executor refuses to start on an
        unknown key, so only keys of the documented schema belong here.
      '';
    };

    journalCatalog = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Install a journal catalog database that includes the executor's
        entries, so `journalctl -x` explains its audit records. NixOS keeps
        no catalog sources where `journalctl --update-catalog` looks, so the
        database is compiled at build time from systemd's catalogs and
        those of every package in systemd.packages, and linked to
        /var/lib/systemd/catalog/database by a oneshot service ordered after
        systemd's own catalog update. Turn off if something else manages
        that file.
      '';
    };

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      default = configFile;
      defaultText = literalExpression "generated from the options";
      description = "The generated config.toml (read-only; for inspection and tests).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = secretSource != null;
        message = ''
          services.luminous-healing: no secret configured. Set
          services.luminous-healing.secretKeyFile to a root-owned file
          (0640 root:${cfg.group}) holding the shared secret. The executor
          has no built-in default key.
        '';
      }
      {
        assertion = !customUser || config.users.users.${cfg.user}.uid != null;
        message = ''
          services.luminous-healing.user = "${cfg.user}": the action services accept
          requests only from the dispatcher's uid, and for a user other than
          luminous-healing they must be given it. Set users.users.${cfg.user}.uid.
        '';
      }
      {
        assertion = badCallerKeys == [ ];
        message = ''
          services.luminous-healing.callers: ${builtins.concatStringsSep ", " (map (k: "\"${k}\"") badCallerKeys)}:
          a key is a user name or "@" and a group name (letters, digits, ".", "_",
          "-", "$", at most 32, not starting with "-").
        '';
      }
    ];

    warnings =
      lib.optional (cfg.secretKey != null && cfg.secretKeyFile == null) ''
        services.luminous-healing.secretKey puts the secret in the world-readable
        Nix store, where every local user can read it and sign requests. Move it to
        a file and set services.luminous-healing.secretKeyFile instead.
      ''
      ++ lib.optional (cfg.secretKey != null && cfg.secretKeyFile != null) ''
        services.luminous-healing: both secretKey and secretKeyFile are set;
        secretKeyFile is used. Remove secretKey: it still lands in the Nix store.
      ''
      ++ lib.optional (cfg.actions.restart_service.enable && cfg.actions.restart_service.allowedUnits == null) ''
        services.luminous-healing.actions.restart_service.allowedUnits is unset:
        members of ${cfg.group} may restart any unit. Consider an allow-list.
      '';

    # No security.sudo rules: each action runs as its own systemd service
    # with exactly the privilege it needs, so the dispatcher never escalates.

    users.users.${cfg.user} = {
      isSystemUser = true;
      group = cfg.group;
      description = "luminous-healing dispatcher";
    };
    users.groups.${cfg.group}.members = cfg.allowedUsers;

    # healctl for the allowed users and for the administrator.
    environment.systemPackages = [ cfg.package ];

    # At the default path rather than passed with --config: the action
    # binaries read the same file and have no such flag in their units, and
    # keeping the package's ExecStart= untouched is what keeps the host's
    # units identical to the tested ones. It holds no secret.
    environment.etc."luminous-healing/config.toml".source = configFile;

    systemd.packages = [ cfg.package ];

    systemd.sockets =
      {
        luminous-healing = {
          wantedBy = [ "sockets.target" ];
          # The empty entry resets the package's ListenStream=, so the
          # socket listens on socketPath only, not in addition to it.
          listenStreams = [
            ""
            cfg.socketPath
          ];
          socketConfig.SocketGroup = cfg.group;
        };
        # io.luminous.Healing, served by the same dispatcher (docs/protocol.md):
        # access is this socket's group plus the policy, there is no key.
        # Disabled, it is masked (not merely left unwanted): a socket the
        # package ships must not come back through `systemctl start`.
        luminous-healing-varlink =
          if cfg.varlink.enable then
            {
              wantedBy = [ "sockets.target" ];
              socketConfig.SocketGroup = varlinkGroup;
            }
          else
            { enable = false; };
      }
      // lib.genAttrs (map (a: "luminous-healing-${a}") enabledActions) (_: {
        wantedBy = [ "sockets.target" ];
        # Action sockets are 0600: only the dispatcher's user may connect.
        socketConfig = {
          SocketUser = cfg.user;
          SocketGroup = cfg.group;
        };
      });

    systemd.services = lib.mkMerge [
      ({
        luminous-healing = {
          # Socket-activated only: no wantedBy, nothing runs until a request.
          restartTriggers = [ configFile ];
          serviceConfig = {
            User = cfg.user;
            Group = cfg.group;
            # Reset first: the package unit names /etc/luminous-healing/secret.
            # Without the reset there would be two `secret` entries, and which
            # one wins would be up to the systemd version (252 takes the later).
            LoadCredential = [
              ""
              # (The fallback only keeps evaluation going until the
              # assertion above reports the missing secret.)
              "secret:${if secretSource == null then defaultSecretPath else secretSource}"
            ];
          };
        };
      }
      // lib.mapAttrs' (a: value: lib.nameValuePair "luminous-healing-${a}" value) (lib.genAttrs actionNames (
        a:
        {
          # They read config.toml too (per-action limits and policy).
          restartTriggers = [ configFile ];
        }
        // lib.optionalAttrs customUser {
          # The action binaries serve the uid of the user named
          # luminous-healing unless told otherwise; the package's ExecStart=
          # is replaced (reset first) only in this case.
          serviceConfig.ExecStart = [
            ""
            "${cfg.package}/libexec/luminous-healing/luminous-healing-${a} --dispatcher-uid ${toString config.users.users.${cfg.user}.uid}"
          ];
        }
      )))

      # A service rather than a tmpfiles rule: systemd's own
      # systemd-journal-catalog-update.service may rebuild the database at boot
      # (replacing a link with systemd's entries only), so the link is set
      # after it, and again whenever the database changes (restartTriggers).
      (mkIf cfg.journalCatalog {
        luminous-healing-journal-catalog = {
          description = "Journal catalog database with the luminous-healing entries";
          wantedBy = [ "multi-user.target" ];
          after = [ "systemd-journal-catalog-update.service" ];
          restartTriggers = [ journalCatalog ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            # Creates /var/lib/systemd/catalog if needed, and is the one
            # writable place under ProtectSystem=strict.
            StateDirectory = "systemd/catalog";
            StateDirectoryMode = "0755";
            ExecStart = "${pkgs.coreutils}/bin/ln -sfn ${journalCatalog} /var/lib/systemd/catalog/database";
            CapabilityBoundingSet = [ "" ];
            NoNewPrivileges = true;
            ProtectSystem = "strict";
            ProtectHome = true;
            PrivateTmp = true;
            PrivateDevices = true;
            PrivateNetwork = true;
            RestrictAddressFamilies = [ "none" ];
            SystemCallArchitectures = "native";
            SystemCallFilter = [ "@system-service" ];
          };
        };
      })
    ];
  };
}

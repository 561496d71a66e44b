//! THE table of actions. Adding an action: an entry here, its crate under
//! `services/<name>/` (a `main` that is `run_worker(handle)`), its variant in
//! `healing-policy`'s schema, its test; then `scripts/generate` writes its
//! units, its row of `docs/privileges.md`, its line of `nixos/actions.nix`
//! and its healctl command. See the README, "Adding an action".
//!
//! Order matters: it is the order of the docs, of healctl's usage and of
//! `nixos/actions.nix`.

use crate::{
    append, full, ro, rule, rw, rx, set, unset, Access, Action, Change, Cli, Command, Fence, Kind,
    Param, RulePath, Service, Setting, User,
};

/// The hardening of every confined action unit, before its entry's changes.
/// Each line is on, or as narrow as it goes, unless the entry says why not.
pub const CONFINED: &[(&str, &str)] = &[
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateNetwork", "yes"),
    ("PrivateIPC", "yes"),
    ("PrivateMounts", "yes"),
    ("IPAddressDeny", "any"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("RestrictAddressFamilies", "AF_UNIX"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RemoveIPC", "yes"),
    ("KeyringMode", "private"),
    ("DevicePolicy", "closed"),
    ("UMask", "0077"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", LANDLOCK_FILTER),
    ("SystemCallFilter", "~@privileged @resources"),
    ("SystemCallErrorNumber", "EPERM"),
];

/// systemd 252 puts the landlock calls in no group: without them listed,
/// the self-confinement dies with SIGSYS.
pub const LANDLOCK_FILTER: &str =
    "@system-service landlock_create_ruleset landlock_add_rule landlock_restrict_self";

/// The comment the renderer puts above [`LANDLOCK_FILTER`].
pub const LANDLOCK_FILTER_WHY: &str = "systemd 252 puts the landlock calls in no group: list \
     them, or the self-confinement dies with SIGSYS.";

const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

const ROOT_FOR_THE_BUS: &str = "Root uid, no capabilities: systemd authorizes RestartUnit by the \
     caller's uid (0 is allowed, anyone else is asked of polkit and refused), not by \
     capabilities. Found by experiment: a non-root user is refused whatever capabilities it \
     holds, and DynamicUser= cannot reach the system bus at all (see docs/privileges.md).";

const BUS_FENCE: &str = "The binary asserts the capability sets above and applies its own \
     landlock ruleset (the system bus socket only) at start; the rest is the unit's fence \
     around it. It needs nothing but a connect(2) to /run/dbus/system_bus_socket: a \
     path-named socket, so PrivateNetwork= does not cut it off. Not PrivateUsers=: the \
     dispatcher's uid must be seen as itself in SO_PEERCRED, and the bus must see uid 0.";

/// What an entry does not say it has: root, no capabilities, no path, no
/// bus, the common fence unchanged. Entries say how they differ
/// (`..ROOT_CONFINED`).
const ROOT_CONFINED: Service = Service {
    description: "",
    user: User::Root,
    capabilities: &[],
    privilege_why: "",
    landlock: &[],
    signals: false,
    uses_bus: false,
    stop_timeout_secs: 10,
    kill_mode_why: None,
    fence: Fence {
        why: FENCE_WHY,
        confined: true,
        changes: &[],
    },
    exposure: "0.7",
};

/// The base entry, for tests of the renderer.
#[cfg(test)]
pub(crate) const fn tests_base() -> Service {
    ROOT_CONFINED
}

/// Nothing on the filesystem but the bus's socket.
const BUS_RULES: &[crate::Rule] = &[ro(SYSTEM_BUS)];

/// restart_service and restart_network: root asks systemd over the bus.
const fn bus_service(description: &'static str) -> Service {
    Service {
        description,
        privilege_why: ROOT_FOR_THE_BUS,
        landlock: BUS_RULES,
        uses_bus: true,
        fence: Fence {
            why: BUS_FENCE,
            confined: true,
            changes: &[],
        },
        ..ROOT_CONFINED
    }
}

/// adjust_swappiness and clear_system_cache write one file of /proc/sys/vm.
const PROC_SYS_VM: &[Change] = &[
    set(
        "ReadWritePaths",
        "/proc/sys/vm",
        "ProtectKernelTunables= makes /proc/sys read-only; reopen just vm/. The binary opens \
         its one file before landlock and keeps the descriptor; the ruleset then allows no \
         path at all (a rule on a /proc/sys file would stop matching once the kernel evicts \
         and recreates that file's inode).",
    ),
    unset("ProcSubset", "Not ProcSubset=pid: it would hide /proc/sys."),
];

/// adjust_swappiness and clear_system_cache: root writes the one file of
/// /proc/sys/vm that `landlock` holds open from before confinement.
const fn sysctl_vm(description: &'static str, landlock: &'static [crate::Rule]) -> Service {
    Service {
        description,
        privilege_why: "Root uid, no capabilities: the file under /proc/sys/vm is root's and the \
             kernel checks nothing but the file mode. Non-root cannot write it, whatever \
             capabilities it holds (found by experiment, see docs/privileges.md).",
        landlock,
        fence: Fence {
            why: FENCE_WHY,
            confined: true,
            changes: PROC_SYS_VM,
        },
        ..ROOT_CONFINED
    }
}

const FENCE_WHY: &str = "The binary asserts the capability sets above and applies its own \
     landlock ruleset at start; the rest is the unit's fence around it.";

const NO_PARAMS: &[Param] = &[];

pub static ACTIONS: &[Action] = &[
    Action {
        name: "restart_service",
        summary: "restart a systemd unit through systemd's D-Bus API and wait for the job",
        params: &[Param {
            name: "service",
            varlink: "unit",
            kind: Kind::UnitName,
            cli: Cli::Positional("UNIT"),
        }],
        timeout_secs: 30,
        configurable: true,
        command: Command {
            help: "restart a systemd unit (name.service if no suffix)",
        },
        service: Some(bus_service("restart a unit through systemd's D-Bus API")),
    },
    Action {
        name: "set_cpu_governor",
        summary: "write the cpufreq scaling governor of every CPU",
        params: &[Param {
            name: "governor",
            varlink: "governor",
            kind: Kind::Choice(&[
                "performance",
                "powersave",
                "ondemand",
                "conservative",
                "schedutil",
            ]),
            cli: Cli::Positional("GOVERNOR"),
        }],
        timeout_secs: 10,
        configurable: true,
        command: Command {
            help: "performance|powersave|ondemand|conservative|schedutil",
        },
        service: Some(Service {
            description: "set the cpufreq scaling governor of every CPU",
            privilege_why: "Root uid, no capabilities: the cpufreq attributes are root's 0644.",
            landlock: &[rule(
                RulePath::Env {
                    var: "LUMINOUS_HEALING_CPU_SYSFS",
                    default: "/sys/devices/system/cpu",
                },
                Access::ReadWrite,
            )],
            fence: Fence {
                why: FENCE_WHY,
                confined: true,
                changes: &[set(
                    "ReadWritePaths",
                    "/sys/devices/system/cpu",
                    "ProtectKernelTunables= makes /sys read-only; reopen the CPU tree only \
                     (the landlock ruleset allows the same tree and nothing else).",
                )],
            },
            ..ROOT_CONFINED
        }),
    },
    Action {
        name: "clear_system_cache",
        summary: "sync, then drop the page cache, dentries and inodes",
        params: NO_PARAMS,
        timeout_secs: 10,
        configurable: true,
        command: Command {
            help: "sync and drop the page cache, dentries and inodes",
        },
        service: Some(sysctl_vm(
            "sync and drop the page cache, dentries and inodes",
            &[rule(
                RulePath::Fixed("/proc/sys/vm/drop_caches"),
                Access::HeldWrite,
            )],
        )),
    },
    Action {
        name: "adjust_swappiness",
        summary: "write vm.swappiness",
        params: &[Param {
            name: "value",
            varlink: "value",
            kind: Kind::Integer { min: 0, max: 100 },
            cli: Cli::Positional("VALUE"),
        }],
        timeout_secs: 10,
        configurable: true,
        command: Command { help: "0-100" },
        service: Some(sysctl_vm(
            "set vm.swappiness",
            &[rule(
                RulePath::Fixed("/proc/sys/vm/swappiness"),
                Access::HeldReadWrite,
            )],
        )),
    },
    Action {
        name: "kill_process",
        summary: "signal a process (refused: pid 1 and below, its own, the dispatcher's)",
        params: &[
            Param {
                name: "pid",
                varlink: "pid",
                kind: Kind::Integer {
                    min: 2,
                    max: i32::MAX as i64,
                },
                cli: Cli::Positional("PID"),
            },
            Param {
                name: "signal",
                varlink: "signal",
                kind: Kind::Choice(&["TERM", "KILL", "HUP", "INT"]),
                cli: Cli::Flag {
                    flag: "--signal",
                    metavar: "S",
                    default: Some("TERM"),
                },
            },
        ],
        timeout_secs: 10,
        configurable: true,
        command: Command {
            help: "S: TERM (default), KILL, HUP, INT",
        },
        service: Some(Service {
            description: "signal a process (TERM, KILL, HUP, INT)",
            user: User::Dynamic,
            capabilities: &["CAP_KILL"],
            privilege_why: "A dynamic, unprivileged user holding CAP_KILL and nothing else: \
                 kill(2) of another user's process needs CAP_KILL even as root, and with it \
                 (ambient) a non-root process can signal anyone. Nothing else is needed.",
            // /proc is a mount root (the unit's own procfs instance), whose
            // inode stays pinned, so a rule on it keeps matching.
            landlock: &[ro("/proc")],
            signals: true,
            fence: Fence {
                why: FENCE_WHY,
                confined: true,
                changes: &[set(
                    "ProtectProc",
                    "default",
                    "ProtectProc=default, not invisible: the policy weighs the target's \
                     /proc/PID/status, stat and cgroup, and hidepid would hide every process \
                     but its own from this unprivileged user (only CAP_SYS_PTRACE sees past \
                     it), so other users' and root's processes would read as \"no process\". \
                     Those three files are world-readable anyway; ProcSubset=pid still hides \
                     everything in /proc but the process directories.",
                )],
            },
            ..ROOT_CONFINED
        }),
    },
    Action {
        name: "restart_network",
        summary: "restart the running network manager (NetworkManager or systemd-networkd)",
        params: NO_PARAMS,
        timeout_secs: 30,
        configurable: true,
        command: Command {
            help: "restart NetworkManager or systemd-networkd",
        },
        service: Some(bus_service(
            "restart the running network manager (NetworkManager or \
                 systemd-networkd)",
        )),
    },
    Action {
        name: "clean_nix_store",
        summary: "collect Nix garbage (nix-collect-garbage -d) and say how much it freed",
        params: NO_PARAMS,
        timeout_secs: 600,
        configurable: true,
        command: Command {
            help: "nix-collect-garbage -d",
        },
        service: Some(Service {
            description: "collect Nix garbage (nix-collect-garbage -d)",
            privilege_why: "Root uid, no capabilities: the store, the profiles and the GC \
                 roots are root's own files, so uid 0 removes them without CAP_DAC_OVERRIDE or \
                 CAP_FOWNER (found by experiment, see docs/privileges.md).",
            // What `nix-collect-garbage -d` touches (traced with strace in
            // the test container): the store and its state (read, write, and
            // execute: on NixOS the program itself lives in the store), the
            // program and the system libraries (Debian), the few files in
            // /etc that nix and its libraries read at start, /proc (its own
            // maps and mount namespace, /proc/stat, and the runtime-root
            // scan), the CPU count, /dev/null for stdin and /dev/urandom. Not
            // the rest of /etc: root can read /etc/shadow, this action has no
            // reason to.
            landlock: &[
                full("/nix"),
                // Optional: a missing program should be a clear error per
                // request ("cannot run ..."), not a service that fails to start.
                rule(
                    RulePath::Setting(Setting::NixCollectGarbage),
                    Access::ReadExec,
                )
                .optional(),
                rx("/usr").optional(),
                ro("/proc"),
                rw("/dev/null"),
                ro("/dev/urandom"),
                ro("/sys/devices/system/cpu/online").optional(),
                // Read and locked per request (the generation facts).
                rule(
                    RulePath::Setting(Setting::NixProfilesDirOutsideNix),
                    Access::Read,
                )
                .optional(),
                // Each may be absent on one distribution or the other; on
                // NixOS most are links into the store, which /nix covers.
                ro("/etc/nix").optional(),
                ro("/etc/xdg/nix").optional(),
                ro("/etc/passwd").optional(),
                ro("/etc/group").optional(),
                ro("/etc/nsswitch.conf").optional(),
                ro("/etc/ld.so.cache").optional(),
                ro("/etc/ld.so.preload").optional(),
                ro("/etc/ssl/certs/ca-certificates.crt").optional(),
                ro("/etc/gnutls").optional(),
                ro("/etc/localtime").optional(),
            ],
            kill_mode_why: Some(
                "On timeout the binary kills nix's whole process group itself; if the service \
                 is stopped meanwhile, take every child with it.",
            ),
            fence: Fence {
                why: "The binary asserts the capability sets above and applies its own \
                     landlock ruleset (/nix, the program, /usr, /etc read-only, /proc \
                     read-only) at start; the rest is the unit's fence around it.",
                confined: true,
                changes: &[
                    set("ReadWritePaths", "/nix", "/nix is the one tree it writes."),
                    set(
                        "ProtectHome",
                        "tmpfs",
                        "nix aborts when $HOME is unreadable, so not ProtectHome=yes: the \
                         binary sets HOME=/var/empty, and tmpfs hides the real homes all the \
                         same.",
                    ),
                    unset(
                        "ProtectProc",
                        "Not ProtectProc=invisible nor ProcSubset=pid: the collector reads \
                         /proc/<pid>/{exe,maps,environ,fd} to find runtime roots (store paths \
                         in use by running processes), and must not think a process-less \
                         system.",
                    ),
                    unset("ProcSubset", ""),
                    set(
                        "UMask",
                        "0022",
                        "The store and the profiles it writes must stay readable by everyone.",
                    ),
                    append(
                        "SystemCallFilter",
                        "@chown",
                        "...but chown(2) back: nix chowns the profile directories it creates \
                         to their owner (root, already) and aborts when that fails (\"changing \
                         owner of directory '/nix/var/nix/profiles/per-user/root': Operation \
                         not permitted\", measured). Without capabilities it can only chown to \
                         its own uid anyway.",
                    ),
                ],
            },
            exposure: "1.0",
            ..ROOT_CONFINED
        }),
    },
    Action {
        name: "rollback_generation",
        summary: "roll back one step to the previous NixOS generation (nixos-rebuild switch \
                  --rollback); off unless the configuration enables it",
        params: NO_PARAMS,
        timeout_secs: 300,
        configurable: true,
        command: Command {
            help: "nixos-rebuild switch --rollback (one step; off by default)",
        },
        service: Some(Service {
            description: "roll back to the previous NixOS generation (nixos-rebuild switch \
                 --rollback)",
            user: User::RootByDefault,
            capabilities: &[
                "CAP_AUDIT_WRITE",
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_DAC_READ_SEARCH",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_LINUX_IMMUTABLE",
                "CAP_SETFCAP",
                "CAP_SETGID",
                "CAP_SETUID",
                "CAP_SYS_ADMIN",
            ],
            privilege_why: "The one broad action (docs/privileges.md says why, capability by \
                 capability): switching generations rewrites the system profile, runs the \
                 activation script (writes /etc, /bin/sh, /usr/bin/env, /var, setuid and \
                 capability wrappers in /run/wrappers, mounts, chowns state directories), \
                 installs the boot loader and restarts units. The set below must equal the \
                 binary's declaration: it refuses to run with more or less. It runs as root, \
                 the default: no User= line. With User= set, even to root, systemd 255 and \
                 later (NixOS's 257) keep CAP_SETUID only to change uid under the seccomp \
                 filter and then drop it unless it is ambient, so the service would start \
                 without CAP_SETUID and refuse to run (docs/testing.md). Landlock sets \
                 no_new_privs anyway; as root, nothing it runs needs a setuid transition.",
            landlock: &[full("/")],
            stop_timeout_secs: 30,
            kill_mode_why: Some(
                "On timeout the binary kills nixos-rebuild's whole process group itself; if \
                 the service is stopped meanwhile, take every child with it.",
            ),
            fence: Fence {
                why: "Deliberately absent, because the activation acts on the host and must be \
                     seen there: every option that gives the service its own mount namespace \
                     (ProtectSystem=, ProtectHome=, PrivateTmp=, PrivateDevices=, \
                     PrivateMounts=, ReadWritePaths=, ProtectKernelTunables=, \
                     ProtectKernelModules=, ProtectKernelLogs=, ProtectControlGroups=, \
                     ProtectProc=): a mount made by the activation script would vanish with \
                     the service. ProtectClock=/DevicePolicy= (the boot loader installer \
                     writes block devices), ProtectHostname= (activation may set the \
                     hostname), RestrictSUIDSGID= (it creates the setuid wrappers), \
                     PrivateNetwork=.",
                confined: false,
                changes: &[
                    set("RestrictAddressFamilies", "AF_UNIX AF_NETLINK", ""),
                    set("RestrictNamespaces", "yes", ""),
                    set("RestrictRealtime", "yes", ""),
                    set("LockPersonality", "yes", ""),
                    set("PrivateIPC", "yes", ""),
                    set("IPAddressDeny", "any", ""),
                    set("KeyringMode", "private", ""),
                    set("UMask", "0022", ""),
                    set("SystemCallArchitectures", "native", ""),
                    set(
                        "SystemCallFilter",
                        "@system-service @mount landlock_create_ruleset landlock_add_rule \
                         landlock_restrict_self",
                        "@mount: the activation script mounts; systemd 252 puts the landlock \
                         calls in no group: list them, or the self-confinement dies with \
                         SIGSYS.",
                    ),
                    append(
                        "SystemCallFilter",
                        "~@clock @cpu-emulation @debug @module @obsolete @raw-io @reboot @swap",
                        "",
                    ),
                    set("SystemCallErrorNumber", "EPERM", ""),
                ],
            },
            exposure: "4.8",
            ..ROOT_CONFINED
        }),
    },
    Action {
        name: "status",
        summary: "versions, enabled actions, remaining rate-limit budget",
        params: NO_PARAMS,
        timeout_secs: 10,
        configurable: true,
        command: Command {
            help: "versions, enabled actions, remaining rate-limit budget",
        },
        service: None,
    },
    Action {
        name: "pause",
        summary: "refuse every action until resume (root only)",
        params: &[Param {
            name: "reason",
            varlink: "reason",
            kind: Kind::Text { max_chars: 200 },
            cli: Cli::Flag {
                flag: "--reason",
                metavar: "TEXT",
                default: None,
            },
        }],
        timeout_secs: 10,
        configurable: false,
        command: Command {
            help: "root only: refuse every action until resume",
        },
        service: None,
    },
    Action {
        name: "resume",
        summary: "end a pause (root only)",
        params: NO_PARAMS,
        timeout_secs: 10,
        configurable: false,
        command: Command {
            help: "root only: end a pause",
        },
        service: None,
    },
];

//! The one table of luminous-healing's actions ([`ACTIONS`], in
//! `table.rs`), and the types its entries are made of.
//!
//! Everything that used to repeat the list of actions is now either read
//! from this table at run time or generated from it by `scripts/generate`
//! (the `healing-generate` binary, [`generate`]):
//!
//! | read at run time | by |
//! |---|---|
//! | wire names, parameter names and choices, default timeouts | `healing-policy` (the schema and the config) |
//! | capabilities, landlock rules | `healing-activation` (every action binary's start-up and `--describe`) |
//!
//! | generated | from |
//! |---|---|
//! | `units/healing/luminous-healing-<action>.{socket,service}.in` | [`Service`]: user, capabilities, the fence of hardening lines |
//! | the privileges table in `docs/privileges.md` | [`Service`] and the recorded exposure |
//! | `nixos/actions.nix` | the names of the forwarded actions |
//! | `services/healctl/src/commands.rs`, the commands of `docs/man/healctl.1.md` | [`Param`]s and [`Command`] |
//!
//! This crate depends on nothing: it is plain data, so that every layer may
//! read it and a newcomer can read it in one sitting.

pub mod generate;
mod table;

pub use table::{ACTIONS, CONFINED, LANDLOCK_FILTER, LANDLOCK_FILTER_WHY};

/// One action, as the wire names it.
#[derive(Debug)]
pub struct Action {
    /// The wire name (`"action"` of a request); also the crate, binary and
    /// unit name: `luminous-healing-<name>`.
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// The request's `parameters`, each checked by `healing-policy`'s schema.
    pub params: &'static [Param],
    /// How long the dispatcher waits for the action by default
    /// (`[actions.NAME] timeout_secs` overrides it).
    pub timeout_secs: u64,
    /// `None`: the dispatcher answers it itself (status, pause, resume).
    pub service: Option<Service>,
    /// Whether `[actions.NAME]` and `[callers.*] actions` may name it.
    pub configurable: bool,
    /// healctl's command for it.
    pub command: Command,
}

/// One parameter of a request.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    /// Its name in the Varlink interface (io.luminous.Healing), which
    /// names what it is (`unit`) where the JSON protocol kept the old
    /// client's key (`service`).
    pub varlink: &'static str,
    pub kind: Kind,
    /// How healctl takes it.
    pub cli: Cli,
}

/// What a parameter may hold. The schema in `healing-policy` parses each
/// into a typed value; these are what the docs and healctl say of it.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// A systemd unit name (validated by the schema's unit grammar).
    UnitName,
    /// One of these strings, exactly.
    Choice(&'static [&'static str]),
    /// An integer from `min` to `max`.
    Integer { min: i64, max: i64 },
    /// Printable text of at most this many characters; may be absent.
    Text { max_chars: usize },
}

/// How healctl takes a parameter on its command line.
#[derive(Debug)]
pub enum Cli {
    /// The next positional argument, shown as this word in the usage.
    Positional(&'static str),
    /// `--flag VALUE`; absent: this default, or no parameter at all.
    Flag {
        flag: &'static str,
        metavar: &'static str,
        default: Option<&'static str>,
    },
}

/// healctl's command for an action: its name is the wire name with dashes.
#[derive(Debug)]
pub struct Command {
    /// The help line in `healctl --help` and the manual.
    pub help: &'static str,
}

/// An action performed by its own socket-activated binary.
#[derive(Debug)]
pub struct Service {
    /// `Description=` of the service, after "luminous-healing action: ".
    pub description: &'static str,
    /// The user it runs as.
    pub user: User,
    /// Its capabilities, by name: the bounding set, and (for a non-root
    /// user) the ambient set. The binary refuses to run holding any other.
    pub capabilities: &'static [&'static str],
    /// Why this user and these capabilities: the comment above them.
    pub privilege_why: &'static str,
    /// Its landlock ruleset, in order: nothing else on the filesystem.
    pub landlock: &'static [Rule],
    /// Whether it may signal processes outside its landlock domain.
    pub signals: bool,
    /// `After=dbus.socket`: it talks to the system bus.
    pub uses_bus: bool,
    /// `TimeoutStopSec=`.
    pub stop_timeout_secs: u32,
    /// `KillMode=control-group`, with why: it runs programs whose whole
    /// process group must go when the service stops.
    pub kill_mode_why: Option<&'static str>,
    /// The hardening lines of the unit.
    pub fence: Fence,
    /// `systemd-analyze security --offline=true` of the unit, as measured
    /// and recorded; `scripts/check-privileges` measures it again and fails
    /// when it differs.
    pub exposure: &'static str,
}

/// Who the service runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// `User=root`.
    Root,
    /// Root by systemd's default, with no `User=` line (see
    /// rollback_generation's entry for why that differs).
    RootByDefault,
    /// `DynamicUser=yes`: an unprivileged uid of its own.
    Dynamic,
}

/// A unit's hardening: the common fence ([`table::CONFINED`]) with changes,
/// or lines of its own.
#[derive(Debug)]
pub struct Fence {
    /// The comment above the lines: what the binary confines itself to and
    /// why the unit's lines are what they are.
    pub why: &'static str,
    /// `true`: start from the common fence; `false`: only `changes`.
    pub confined: bool,
    pub changes: &'static [Change],
}

/// One change to the common fence.
#[derive(Debug)]
pub struct Change {
    pub key: &'static str,
    /// `None`: the key's line is dropped.
    pub value: Option<&'static str>,
    /// `true`: a further line after the fence's lines of that key (a list
    /// such as `SystemCallFilter=`); `false`: replaces them.
    pub append: bool,
    /// The comment above the line (or, for a dropped line, in its place).
    pub why: &'static str,
}

/// `KEY=value` instead of the fence's line (or before the fence, for a key
/// it has not).
pub const fn set(key: &'static str, value: &'static str, why: &'static str) -> Change {
    Change {
        key,
        value: Some(value),
        append: false,
        why,
    }
}

/// No `KEY=` line at all; `why` stands in its place.
pub const fn unset(key: &'static str, why: &'static str) -> Change {
    Change {
        key,
        value: None,
        append: false,
        why,
    }
}

/// A further `KEY=value` after the fence's lines of that key.
pub const fn append(key: &'static str, value: &'static str, why: &'static str) -> Change {
    Change {
        key,
        value: Some(value),
        append: true,
        why,
    }
}

/// One landlock rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub path: RulePath,
    pub access: Access,
    /// A missing path is skipped rather than an error.
    pub optional: bool,
}

/// Where a rule's path comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePath {
    Fixed(&'static str),
    /// The environment variable's value if set and not empty (tests point
    /// an action at a stand-in tree), else the default.
    Env {
        var: &'static str,
        default: &'static str,
    },
    /// A path the configuration names.
    Setting(Setting),
}

/// Paths of the configuration that rulesets follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `[actions.clean_nix_store] nix_collect_garbage`.
    NixCollectGarbage,
    /// `nix_profiles_dir`; the rule is left out when the path lies under
    /// `/nix`, which clean_nix_store's first rule covers already.
    NixProfilesDirOutsideNix,
}

impl Setting {
    /// Its value when the configuration says nothing: what the docs show.
    pub fn default_path(self) -> &'static str {
        match self {
            Setting::NixCollectGarbage => "/run/current-system/sw/bin/nix-collect-garbage",
            Setting::NixProfilesDirOutsideNix => "/nix/var/nix/profiles",
        }
    }
}

/// What a rule grants beneath its path (as `healing-sandbox`'s `PathAccess`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadExec,
    ReadWrite,
    Full,
    /// Not a rule: the file is opened before confinement and the descriptor
    /// kept (procfs files, whose inodes a rule cannot follow).
    HeldWrite,
    HeldReadWrite,
}

impl Access {
    /// As the privileges table and `--describe` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "ro",
            Access::ReadExec => "rx",
            Access::ReadWrite => "rw",
            Access::Full => "full",
            Access::HeldWrite => "wo (fd opened before landlock, no rule)",
            Access::HeldReadWrite => "rw (fd opened before landlock, no rule)",
        }
    }
}

/// Rule constructors, so that a ruleset reads as a list of paths.
pub const fn ro(path: &'static str) -> Rule {
    rule(RulePath::Fixed(path), Access::Read)
}
pub const fn rx(path: &'static str) -> Rule {
    rule(RulePath::Fixed(path), Access::ReadExec)
}
pub const fn rw(path: &'static str) -> Rule {
    rule(RulePath::Fixed(path), Access::ReadWrite)
}
pub const fn full(path: &'static str) -> Rule {
    rule(RulePath::Fixed(path), Access::Full)
}
pub const fn rule(path: RulePath, access: Access) -> Rule {
    Rule {
        path,
        access,
        optional: false,
    }
}

impl Rule {
    /// The rule is skipped when its path does not exist.
    pub const fn optional(self) -> Rule {
        Rule {
            optional: true,
            ..self
        }
    }
}

/// The entry of a wire name.
pub fn action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The actions performed by a service of their own, in table order.
pub fn services() -> impl Iterator<Item = (&'static Action, &'static Service)> {
    ACTIONS
        .iter()
        .filter_map(|a| a.service.as_ref().map(|s| (a, s)))
}

impl Action {
    /// healctl's command: the wire name with dashes.
    pub fn command_name(&self) -> String {
        self.name.replace('_', "-")
    }

    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Its method in io.luminous.Healing: the wire name in CamelCase.
    pub fn varlink_method(&self) -> String {
        self.name
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next().map_or_else(String::new, |f| {
                    f.to_uppercase().chain(c).collect::<String>()
                })
            })
            .collect()
    }

    /// Whether its method takes `dryRun` (everything but status, which
    /// changes nothing).
    pub fn varlink_dry_run(&self) -> bool {
        self.name != "status"
    }
}

impl Param {
    /// Its Varlink type.
    pub fn varlink_type(&self) -> &'static str {
        match self.kind {
            Kind::Integer { .. } => "int",
            _ => "string",
        }
    }

    /// Whether a request may leave it out (text is optional; the rest the
    /// schema requires).
    pub fn optional(&self) -> bool {
        matches!(self.kind, Kind::Text { .. })
    }
}

/// The Varlink interface the dispatcher serves.
pub const VARLINK_INTERFACE: &str = "io.luminous.Healing";

/// Its errors, each `(reason: string, id: string)`, with what each means.
pub const VARLINK_ERRORS: &[(&str, &str)] = &[
    (
        "NotAllowed",
        "The action is unknown to the configuration or disabled, or the caller is\nnot root, an allowed user or in an allowed group.",
    ),
    (
        "InvalidParameter",
        "A parameter has the right type but a value the action refuses.",
    ),
    (
        "RateLimited",
        "A rate limit (per action, per caller, or status's own) is spent, or the\ncaller holds too many connections.",
    ),
    (
        "Refused",
        "The policy refused (its rule is named), or the restart breaker holds.",
    ),
    ("Paused", "Every action is refused until Resume."),
    ("ActionFailed", "The action ran, or tried to, and failed."),
    (
        "AuditUnavailable",
        "The accepted record could not reach the journal: nothing ran.",
    ),
    (
        "StateUnavailable",
        "The rate-limit and pause state could not be written: nothing ran.",
    ),
];

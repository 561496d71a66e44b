//! `/etc/luminous-healing/config.toml`. Every key is optional; an unknown key
//! or a bad value is a start-up error naming it, never silently ignored.

use crate::schema::{ActionName, ALL_ACTIONS};
use crate::units::UnitPattern;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/luminous-healing/config.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    pub enabled: Option<bool>,
    pub rate_limit: Option<RateLimit>,
    pub timeout_secs: Option<u64>,
    /// restart_service and kill_process: unit-name globs.
    pub allowed_units: Option<Vec<String>>,
    /// restart_service only: at most `max` restarts of one unit per window.
    pub breaker: Option<RateLimit>,
    /// rollback_generation only.
    pub nixos_rebuild: Option<PathBuf>,
    /// clean_nix_store only.
    pub nix_collect_garbage: Option<PathBuf>,
}

/// `[callers."NAME"]` or `[callers."@GROUP"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    pub actions: Vec<String>,
    /// Narrows restart_service for this caller: unit-name globs.
    pub units: Option<Vec<String>>,
}

impl CallerConfig {
    /// The validated action names (validation refused any other).
    pub fn action_names(&self) -> Vec<ActionName> {
        self.actions
            .iter()
            .filter_map(|a| ActionName::from_wire(a))
            .collect()
    }
    /// The validated patterns (validation refused any bad one).
    pub fn unit_patterns(&self) -> Option<Vec<UnitPattern>> {
        self.units.as_ref().map(|us| {
            us.iter()
                .filter_map(|u| UnitPattern::parse(u).ok())
                .collect()
        })
    }
}

/// A `[callers]` key: a user name, or `@` and a group name.
pub enum CallerKey<'a> {
    User(&'a str),
    Group(&'a str),
}

impl<'a> CallerKey<'a> {
    pub fn parse(key: &'a str) -> CallerKey<'a> {
        match key.strip_prefix('@') {
            Some(g) => CallerKey::Group(g),
            None => CallerKey::User(key),
        }
    }
}

/// POSIX portable user and group names (what useradd accepts by default).
fn valid_account_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || b == b'$')
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub allowed_groups: Vec<String>,
    pub allowed_users: Vec<String>,
    pub protocols: Vec<Protocol>,
    pub max_clock_skew_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    /// Open connections one uid may hold at once; more are refused at once.
    pub max_connections_per_uid: usize,
    /// A connection that sends nothing for this long is cut off.
    pub first_byte_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub caller_rate_limit: RateLimit,
    /// `status` counts against no action's budget: its own per-caller limit.
    pub status_rate_limit: RateLimit,
    /// Live request ids one caller may hold in the replay cache: the caller
    /// over it is refused ("Server busy"), nobody else.
    pub max_ids_per_caller: usize,
    pub actions: BTreeMap<String, ActionConfig>,
    pub callers: BTreeMap<String, CallerConfig>,
    /// The directory of the `system` profile and its `system-N-link`s, read
    /// (and locked) by rollback_generation and clean_nix_store alike.
    pub nix_profiles_dir: Option<PathBuf>,
    /// The link to the running system's store path.
    pub current_system: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allowed_groups: vec!["luminous-healing".into()],
            allowed_users: vec![],
            protocols: vec![Protocol::V1, Protocol::V2],
            max_clock_skew_secs: 300,
            idle_timeout_secs: 60,
            max_connections: 64,
            max_connections_per_uid: 16,
            first_byte_timeout_ms: 1000,
            request_timeout_ms: 5000,
            caller_rate_limit: RateLimit {
                max: 30,
                window_secs: 300,
            },
            status_rate_limit: RateLimit {
                max: 600,
                window_secs: 60,
            },
            max_ids_per_caller: 10_000,
            actions: BTreeMap::new(),
            callers: BTreeMap::new(),
            nix_profiles_dir: None,
            current_system: None,
        }
    }
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

const DEFAULT_ACTION_LIMIT: RateLimit = RateLimit {
    max: 10,
    window_secs: 300,
};

/// A unit restarted three times in a quarter of an hour is not being
/// repaired by restarts; the fourth is refused so the caller escalates.
const DEFAULT_BREAKER: RateLimit = RateLimit {
    max: 3,
    window_secs: 900,
};

fn known_actions() -> String {
    ALL_ACTIONS
        .iter()
        .filter(|a| a.is_configurable())
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Config {
    /// Loads `path`. A missing file at the default path means the defaults; a
    /// missing file named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default())
            }
            Err(e) => return Err(ConfigError(format!("{}: {e}", path.display()))),
        };
        Config::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.protocols.is_empty() {
            return bad("protocols: at least one of \"v1\", \"v2\" is needed".into());
        }
        if self.max_connections == 0 || self.max_connections > 4096 {
            return bad("max_connections: must be 1-4096".into());
        }
        if self.max_connections_per_uid == 0 || self.max_connections_per_uid > 4096 {
            return bad("max_connections_per_uid: must be 1-4096".into());
        }
        if !(100..=60_000).contains(&self.first_byte_timeout_ms) {
            return bad("first_byte_timeout_ms: must be 100-60000".into());
        }
        if !(100..=60_000).contains(&self.request_timeout_ms) {
            return bad("request_timeout_ms: must be 100-60000".into());
        }
        if self.max_clock_skew_secs == 0 || self.max_clock_skew_secs > 86_400 {
            return bad("max_clock_skew_secs: must be 1-86400".into());
        }
        if self.idle_timeout_secs == 0 {
            return bad("idle_timeout_secs: must be at least 1".into());
        }
        check_limit("caller_rate_limit", &self.caller_rate_limit)?;
        for (key, p) in [
            ("nix_profiles_dir", &self.nix_profiles_dir),
            ("current_system", &self.current_system),
        ] {
            if p.as_ref().is_some_and(|p| !p.is_absolute()) {
                return bad(format!("{key}: must be an absolute path"));
            }
        }
        check_limit("status_rate_limit", &self.status_rate_limit)?;
        if !(1..=1_000_000).contains(&self.max_ids_per_caller) {
            return bad("max_ids_per_caller: must be 1-1000000".into());
        }
        for (key, c) in &self.callers {
            let (kind, name) = match CallerKey::parse(key) {
                CallerKey::User(n) => ("user", n),
                CallerKey::Group(n) => ("group", n),
            };
            if !valid_account_name(name) {
                return bad(format!(
                    "callers.{key:?}: {name:?} is not a valid {kind} name"
                ));
            }
            for a in &c.actions {
                match ActionName::from_wire(a) {
                    Some(n) if n.is_configurable() => {}
                    _ => {
                        return bad(format!(
                            "callers.{key:?}.actions: unknown action {a:?} (known: {})",
                            known_actions()
                        ))
                    }
                }
            }
            for u in c.units.iter().flatten() {
                UnitPattern::parse(u)
                    .map_err(|e| ConfigError(format!("callers.{key:?}.units: {e}")))?;
            }
        }
        for (name, a) in &self.actions {
            let Some(action) = ActionName::from_wire(name).filter(|a| a.is_configurable()) else {
                return bad(format!(
                    "actions.{name}: unknown action (known: {})",
                    known_actions()
                ));
            };
            if let Some(l) = &a.rate_limit {
                if action == ActionName::Status {
                    return bad(
                        "actions.status.rate_limit: status counts against no action's budget; set status_rate_limit (per caller)".into(),
                    );
                }
                check_limit(&format!("actions.{name}.rate_limit"), l)?;
            }
            if a.timeout_secs == Some(0) {
                return bad(format!("actions.{name}.timeout_secs: must be at least 1"));
            }
            if a.allowed_units.is_some()
                && !matches!(action, ActionName::RestartService | ActionName::KillProcess)
            {
                return bad(format!(
                    "actions.{name}.allowed_units: only restart_service and kill_process take it"
                ));
            }
            for u in a.allowed_units.iter().flatten() {
                UnitPattern::parse(u)
                    .map_err(|e| ConfigError(format!("actions.{name}.allowed_units: {e}")))?;
            }
            if let Some(b) = &a.breaker {
                if action != ActionName::RestartService {
                    return bad(format!(
                        "actions.{name}.breaker: only restart_service takes it"
                    ));
                }
                check_limit(&format!("actions.{name}.breaker"), b)?;
            }
            for (key, p, owner) in [
                (
                    "nixos_rebuild",
                    &a.nixos_rebuild,
                    ActionName::RollbackGeneration,
                ),
                (
                    "nix_collect_garbage",
                    &a.nix_collect_garbage,
                    ActionName::CleanNixStore,
                ),
            ] {
                if let Some(p) = p {
                    if action != owner {
                        return bad(format!(
                            "actions.{name}.{key}: only {} takes it",
                            owner.as_str()
                        ));
                    }
                    if !p.is_absolute() {
                        return bad(format!("actions.{name}.{key}: must be an absolute path"));
                    }
                }
            }
        }
        Ok(())
    }

    fn action(&self, a: ActionName) -> Option<&ActionConfig> {
        self.actions.get(a.as_str())
    }

    /// rollback_generation is off unless enabled: it changes what the
    /// whole host runs, and every step back makes the next one worse.
    pub fn action_enabled(&self, a: ActionName) -> bool {
        self.action(a)
            .and_then(|c| c.enabled)
            .unwrap_or(a != ActionName::RollbackGeneration)
    }

    /// restart_service's circuit breaker: restarts of one unit per window.
    pub fn breaker(&self) -> RateLimit {
        self.action(ActionName::RestartService)
            .and_then(|c| c.breaker)
            .unwrap_or(DEFAULT_BREAKER)
    }

    pub fn action_rate_limit(&self, a: ActionName) -> RateLimit {
        self.action(a)
            .and_then(|c| c.rate_limit)
            .unwrap_or(DEFAULT_ACTION_LIMIT)
    }

    pub fn action_timeout_secs(&self, a: ActionName) -> u64 {
        self.action(a)
            .and_then(|c| c.timeout_secs)
            .unwrap_or_else(|| a.default_timeout_secs())
    }

    /// `None`: no list is configured for the action.
    pub fn allowed_unit_patterns(&self, a: ActionName) -> Option<Vec<UnitPattern>> {
        self.action(a)
            .and_then(|c| c.allowed_units.as_ref())
            .map(|us| {
                us.iter()
                    .filter_map(|u| UnitPattern::parse(u).ok())
                    .collect()
            })
    }

    pub fn nixos_rebuild(&self) -> PathBuf {
        self.action(ActionName::RollbackGeneration)
            .and_then(|c| c.nixos_rebuild.clone())
            .unwrap_or_else(|| "/run/current-system/sw/bin/nixos-rebuild".into())
    }

    pub fn nix_collect_garbage(&self) -> PathBuf {
        self.action(ActionName::CleanNixStore)
            .and_then(|c| c.nix_collect_garbage.clone())
            .unwrap_or_else(|| "/run/current-system/sw/bin/nix-collect-garbage".into())
    }

    pub fn nix_profiles_dir(&self) -> PathBuf {
        self.nix_profiles_dir
            .clone()
            .unwrap_or_else(|| "/nix/var/nix/profiles".into())
    }

    pub fn current_system(&self) -> PathBuf {
        self.current_system
            .clone()
            .unwrap_or_else(|| "/run/current-system".into())
    }

    pub fn accepts(&self, p: Protocol) -> bool {
        self.protocols.contains(&p)
    }
}

fn check_limit(what: &str, l: &RateLimit) -> Result<(), ConfigError> {
    if l.max == 0 || l.window_secs == 0 || l.window_secs > 86_400 {
        return Err(ConfigError(format!(
            "{what}: max must be at least 1 and window_secs 1-86400"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::default();
        assert_eq!(
            c.action_rate_limit(ActionName::KillProcess),
            DEFAULT_ACTION_LIMIT
        );
        assert_eq!(c.action_timeout_secs(ActionName::CleanNixStore), 600);
        assert!(!c.action_enabled(ActionName::RollbackGeneration));
        assert!(c.action_enabled(ActionName::CleanNixStore));
        assert_eq!(c.breaker().max, 3);
        assert_eq!(c.nix_profiles_dir(), Path::new("/nix/var/nix/profiles"));
        assert_eq!(c.current_system(), Path::new("/run/current-system"));
        assert_eq!(c.max_connections_per_uid, 16);
        assert_eq!(c.first_byte_timeout_ms, 1000);
        let c = Config::parse("max_connections_per_uid = 4\nfirst_byte_timeout_ms = 250").unwrap();
        assert_eq!(
            (c.max_connections_per_uid, c.first_byte_timeout_ms),
            (4, 250)
        );
    }

    #[test]
    fn nix_paths_are_top_level_and_absolute() {
        let c = Config::parse("nix_profiles_dir = \"/t/profiles\"\ncurrent_system = \"/t/cur\"")
            .unwrap();
        assert_eq!(c.nix_profiles_dir(), Path::new("/t/profiles"));
        assert_eq!(c.current_system(), Path::new("/t/cur"));
        for key in ["nix_profiles_dir", "current_system"] {
            let e = Config::parse(&format!("{key} = \"rel/x\"")).unwrap_err().0;
            assert_eq!(e, format!("{key}: must be an absolute path"));
        }
    }

    #[test]
    fn full_example_parses() {
        let c = Config::parse(
            r#"
            allowed_groups = ["wheel", "luminous-healing"]
            allowed_users = ["monitor"]
            protocols = ["v2"]
            [caller_rate_limit]
            max = 5
            window_secs = 60
            [actions.restart_service]
            allowed_units = ["nginx.service", "sshd"]
            rate_limit = { max = 3, window_secs = 60 }
            [actions.rollback_generation]
            enabled = false
            nixos_rebuild = "/opt/nixos-rebuild"
            "#,
        )
        .unwrap();
        assert!(!c.accepts(Protocol::V1));
        assert_eq!(
            c.allowed_unit_patterns(ActionName::RestartService)
                .unwrap()
                .len(),
            2
        );
        assert!(!c.action_enabled(ActionName::RollbackGeneration));
        assert_eq!(c.action_rate_limit(ActionName::RestartService).max, 3);
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        for (text, needle) in [
            ("alowed_groups = []", "alowed_groups"),
            ("protocols = [\"v3\"]", "v3"),
            ("protocols = []", "protocols"),
            ("[actions.reboot]", "actions.reboot"),
            (
                "[actions.adjust_swappiness]\nallowed_units = [\"a\"]",
                "allowed_units",
            ),
            (
                "[actions.kill_process]\nallowed_units = [\"app-[x\"]",
                "app-[x",
            ),
            (
                "[actions.kill_process]\nbreaker = { max = 1, window_secs = 1 }",
                "breaker",
            ),
            ("[callers.\"bad name\"]\nactions = []", "bad name"),
            ("[callers.\"@ops\"]\nactions = [\"reboot\"]", "reboot"),
            ("[callers.\"@ops\"]\nactions = [\"pause\"]", "pause"),
            ("[callers.monitor]\nactions = []\nunits = [\"a b\"]", "a b"),
            ("[callers.monitor]\nactoins = []", "actoins"),
            ("[actions.pause]", "actions.pause"),
            (
                "[actions.status]\nrate_limit = { max = 1, window_secs = 1 }",
                "status_rate_limit",
            ),
            (
                "[actions.restart_service]\nallowed_units = [\"../x\"]",
                "allowed_units",
            ),
            (
                "[actions.kill_process]\nrate_limit = { max = 0, window_secs = 1 }",
                "rate_limit",
            ),
            ("[actions.kill_process]\ncolour = 1", "colour"),
            ("max_connections = 0", "max_connections"),
            ("max_connections_per_uid = 0", "max_connections_per_uid"),
            ("max_connections_per_uid = 5000", "max_connections_per_uid"),
            ("first_byte_timeout_ms = 10", "first_byte_timeout_ms"),
            (
                "[actions.rollback_generation]\nnixos_rebuild = \"rel\"",
                "absolute",
            ),
        ] {
            let e = Config::parse(text).unwrap_err().0;
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}

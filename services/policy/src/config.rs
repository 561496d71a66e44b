//! `/etc/luminous-healing/config.toml`. Every key is optional; an unknown key
//! or a bad value is a start-up error naming it, never silently ignored.

use crate::schema::{validate_unit_name, ActionName, ALL_ACTIONS};
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
    /// restart_service only.
    pub allowed_units: Option<Vec<String>>,
    /// rollback_generation only.
    pub nixos_rebuild: Option<PathBuf>,
    /// clean_nix_store only.
    pub nix_collect_garbage: Option<PathBuf>,
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
    pub actions: BTreeMap<String, ActionConfig>,
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
            actions: BTreeMap::new(),
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
        for (name, a) in &self.actions {
            let Some(action) = ActionName::from_wire(name) else {
                let known: Vec<_> = ALL_ACTIONS.iter().map(|a| a.as_str()).collect();
                return bad(format!(
                    "actions.{name}: unknown action (known: {})",
                    known.join(", ")
                ));
            };
            if let Some(l) = &a.rate_limit {
                check_limit(&format!("actions.{name}.rate_limit"), l)?;
            }
            if a.timeout_secs == Some(0) {
                return bad(format!("actions.{name}.timeout_secs: must be at least 1"));
            }
            if a.allowed_units.is_some() && action != ActionName::RestartService {
                return bad(format!(
                    "actions.{name}.allowed_units: only restart_service takes it"
                ));
            }
            for u in a.allowed_units.iter().flatten() {
                validate_unit_name(u)
                    .map_err(|e| ConfigError(format!("actions.{name}.allowed_units: {e}")))?;
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

    pub fn action_enabled(&self, a: ActionName) -> bool {
        self.action(a).and_then(|c| c.enabled).unwrap_or(true)
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

    /// `None`: any valid unit may be restarted.
    pub fn allowed_units(&self) -> Option<&[String]> {
        self.action(ActionName::RestartService)
            .and_then(|c| c.allowed_units.as_deref())
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
        assert!(c.action_enabled(ActionName::RollbackGeneration));
        assert_eq!(c.max_connections_per_uid, 16);
        assert_eq!(c.first_byte_timeout_ms, 1000);
        let c = Config::parse("max_connections_per_uid = 4\nfirst_byte_timeout_ms = 250").unwrap();
        assert_eq!(
            (c.max_connections_per_uid, c.first_byte_timeout_ms),
            (4, 250)
        );
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
        assert_eq!(c.allowed_units().unwrap().len(), 2);
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
                "[actions.kill_process]\nallowed_units = [\"a\"]",
                "allowed_units",
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

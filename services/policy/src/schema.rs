//! The parameter schema. Everything an action acts on is parsed here into a
//! typed value, so no string from a request ever reaches a path, a D-Bus call
//! or a syscall unchecked. There is no shell anywhere, but the grammars are
//! strict anyway: a name that could mean two things is refused.

use serde_json::{Map, Value};

/// Wire names of the actions, in the order they are documented.
pub const ALL_ACTIONS: [ActionName; 11] = [
    ActionName::RestartService,
    ActionName::SetCpuGovernor,
    ActionName::ClearSystemCache,
    ActionName::AdjustSwappiness,
    ActionName::KillProcess,
    ActionName::RestartNetwork,
    ActionName::CleanNixStore,
    ActionName::RollbackGeneration,
    ActionName::Status,
    ActionName::Pause,
    ActionName::Resume,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionName {
    RestartService,
    SetCpuGovernor,
    ClearSystemCache,
    AdjustSwappiness,
    KillProcess,
    RestartNetwork,
    CleanNixStore,
    RollbackGeneration,
    Status,
    /// Root only: refuse every action until `resume`.
    Pause,
    Resume,
}

impl ActionName {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionName::RestartService => "restart_service",
            ActionName::SetCpuGovernor => "set_cpu_governor",
            ActionName::ClearSystemCache => "clear_system_cache",
            ActionName::AdjustSwappiness => "adjust_swappiness",
            ActionName::KillProcess => "kill_process",
            ActionName::RestartNetwork => "restart_network",
            ActionName::CleanNixStore => "clean_nix_store",
            ActionName::RollbackGeneration => "rollback_generation",
            ActionName::Status => "status",
            ActionName::Pause => "pause",
            ActionName::Resume => "resume",
        }
    }

    /// Its entry in the table of actions (`services/actions/src/table.rs`),
    /// which says everything about it but how its parameters are typed.
    /// Every name has one (`every_action_is_in_the_table`).
    pub fn entry(self) -> Option<&'static healing_actions::Action> {
        healing_actions::action(self.as_str())
    }

    /// Whether `[actions.NAME]` and `[callers.*] actions` may name it. Pause
    /// and resume are root's alone, whatever the configuration says.
    pub fn is_configurable(self) -> bool {
        self.entry().is_some_and(|a| a.configurable)
    }

    pub fn from_wire(s: &str) -> Option<ActionName> {
        ALL_ACTIONS.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether a separate action service performs it (`status` is answered by
    /// the dispatcher itself).
    pub fn is_forwarded(self) -> bool {
        self.entry().is_some_and(|a| a.service.is_some())
    }

    /// Default time the dispatcher waits for the action's reply.
    pub fn default_timeout_secs(self) -> u64 {
        self.entry().map_or(10, |a| a.timeout_secs)
    }

    /// The names its `parameters` may hold, in the table's order.
    pub fn parameter_names(self) -> Vec<&'static str> {
        self.entry()
            .map(|a| a.params.iter().map(|p| p.name).collect())
            .unwrap_or_default()
    }

    fn takes_parameter(self, name: &str) -> bool {
        self.entry().is_some_and(|a| a.param(name).is_some())
    }

    /// The choices the table lists for a parameter, for refusals to name.
    fn choices(self, param: &str) -> String {
        match self.entry().and_then(|a| a.param(param)).map(|p| &p.kind) {
            Some(healing_actions::Kind::Choice(c)) => c.join(", "),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Hup,
    Int,
}

impl Signal {
    pub fn number(self) -> i32 {
        match self {
            Signal::Term => libc_sig::SIGTERM,
            Signal::Kill => libc_sig::SIGKILL,
            Signal::Hup => libc_sig::SIGHUP,
            Signal::Int => libc_sig::SIGINT,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Hup => "HUP",
            Signal::Int => "INT",
        }
    }
}

/// Signal numbers on Linux (identical on every architecture for these four).
mod libc_sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governor {
    Performance,
    Powersave,
    Ondemand,
    Conservative,
    Schedutil,
}

impl Governor {
    pub fn as_str(self) -> &'static str {
        match self {
            Governor::Performance => "performance",
            Governor::Powersave => "powersave",
            Governor::Ondemand => "ondemand",
            Governor::Conservative => "conservative",
            Governor::Schedutil => "schedutil",
        }
    }
}

/// A request's action with its parameters, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    RestartService { unit: String },
    SetCpuGovernor { governor: Governor },
    ClearSystemCache,
    AdjustSwappiness { value: u8 },
    KillProcess { pid: i32, signal: Signal },
    RestartNetwork,
    CleanNixStore,
    RollbackGeneration,
    Status,
    Pause { reason: Option<String> },
    Resume,
}

impl Action {
    pub fn name(&self) -> ActionName {
        match self {
            Action::RestartService { .. } => ActionName::RestartService,
            Action::SetCpuGovernor { .. } => ActionName::SetCpuGovernor,
            Action::ClearSystemCache => ActionName::ClearSystemCache,
            Action::AdjustSwappiness { .. } => ActionName::AdjustSwappiness,
            Action::KillProcess { .. } => ActionName::KillProcess,
            Action::RestartNetwork => ActionName::RestartNetwork,
            Action::CleanNixStore => ActionName::CleanNixStore,
            Action::RollbackGeneration => ActionName::RollbackGeneration,
            Action::Status => ActionName::Status,
            Action::Pause { .. } => ActionName::Pause,
            Action::Resume => ActionName::Resume,
        }
    }

    /// Validates the parameters of `name`. Unknown parameters are refused too:
    /// a typo must not silently fall back to a default.
    pub fn parse(name: ActionName, p: &Map<String, Value>) -> Result<Action, String> {
        if let Some(k) = p.keys().find(|k| !name.takes_parameter(k)) {
            return Err(format!("unknown parameter {k:?} for {}", name.as_str()));
        }
        Ok(match name {
            ActionName::RestartService => Action::RestartService {
                unit: validate_unit_name(required_str(p, "service")?)?,
            },
            ActionName::SetCpuGovernor => {
                let g = required_str(p, "governor")?;
                let governor = [
                    Governor::Performance,
                    Governor::Powersave,
                    Governor::Ondemand,
                    Governor::Conservative,
                    Governor::Schedutil,
                ]
                .into_iter()
                .find(|x| x.as_str() == g)
                .ok_or_else(|| {
                    format!("governor {g:?} is not one of {}", name.choices("governor"))
                })?;
                Action::SetCpuGovernor { governor }
            }
            ActionName::AdjustSwappiness => {
                let v = required_int(p, "value")?;
                if !(0..=100).contains(&v) {
                    return Err(format!("swappiness {v} is outside 0-100"));
                }
                Action::AdjustSwappiness { value: v as u8 }
            }
            ActionName::KillProcess => {
                let pid = required_int(p, "pid")?;
                if pid <= 1 || pid > i64::from(i32::MAX) {
                    return Err(format!("pid {pid} refused: must be greater than 1"));
                }
                let s = required_str(p, "signal")?;
                let signal = [Signal::Term, Signal::Kill, Signal::Hup, Signal::Int]
                    .into_iter()
                    .find(|x| x.as_str() == s)
                    .ok_or_else(|| {
                        format!("signal {s:?} is not one of {}", name.choices("signal"))
                    })?;
                Action::KillProcess {
                    pid: pid as i32,
                    signal,
                }
            }
            ActionName::ClearSystemCache => Action::ClearSystemCache,
            ActionName::RestartNetwork => Action::RestartNetwork,
            ActionName::CleanNixStore => Action::CleanNixStore,
            ActionName::RollbackGeneration => Action::RollbackGeneration,
            ActionName::Status => Action::Status,
            ActionName::Pause => Action::Pause {
                reason: match p.get("reason") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(r))
                        if r.chars().count() <= 200 && !r.chars().any(char::is_control) =>
                    {
                        Some(r.clone())
                    }
                    Some(_) => {
                        return Err(
                            "parameter \"reason\" must be at most 200 printable characters".into(),
                        )
                    }
                },
            },
            ActionName::Resume => Action::Resume,
        })
    }
}

fn required_str<'a>(p: &'a Map<String, Value>, k: &str) -> Result<&'a str, String> {
    match p.get(k) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("parameter {k:?} must be a string")),
        None => Err(format!("parameter {k:?} is missing")),
    }
}

/// Integers may come as JSON numbers or as decimal strings: Python callers
/// that build parameters from command-line text send the latter.
fn required_int(p: &Map<String, Value>, k: &str) -> Result<i64, String> {
    match p.get(k) {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("parameter {k:?} must be an integer")),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 19
                && s.bytes()
                    .enumerate()
                    .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-')) =>
        {
            s.parse::<i64>()
                .map_err(|_| format!("parameter {k:?} must be an integer"))
        }
        Some(_) => Err(format!("parameter {k:?} must be an integer")),
        None => Err(format!("parameter {k:?} is missing")),
    }
}

/// Unit types a caller may restart.
const RESTARTABLE_SUFFIXES: [&str; 5] = [".service", ".socket", ".target", ".timer", ".path"];

/// systemd's unit-name grammar (unit_name_is_valid), narrowed: at most 255
/// bytes, characters `[A-Za-z0-9:_.\-@\\]`, a restartable type suffix, a
/// template only with an instance, and no `..` (never a path). A name without
/// a suffix gets `.service`, as `systemctl restart name` does.
pub fn validate_unit_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("unit name is empty".into());
    }
    if name.len() > 255 {
        return Err("unit name is longer than 255 bytes".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.-@\\".contains(*c)))
    {
        return Err(format!(
            "unit name contains {c:?}, which systemd does not allow"
        ));
    }
    if name.contains("..") || name.starts_with('.') || name.starts_with('-') {
        return Err(format!("unit name {name:?} is not a valid unit name"));
    }
    let full = if RESTARTABLE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else if name.contains('.') && !name.contains('@') {
        return Err(format!(
            "unit {name:?} is not of a type that can be restarted"
        ));
    } else {
        format!("{name}.service")
    };
    // The suffix can make a `..` of its own: "a@." would become "a@..service".
    if full.contains("..") {
        return Err(format!("unit name {name:?} is not a valid unit name"));
    }
    if full.len() > 255 {
        return Err("unit name is longer than 255 bytes".into());
    }
    let (stem, _) = full.rsplit_once('.').unwrap_or((full.as_str(), ""));
    if stem.is_empty() {
        return Err(format!("unit name {name:?} has no name before its type"));
    }
    if let Some((prefix, instance)) = stem.split_once('@') {
        if prefix.is_empty() || instance.is_empty() || instance.contains('@') {
            return Err(format!(
                "unit name {name:?} is a template without an instance"
            ));
        }
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn unit_names() {
        assert_eq!(validate_unit_name("nginx").unwrap(), "nginx.service");
        assert_eq!(
            validate_unit_name("getty@tty1.service").unwrap(),
            "getty@tty1.service"
        );
        assert_eq!(
            validate_unit_name("a-b_c:d.socket").unwrap(),
            "a-b_c:d.socket"
        );
        for bad in [
            "",
            "../etc/passwd",
            "a/b.service",
            "a..service",
            "x\n.service",
            "x;rm.service",
            "getty@.service",
            "@x.service",
            ".service",
            "foo.device",
            "-x.service",
            "a b",
            "ünicode.service",
        ] {
            assert!(validate_unit_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_unit_name(&"a".repeat(247)).is_ok());
        assert!(validate_unit_name(&"a".repeat(248)).is_err());
    }

    #[test]
    fn kill_process_grammar() {
        let ok = Action::parse(
            ActionName::KillProcess,
            &params(json!({"pid": 42, "signal": "KILL"})),
        );
        assert_eq!(
            ok.unwrap(),
            Action::KillProcess {
                pid: 42,
                signal: Signal::Kill
            }
        );
        let s = Action::parse(
            ActionName::KillProcess,
            &params(json!({"pid": "42", "signal": "TERM"})),
        );
        assert!(s.is_ok());
        for bad in [
            json!({"pid": 1, "signal": "TERM"}),
            json!({"pid": 0, "signal": "TERM"}),
            json!({"pid": -5, "signal": "TERM"}),
            json!({"pid": 4294967297u64, "signal": "TERM"}),
            json!({"pid": 42, "signal": "STOP"}),
            json!({"pid": 42, "signal": "SIGTERM"}),
            json!({"pid": 42}),
            json!({"signal": "TERM"}),
            json!({"pid": 4.5, "signal": "TERM"}),
            json!({"pid": "4a", "signal": "TERM"}),
            json!({"pid": 42, "signal": "TERM", "extra": 1}),
        ] {
            assert!(
                Action::parse(ActionName::KillProcess, &params(bad.clone())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn swappiness_and_governor() {
        assert!(
            Action::parse(ActionName::AdjustSwappiness, &params(json!({"value": 100}))).is_ok()
        );
        assert!(Action::parse(ActionName::AdjustSwappiness, &params(json!({"value": 0}))).is_ok());
        assert!(
            Action::parse(ActionName::AdjustSwappiness, &params(json!({"value": 101}))).is_err()
        );
        assert!(
            Action::parse(ActionName::AdjustSwappiness, &params(json!({"value": -1}))).is_err()
        );
        assert!(Action::parse(
            ActionName::SetCpuGovernor,
            &params(json!({"governor": "schedutil"}))
        )
        .is_ok());
        assert!(Action::parse(
            ActionName::SetCpuGovernor,
            &params(json!({"governor": "turbo"}))
        )
        .is_err());
        assert!(Action::parse(ActionName::Status, &params(json!({"x": 1}))).is_err());
    }

    /// The table and the typed schema describe the same actions: same
    /// names in the same order, same parameters, same choices and bounds.
    #[test]
    fn every_action_is_in_the_table() {
        let names: Vec<&str> = healing_actions::ACTIONS.iter().map(|a| a.name).collect();
        let ours: Vec<&str> = ALL_ACTIONS.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, ours);
        let governors = [
            Governor::Performance,
            Governor::Powersave,
            Governor::Ondemand,
            Governor::Conservative,
            Governor::Schedutil,
        ]
        .map(Governor::as_str)
        .join(", ");
        assert_eq!(ActionName::SetCpuGovernor.choices("governor"), governors);
        let signals = [Signal::Term, Signal::Kill, Signal::Hup, Signal::Int]
            .map(Signal::as_str)
            .join(", ");
        assert_eq!(ActionName::KillProcess.choices("signal"), signals);
        assert!(!ActionName::Status.is_forwarded() && ActionName::KillProcess.is_forwarded());
        assert!(!ActionName::Pause.is_configurable() && ActionName::Status.is_configurable());
        assert_eq!(ActionName::CleanNixStore.default_timeout_secs(), 600);
    }

    /// Each integer's bounds in the table are where the schema starts refusing.
    #[test]
    fn integer_bounds_follow_the_table() {
        for (name, param, extra) in [
            (ActionName::AdjustSwappiness, "value", json!({})),
            (ActionName::KillProcess, "pid", json!({"signal": "TERM"})),
        ] {
            let Some(healing_actions::Kind::Integer { min, max }) =
                name.entry().and_then(|a| a.param(param)).map(|p| &p.kind)
            else {
                panic!("{param} is no integer in the table")
            };
            let with = |v: i64| {
                let mut m = params(extra.clone());
                m.insert(param.into(), json!(v));
                Action::parse(name, &m)
            };
            assert!(with(*min).is_ok() && with(*max).is_ok(), "{param}");
            assert!(with(min - 1).is_err() && with(max + 1).is_err(), "{param}");
        }
    }

    #[test]
    fn wire_names_round_trip() {
        for a in ALL_ACTIONS {
            assert_eq!(ActionName::from_wire(a.as_str()), Some(a));
        }
        assert_eq!(ActionName::from_wire("reboot"), None);
    }
}

//! The authorize stage: who may ask for what, on which unit or process.
//!
//! Pure: it takes the caller, the typed action and facts about the target,
//! and returns a plan or a refusal naming the rule that refused. The
//! dispatcher runs [`permit`] (everything that needs no facts) before it
//! spends any budget; the action binary runs [`plan`] (the same [`permit`],
//! then the rules on facts it read itself, on the unit object or a pidfd), so
//! a race between check and act cannot widen a request, and each rule lives
//! here once. docs/policy.md is the prose of this file.

use crate::config::{CallerKey, Config, ConfigError};
use crate::schema::{Action, ActionName, Signal};
use crate::units::{protected_reason, UnitPattern};
use std::fmt;

/// The kernel-attested caller (SO_PEERCRED, SO_PEERGROUPS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerInfo {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl CallerInfo {
    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// A per-caller rule, resolved to ids at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerRule {
    /// The key as written: `monitor` or `@ops`.
    pub name: String,
    pub who: Who,
    pub actions: Vec<ActionName>,
    pub units: Option<Vec<UnitPattern>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    User(u32),
    Group(u32),
}

/// The configuration's authorization rules, compiled once at start.
#[derive(Debug, Clone)]
pub struct Policy {
    enabled: Vec<ActionName>,
    restart_units: Option<Vec<UnitPattern>>,
    kill_units: Vec<UnitPattern>,
    rules: Vec<CallerRule>,
}

/// Looks a user or group name up; `Ok(None)` when it does not exist.
pub type Resolve<'a> = &'a dyn Fn(&str) -> Result<Option<u32>, String>;

impl Policy {
    /// Resolves `[callers.*]` names with the given look-ups. An unknown
    /// user or group is an error naming it: a typo must neither lock a
    /// caller out silently nor be ignored.
    pub fn from_config(
        c: &Config,
        user: Resolve<'_>,
        group: Resolve<'_>,
    ) -> Result<Policy, ConfigError> {
        let mut rules = Vec::new();
        for (key, rule) in &c.callers {
            let who = match CallerKey::parse(key) {
                CallerKey::User(n) => match user(n) {
                    Ok(Some(uid)) => Who::User(uid),
                    Ok(None) => {
                        return Err(ConfigError(format!("callers.{key:?}: no user named {n:?}")))
                    }
                    Err(e) => {
                        return Err(ConfigError(format!(
                            "callers.{key:?}: cannot look up user {n:?}: {e}"
                        )))
                    }
                },
                CallerKey::Group(n) => match group(n) {
                    Ok(Some(gid)) => Who::Group(gid),
                    Ok(None) => {
                        return Err(ConfigError(format!(
                            "callers.{key:?}: no group named {n:?}"
                        )))
                    }
                    Err(e) => {
                        return Err(ConfigError(format!(
                            "callers.{key:?}: cannot look up group {n:?}: {e}"
                        )))
                    }
                },
            };
            rules.push(CallerRule {
                name: key.clone(),
                who,
                actions: rule.action_names(),
                units: rule.unit_patterns(),
            });
        }
        Ok(Policy {
            enabled: crate::ALL_ACTIONS
                .into_iter()
                .filter(|a| c.action_enabled(*a))
                .collect(),
            restart_units: c.allowed_unit_patterns(ActionName::RestartService),
            kill_units: c
                .allowed_unit_patterns(ActionName::KillProcess)
                .unwrap_or_default(),
            rules,
        })
    }

    /// The rules that apply to `caller`: its user rule if it has one (the
    /// most specific wins), else every group rule it matches, else none.
    pub fn rules_for(&self, caller: &CallerInfo) -> Vec<&CallerRule> {
        let user: Vec<_> = self
            .rules
            .iter()
            .filter(|r| r.who == Who::User(caller.uid))
            .collect();
        if !user.is_empty() {
            return user;
        }
        self.rules
            .iter()
            .filter(|r| matches!(r.who, Who::Group(g) if caller.in_group(g)))
            .collect()
    }
}

/// Which rule refused, named as docs/policy.md names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Disabled,
    CallerActions,
    CallerUnits,
    RootOnly,
    ServicesOnly,
    Protected,
    AllowedUnits,
    NotLoaded,
    NotRunning,
    KernelThread,
    NotOwned,
    Busy,
    AlreadyRolledBack,
    NoGeneration,
    /// The action did not read what the rules need (a bug, never a caller's).
    FactsUnread,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Disabled => "actions.enabled",
            Rule::CallerActions => "callers.actions",
            Rule::CallerUnits => "callers.units",
            Rule::RootOnly => "root-only",
            Rule::ServicesOnly => "services-only",
            Rule::Protected => "protected-units",
            Rule::AllowedUnits => "allowed_units",
            Rule::NotLoaded => "unit-loaded",
            Rule::NotRunning => "never-start",
            Rule::KernelThread => "no-kernel-threads",
            Rule::NotOwned => "process-owner",
            Rule::Busy => "one-nix-operation",
            Rule::AlreadyRolledBack => "one-step-back",
            Rule::NoGeneration => "generations",
            Rule::FactsUnread => "facts-read",
        }
    }
}

/// A refusal: what the caller is told, and the rule that said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub message: String,
}

impl Refusal {
    fn new(rule: Rule, message: impl Into<String>) -> Refusal {
        Refusal {
            rule,
            message: message.into(),
        }
    }
}

/// The wire error: the message and the rule, so every refusal says which
/// rule refused.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rule {})", self.message, self.rule.as_str())
    }
}

/// What the action binary read about its target just before acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    /// The action has no target beyond the host (caches, sysctls, network).
    None,
    Unit(UnitFacts),
    Process(ProcessFacts),
    Generations(GenerationFacts),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFacts {
    /// `None`: the manager has no such unit loaded.
    pub load_state: Option<String>,
    pub active_state: String,
    /// ActiveEnterTimestamp as text, when known.
    pub active_since: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: i32,
    /// Real, effective and saved uid (`/proc/PID/status`).
    pub uids: [u32; 3],
    /// The systemd unit of its cgroup (sd_pid_get_unit's answer), if any.
    pub unit: Option<String>,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    pub kernel_thread: bool,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationFacts {
    /// The generation the running system was built from, if it is one.
    pub current: Option<u32>,
    /// The newest system generation in the profile.
    pub newest: Option<u32>,
    /// The newest generation older than `current`.
    pub previous: Option<u32>,
    /// Another rollback or garbage collection holds the lock.
    pub busy: bool,
}

/// What will be done, once every rule agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `failed`: RestartUnit (the unit is down because it failed); otherwise
    /// TryRestartUnit, which never starts a unit that stopped meanwhile.
    Restart {
        unit: String,
        state: String,
        since: Option<String>,
        failed: bool,
    },
    Signal {
        pid: i32,
        signal: Signal,
        uid: u32,
        unit: Option<String>,
        comm: String,
        start_time: u64,
    },
    Rollback {
        from: u32,
        to: u32,
    },
    CollectGarbage {
        delete_generations: bool,
        note: Option<String>,
    },
    /// An action whose target is the host itself.
    Run(ActionName),
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Restart {
                unit, state, since, ..
            } => match since {
                Some(s) => write!(f, "restart {unit}, {state} since {s}"),
                None => write!(f, "restart {unit}, {state}"),
            },
            Plan::Signal {
                pid,
                signal,
                uid,
                unit,
                comm,
                ..
            } => {
                write!(
                    f,
                    "send SIG{} to pid {pid} ({comm}, uid {uid}",
                    signal.as_str()
                )?;
                match unit {
                    Some(u) => write!(f, ", unit {u})"),
                    None => f.write_str(")"),
                }
            }
            Plan::Rollback { from, to } => {
                write!(f, "roll the system back from generation {from} to {to}")
            }
            Plan::CollectGarbage {
                delete_generations: true,
                ..
            } => f.write_str("delete old generations and collect garbage"),
            Plan::CollectGarbage {
                delete_generations: false,
                note,
            } => {
                f.write_str("collect garbage, keeping every generation")?;
                match note {
                    Some(n) => write!(f, " ({n})"),
                    None => Ok(()),
                }
            }
            Plan::Run(a) => write!(f, "run {}", a.as_str()),
        }
    }
}

/// The rules that need no facts: run by the dispatcher before any budget is
/// spent, and again by the action.
pub fn permit(policy: &Policy, caller: &CallerInfo, action: &Action) -> Result<(), Refusal> {
    let name = action.name();
    if matches!(name, ActionName::Pause | ActionName::Resume) {
        if caller.uid != 0 {
            return Err(Refusal::new(
                Rule::RootOnly,
                format!(
                    "{} is for root only; uid {} may not ask",
                    name.as_str(),
                    caller.uid
                ),
            ));
        }
        return Ok(());
    }
    if !policy.enabled.contains(&name) {
        return Err(Refusal::new(
            Rule::Disabled,
            format!(
                "Action {} not allowed: disabled in the configuration",
                name.as_str()
            ),
        ));
    }
    let rules = policy.rules_for(caller);
    // status reads no more than the caller's own budget: every caller may ask.
    if !rules.is_empty()
        && name != ActionName::Status
        && !rules.iter().any(|r| r.actions.contains(&name))
    {
        let names: Vec<_> = rules
            .iter()
            .map(|r| format!("callers.{:?}", r.name))
            .collect();
        return Err(Refusal::new(
            Rule::CallerActions,
            format!(
                "Action {} not allowed for uid {}: {} does not list it",
                name.as_str(),
                caller.uid,
                names.join(", ")
            ),
        ));
    }
    if let Action::RestartService { unit } = action {
        permit_unit(policy, &rules, unit)?;
    }
    Ok(())
}

fn permit_unit(policy: &Policy, rules: &[&CallerRule], unit: &str) -> Result<(), Refusal> {
    if let Some((_, kind)) = unit.rsplit_once('.') {
        if kind != "service" {
            return Err(Refusal::new(
                Rule::ServicesOnly,
                format!(
                    "Unit {unit} not allowed: restart_service restarts services only, not a {kind}"
                ),
            ));
        }
    }
    if let Some((pattern, why)) = protected_reason(unit) {
        return Err(Refusal::new(
            Rule::Protected,
            format!("Unit {unit} not allowed: it matches the protected {pattern}, {why}"),
        ));
    }
    if let Some(list) = &policy.restart_units {
        if !list.iter().any(|p| p.matches(unit)) {
            return Err(Refusal::new(
                Rule::AllowedUnits,
                format!("Unit {unit} not allowed: not in actions.restart_service.allowed_units"),
            ));
        }
    }
    // Only the rules that grant restart_service narrow it; a rule without
    // `units` grants every unit the rest of the policy permits.
    let granting: Vec<_> = rules
        .iter()
        .filter(|r| r.actions.contains(&ActionName::RestartService))
        .collect();
    if !granting.is_empty()
        && !granting.iter().any(|r| match &r.units {
            None => true,
            Some(ps) => ps.iter().any(|p| p.matches(unit)),
        })
    {
        let names: Vec<_> = granting
            .iter()
            .map(|r| format!("callers.{:?}", r.name))
            .collect();
        return Err(Refusal::new(
            Rule::CallerUnits,
            format!(
                "Unit {unit} not allowed: not in the units of {}",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Every rule, with the facts the action read: the plan it may carry out.
pub fn plan(
    policy: &Policy,
    caller: &CallerInfo,
    action: &Action,
    facts: &Facts,
) -> Result<Plan, Refusal> {
    permit(policy, caller, action)?;
    match (action, facts) {
        (Action::RestartService { unit }, Facts::Unit(u)) => plan_restart(unit, u),
        (Action::KillProcess { pid, signal }, Facts::Process(p)) => {
            plan_signal(policy, caller, *pid, *signal, p)
        }
        (Action::RollbackGeneration, Facts::Generations(g)) => plan_rollback(g),
        (Action::CleanNixStore, Facts::Generations(g)) => plan_gc(g),
        (
            Action::RestartService { .. }
            | Action::KillProcess { .. }
            | Action::RollbackGeneration
            | Action::CleanNixStore,
            _,
        ) => Err(Refusal::new(
            Rule::FactsUnread,
            format!(
                "{}: the facts about its target were not read",
                action.name().as_str()
            ),
        )),
        (other, _) => Ok(Plan::Run(other.name())),
    }
}

fn plan_restart(unit: &str, u: &UnitFacts) -> Result<Plan, Refusal> {
    match u.load_state.as_deref() {
        Some("loaded") => {}
        Some(other) => {
            return Err(Refusal::new(
                Rule::NotLoaded,
                format!("Unit {unit} not restarted: its load state is {other}"),
            ))
        }
        None => {
            return Err(Refusal::new(
                Rule::NotLoaded,
                format!("Unit {unit} not restarted: systemd has no such unit loaded (a stopped unit is never started)"),
            ))
        }
    }
    match u.active_state.as_str() {
        "active" | "activating" | "reloading" | "deactivating" | "refreshing" | "failed" => {
            Ok(Plan::Restart {
                unit: unit.to_string(),
                state: u.active_state.clone(),
                since: u.active_since.clone(),
                failed: u.active_state == "failed",
            })
        }
        other => Err(Refusal::new(
            Rule::NotRunning,
            format!("Unit {unit} not restarted: it is {other}, and restart_service never starts a unit that is not running or failed"),
        )),
    }
}

fn plan_signal(
    policy: &Policy,
    caller: &CallerInfo,
    pid: i32,
    signal: Signal,
    p: &ProcessFacts,
) -> Result<Plan, Refusal> {
    if p.kernel_thread || pid <= 1 {
        return Err(Refusal::new(
            Rule::KernelThread,
            format!("pid {pid} refused: it is pid 1 or a kernel thread"),
        ));
    }
    if let Some(unit) = &p.unit {
        if let Some((pattern, why)) = protected_reason(unit) {
            return Err(Refusal::new(
                Rule::Protected,
                format!("pid {pid} refused: it runs in {unit}, which matches the protected {pattern}, {why}"),
            ));
        }
    }
    let owned = p.uids.iter().all(|u| *u == caller.uid);
    let in_allowed_unit = p
        .unit
        .as_deref()
        .is_some_and(|u| policy.kill_units.iter().any(|pat| pat.matches(u)));
    if !owned && !in_allowed_unit {
        return Err(Refusal::new(
            Rule::NotOwned,
            format!(
                "pid {pid} refused: it belongs to uid {}, not to the caller (uid {}), and its unit {} is not in actions.kill_process.allowed_units",
                p.uids[1],
                caller.uid,
                p.unit.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    Ok(Plan::Signal {
        pid,
        signal,
        uid: p.uids[1],
        unit: p.unit.clone(),
        comm: p.comm.clone(),
        start_time: p.start_time,
    })
}

fn busy() -> Refusal {
    Refusal::new(
        Rule::Busy,
        "another rollback or garbage collection is running",
    )
}

fn plan_rollback(g: &GenerationFacts) -> Result<Plan, Refusal> {
    if g.busy {
        return Err(busy());
    }
    let (Some(current), Some(newest)) = (g.current, g.newest) else {
        return Err(Refusal::new(
            Rule::NoGeneration,
            "the running system is not a generation of the system profile",
        ));
    };
    if current < newest {
        return Err(Refusal::new(
            Rule::AlreadyRolledBack,
            format!("the running system (generation {current}) is already older than the newest ({newest}); rollback goes one step back only"),
        ));
    }
    match g.previous {
        Some(to) => Ok(Plan::Rollback { from: current, to }),
        None => Err(Refusal::new(
            Rule::NoGeneration,
            format!("there is no generation older than {current}"),
        )),
    }
}

fn plan_gc(g: &GenerationFacts) -> Result<Plan, Refusal> {
    if g.busy {
        return Err(busy());
    }
    Ok(match (g.current, g.newest) {
        (Some(c), Some(n)) if c < n => Plan::CollectGarbage {
            delete_generations: false,
            note: Some(format!(
                "the running system is generation {c}, older than {n}: deleting old generations would delete the newer ones"
            )),
        },
        _ => Plan::CollectGarbage {
            delete_generations: true,
            note: None,
        },
    })
}

#![allow(clippy::unwrap_used, clippy::panic)]
//! The authorize stage, rule by rule, without root or containers: config +
//! caller + request + facts → plan or refusal.

use healing_policy::{
    permit, plan, Action, CallerInfo, Config, Facts, GenerationFacts, Plan, Policy, ProcessFacts,
    Rule, Signal, UnitFacts,
};

const MONITOR: u32 = 1000;
const OTHER: u32 = 1001;
const OPS_GID: u32 = 2000;
const DEV_GID: u32 = 2001;

fn user(n: &str) -> Result<Option<u32>, String> {
    Ok(match n {
        "monitor" => Some(MONITOR),
        "other" => Some(OTHER),
        _ => None,
    })
}
fn group(n: &str) -> Result<Option<u32>, String> {
    Ok(match n {
        "ops" => Some(OPS_GID),
        "dev" => Some(DEV_GID),
        "luminous-healing" => Some(3000),
        _ => None,
    })
}

fn policy(toml: &str) -> Policy {
    let c = Config::parse(toml).unwrap();
    Policy::from_config(&c, &user, &group).unwrap()
}

fn caller(uid: u32) -> CallerInfo {
    CallerInfo {
        uid,
        gid: uid,
        groups: vec![3000],
    }
}

/// A caller with its own user group and these supplementary groups.
fn member(uid: u32, groups: &[u32]) -> CallerInfo {
    CallerInfo {
        uid,
        gid: uid,
        groups: groups.to_vec(),
    }
}

fn restart(unit: &str) -> Action {
    Action::RestartService { unit: unit.into() }
}

fn unit_facts(state: &str) -> Facts {
    Facts::Unit(UnitFacts {
        load_state: Some("loaded".into()),
        active_state: state.into(),
        active_since: Some("Tue 2026-12-01 09:00:00 UTC".into()),
    })
}

fn refused_by(r: Result<impl std::fmt::Debug, healing_policy::Refusal>, rule: Rule) -> String {
    match r {
        Err(e) => {
            assert_eq!(e.rule, rule, "{e}");
            let text = e.to_string();
            assert!(
                text.contains(rule.as_str()),
                "{text} does not name its rule"
            );
            text
        }
        Ok(p) => panic!("expected a refusal by {rule:?}, got {p:?}"),
    }
}

#[test]
fn only_services_are_restarted() {
    let p = policy("");
    for u in [
        "reboot.target",
        "tmp.mount",
        "user.slice",
        "x.socket",
        "a.timer",
        "b.path",
    ] {
        let t = refused_by(
            permit(&p, &caller(MONITOR), &restart(u)),
            Rule::ServicesOnly,
        );
        assert!(t.contains(u));
    }
    assert!(permit(&p, &caller(MONITOR), &restart("nginx.service")).is_ok());
}

#[test]
fn protected_units_are_refused_even_when_allow_listed() {
    let p = policy("[actions.restart_service]\nallowed_units = [\"*\"]");
    // One service each pattern of the list names, a glob's `*` made
    // concrete (the socket is refused earlier, as a socket).
    for (pattern, _) in healing_policy::PROTECTED_UNITS
        .iter()
        .filter(|(p, _)| !p.ends_with(".socket"))
    {
        let u = pattern.replace('*', "1.service");
        let u = if u.contains('.') {
            u
        } else {
            format!("{u}.service")
        };
        let u = u.as_str();
        let t = refused_by(permit(&p, &caller(0), &restart(u)), Rule::Protected);
        assert!(t.starts_with(&format!("Unit {u} not allowed")), "{t}");
    }
}

#[test]
fn allowed_units_take_globs() {
    let p = policy("[actions.restart_service]\nallowed_units = [\"app-*.service\", \"nginx\"]");
    assert!(permit(&p, &caller(MONITOR), &restart("app-web.service")).is_ok());
    assert!(permit(&p, &caller(MONITOR), &restart("nginx.service")).is_ok());
    let t = refused_by(
        permit(&p, &caller(MONITOR), &restart("sshd.service")),
        Rule::AllowedUnits,
    );
    assert!(t.contains("not in actions.restart_service.allowed_units"));
}

#[test]
fn only_running_or_failed_units_are_restarted() {
    let p = policy("");
    let c = caller(MONITOR);
    for s in ["active", "activating", "reloading", "deactivating"] {
        match plan(&p, &c, &restart("a.service"), &unit_facts(s)).unwrap() {
            Plan::Restart { failed, .. } => assert!(!failed, "{s}"),
            other => panic!("{other:?}"),
        }
    }
    match plan(&p, &c, &restart("a.service"), &unit_facts("failed")).unwrap() {
        Plan::Restart { failed, .. } => assert!(failed),
        other => panic!("{other:?}"),
    }
    let t = refused_by(
        plan(&p, &c, &restart("a.service"), &unit_facts("inactive")),
        Rule::NotRunning,
    );
    assert!(t.contains("never starts"), "{t}");
    let not_loaded = Facts::Unit(UnitFacts {
        load_state: None,
        active_state: "inactive".into(),
        active_since: None,
    });
    refused_by(
        plan(&p, &c, &restart("a.service"), &not_loaded),
        Rule::NotLoaded,
    );
    let masked = Facts::Unit(UnitFacts {
        load_state: Some("masked".into()),
        active_state: "inactive".into(),
        active_since: None,
    });
    let t = refused_by(
        plan(&p, &c, &restart("a.service"), &masked),
        Rule::NotLoaded,
    );
    assert!(t.contains("masked"));
}

#[test]
fn a_plan_says_what_would_be_done() {
    let p = policy("");
    let pl = plan(
        &p,
        &caller(MONITOR),
        &restart("nginx.service"),
        &unit_facts("active"),
    )
    .unwrap();
    assert_eq!(
        pl.to_string(),
        "restart nginx.service, active since Tue 2026-12-01 09:00:00 UTC"
    );
}

#[test]
fn facts_are_required_for_targeted_actions() {
    let p = policy("[actions.rollback_generation]\nenabled = true");
    let c = caller(MONITOR);
    for a in [
        restart("a.service"),
        Action::KillProcess {
            pid: 5,
            signal: Signal::Term,
        },
        Action::RollbackGeneration,
        Action::CleanNixStore,
    ] {
        assert!(plan(&p, &c, &a, &Facts::None).is_err(), "{a:?}");
    }
    assert_eq!(
        plan(&p, &c, &Action::ClearSystemCache, &Facts::None).unwrap(),
        Plan::Run(healing_policy::ActionName::ClearSystemCache)
    );
}

fn process(uid: u32, unit: Option<&str>) -> Facts {
    Facts::Process(ProcessFacts {
        pid: 4242,
        uids: [uid; 3],
        unit: unit.map(String::from),
        start_time: 777,
        kernel_thread: false,
        comm: "victim".into(),
    })
}

fn kill() -> Action {
    Action::KillProcess {
        pid: 4242,
        signal: Signal::Term,
    }
}

#[test]
fn kill_own_process_or_one_in_an_allowed_unit() {
    let p = policy("[actions.kill_process]\nallowed_units = [\"app-*\"]");
    let c = caller(MONITOR);
    let pl = plan(&p, &c, &kill(), &process(MONITOR, Some("session-3.scope"))).unwrap();
    assert!(
        pl.to_string()
            .contains("send SIGTERM to pid 4242 (victim, uid 1000"),
        "{pl}"
    );
    assert!(plan(&p, &c, &kill(), &process(0, Some("app-web.service"))).is_ok());
    let t = refused_by(
        plan(&p, &c, &kill(), &process(OTHER, Some("session-9.scope"))),
        Rule::NotOwned,
    );
    assert!(t.contains("uid 1001"), "{t}");
    refused_by(
        plan(&p, &c, &kill(), &process(0, Some("sshd.service"))),
        Rule::NotOwned,
    );
    refused_by(plan(&p, &c, &kill(), &process(0, None)), Rule::NotOwned);
}

#[test]
fn kill_needs_every_uid_of_the_target() {
    let p = policy("");
    let mut f = process(MONITOR, None);
    if let Facts::Process(pf) = &mut f {
        pf.uids = [MONITOR, 0, 0]; // a setuid program started by the caller
    }
    refused_by(plan(&p, &caller(MONITOR), &kill(), &f), Rule::NotOwned);
}

#[test]
fn kill_never_reaches_protected_units_or_kernel_threads() {
    let p = policy("[actions.kill_process]\nallowed_units = [\"*\"]");
    for u in [
        "luminous-healing.service",
        "luminous-healing-kill_process.service",
        "systemd-journald.service",
        "dbus.service",
        "systemd-logind.service",
        "systemd-udevd.service",
    ] {
        refused_by(
            plan(&p, &caller(0), &kill(), &process(0, Some(u))),
            Rule::Protected,
        );
    }
    let mut f = process(0, None);
    if let Facts::Process(pf) = &mut f {
        pf.kernel_thread = true;
    }
    refused_by(plan(&p, &caller(0), &kill(), &f), Rule::KernelThread);
}

fn gens(current: Option<u32>, newest: Option<u32>, previous: Option<u32>, busy: bool) -> Facts {
    Facts::Generations(GenerationFacts {
        current,
        newest,
        previous,
        busy,
    })
}

#[test]
fn rollback_is_disabled_by_default() {
    let p = policy("");
    let t = refused_by(
        permit(&p, &caller(0), &Action::RollbackGeneration),
        Rule::Disabled,
    );
    assert!(t.starts_with("Action rollback_generation not allowed"));
}

#[test]
fn rollback_goes_one_step_back_only_and_never_beside_a_gc() {
    let p = policy("[actions.rollback_generation]\nenabled = true");
    let c = caller(0);
    let r = Action::RollbackGeneration;
    assert_eq!(
        plan(&p, &c, &r, &gens(Some(12), Some(12), Some(11), false)).unwrap(),
        Plan::Rollback { from: 12, to: 11 }
    );
    refused_by(
        plan(&p, &c, &r, &gens(Some(11), Some(12), Some(10), false)),
        Rule::AlreadyRolledBack,
    );
    refused_by(
        plan(&p, &c, &r, &gens(Some(12), Some(12), Some(11), true)),
        Rule::Busy,
    );
    refused_by(
        plan(&p, &c, &r, &gens(Some(1), Some(1), None, false)),
        Rule::NoGeneration,
    );
    refused_by(
        plan(&p, &c, &r, &gens(None, Some(3), None, false)),
        Rule::NoGeneration,
    );
}

#[test]
fn gc_keeps_generations_newer_than_the_running_one() {
    let p = policy("");
    let c = caller(0);
    let g = Action::CleanNixStore;
    assert_eq!(
        plan(&p, &c, &g, &gens(Some(12), Some(12), Some(11), false)).unwrap(),
        Plan::CollectGarbage {
            delete_generations: true,
            note: None
        }
    );
    match plan(&p, &c, &g, &gens(Some(11), Some(12), Some(10), false)).unwrap() {
        Plan::CollectGarbage {
            delete_generations,
            note,
        } => {
            assert!(!delete_generations);
            assert!(note.unwrap().contains("older than 12"));
        }
        other => panic!("{other:?}"),
    }
    refused_by(
        plan(&p, &c, &g, &gens(Some(12), Some(12), None, true)),
        Rule::Busy,
    );
}

const RULES: &str = r#"
[callers.monitor]
actions = ["restart_service", "status"]
units = ["app-*"]
[callers."@ops"]
actions = ["kill_process", "clear_system_cache"]
"#;

#[test]
fn a_caller_with_a_rule_gets_exactly_that() {
    let p = policy(RULES);
    let m = caller(MONITOR);
    assert!(permit(&p, &m, &restart("app-web.service")).is_ok());
    let t = refused_by(permit(&p, &m, &restart("nginx.service")), Rule::CallerUnits);
    assert!(t.contains("callers.\"monitor\""), "{t}");
    let t = refused_by(
        permit(&p, &m, &Action::ClearSystemCache),
        Rule::CallerActions,
    );
    assert!(
        t.starts_with("Action clear_system_cache not allowed for uid 1000"),
        "{t}"
    );
}

#[test]
fn group_rules_apply_to_members_without_a_user_rule() {
    let p = policy(RULES);
    let ops = CallerInfo {
        uid: OTHER,
        gid: OTHER,
        groups: vec![OPS_GID, 3000],
    };
    assert!(permit(&p, &ops, &Action::ClearSystemCache).is_ok());
    assert!(permit(&p, &ops, &kill()).is_ok());
    refused_by(
        permit(&p, &ops, &restart("app-web.service")),
        Rule::CallerActions,
    );
    // the user rule is more specific than a group the user is also in
    let monitor_in_ops = CallerInfo {
        uid: MONITOR,
        gid: MONITOR,
        groups: vec![OPS_GID],
    };
    refused_by(
        permit(&p, &monitor_in_ops, &Action::ClearSystemCache),
        Rule::CallerActions,
    );
}

#[test]
fn several_group_rules_add_up() {
    let p = policy(
        r#"
[callers."@ops"]
actions = ["kill_process"]
[callers."@dev"]
actions = ["restart_service"]
units = ["app-*"]
"#,
    );
    let both = member(OTHER, &[OPS_GID, DEV_GID]);
    // each group grants its action; together, both
    assert!(permit(&p, &both, &kill()).is_ok());
    assert!(permit(&p, &both, &restart("app-web.service")).is_ok());
    // the units of the rule that grants restart_service still narrow it
    refused_by(
        permit(&p, &both, &restart("nginx.service")),
        Rule::CallerUnits,
    );
    refused_by(
        permit(&p, &both, &Action::ClearSystemCache),
        Rule::CallerActions,
    );
    refused_by(
        permit(&p, &member(OTHER, &[OPS_GID]), &restart("app-web.service")),
        Rule::CallerActions,
    );
}

#[test]
fn callers_without_a_rule_keep_every_enabled_action() {
    let p = policy(RULES);
    let plain = caller(4000);
    assert!(permit(&p, &plain, &restart("nginx.service")).is_ok());
    assert!(permit(&p, &plain, &Action::ClearSystemCache).is_ok());
    refused_by(
        permit(&p, &plain, &Action::RollbackGeneration),
        Rule::Disabled,
    );
}

#[test]
fn status_is_open_to_every_caller_and_pause_to_root_only() {
    let p = policy("[callers.monitor]\nactions = [\"clear_system_cache\"]");
    assert!(permit(&p, &caller(MONITOR), &Action::Status).is_ok());
    for a in [Action::Pause { reason: None }, Action::Resume] {
        refused_by(permit(&p, &caller(MONITOR), &a), Rule::RootOnly);
        assert!(permit(&p, &caller(0), &a).is_ok());
    }
}

#[test]
fn unknown_names_are_start_up_errors() {
    let c = Config::parse("[callers.nobody]\nactions = [\"status\"]").unwrap();
    let e = Policy::from_config(&c, &user, &group).unwrap_err().0;
    assert!(e.contains("no user named \"nobody\""), "{e}");
    let c = Config::parse("[callers.\"@nogroup\"]\nactions = [\"status\"]").unwrap();
    let e = Policy::from_config(&c, &user, &group).unwrap_err().0;
    assert!(e.contains("no group named \"nogroup\""), "{e}");
}

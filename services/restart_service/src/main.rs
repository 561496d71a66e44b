//! `restart_service`: RestartUnit over systemd's D-Bus API, then waits for
//! the job's JobRemoved signal and reports its result.
//!
//! Privilege: root uid with no capabilities. systemd authorizes manager
//! calls by the caller's uid (0 may do anything, anyone else goes to polkit),
//! not by capabilities, so an empty bounding set loses nothing; a non-root
//! user, whatever capabilities it held, would be refused. Landlock: nothing
//! but the system bus socket (connecting to a path-named socket is not a
//! file access landlock mediates, but naming it keeps the rule list the
//! exact list of what the action touches).

use healing_activation::worker::{run_worker, PathRule, Ruleset, WorkerSpec};
use healing_auth::Peer;
use healing_policy::{validate_unit_name, Action, ActionName, Config};
use healing_protocol::{ActionReply, Caller};
use healing_systemd::RestartError;
use std::process::ExitCode;
use std::time::Duration;

const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

static SPEC: WorkerSpec = WorkerSpec {
    action: ActionName::RestartService,
    capabilities: &[],
    landlock: ruleset,
};

fn ruleset(_: &Config) -> Ruleset {
    Ruleset::new(vec![PathRule::ro(SYSTEM_BUS)])
}

/// Units this service refuses whatever the allow-list says: restarting the
/// executor's own units would stop the very process waiting for the job (or
/// the dispatcher waiting for us), and the caller would get a broken
/// connection instead of an answer.
fn is_own_unit(unit: &str) -> bool {
    unit.starts_with("luminous-healing.") || unit.starts_with("luminous-healing-")
}

/// Checks `unit` (already normalized by the schema) against the config's
/// allow-list, whose entries are normalized the same way, so "nginx" in the
/// config matches a request for "nginx.service" and the reverse.
fn check_allowed(unit: &str, allowed: Option<&[String]>) -> Result<(), String> {
    if is_own_unit(unit) {
        return Err(format!(
            "unit {unit} belongs to luminous-healing itself and cannot be restarted through it"
        ));
    }
    let Some(list) = allowed else {
        return Ok(());
    };
    if list
        .iter()
        .any(|a| validate_unit_name(a).as_deref() == Ok(unit))
    {
        Ok(())
    } else {
        Err(format!(
            "unit {unit} is not in actions.restart_service.allowed_units"
        ))
    }
}

/// The time to wait for the job: a second less than the worker's own limit,
/// so the caller gets systemd's job path and "timeout" from us rather than
/// the worker's generic message.
fn job_timeout(config: &Config) -> Duration {
    let secs = config.action_timeout_secs(ActionName::RestartService);
    Duration::from_secs(secs.saturating_sub(1).max(1))
}

fn handle(action: &Action, _: &Caller, _: &Peer, config: &Config) -> ActionReply {
    let Action::RestartService { unit } = action else {
        return ActionReply::failed(format!(
            "restart_service cannot perform {:?}",
            action.name()
        ));
    };
    if let Err(e) = check_allowed(unit, config.allowed_units()) {
        return ActionReply::failed(e);
    }
    match healing_systemd::restart_and_wait(unit, job_timeout(config)) {
        Ok(outcome) if outcome.succeeded() => ActionReply::ok(outcome.to_string()),
        Ok(outcome) => ActionReply::failed(outcome.to_string()),
        // The timeout text already names the unit and the job.
        Err(e @ RestartError::Timeout { .. }) => ActionReply::failed(e.to_string()),
        Err(e) => ActionReply::failed(format!("restart of {unit} failed: {e}")),
    }
}

fn main() -> ExitCode {
    run_worker(&SPEC, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_normalized_names() {
        let list = vec!["nginx".to_string(), "getty@tty1.service".to_string()];
        assert!(check_allowed("nginx.service", Some(&list)).is_ok());
        assert!(check_allowed("getty@tty1.service", Some(&list)).is_ok());
        let e = check_allowed("sshd.service", Some(&list)).unwrap_err();
        assert!(
            e.contains("not in actions.restart_service.allowed_units"),
            "{e}"
        );
        assert!(check_allowed("sshd.service", None).is_ok());
    }

    #[test]
    fn own_units_are_refused_even_when_allow_listed() {
        let list = vec!["luminous-healing.service".to_string()];
        assert!(check_allowed("luminous-healing.service", Some(&list)).is_err());
        assert!(check_allowed("luminous-healing-restart_service.service", None).is_err());
        assert!(check_allowed("luminous-healing.socket", None).is_err());
        assert!(check_allowed("luminous-healingd.service", None).is_ok());
    }

    #[test]
    fn job_wait_is_shorter_than_the_worker_limit() {
        let c = Config::default();
        assert_eq!(job_timeout(&c), Duration::from_secs(29));
        let c = Config::parse("[actions.restart_service]\ntimeout_secs = 1").unwrap();
        assert_eq!(job_timeout(&c), Duration::from_secs(1));
    }
}

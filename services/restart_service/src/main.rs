//! `restart_service`: restarts a service that is running or failed, over
//! systemd's D-Bus API, then waits for the job's JobRemoved signal and
//! reports its result.
//!
//! Privilege: root uid with no capabilities. systemd authorizes manager
//! calls by the caller's uid (0 may do anything, anyone else goes to polkit),
//! not by capabilities, so an empty bounding set loses nothing; a non-root
//! user, whatever capabilities it held, would be refused. Landlock: nothing
//! but the system bus socket (connecting to a path-named socket is not a
//! file access landlock mediates, but naming it keeps the rule list the
//! exact list of what the action touches).
//!
//! Authorization (healing_policy::authorize) runs again here with the unit's
//! LoadState and ActiveState read from the manager just before the call. A
//! running unit is restarted with TryRestartUnit, which does nothing if the
//! unit stopped in between, so the check cannot be raced into a start; only
//! a failed unit gets RestartUnit.

use healing_activation::worker::{run_worker, Env, Gate, Job};
use healing_policy::params::RestartService;
use healing_policy::{ActionName, Config, Facts, Plan, UnitFacts};
use healing_protocol::ActionReply;
use healing_systemd::{Mode, RestartError};
use std::process::ExitCode;
use std::time::Duration;

/// The time to wait for the job: a second less than the worker's own limit,
/// so the caller gets systemd's job path and "timeout" from us rather than
/// the worker's generic message.
fn job_timeout(config: &Config) -> Duration {
    let secs = config.action_timeout_secs(ActionName::RestartService);
    Duration::from_secs(secs.saturating_sub(1).max(1))
}

/// The unit as the manager sees it now. `GetUnit` never loads a unit file
/// just because we asked, so a unit nobody loaded reads as "not loaded".
fn facts(unit: &str) -> Result<Facts, String> {
    match healing_systemd::unit_state_of(unit) {
        Ok(Some(s)) => Ok(Facts::Unit(UnitFacts {
            load_state: Some(s.load_state),
            active_state: s.active_state,
            active_since: s.active_since,
        })),
        Ok(None) => Ok(Facts::Unit(UnitFacts {
            load_state: None,
            active_state: "inactive".into(),
            active_since: None,
        })),
        Err(e) => Err(format!("cannot read the state of {unit}: {e}")),
    }
}

fn handle(job: &Job<RestartService>, env: &Env) -> ActionReply {
    // The schema and the dispatcher's permit stage already checked the name;
    // permit runs again inside gate, before the bus is touched.
    if let Err(r) = healing_policy::permit(&env.policy, &job.caller_info(), &job.action) {
        return ActionReply::failed(
            healing_protocol::Refusal::Policy {
                text: r.to_string(),
            }
            .to_string(),
        );
    }
    let facts = match facts(&job.params.unit) {
        Ok(f) => f,
        Err(e) => return ActionReply::failed(e),
    };
    let (unit, failed) = match env.gate(job, &facts) {
        Gate::Reply(r) => return r,
        Gate::Act(Plan::Restart { unit, failed, .. }) => (unit, failed),
        Gate::Act(other) => return ActionReply::failed(format!("unexpected plan: {other}")),
    };
    let mode = if failed {
        Mode::Restart
    } else {
        Mode::TryRestart
    };
    match healing_systemd::restart_with(&unit, mode, job_timeout(&env.config)) {
        // TryRestartUnit on a unit that stopped meanwhile is a "done" no-op:
        // say that nothing was started rather than claim a restart.
        Ok(o) if o.succeeded() && mode == Mode::TryRestart && o.active_state == "inactive" => {
            ActionReply::failed(format!(
                "{unit} stopped before the restart ran; it was not started ({o})"
            ))
        }
        Ok(o) if o.succeeded() => ActionReply::ok(o.to_string()),
        Ok(o) => ActionReply::failed(o.to_string()),
        // The timeout text already names the unit and the job.
        Err(e @ RestartError::Timeout { .. }) => ActionReply::failed(e.to_string()),
        Err(e) => ActionReply::failed(format!("restart of {unit} failed: {e}")),
    }
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_wait_is_shorter_than_the_worker_limit() {
        let c = Config::default();
        assert_eq!(job_timeout(&c), Duration::from_secs(29));
        let c = Config::parse("[actions.restart_service]\ntimeout_secs = 1").unwrap();
        assert_eq!(job_timeout(&c), Duration::from_secs(1));
    }
}

//! `restart_network`: restarts the network manager that is running.
//!
//! Which one: NetworkManager.service and systemd-networkd.service are asked
//! for their ActiveState (GetUnit, which loads nothing). Every one of them
//! that is running is restarted, NetworkManager first; normally exactly one
//! is. If neither runs, nothing is restarted and the request fails: starting
//! a network manager the administrator left off is a configuration change,
//! not a repair, and could fight whatever does manage the network (ifupdown,
//! a static setup).
//!
//! Privilege and landlock: as restart_service (root uid, no capabilities,
//! the system bus only).

use healing_activation::worker::{run_worker, Env, Gate, Job};
use healing_policy::params::RestartNetwork;
use healing_policy::{ActionName, Facts};
use healing_protocol::ActionReply;
use healing_systemd::{restart_and_wait, unit_state_of, RestartError, UnitState};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// In the order they are restarted.
const CANDIDATES: [&str; 2] = ["NetworkManager.service", "systemd-networkd.service"];

/// Picks the units to restart from their states (`None` = not loaded).
fn choose<'a>(states: &[(&'a str, Option<UnitState>)]) -> Result<Vec<&'a str>, String> {
    let running: Vec<&str> = states
        .iter()
        .filter(|(_, s)| s.as_ref().is_some_and(UnitState::is_running))
        .map(|(u, _)| *u)
        .collect();
    if running.is_empty() {
        let seen: Vec<String> = states
            .iter()
            .map(|(u, s)| match s {
                Some(s) if s.load_state == "not-found" => format!("{u} is not installed"),
                Some(s) => format!("{u} is {}", s.active_state),
                None => format!("{u} is not loaded"),
            })
            .collect();
        return Err(format!(
            "no network manager is running ({}); nothing restarted",
            seen.join(", ")
        ));
    }
    Ok(running)
}

fn restart_network(total: Duration) -> Result<String, String> {
    let deadline = Instant::now() + total;
    let mut states = Vec::new();
    for u in CANDIDATES {
        let s = unit_state_of(u).map_err(|e| format!("cannot ask systemd about {u}: {e}"))?;
        states.push((u, s));
    }
    let mut report = Vec::new();
    for unit in choose(&states)? {
        let left = deadline.saturating_duration_since(Instant::now());
        match restart_and_wait(unit, left) {
            Ok(o) if o.succeeded() => report.push(o.to_string()),
            Ok(o) => {
                report.push(o.to_string());
                return Err(report.join("\n"));
            }
            Err(e @ RestartError::Timeout { .. }) => {
                report.push(e.to_string());
                return Err(report.join("\n"));
            }
            Err(e) => {
                report.push(format!("restart of {unit} failed: {e}"));
                return Err(report.join("\n"));
            }
        }
    }
    Ok(report.join("\n"))
}

fn handle(job: &Job<RestartNetwork>, env: &Env) -> ActionReply {
    if let Gate::Reply(r) = env.gate(job, &Facts::None) {
        return r;
    }
    let config = &env.config;
    // A second under the worker's limit, so our "timeout" with the job path
    // reaches the caller rather than the worker's generic message.
    let secs = config.action_timeout_secs(ActionName::RestartNetwork);
    restart_network(Duration::from_secs(secs.saturating_sub(1).max(1))).into()
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(active: &str) -> Option<UnitState> {
        Some(UnitState {
            load_state: "loaded".into(),
            active_state: active.into(),
            active_since: None,
        })
    }

    #[test]
    fn restarts_only_what_runs() {
        let nm = CANDIDATES[0];
        let nd = CANDIDATES[1];
        assert_eq!(choose(&[(nm, None), (nd, st("active"))]).unwrap(), [nd]);
        assert_eq!(
            choose(&[(nm, st("active")), (nd, st("inactive"))]).unwrap(),
            [nm]
        );
        assert_eq!(
            choose(&[(nm, st("active")), (nd, st("reloading"))]).unwrap(),
            [nm, nd]
        );
        let e = choose(&[(nm, None), (nd, st("failed"))]).unwrap_err();
        let missing = Some(UnitState {
            load_state: "not-found".into(),
            active_state: "inactive".into(),
            active_since: None,
        });
        let e2 = choose(&[(nm, missing), (nd, st("inactive"))]).unwrap_err();
        assert!(
            e2.contains("NetworkManager.service is not installed"),
            "{e2}"
        );
        assert!(e.contains("NetworkManager.service is not loaded"), "{e}");
        assert!(e.contains("systemd-networkd.service is failed"), "{e}");
    }
}

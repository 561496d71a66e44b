//! `kill_process`: sends TERM, KILL, HUP or INT to one process.
//!
//! Privilege: a non-root dynamic user with `CAP_KILL` as its only capability
//! (ambient), because signalling another user's process needs CAP_KILL even
//! as root, and nothing else is needed. Landlock: no path at all, and the
//! signal scope is left open (it is the one thing this action must do).
//!
//! Refused, on top of the schema's `pid > 1` and signal allow-list: this
//! process itself and the dispatcher (the peer of the connection), so a
//! request can never cut the service path it came through. A caller may
//! signal its own processes: stopping one's own runaway is the point.

use healing_activation::worker::{run_worker, Capability, Env, Job, Ruleset, WorkerSpec};
use healing_policy::{Action, ActionName, Config, Signal};
use healing_protocol::ActionReply;
use nix::errno::Errno;
use nix::sys::signal;
use nix::unistd::Pid;
use std::process::ExitCode;

static SPEC: WorkerSpec = WorkerSpec {
    action: ActionName::KillProcess,
    capabilities: &[Capability::CAP_KILL],
    landlock: ruleset,
};

fn ruleset(_: &Config) -> Ruleset {
    Ruleset {
        paths: vec![],
        allow_signals: true,
    }
}

/// Why a pid is refused before any signal is sent, or `None`.
fn refusal(pid: i32, own: i32, dispatcher: i32) -> Option<String> {
    if pid <= 1 {
        Some(format!("pid {pid} refused: must be greater than 1"))
    } else if pid == own {
        Some(format!(
            "pid {pid} refused: it is the kill_process service itself"
        ))
    } else if pid == dispatcher {
        Some(format!(
            "pid {pid} refused: it is the luminous-healing dispatcher"
        ))
    } else {
        None
    }
}

fn send(pid: i32, sig: Signal, dispatcher: i32) -> ActionReply {
    let own = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    if let Some(why) = refusal(pid, own, dispatcher) {
        return ActionReply::failed(why);
    }
    let nsig = match signal::Signal::try_from(sig.number()) {
        Ok(s) => s,
        Err(e) => return ActionReply::failed(format!("signal {}: {e}", sig.as_str())),
    };
    match signal::kill(Pid::from_raw(pid), nsig) {
        Ok(()) => ActionReply::ok(format!(
            "sent SIG{} ({}) to pid {pid}",
            sig.as_str(),
            sig.number()
        )),
        Err(Errno::ESRCH) => ActionReply::failed(format!("no process with pid {pid}")),
        Err(Errno::EPERM) => ActionReply::failed(format!(
            "not permitted to signal pid {pid} (is CAP_KILL missing?)"
        )),
        Err(e) => ActionReply::failed(format!("kill({pid}, SIG{}): {e}", sig.as_str())),
    }
}

fn handle(job: &Job, _env: &Env) -> ActionReply {
    let action = &job.action;
    let dispatcher = &job.dispatcher;
    match action {
        Action::KillProcess { pid, signal } => send(*pid, *signal, dispatcher.pid),
        other => ActionReply::failed(format!("kill_process cannot perform {:?}", other.name())),
    }
}

fn main() -> ExitCode {
    run_worker(&SPEC, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals() {
        assert!(refusal(1, 500, 600).is_some());
        assert!(refusal(0, 500, 600).is_some());
        assert!(refusal(-3, 500, 600).is_some());
        assert!(refusal(500, 500, 600).unwrap().contains("itself"));
        assert!(refusal(600, 500, 600).unwrap().contains("dispatcher"));
        assert!(refusal(700, 500, 600).is_none());
    }

    #[test]
    fn signals_a_child_and_names_the_signal() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let r = send(pid, Signal::Term, 1);
        assert!(r.success, "{r:?}");
        assert_eq!(r.output.unwrap(), format!("sent SIGTERM (15) to pid {pid}"));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(15));
        let r = send(pid, Signal::Kill, 1);
        assert!(r.error.unwrap().contains("no process"));
        let me = std::process::id() as i32;
        assert!(send(me, Signal::Term, 1).error.unwrap().contains("itself"));
    }
}

//! `kill_process`: sends TERM, KILL, HUP or INT to one process.
//!
//! Privilege: a non-root dynamic user with `CAP_KILL` as its only capability
//! (ambient), because signalling another user's process needs CAP_KILL even
//! as root, and nothing else is needed. Landlock: read-only `/proc` (the
//! unit mounts it with `ProcSubset=pid`: process directories only), to read
//! the target's facts; the signal scope is left open (it is the one thing
//! this action must do).
//!
//! The target is pinned first: a pidfd is opened for the pid, the facts are
//! read from `/proc/PID` (uids, name, kernel-thread flag, start time, the
//! systemd unit of its cgroup), and then the pidfd must still refer to a
//! live process and the start time must not have changed. A live pidfd
//! means the pid was never free in between, so the facts are those of the
//! process the pidfd holds; the signal goes through that same pidfd, so it
//! reaches that process or none, never a newcomer that got the pid.
//!
//! The policy (healing_policy::authorize) decides with those facts: the
//! caller's own processes (real, effective and saved uid all the caller's),
//! or any process in a unit of `actions.kill_process.allowed_units`; never
//! pid 1, a kernel thread or a process of a protected unit. On top of that,
//! and before anything is read, this process itself and the dispatcher (the
//! peer of the connection) are refused, so a request can never cut the
//! service path it came through.

mod procfs;

use healing_activation::worker::{run_worker, Env, Gate, Job};
use healing_policy::params::KillProcess;
use healing_policy::{Facts, Plan};
use healing_protocol::ActionReply;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use procfs::ReadError;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::ExitCode;

const PROC: &str = "/proc";

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

/// A process file descriptor: it refers to one process for as long as it is
/// open, whatever happens to the number.
struct Pidfd(OwnedFd);

impl Pidfd {
    fn open(pid: i32) -> Result<Pidfd, Errno> {
        // SAFETY: pidfd_open takes two integers and returns a new descriptor
        // or -1; no memory is shared with the kernel.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if rc < 0 {
            return Err(Errno::last());
        }
        let fd = RawFd::try_from(rc).map_err(|_| Errno::EBADF)?;
        // SAFETY: the kernel just returned `fd` as a new descriptor of ours;
        // nothing else owns or closes it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// pidfd_send_signal: `sig` 0 checks existence and permission only.
    fn send(&self, sig: i32) -> Result<(), Errno> {
        // SAFETY: the descriptor is a pidfd we own and keep open for the
        // call; a null siginfo makes the kernel fill in a plain kill(2)-style
        // one (SI_USER); flags must be 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if rc < 0 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    /// A pidfd polls readable once its process has exited (a zombie
    /// included): then its pid may be reused at any time.
    fn exited(&self) -> Result<bool, Errno> {
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::ZERO)?;
        Ok(n > 0)
    }
}

fn gone(pid: i32) -> String {
    format!("no process with pid {pid}")
}

/// Opens the pidfd, reads the facts, and proves they belong to the process
/// the pidfd holds.
fn pin(proc_root: &Path, pid: i32) -> Result<(Pidfd, healing_policy::ProcessFacts), String> {
    let fd = match Pidfd::open(pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Err(gone(pid)),
        // A thread that is not its process's leader: EINVAL before Linux
        // 6.9, ENOENT since; /proc still has an entry for it.
        Err(Errno::EINVAL | Errno::ENOENT) if proc_root.join(pid.to_string()).exists() => {
            return Err(format!(
                "pid {pid} refused: it is a thread, not a process (signal the process it belongs to)"
            ))
        }
        Err(Errno::EINVAL | Errno::ENOENT) => return Err(gone(pid)),
        Err(e) => return Err(format!("cannot open a pidfd for pid {pid}: {e}")),
    };
    let facts = match procfs::read(proc_root, pid) {
        Ok(f) => f,
        Err(ReadError::Gone) => return Err(gone(pid)),
        Err(ReadError::Other(e)) => return Err(e),
    };
    // Still alive now means alive all along since pidfd_open: the pid was
    // never free to be reused, so what we read was this process.
    match fd.exited() {
        Ok(false) => {}
        Ok(true) => return Err(format!("{} (it exited while being looked at)", gone(pid))),
        Err(e) => return Err(format!("cannot poll the pidfd of pid {pid}: {e}")),
    }
    match procfs::read_stat(proc_root, pid) {
        Ok(s) if s.start_time == facts.start_time => {}
        Ok(_) => {
            return Err(format!(
                "pid {pid} refused: it changed hands while being looked at (another start time)"
            ))
        }
        Err(ReadError::Gone) => return Err(gone(pid)),
        Err(ReadError::Other(e)) => return Err(e),
    }
    Ok((fd, facts))
}

/// Pins the target, asks the policy, and signals through the pidfd the
/// signal of the plan.
fn send(job: &Job<KillProcess>, env: &Env, proc_root: &Path) -> ActionReply {
    let pid = job.params.pid;
    let own = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    if let Some(why) = refusal(pid, own, job.dispatcher.pid) {
        return ActionReply::failed(why);
    }
    let (fd, facts) = match pin(proc_root, pid) {
        Ok(p) => p,
        Err(e) => return ActionReply::failed(e),
    };
    let (signal, uid) = match env.gate(job, &Facts::Process(facts)) {
        Gate::Reply(r) => return r,
        Gate::Act(Plan::Signal {
            pid: p,
            signal,
            uid,
            ..
        }) if p == pid => (signal, uid),
        Gate::Act(other) => return ActionReply::failed(format!("unexpected plan: {other}")),
    };
    match fd.send(signal.number()) {
        Ok(()) => ActionReply::ok(format!(
            "sent SIG{} ({}) to pid {pid}",
            signal.as_str(),
            signal.number()
        )),
        Err(Errno::ESRCH) => ActionReply::failed(format!("{} (it exited meanwhile)", gone(pid))),
        Err(Errno::EPERM) => ActionReply::failed(format!(
            "not permitted to signal pid {pid} (uid {uid}): the kill_process service lacks CAP_KILL"
        )),
        Err(e) => ActionReply::failed(format!(
            "pidfd_send_signal(pid {pid}, SIG{}): {e}",
            signal.as_str()
        )),
    }
}

fn handle(job: &Job<KillProcess>, env: &Env) -> ActionReply {
    send(job, env, Path::new(PROC))
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use healing_activation::worker::resolve_policy;
    use healing_auth::Peer;
    use healing_policy::{Action, Config, Signal};
    use healing_protocol::Caller;
    use std::os::unix::process::ExitStatusExt;

    fn me() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    fn env(config: &str) -> Env {
        let config = Config::parse(config).unwrap();
        Env {
            policy: resolve_policy(&config).unwrap(),
            config,
        }
    }

    fn job(uid: u32, pid: i32, signal: Signal, dry_run: bool) -> Job<KillProcess> {
        Job {
            id: "t".into(),
            params: KillProcess { pid, signal },
            action: Action::KillProcess { pid, signal },
            caller: Caller {
                uid,
                gid: uid,
                pid: 1,
                groups: vec![],
            },
            dispatcher: Peer {
                uid: 65534,
                gid: 65534,
                pid: 1,
                groups: vec![],
            },
            dry_run,
        }
    }

    fn run(j: &Job<KillProcess>, e: &Env) -> ActionReply {
        send(j, e, Path::new(PROC))
    }

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

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
    fn facts_of_own_child() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        let (fd, f) = pin(Path::new(PROC), pid).unwrap();
        assert_eq!(f.pid, pid);
        assert_eq!(f.uids, [me(); 3]);
        assert!(!f.kernel_thread);
        assert_eq!(f.comm, "sleep");
        assert!(f.start_time > 0);
        // the start time is the process's, not the moment of reading
        std::thread::sleep(std::time::Duration::from_millis(30));
        let again = procfs::read(Path::new(PROC), pid).unwrap();
        assert_eq!(again.start_time, f.start_time);
        assert_eq!(fd.exited(), Ok(false));
        fd.send(0).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // reaped: the pidfd says so, and still refers to no one else
        assert_eq!(fd.exited(), Ok(true));
        assert_eq!(fd.send(0), Err(Errno::ESRCH));
        assert_eq!(
            pin(Path::new(PROC), pid).err().unwrap(),
            format!("no process with pid {pid}")
        );
    }

    #[test]
    fn zombie_counts_as_exited() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        let fd = Pidfd::open(pid).unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        // not reaped yet: /proc/PID is still there, the pidfd is readable
        let mut waited = 0;
        while fd.exited() != Ok(true) && waited < 200 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        assert_eq!(fd.exited(), Ok(true));
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        assert!(pin(Path::new(PROC), pid)
            .err()
            .unwrap()
            .contains("exited while being looked at"));
        child.wait().unwrap();
    }

    #[test]
    fn kthreadd_is_a_kernel_thread() {
        // pid 2 is kthreadd where the pid namespace is the host's; in a
        // container pid 2 is anything, so only a kthreadd is checked.
        let Ok(stat) = procfs::read_stat(Path::new(PROC), 2) else {
            return;
        };
        if stat.comm == "kthreadd" {
            assert!(stat.kernel_thread());
            let f = procfs::read(Path::new(PROC), 2).unwrap();
            assert!(f.kernel_thread);
            assert_eq!(f.uids, [0, 0, 0]);
            let r = run(&job(0, 2, Signal::Kill, false), &env(""));
            assert!(r.error.unwrap().contains("rule no-kernel-threads"));
        }
    }

    #[test]
    fn signals_own_child_and_names_the_signal() {
        let e = env("");
        let mut child = sleeper();
        let pid = child.id() as i32;
        // a dry run reads the facts and sends nothing
        let r = run(&job(me(), pid, Signal::Term, true), &e);
        assert!(r.success, "{r:?}");
        assert_eq!(
            r.output.unwrap(),
            format!("would send SIGTERM to pid {pid} (sleep, uid {})", me())
        );
        assert_eq!(child.try_wait().unwrap(), None);
        let r = run(&job(me(), pid, Signal::Term, false), &e);
        assert!(r.success, "{r:?}");
        assert_eq!(r.output.unwrap(), format!("sent SIGTERM (15) to pid {pid}"));
        assert_eq!(child.wait().unwrap().signal(), Some(15));
        let r = run(&job(me(), pid, Signal::Kill, false), &e);
        assert_eq!(r.error.unwrap(), format!("no process with pid {pid}"));
        let own = std::process::id() as i32;
        let r = run(&job(me(), own, Signal::Term, false), &e);
        assert!(r.error.unwrap().contains("itself"));
    }

    #[test]
    fn another_callers_process_is_refused_unless_its_unit_is_allowed() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        let other = me().wrapping_add(4242);
        let r = run(&job(other, pid, Signal::Kill, false), &env(""));
        let err = r.error.unwrap();
        assert!(err.contains("rule process-owner"), "{err}");
        assert_eq!(child.try_wait().unwrap(), None);
        // the test's own unit, if it runs in one, allowed by name: allowed
        let unit = procfs::read(Path::new(PROC), pid).unwrap().unit;
        if let Some(u) = unit.filter(|u| healing_policy::protected_reason(u).is_none()) {
            let e = env(&format!("[actions.kill_process]\nallowed_units = [{u:?}]"));
            let r = run(&job(other, pid, Signal::Kill, false), &e);
            assert!(r.success, "{u}: {r:?}");
            assert_eq!(child.wait().unwrap().signal(), Some(9));
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn a_thread_is_not_a_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let err = pin(Path::new(PROC), tid).err().unwrap();
        assert!(err.contains("is a thread"), "{err}");
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn gone_pid_is_a_clear_error() {
        let r = run(&job(me(), 4_000_000, Signal::Term, false), &env(""));
        assert_eq!(r.error.unwrap(), "no process with pid 4000000");
    }
}

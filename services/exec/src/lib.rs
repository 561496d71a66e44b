//! Runs one fixed program for an action: no shell, an explicit argv and
//! environment, stdout and stderr merged in order, and a deadline after
//! which the program's whole process group is killed.
//!
//! Shared by `clean_nix_store` and `rollback_generation`. A crate of its own
//! so the D-Bus actions do not carry process code and these two do not
//! carry zbus.
//!
//! Why a process group: `nixos-rebuild` is a script that starts `nix-env`,
//! `switch-to-configuration` and more; killing only the direct child on
//! timeout would leave those running, still changing the system after the
//! caller was told it timed out.

pub mod generations;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes kept from the start and from the end of the output. The middle of
/// a long run (thousands of "deleting ..." lines) is dropped; the end holds
/// the summary the caller needs.
const KEEP_HEAD: usize = 16 * 1024;
const KEEP_TAIL: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr interleaved as written, lossily decoded, with the
    /// middle cut out (and marked) when longer than KEEP_HEAD + KEEP_TAIL.
    pub output: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// "exit status 3" / "killed by signal 9", for error messages.
    pub fn describe_status(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown exit status".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// The program could not be started (missing, not executable, denied).
    Spawn(String),
    /// The deadline passed; the process group was killed. `output` is what
    /// it had written by then.
    Timeout {
        after: Duration,
        output: String,
    },
    Io(String),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Spawn(e) => f.write_str(e),
            ExecError::Timeout { after, .. } => write!(
                f,
                "timed out after {} s; the process group was killed",
                after.as_secs()
            ),
            ExecError::Io(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ExecError {}

/// Why a run of `shown` did not succeed, for the caller: its exit status
/// and output, or how long it ran before it was killed (`after_timeout`
/// then says what that may have left behind), or why it never started.
/// `Ok` of a successful run is the caller's to describe, not this.
pub fn failure(shown: &str, r: Result<Finished, ExecError>, after_timeout: &str) -> String {
    match r {
        Ok(f) => format!("{shown} failed with {}:\n{}", f.describe_status(), f.output),
        Err(ExecError::Timeout { after, output }) => format!(
            "{shown} did not finish within {} s and was killed{after_timeout}:\n{output}",
            after.as_secs()
        ),
        Err(e) => e.to_string(),
    }
}

/// Runs `program` with exactly `args` and exactly `env` (nothing inherited),
/// stdin from /dev/null, working directory `/`. Waits at most `timeout`.
pub fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Finished, ExecError> {
    let started = Instant::now();
    let (reader, writer) =
        std::io::pipe().map_err(|e| ExecError::Io(format!("cannot create a pipe: {e}")))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| ExecError::Io(format!("cannot duplicate the pipe: {e}")))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        // Its own group (pgid = its pid), so the timeout can kill every
        // descendant with one killpg.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| ExecError::Spawn(format!("cannot run {}: {e}", program.display())))?;
    // `cmd` still holds our copies of the pipe's write end; drop them, or the
    // reader never sees EOF.
    drop(cmd);

    let (tx, rx) = mpsc::channel();
    let collector = std::thread::Builder::new()
        .name("child-output".into())
        .spawn(move || {
            let _ = tx.send(collect(reader));
        });
    if let Err(e) = collector {
        kill_group(child.id());
        let _ = child.wait();
        return Err(ExecError::Io(format!(
            "cannot start the output reader: {e}"
        )));
    }

    let deadline = started + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(ExecError::Io(format!("cannot wait for the program: {e}")));
            }
        }
        if Instant::now() >= deadline {
            kill_group(child.id());
            let _ = child.wait();
            // Descendants got SIGKILL too, so the pipe closes promptly; do
            // not wait forever for one that escaped the group (setsid).
            let output = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
            return Err(ExecError::Timeout {
                after: timeout,
                output,
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // The program exited, but a descendant it left in the background may
    // still hold the pipe: kill the group's remainder so it cannot keep
    // changing the system after we answered, and read what is there.
    kill_group(child.id());
    let output = rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_else(|_| "[output unavailable: a descendant kept the pipe open]".into());
    Ok(Finished {
        status,
        output,
        elapsed: started.elapsed(),
    })
}

fn kill_group(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        // ESRCH (group already gone) is the normal case after a clean exit.
        let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
    }
}

/// Reads to EOF keeping the head and the tail.
fn collect(mut r: impl Read) -> String {
    let mut head: Vec<u8> = Vec::new();
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut dropped: usize = 0;
    let mut buf = [0u8; 8192];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut chunk = &buf[..n];
        if head.len() < KEEP_HEAD {
            let take = (KEEP_HEAD - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        tail.extend(chunk.iter().copied());
        while tail.len() > KEEP_TAIL {
            tail.pop_front();
            dropped += 1;
        }
    }
    let mut out = String::from_utf8_lossy(&head).into_owned();
    if dropped > 0 {
        out.push_str(&format!("\n[... {dropped} bytes of output omitted ...]\n"));
    }
    let tail: Vec<u8> = tail.into_iter().collect();
    out.push_str(&String::from_utf8_lossy(&tail));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh() -> &'static Path {
        Path::new("/bin/sh")
    }

    #[test]
    fn failures_say_how_the_run_ended() {
        let r = run(
            sh(),
            &["-c", "echo no; exit 4"],
            &[],
            Duration::from_secs(5),
        );
        assert_eq!(failure("x", r, ""), "x failed with exit status 4:\nno\n");
        let r = run(
            sh(),
            &["-c", "echo started; sleep 5"],
            &[],
            Duration::from_secs(1),
        );
        let f = failure("x", r, " (a hint)");
        assert!(
            f.starts_with("x did not finish within 1 s and was killed (a hint):\n"),
            "{f}"
        );
        assert!(f.contains("started"), "{f}");
        let r = run(
            Path::new("/nonexistent/x"),
            &[],
            &[],
            Duration::from_secs(1),
        );
        assert!(!failure("x", r, "").starts_with("x "));
    }

    #[test]
    fn argv_env_and_merged_output() {
        let f = run(
            sh(),
            &[
                "-c",
                "echo out; echo err >&2; echo \"$FOO|$HOME|$0|$1\"",
                "zero",
                "a b",
            ],
            &[("FOO", "bar")],
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(f.success());
        assert_eq!(f.output, "out\nerr\nbar||zero|a b\n");
        let f = run(sh(), &["-c", "exit 3"], &[], Duration::from_secs(5)).unwrap();
        assert_eq!(f.describe_status(), "exit status 3");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("lh-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("grandchild-survived");
        let script = format!(
            "(sleep 1; touch {}) & echo started; sleep 30",
            marker.display()
        );
        let t0 = Instant::now();
        let r = run(sh(), &["-c", &script], &[], Duration::from_millis(300));
        match r {
            Err(ExecError::Timeout { output, .. }) => assert_eq!(output, "started\n"),
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!marker.exists(), "a grandchild outlived the timeout");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn background_leftovers_do_not_hang_the_reply() {
        let t0 = Instant::now();
        let f = run(
            sh(),
            &["-c", "sleep 30 & echo done"],
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(f.success());
        assert!(f.output.starts_with("done\n"), "{}", f.output);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let r = run(
            Path::new("/nonexistent/nixos-rebuild"),
            &[],
            &[],
            Duration::from_secs(1),
        );
        assert!(matches!(r, Err(ExecError::Spawn(m)) if m.contains("/nonexistent/nixos-rebuild")));
    }

    #[test]
    fn long_output_keeps_head_and_tail() {
        let f = run(
            sh(),
            &["-c", "echo FIRST; i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done; echo LAST"],
            &[],
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(f.output.starts_with("FIRST\n"));
        assert!(f.output.ends_with("LAST\n"));
        assert!(f.output.contains("bytes of output omitted"));
        assert!(f.output.len() < KEEP_HEAD + KEEP_TAIL + 100);
    }
}

//! Restart a unit through systemd's D-Bus API and wait for the job's result.
//!
//! Shared by the `restart_service` and `restart_network` actions, which must
//! behave identically (same subscription order, same timeout, same result
//! strings). It is a crate of its own rather than a module of
//! `healing-activation` or `healing-sandbox` because only these two actions
//! need D-Bus: the other action binaries must not link zbus.
//!
//! The order matters: the match rule for `JobRemoved` is installed *before*
//! `RestartUnit` is called, because a quick job can finish before the method
//! reply has been read; the signal is then already queued in our stream and
//! is matched by its job path once the reply names it.

use futures_core::Stream;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use zbus_systemd::systemd1::{ManagerProxy, UnitProxy};
use zbus_systemd::zbus;

/// How a restart ended. `result` is systemd's own word for the job
/// (`done`, `failed`, `timeout`, `canceled`, `dependency`, `skipped`,
/// `invalid`, ...), reported verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub unit: String,
    pub job: String,
    pub result: String,
    /// The unit's InvocationID after the job, as 32 hex digits (empty if
    /// the unit has none, e.g. a failed start).
    pub invocation_id: String,
    pub active_state: String,
}

impl JobOutcome {
    pub fn succeeded(&self) -> bool {
        self.result == "done"
    }
}

impl fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restart of {} finished: job {} result={} active_state={}",
            self.unit, self.job, self.result, self.active_state
        )?;
        if !self.invocation_id.is_empty() {
            write!(f, " invocation_id={}", self.invocation_id)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartError {
    /// The system bus could not be reached or a call failed (the text is
    /// systemd's or zbus's error, e.g. "Unit foo.service not found.").
    Bus(String),
    /// The job was queued but did not finish in time. The job keeps running
    /// in systemd: a restart is not something to cancel half-way.
    Timeout {
        unit: String,
        job: String,
        after: Duration,
    },
}

impl fmt::Display for RestartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartError::Bus(e) => f.write_str(e),
            RestartError::Timeout { unit, job, after } => write!(
                f,
                "restart of {unit} (job {job}) did not finish within {} s; result=timeout (the job is still queued in systemd)",
                after.as_secs()
            ),
        }
    }
}

impl std::error::Error for RestartError {}

fn bus(e: zbus::Error) -> RestartError {
    RestartError::Bus(match e {
        // systemd's message is the useful part ("Unit x.service not found.").
        zbus::Error::MethodError(name, Some(msg), _) => format!("{name}: {msg}"),
        other => other.to_string(),
    })
}

/// Restarts `unit` (mode "replace", as `systemctl restart` does) and waits
/// at most `timeout` for its job to be removed. `unit` must already have been
/// validated (`healing_policy::validate_unit_name`).
pub fn restart_and_wait(unit: &str, timeout: Duration) -> Result<JobOutcome, RestartError> {
    zbus::block_on(restart_and_wait_async(unit, Mode::Restart, timeout))
}

/// Which manager call queues the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RestartUnit: starts the unit if it is stopped.
    Restart,
    /// TryRestartUnit: restarts it only if it is running when the job runs,
    /// so a unit that stopped after it was checked is not started.
    TryRestart,
}

/// Like [`restart_and_wait`], with the manager call chosen by `mode`.
pub fn restart_with(unit: &str, mode: Mode, timeout: Duration) -> Result<JobOutcome, RestartError> {
    zbus::block_on(restart_and_wait_async(unit, mode, timeout))
}

async fn restart_and_wait_async(
    unit: &str,
    mode: Mode,
    timeout: Duration,
) -> Result<JobOutcome, RestartError> {
    let deadline = Instant::now() + timeout;
    let conn = zbus::Connection::system().await.map_err(bus)?;
    let manager = ManagerProxy::new(&conn).await.map_err(bus)?;
    // Installs the match rule (AddMatch is awaited) before anything is queued.
    // No Manager.Subscribe() is needed: systemd sends a job's JobRemoved to
    // the bus client that queued it (the job tracks its requester), and
    // Subscribe would make the manager broadcast every unit change to us.
    let mut removed = manager.receive_job_removed().await.map_err(bus)?;
    let job = match mode {
        Mode::Restart => {
            manager
                .restart_unit(unit.to_string(), "replace".to_string())
                .await
        }
        Mode::TryRestart => {
            manager
                .try_restart_unit(unit.to_string(), "replace".to_string())
                .await
        }
    }
    .map_err(bus)?;
    let job_path = job.as_str().to_string();

    let timer = Deadline::after(deadline.saturating_duration_since(Instant::now()));
    let result = loop {
        let next = poll_fn(|cx| {
            // The stream first, so a signal that is already there wins over a
            // deadline that fired at the same moment.
            match Pin::new(&mut removed).poll_next(cx) {
                Poll::Ready(s) => Poll::Ready(Some(s)),
                Poll::Pending => timer.poll(cx).map(|()| None),
            }
        })
        .await;
        match next {
            None => {
                return Err(RestartError::Timeout {
                    unit: unit.to_string(),
                    job: job_path,
                    after: timeout,
                })
            }
            Some(None) => {
                return Err(RestartError::Bus(
                    "the system bus connection closed before the job finished".into(),
                ))
            }
            Some(Some(signal)) => {
                // A signal we cannot decode is someone else's: skip it.
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == job_path {
                    break args.result.to_string();
                }
            }
        }
    };

    let (invocation_id, active_state) = unit_state(&conn, &manager, unit).await;
    Ok(JobOutcome {
        unit: unit.to_string(),
        job: job_path,
        result,
        invocation_id,
        active_state,
    })
}

/// Best effort: the job result is the answer; these only make it readable.
async fn unit_state(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    unit: &str,
) -> (String, String) {
    let Ok(path) = manager.get_unit(unit.to_string()).await else {
        return (String::new(), String::new());
    };
    let Ok(proxy) = UnitProxy::new(conn, path).await else {
        return (String::new(), String::new());
    };
    let id = proxy
        .invocation_id()
        .await
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .unwrap_or_default();
    let state = proxy.active_state().await.unwrap_or_default();
    (id, state)
}

/// Whether a unit is loaded and what its ActiveState is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub load_state: String,
    pub active_state: String,
    /// ActiveEnterTimestamp, as UTC text; `None` if it never was active.
    pub active_since: Option<String>,
}

impl UnitState {
    /// Running or on its way there: the states in which a restart repairs
    /// rather than starts something that was off.
    pub fn is_running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "reloading" | "activating" | "refreshing"
        )
    }
}

/// `GetUnit` + LoadState/ActiveState. `None` when the manager has no such
/// unit loaded (it is then certainly not running); unlike `LoadUnit` this
/// never makes the manager load a unit file just because we asked.
pub fn unit_state_of(unit: &str) -> Result<Option<UnitState>, RestartError> {
    zbus::block_on(async {
        let conn = zbus::Connection::system().await.map_err(bus)?;
        let manager = ManagerProxy::new(&conn).await.map_err(bus)?;
        let path = match manager.get_unit(unit.to_string()).await {
            Ok(p) => p,
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                return Ok(None)
            }
            Err(e) => return Err(bus(e)),
        };
        let proxy = UnitProxy::new(&conn, path).await.map_err(bus)?;
        let since = proxy.active_enter_timestamp().await.map_err(bus)?;
        Ok(Some(UnitState {
            load_state: proxy.load_state().await.map_err(bus)?,
            active_state: proxy.active_state().await.map_err(bus)?,
            active_since: utc_text(since),
        }))
    })
}

/// systemd's microseconds since the epoch as `2026-12-01 09:00:00 UTC`;
/// 0 means never.
fn utc_text(usec: u64) -> Option<String> {
    if usec == 0 {
        return None;
    }
    let micros = i64::try_from(usec).ok()?;
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A future that completes once `duration` has passed. zbus 6 exposes no
/// timer of its own, so a plain thread sleeps and wakes us; it ends by
/// itself after `duration`, whether or not anyone still waits.
struct Deadline {
    shared: Arc<Mutex<(bool, Option<Waker>)>>,
}

impl Deadline {
    fn after(duration: Duration) -> Deadline {
        let shared = Arc::new(Mutex::new((duration.is_zero(), None::<Waker>)));
        if !duration.is_zero() {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("job-deadline".into())
                .spawn(move || {
                    std::thread::sleep(duration);
                    let mut g = s.lock().unwrap_or_else(PoisonError::into_inner);
                    g.0 = true;
                    if let Some(w) = g.1.take() {
                        w.wake();
                    }
                });
            if spawned.is_err() {
                // Without a timer thread we cannot wait safely: time out now
                // rather than risk waiting forever.
                shared.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
            }
        }
        Deadline { shared }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if g.0 {
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_fires_after_its_duration_and_not_before() {
        let t0 = Instant::now();
        let d = Deadline::after(Duration::from_millis(100));
        zbus::block_on(poll_fn(|cx| d.poll(cx)));
        assert!(t0.elapsed() >= Duration::from_millis(100));
        let zero = Deadline::after(Duration::ZERO);
        zbus::block_on(poll_fn(|cx| zero.poll(cx)));
    }

    #[test]
    fn timestamps_read_as_utc() {
        assert_eq!(utc_text(0), None);
        assert_eq!(
            utc_text(1_764_579_600_000_000).as_deref(),
            Some("2025-12-01 09:00:00 UTC")
        );
    }

    #[test]
    fn no_bus_is_an_error_not_a_panic() {
        // Under `cargo test` on a host without a system bus this must come
        // back as Err, quickly; on a host with one it may succeed or be denied.
        let r = unit_state_of("luminous-healing-no-such-unit.service");
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn outcome_text_names_result_and_invocation() {
        let o = JobOutcome {
            unit: "a.service".into(),
            job: "/org/freedesktop/systemd1/job/7".into(),
            result: "done".into(),
            invocation_id: "ab".repeat(16),
            active_state: "active".into(),
        };
        assert!(o.succeeded());
        let s = o.to_string();
        assert!(s.contains("result=done") && s.contains("invocation_id=abab"));
    }
}

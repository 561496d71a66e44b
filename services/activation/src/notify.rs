use sd_notify::NotifyState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// sd_notify is a no-op without NOTIFY_SOCKET (run by hand), and a failed
// notification must never take a request down, so errors are ignored here.

pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(status)]);
}

/// STATUS= at most once a second: every notification costs PID 1 a message
/// to parse (measured: more than the dispatcher's own work per request).
/// `status` is called only when one is due, so a request pays for no text
/// that is thrown away.
pub fn notify_status_throttled(status: impl FnOnce() -> String) {
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let last = LAST_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 1000
        && LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        notify_status(&status());
    }
}

/// One line to stderr (the journal, under systemd) in one write(2): Rust's
/// stderr is unbuffered, so `eprintln!` writes each formatted piece apart.
pub fn log_line(line: &str) {
    use std::io::Write;
    let mut b = Vec::with_capacity(line.len() + 1);
    b.extend_from_slice(line.as_bytes());
    b.push(b'\n');
    let _ = std::io::stderr().write_all(&b);
}

pub fn notify_stopping(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Pings the watchdog at half the interval systemd asked for (WatchdogSec=),
/// from a thread of its own. `healthy` lets the caller withhold the ping when
/// its main loop is stuck, which is the point of a watchdog.
pub fn start_watchdog<F>(healthy: F)
where
    F: Fn() -> bool + Send + 'static,
{
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(100));
    let _ = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || loop {
            if healthy() {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            std::thread::sleep(period);
        });
}

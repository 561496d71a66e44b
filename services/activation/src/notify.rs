use sd_notify::NotifyState;
use std::time::Duration;

// sd_notify is a no-op without NOTIFY_SOCKET (run by hand), and a failed
// notification must never take a request down, so errors are ignored here.

pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(status)]);
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

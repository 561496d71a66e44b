//! Socket activation and lifecycle, shared by the dispatcher and every action
//! service: take the socket systemd passed (Accept=no), or bind a path when
//! run by hand; serve connections from one poll loop and a few handler
//! threads, with per-uid caps and deadlines;
//! return when idle so the process can exit and systemd can start it again.
//! Also the sd_notify side: READY, STATUS, STOPPING and the watchdog.
//! [`worker`] is the whole runtime of an action binary built from these.

mod listener;
mod notify;
mod serve;
pub mod worker;

pub use listener::{bind_path, take_listener, take_named_listeners, ListenerSource};
pub use notify::{
    log_line, notify_ready, notify_status, notify_status_throttled, notify_stopping, start_watchdog,
};
pub use serve::{
    serve, serve_all, Conn, Framing, InlineTest, Refusal, Refused, ServeOptions, Slot,
};

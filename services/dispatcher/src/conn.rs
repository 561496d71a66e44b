//! The dispatcher's half of `healing_activation::serve`: what it runs for a
//! connection, and how it answers the refusals the accept loop decides
//! (too many connections from one uid, no request in time).
//!
//! The loop reads the whole request (incrementally, with the first-byte and
//! request deadlines). A v1/v2 request that names a forwarded action, and
//! every Varlink call, goes to a handler thread: an action may take seconds.
//! Every other request (refusals, status, pause, resume: microseconds,
//! nothing to wait for but local writes) is decided, answered and audited on
//! the loop's own thread, without a hand-off ([`handle::handle_conn`] either
//! way).

use crate::handle::{self, Ctx};
use healing_activation::{notify_status_throttled, Conn, Framing, Refusal, Refused, ServeOptions};
use healing_audit::CallerIds;
use healing_policy::ActionName;
use healing_protocol::{encode_response, errors, ReadError, Response};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The v1/v2 JSON protocol (`luminous-healing.socket`).
    Json,
    /// io.luminous.Healing (`luminous-healing-varlink.socket`).
    Varlink,
}

impl Kind {
    pub fn framing(self) -> Framing {
        match self {
            Kind::Json => Framing::Json,
            Kind::Varlink => Framing::Varlink,
        }
    }
}

/// Handler threads at most (two at once, more only for a request queued
/// 50 ms): a forwarded request may wait seconds for its action,
/// status and refusals take microseconds; requests beyond this many queue.
const WORKERS: usize = 8;

pub fn options(ctx: &Ctx, idle: Duration) -> ServeOptions {
    ServeOptions {
        idle,
        workers: WORKERS,
        read_request: true,
        inline: Some(answered_on_the_loop),
        ..ServeOptions::from_config(&ctx.config)
    }
}

/// Whether the loop's thread answers a request itself: not a Varlink call
/// (it has a `method`; its handler keeps the connection), nor a v1/v2
/// request naming a forwarded action, the only ones that wait on another
/// process.
fn answered_on_the_loop(request: &Result<Value, ReadError>) -> bool {
    let Ok(v) = request else { return true };
    if v.get("method").is_some() {
        return false;
    }
    let forwarded = v
        .get("action")
        .and_then(Value::as_str)
        .and_then(ActionName::from_wire)
        .is_some_and(|a| a.is_forwarded());
    !forwarded
}

/// `kinds[i]` is the protocol of the listener with index `i`.
pub fn handler(ctx: Arc<Ctx>, kinds: Vec<Kind>) -> impl Fn(Conn) + Send + Sync + 'static {
    move |conn: Conn| {
        match kinds.get(conn.listener) {
            Some(Kind::Varlink) => crate::varlink::handle_conn(&ctx, conn),
            _ => handle::handle_conn(&ctx, conn),
        }
        status(&ctx);
    }
}

fn status(ctx: &Ctx) {
    notify_status_throttled(|| {
        format!(
            "{} requests handled, {} denied",
            ctx.handled.load(Ordering::Relaxed),
            ctx.denied.load(Ordering::Relaxed)
        )
    });
}

/// A refusal from the accept loop: a v1 reply (on the Varlink socket, a
/// Varlink error, or nothing when no call arrived), and one audit decision
/// as for any other refused request.
pub fn refusal(ctx: &Ctx, kinds: &[Kind], r: &Refused<'_>) -> Vec<u8> {
    let caller = CallerIds {
        uid: r.peer.map(|p| p.uid),
        gid: r.peer.map(|p| p.gid),
        pid: r.peer.map(|p| p.pid),
    };
    let uid = caller.uid.map_or_else(|| "?".into(), |u| u.to_string());
    let (error, reason) = match r.reason {
        // What handle::handle says when its own read times out.
        Refusal::Timeout => (
            errors::INVALID_FORMAT.to_string(),
            ReadError::Timeout.to_string(),
        ),
        Refusal::TooManyFromUid { limit } => (
            "Too many connections".to_string(),
            format!("uid {uid} already holds {limit} open connections (max_connections_per_uid)"),
        ),
        Refusal::NotAllowed => (
            "Caller not allowed".to_string(),
            format!("uid {uid} may not connect"),
        ),
    };
    let duration_ms = u64::try_from(r.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
    ctx.denied.fetch_add(1, Ordering::Relaxed);
    // Refused before authentication: folded per uid like the others.
    ctx.fold.add(&caller, errors::UNKNOWN_ID, "", &reason, "");
    if kinds.get(r.listener) == Some(&Kind::Varlink) {
        return crate::varlink::loop_refusal(r.reason, &reason);
    }
    encode_response(&Response {
        request_id: errors::UNKNOWN_ID.to_string(),
        success: false,
        output: None,
        error: Some(error),
        duration_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forwarded_actions_and_varlink_calls_leave_the_loop() {
        let v = |s: &str| Ok(serde_json::from_str::<Value>(s).unwrap());
        assert!(!answered_on_the_loop(&v(
            r#"{"action": "adjust_swappiness"}"#
        )));
        assert!(!answered_on_the_loop(&v(
            r#"{"action": "restart_service"}"#
        )));
        assert!(!answered_on_the_loop(&v(
            r#"{"method": "io.luminous.Healing.Status"}"#
        )));
        assert!(answered_on_the_loop(&v(r#"{"action": "status"}"#)));
        assert!(answered_on_the_loop(&v(r#"{"action": "reboot"}"#)));
        assert!(answered_on_the_loop(&v(r#"{"action": 7}"#)));
        assert!(answered_on_the_loop(&v("[]")));
        assert!(answered_on_the_loop(&Err(ReadError::Timeout)));
    }
}

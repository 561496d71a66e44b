//! One connection: read one request, run the pipeline, reply, audit.
//!
//! Every request is accounted for in the journal: an authenticated request
//! gets its own decision record; a refusal before authentication (malformed,
//! no or bad signature, caller not allowed, too many connections) is folded
//! per caller uid into one record a second ([`crate::fold`]), which carries
//! HEALING_COUNT. The reply goes out before the record, so a slow journal
//! never delays a caller, and a refusal is answered even with no journal.

use crate::fold::Fold;
use crate::identity::Allowed;
use crate::pipeline::{decide, Verdict};
use crate::state::Store;
use healing_audit::{CallerIds, Decision, Outcome};
use healing_auth::{Peer, Secret};
use healing_policy::{Config, Policy, Protocol};
use healing_protocol::{encode_response, errors, parse_request, ReadError, Refusal, Response};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub struct Ctx {
    pub config: Config,
    pub policy: Policy,
    pub secret: Secret,
    pub allowed: Allowed,
    pub store: Mutex<Store>,
    pub socket_dir: PathBuf,
    pub handled: AtomicU64,
    pub denied: AtomicU64,
    /// A journal is there: the accepted record must reach it.
    pub audit_required: bool,
    pub fold: Fold,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as `2026-12-01 09:00:00 UTC`.
pub fn utc_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// What one request was, for its reply and its record.
pub struct Handled {
    pub request_id: String,
    pub action: String,
    pub parameters: String,
    pub protocol: &'static str,
    pub dry_run: bool,
    pub verdict: Verdict,
}

/// Parses and decides one request read from a connection.
pub fn decide_bytes(
    ctx: &Ctx,
    value: Result<serde_json::Value, ReadError>,
    peer: Option<&Peer>,
) -> Handled {
    let malformed = |reason: String| Handled {
        request_id: errors::UNKNOWN_ID.to_string(),
        action: String::new(),
        parameters: "{}".to_string(),
        protocol: "",
        dry_run: false,
        verdict: Verdict {
            unauthenticated: true,
            ..Verdict::deny(Refusal::InvalidFormat, reason)
        },
    };
    let value = match value {
        Ok(v) => v,
        Err(ReadError::Incomplete) => {
            return malformed("connection closed without a request".to_string())
        }
        Err(e) => return malformed(e.to_string()),
    };
    let req = match parse_request(value) {
        Ok(r) => r,
        Err(reason) => return malformed(format!("{}: {reason}", errors::INVALID_FORMAT)),
    };
    let verdict = match peer {
        None => Verdict {
            unauthenticated: true,
            ..Verdict::deny(
                Refusal::CallerNotAllowed,
                "no peer credentials on the socket",
            )
        },
        Some(p) => decide(ctx, &req, p, now_ms()),
    };
    Handled {
        parameters: serde_json::to_string(&req.parameters).unwrap_or_else(|_| "{}".into()),
        protocol: req.version.as_str(),
        dry_run: req.dry_run,
        request_id: req.id,
        action: req.action,
        verdict,
    }
}

/// A connection whose request the accept loop has read already.
pub fn handle_conn(ctx: &Ctx, c: healing_activation::Conn) {
    let value = c
        .request
        .unwrap_or_else(|| Err(ReadError::Io("the request was not read".into())));
    respond(ctx, c.stream, c.accepted, c.peer, value);
}

fn respond(
    ctx: &Ctx,
    mut stream: UnixStream,
    t0: Instant,
    peer: Option<Peer>,
    value: Result<serde_json::Value, ReadError>,
) {
    let h = decide_bytes(ctx, value, peer.as_ref());
    let duration_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let response = Response {
        request_id: h.request_id.clone(),
        success: h.verdict.outcome == Outcome::Success,
        output: h.verdict.output.clone(),
        error: h.verdict.error.clone(),
        duration_ms,
    };
    // The reply may fail to arrive (the client left); the decision stands and
    // is audited either way.
    let _ = stream.write_all(&encode_response(&response));
    drop(stream);
    account(ctx, &h, peer.as_ref(), duration_ms);
}

/// The decision record of one request, or its share of a folded one.
pub fn account(ctx: &Ctx, h: &Handled, peer: Option<&Peer>, duration_ms: u64) {
    match h.verdict.outcome {
        Outcome::Denied => ctx.denied.fetch_add(1, Ordering::Relaxed),
        _ => ctx.handled.fetch_add(1, Ordering::Relaxed),
    };
    let caller = CallerIds {
        uid: peer.map(|p| p.uid),
        gid: peer.map(|p| p.gid),
        pid: peer.map(|p| p.pid),
    };
    if h.verdict.unauthenticated {
        ctx.fold.add(
            &caller,
            &h.request_id,
            &h.action,
            &h.verdict.reason,
            h.protocol,
        );
        return;
    }
    healing_audit::decision(&Decision {
        request_id: &h.request_id,
        action: &h.action,
        outcome: h.verdict.outcome,
        reason: &h.verdict.reason,
        caller: &caller,
        duration_ms,
        parameters: &h.parameters,
        protocol: h.protocol,
        dry_run: h.dry_run,
        count: 1,
    });
}

/// The status reply's keys, each struct's in the order serde_json's map
/// sorted them when this was built as a `serde_json::Value`, so the text is
/// byte for byte what it was. Serialized directly: building the `Value` tree
/// (a map per action, then the text, then freeing it all) was measured at a
/// quarter of the dispatcher's CPU per status request.
#[derive(serde::Serialize)]
struct Budget {
    limit: u32,
    remaining: u32,
    window_secs: u64,
}

#[derive(serde::Serialize)]
struct CallerBudget {
    limit: u32,
    remaining: u32,
    uid: u32,
    window_secs: u64,
}

#[derive(serde::Serialize)]
struct PausedBy<'a> {
    by_uid: u32,
    reason: &'a str,
    since: String,
}

#[derive(serde::Serialize)]
struct StatusReply<'a> {
    actions: std::collections::BTreeMap<&'static str, Budget>,
    audit: &'static str,
    caller: CallerBudget,
    paused: Option<PausedBy<'a>>,
    protocols: Vec<&'static str>,
    replay_cache_entries: usize,
    status: Budget,
    version: &'static str,
}

pub fn status(ctx: &Ctx, store: &mut Store, uid: u32, now: i64) -> String {
    let actions = healing_policy::ALL_ACTIONS
        .iter()
        .filter(|a| a.is_forwarded() && ctx.config.action_enabled(**a))
        .map(|a| {
            let l = ctx.config.action_rate_limit(*a);
            let remaining = store.remaining(a.as_str(), (l.max, l.window_secs), now);
            (
                a.as_str(),
                Budget {
                    limit: l.max,
                    remaining,
                    window_secs: l.window_secs,
                },
            )
        })
        .collect();
    let cl = ctx.config.caller_rate_limit;
    let sl = ctx.config.status_rate_limit;
    let paused = store.paused().cloned();
    let reply = StatusReply {
        actions,
        audit: if ctx.audit_required {
            "journal"
        } else {
            "stderr (no journal on this host)"
        },
        caller: CallerBudget {
            limit: cl.max,
            remaining: store.remaining_caller(uid, (cl.max, cl.window_secs), now),
            uid,
            window_secs: cl.window_secs,
        },
        paused: paused.as_ref().map(|p| PausedBy {
            by_uid: p.uid,
            reason: &p.reason,
            since: utc_text(p.since),
        }),
        protocols: ctx
            .config
            .protocols
            .iter()
            .map(|p| match p {
                Protocol::V1 => "v1",
                Protocol::V2 => "v2",
            })
            .collect(),
        replay_cache_entries: store.seen_count(),
        status: Budget {
            limit: sl.max,
            remaining: store.remaining_status(uid, (sl.max, sl.window_secs), now),
            window_secs: sl.window_secs,
        },
        version: env!("CARGO_PKG_VERSION"),
    };
    // Plain structs, strings and numbers: serializing them cannot fail.
    serde_json::to_string(&reply).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply as it was built before (a serde_json::Value), for comparison.
    fn status_as_value(ctx: &Ctx, store: &mut Store, uid: u32, now: i64) -> String {
        let actions: serde_json::Map<String, serde_json::Value> = healing_policy::ALL_ACTIONS
            .iter()
            .filter(|a| a.is_forwarded() && ctx.config.action_enabled(**a))
            .map(|a| {
                let l = ctx.config.action_rate_limit(*a);
                let left = store.remaining(a.as_str(), (l.max, l.window_secs), now);
                (
                    a.as_str().to_string(),
                    serde_json::json!({"remaining": left, "limit": l.max, "window_secs": l.window_secs}),
                )
            })
            .collect();
        let cl = ctx.config.caller_rate_limit;
        let sl = ctx.config.status_rate_limit;
        let paused = store.paused().map(
            |p| serde_json::json!({"by_uid": p.uid, "since": utc_text(p.since), "reason": p.reason}),
        );
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "protocols": ctx.config.protocols.iter().map(|p| match p { Protocol::V1 => "v1", Protocol::V2 => "v2" }).collect::<Vec<_>>(),
            "actions": actions,
            "caller": {"uid": uid, "remaining": store.remaining_caller(uid, (cl.max, cl.window_secs), now), "limit": cl.max, "window_secs": cl.window_secs},
            "status": {"remaining": store.remaining_status(uid, (sl.max, sl.window_secs), now), "limit": sl.max, "window_secs": sl.window_secs},
            "paused": paused,
            "audit": if ctx.audit_required { "journal" } else { "stderr (no journal on this host)" },
            "replay_cache_entries": store.seen_count(),
        })
        .to_string()
    }

    fn ctx(config: Config) -> Ctx {
        Ctx {
            policy: healing_activation::worker::resolve_policy(&config).unwrap(),
            config,
            secret: Secret::from_bytes(b"k", healing_auth::SecretSource::Environment).unwrap(),
            allowed: Allowed::default(),
            store: Mutex::new(Store::open(None, 0).unwrap()),
            socket_dir: PathBuf::from("/nonexistent"),
            handled: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            audit_required: true,
            fold: Fold::default(),
        }
    }

    #[test]
    fn status_text_is_what_the_value_builder_made() {
        let c = ctx(Config::default());
        let mut st = Store::open(None, 0).unwrap();
        assert_eq!(
            status(&c, &mut st, 1000, 5),
            status_as_value(&c, &mut st, 1000, 5)
        );
        st.admit_status(1000, (600, 60), 5).unwrap();
        st.admit("restart_service", (10, 300), 1000, (30, 300), 6, true)
            .unwrap();
        st.pause(0, "upgrading \"the\" host", 7).unwrap();
        assert_eq!(
            status(&c, &mut st, 1000, 8),
            status_as_value(&c, &mut st, 1000, 8)
        );
    }
}

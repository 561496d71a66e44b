//! One connection, one request, one reply, one audit decision.
//!
//! Order of checks: framing, envelope, caller identity, signature, freshness,
//! replay, allow-list, parameters, rate limits, execution. The old service
//! checked signature, allow-list, rate limit; identity and freshness are new
//! and come before anything that costs more than a table look-up. Only
//! authenticated, fresh requests enter the replay cache and use up budget, so
//! an unauthenticated peer can neither poison the cache nor drain limits.

use crate::forward::forward;
use crate::identity::Allowed;
use crate::state::{Admit, Store};
use healing_audit::{CallerIds, Decision, Outcome};
use healing_auth::{
    check_freshness, parse_timestamp, peer_credentials, verify, Freshness, Peer, Secret,
};
use healing_policy::{Action, ActionName, Config, Protocol};
use healing_protocol::{
    encode_response, errors, parse_request, read_one_object, signing_message, ActionRequest,
    Caller, ReadError, Request, Response, Version, MAX_MESSAGE,
};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Ctx {
    pub config: Config,
    pub policy: healing_policy::Policy,
    pub secret: Secret,
    pub allowed: Allowed,
    pub store: Mutex<Store>,
    pub socket_dir: PathBuf,
    pub handled: AtomicU64,
    pub denied: AtomicU64,
}

/// What the caller is told and what the journal records.
struct Verdict {
    outcome: Outcome,
    /// The `error` string for the client.
    error: Option<String>,
    output: Option<String>,
    /// The audit reason (may say more than the client is told).
    reason: String,
}

impl Verdict {
    fn deny(error: impl Into<String>, reason: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Denied,
            error: Some(error.into()),
            output: None,
            reason: reason.into(),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn handle(ctx: &Ctx, mut stream: UnixStream) {
    let t0 = Instant::now();
    let peer = peer_credentials(&stream).ok();
    let caller = CallerIds {
        uid: peer.as_ref().map(|p| p.uid),
        gid: peer.as_ref().map(|p| p.gid),
        pid: peer.as_ref().map(|p| p.pid),
    };
    let timeout = Duration::from_millis(ctx.config.request_timeout_ms);

    let value = read_one_object(&mut stream, MAX_MESSAGE, timeout);
    let (request_id, action, params_json, protocol, verdict) = match value {
        Err(e) => {
            let reason = match e {
                ReadError::Incomplete => "connection closed without a request".to_string(),
                other => other.to_string(),
            };
            (
                errors::UNKNOWN_ID.to_string(),
                String::new(),
                "{}".to_string(),
                "",
                Verdict::deny(errors::INVALID_FORMAT, reason),
            )
        }
        Ok(v) => match parse_request(v) {
            Err(reason) => (
                errors::UNKNOWN_ID.to_string(),
                String::new(),
                "{}".to_string(),
                "",
                Verdict::deny(
                    errors::INVALID_FORMAT,
                    format!("{}: {reason}", errors::INVALID_FORMAT),
                ),
            ),
            Ok(req) => {
                let params = serde_json::Value::Object(req.parameters.clone()).to_string();
                healing_audit::received(&req.id, &req.action, &caller, req.version.as_str());
                let verdict = match &peer {
                    None => {
                        Verdict::deny("Caller not allowed", "no peer credentials on the socket")
                    }
                    Some(p) => decide(ctx, &req, p),
                };
                (req.id, req.action, params, req.version.as_str(), verdict)
            }
        },
    };

    let duration_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let response = Response {
        request_id: request_id.clone(),
        success: verdict.outcome == Outcome::Success,
        output: verdict.output.clone(),
        error: verdict.error.clone(),
        duration_ms,
    };
    // The reply may fail to arrive (the client left); the decision stands and
    // is audited either way.
    let _ = stream.write_all(&encode_response(&response));
    drop(stream);

    match verdict.outcome {
        Outcome::Denied => ctx.denied.fetch_add(1, Ordering::Relaxed),
        _ => ctx.handled.fetch_add(1, Ordering::Relaxed),
    };
    healing_audit::decision(&Decision {
        request_id: &request_id,
        action: &action,
        outcome: verdict.outcome,
        reason: &verdict.reason,
        caller: &caller,
        duration_ms,
        parameters: &params_json,
        protocol,
    });
}

fn decide(ctx: &Ctx, req: &Request, peer: &Peer) -> Verdict {
    let proto = match req.version {
        Version::V1 => Protocol::V1,
        Version::V2 => Protocol::V2,
    };
    if !ctx.config.accepts(proto) {
        return Verdict::deny(
            format!("Protocol {} not accepted", req.version.as_str()),
            format!(
                "protocol {} is disabled in the configuration",
                req.version.as_str()
            ),
        );
    }
    if !ctx.allowed.permits(peer) {
        return Verdict::deny(
            "Caller not allowed",
            format!(
                "uid {} gid {} is not root, an allowed user or in an allowed group",
                peer.uid, peer.gid
            ),
        );
    }

    // Signature.
    let Some(sig) = &req.signature else {
        return Verdict::deny(errors::INVALID_SIGNATURE, "request has no signature");
    };
    let message = match signing_message(req) {
        Ok(m) => m,
        Err(e) => {
            return Verdict::deny(
                errors::INVALID_SIGNATURE,
                format!("cannot sign parameters: {e}"),
            )
        }
    };
    if !verify(ctx.secret.key(), &message, sig) {
        return Verdict::deny(errors::INVALID_SIGNATURE, "signature does not match");
    }

    // Freshness.
    let ts = match parse_timestamp(&req.timestamp) {
        Ok(t) => t,
        Err(e) => return Verdict::deny("Invalid timestamp", e),
    };
    let now = now_ms();
    let skew = ctx.config.max_clock_skew_secs;
    match check_freshness(ts, now / 1000, skew) {
        Freshness::Fresh => {}
        Freshness::Stale(s) => {
            return Verdict::deny(
                "Stale timestamp",
                format!(
                    "timestamp {} is {s} s older than the {skew} s window",
                    req.timestamp
                ),
            )
        }
        Freshness::Future(s) => {
            return Verdict::deny(
                "Timestamp in the future",
                format!(
                    "timestamp {} is {s} s ahead of the {skew} s window",
                    req.timestamp
                ),
            )
        }
    }

    let mut store = ctx.store.lock().unwrap_or_else(PoisonError::into_inner);

    // Replay: an id is remembered for as long as a request carrying it could
    // still be fresh (its timestamp plus the window, and never less than now
    // plus the window, whichever clock is ahead).
    let until = (ts.saturating_add(skew as i64))
        .max(now / 1000 + skew as i64)
        .saturating_mul(1000);
    if let Err(why) = store.remember_id(&req.id, now, until) {
        return Verdict::deny(
            if why == "replay cache full" {
                "Server busy"
            } else {
                "Replayed request id"
            },
            why,
        );
    }

    // Allow-list and parameters.
    let name = match ActionName::from_wire(&req.action) {
        Some(n) if ctx.config.action_enabled(n) => n,
        Some(_) => {
            save(&mut store, now);
            return Verdict::deny(
                errors::not_allowed(&req.action),
                "action is disabled in the configuration",
            );
        }
        None => {
            save(&mut store, now);
            return Verdict::deny(errors::not_allowed(&req.action), "unknown action");
        }
    };
    let action = match Action::parse(name, &req.parameters) {
        Ok(a) => a,
        Err(e) => {
            save(&mut store, now);
            return Verdict::deny(
                format!("Invalid parameters: {e}"),
                format!("invalid parameters: {e}"),
            );
        }
    };
    if let Some(v) = policy_refusal(ctx, peer, &action) {
        save(&mut store, now);
        return v;
    }

    // Rate limits, counted before execution (as the old service did).
    let al = ctx.config.action_rate_limit(name);
    let cl = ctx.config.caller_rate_limit;
    match store.admit(
        &req.action,
        (al.max, al.window_secs),
        peer.uid,
        (cl.max, cl.window_secs),
        now,
    ) {
        Admit::Ok => {}
        Admit::ActionLimited => {
            save(&mut store, now);
            return Verdict::deny(
                errors::RATE_LIMITED,
                format!(
                    "{} allows {} requests per {} s",
                    req.action, al.max, al.window_secs
                ),
            );
        }
        Admit::CallerLimited => {
            save(&mut store, now);
            return Verdict::deny(
                errors::RATE_LIMITED,
                format!(
                    "uid {} allows {} requests per {} s",
                    peer.uid, cl.max, cl.window_secs
                ),
            );
        }
    }
    if let Action::Status = action {
        let out = status(ctx, &mut store, peer.uid, now);
        save(&mut store, now);
        return Verdict {
            outcome: Outcome::Success,
            error: None,
            output: Some(out),
            reason: "status".into(),
        };
    }
    save(&mut store, now);
    drop(store);

    let timeout = Duration::from_secs(ctx.config.action_timeout_secs(name) + 5);
    let areq = ActionRequest {
        id: req.id.clone(),
        action: req.action.clone(),
        parameters: req.parameters.clone(),
        caller: Caller {
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            groups: peer.groups.clone(),
        },
        dry_run: false,
    };
    match forward(&ctx.socket_dir, &areq, timeout) {
        Ok(r) if r.success => Verdict {
            outcome: Outcome::Success,
            reason: r.output.clone().unwrap_or_default(),
            output: r.output,
            error: None,
        },
        Ok(r) => {
            let e = r
                .error
                .unwrap_or_else(|| format!("Action {} failed", req.action));
            Verdict {
                outcome: Outcome::Failure,
                reason: e.clone(),
                output: r.output,
                error: Some(e),
            }
        }
        Err(e) => Verdict {
            outcome: Outcome::Failure,
            reason: e.clone(),
            output: None,
            error: Some(e),
        },
    }
}

/// The authorize stage's rules that need no facts about the target.
fn policy_refusal(ctx: &Ctx, peer: &Peer, action: &Action) -> Option<Verdict> {
    let caller = healing_policy::CallerInfo {
        uid: peer.uid,
        gid: peer.gid,
        groups: peer.groups.clone(),
    };
    match healing_policy::permit(&ctx.policy, &caller, action) {
        Ok(()) => None,
        Err(r) => Some(Verdict::deny(r.to_string(), r.to_string())),
    }
}

fn save(store: &mut Store, now: i64) {
    if let Err(e) = store.save(now) {
        healing_audit::service(healing_audit::Level::Error, &e);
    }
}

fn status(ctx: &Ctx, store: &mut Store, uid: u32, now: i64) -> String {
    let actions: serde_json::Map<String, serde_json::Value> = healing_policy::ALL_ACTIONS
        .iter()
        .filter(|a| ctx.config.action_enabled(**a))
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
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocols": ctx.config.protocols.iter().map(|p| match p { Protocol::V1 => "v1", Protocol::V2 => "v2" }).collect::<Vec<_>>(),
        "actions": actions,
        "caller": {"uid": uid, "remaining": store.remaining_caller(uid, (cl.max, cl.window_secs), now), "limit": cl.max, "window_secs": cl.window_secs},
        "replay_cache_entries": store.seen_count(),
    })
    .to_string()
}

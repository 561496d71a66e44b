//! The decision path, one stage after another:
//!
//! authenticate → freshness → replay → authorize → admit → execute
//!
//! Each stage either passes the request on or refuses it with a
//! [`Refusal`]. Authentication (caller allowed, protocol, signature) and
//! freshness come before anything that costs more than a table look-up or
//! writes state, so an unauthenticated peer can neither poison the replay
//! cache nor drain a budget. Only then is the id remembered, the policy
//! consulted (healing_policy::permit: per-caller rules, units, protected
//! units), and the request admitted (pause, status's own limit, rate limits,
//! the restart breaker). A dry run passes every stage without consuming
//! anything and is forwarded with `dry_run`, so the action reads its facts
//! and says what it would do.
//!
//! The Varlink interface ([`decide_varlink`]) carries nothing signed: the
//! caller's identity is the kernel's (SO_PEERCRED), so it skips the
//! signature, freshness and replay stages and runs the same caller check,
//! authorize, admit and execute on a [`Call`].

use crate::forward::forward;
use crate::handle::Ctx;
use crate::state::{Admit, Remember, Store};
use healing_audit::Outcome;
use healing_auth::{check_freshness, parse_timestamp, verify, Freshness, Peer};
use healing_policy::{Action, ActionName, CallerInfo, Protocol};
use healing_protocol::{signing_message, ActionRequest, Caller, Refusal, Request, Version};
use serde_json::{Map, Value};
use std::sync::PoisonError;
use std::time::Duration;

/// What the caller is told and what the journal records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The `error` string for the client.
    pub error: Option<String>,
    pub output: Option<String>,
    /// The audit reason (may say more than the client is told).
    pub reason: String,
    /// Refused before authentication: folded in the audit.
    pub unauthenticated: bool,
    /// The dispatcher's own refusal, when it refused (the Varlink error).
    pub refusal: Option<Refusal>,
}

impl Verdict {
    pub fn deny(refusal: Refusal, reason: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Denied,
            error: Some(refusal.to_string()),
            output: None,
            reason: reason.into(),
            unauthenticated: false,
            refusal: Some(refusal),
        }
    }

    fn unauthenticated(refusal: Refusal, reason: impl Into<String>) -> Verdict {
        Verdict {
            unauthenticated: true,
            ..Verdict::deny(refusal, reason)
        }
    }

    fn success(output: String, reason: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Success,
            error: None,
            output: Some(output),
            reason: reason.into(),
            unauthenticated: false,
            refusal: None,
        }
    }
}

type Stage<T> = Result<T, Verdict>;

/// What the shared stages (authorize, admit, execute) read of a request,
/// whichever protocol carried it.
pub struct Call<'a> {
    pub id: &'a str,
    /// The wire name (`restart_service`).
    pub action: &'a str,
    pub parameters: &'a Map<String, Value>,
    pub dry_run: bool,
    /// `v1`, `v2` or `varlink`, for the audit records.
    pub protocol: &'static str,
}

impl<'a> Call<'a> {
    fn of(req: &'a Request) -> Call<'a> {
        Call {
            id: &req.id,
            action: &req.action,
            parameters: &req.parameters,
            dry_run: req.dry_run,
            protocol: req.version.as_str(),
        }
    }
}

/// One Varlink method call, its parameters already in the wire form of the
/// JSON protocol (`{"service": ...}`). The id is the dispatcher's own.
#[derive(Debug, Clone)]
pub struct VarlinkCall {
    pub id: String,
    pub action: String,
    pub parameters: Map<String, Value>,
    pub dry_run: bool,
}

fn caller_info(peer: &Peer) -> CallerInfo {
    CallerInfo {
        uid: peer.uid,
        gid: peer.gid,
        groups: peer.groups.clone(),
    }
}

/// Runs every stage. `now` is wall-clock Unix milliseconds.
pub fn decide(ctx: &Ctx, req: &Request, peer: &Peer, now: i64) -> Verdict {
    match stages(ctx, req, peer, now) {
        Ok(v) | Err(v) => v,
    }
}

fn stages(ctx: &Ctx, req: &Request, peer: &Peer, now: i64) -> Stage<Verdict> {
    authenticate(ctx, req, peer)?;
    let ts = freshness(ctx, req, now)?;
    let mut store = ctx.store.lock().unwrap_or_else(PoisonError::into_inner);
    replay(ctx, &mut store, req, peer, ts, now)?;
    shared_stages(ctx, store, &Call::of(req), peer, now)
}

/// authorize → admit → answer locally or execute: the stages both protocols
/// share. Takes the state lock held since replay (JSON) or taken just now
/// (Varlink), and lets it go before the action runs.
fn shared_stages(
    ctx: &Ctx,
    mut store: std::sync::MutexGuard<'_, Store>,
    call: &Call<'_>,
    peer: &Peer,
    now: i64,
) -> Stage<Verdict> {
    let action = authorize(ctx, call, peer)?;
    admit(ctx, &mut store, call, &action, peer, now)?;
    if let Some(v) = answer_locally(ctx, &mut store, call, &action, peer, now) {
        return Ok(v);
    }
    drop(store);
    Ok(execute(ctx, call, &action, peer))
}

/// A Varlink call: the caller check, then the shared stages. No signature,
/// no freshness, no replay cache: nothing signed travels, and the identity
/// is the kernel's. A caller the configuration does not allow is refused
/// "unauthenticated" (folded in the audit), as on the JSON socket.
pub fn decide_varlink(ctx: &Ctx, call: &VarlinkCall, peer: &Peer, now: i64) -> Verdict {
    let run = || -> Stage<Verdict> {
        permit_caller(ctx, peer)?;
        let store = ctx.store.lock().unwrap_or_else(PoisonError::into_inner);
        let c = Call {
            id: &call.id,
            action: &call.action,
            parameters: &call.parameters,
            dry_run: call.dry_run,
            protocol: "varlink",
        };
        shared_stages(ctx, store, &c, peer, now)
    };
    match run() {
        Ok(v) | Err(v) => v,
    }
}

/// Root, an allowed user or a member of an allowed group.
pub(crate) fn permit_caller(ctx: &Ctx, peer: &Peer) -> Stage<()> {
    if ctx.allowed.permits(peer) {
        return Ok(());
    }
    Err(Verdict::unauthenticated(
        Refusal::CallerNotAllowed,
        format!(
            "uid {} gid {} is not root, an allowed user or in an allowed group",
            peer.uid, peer.gid
        ),
    ))
}

/// Caller allowed, protocol accepted, signature valid.
pub fn authenticate(ctx: &Ctx, req: &Request, peer: &Peer) -> Stage<()> {
    let proto = match req.version {
        Version::V1 => Protocol::V1,
        Version::V2 => Protocol::V2,
    };
    permit_caller(ctx, peer)?;
    if !ctx.config.accepts(proto) {
        return Err(Verdict::unauthenticated(
            Refusal::ProtocolNotAccepted {
                version: req.version.as_str().into(),
            },
            format!(
                "protocol {} is disabled in the configuration",
                req.version.as_str()
            ),
        ));
    }
    let Some(sig) = &req.signature else {
        return Err(Verdict::unauthenticated(
            Refusal::InvalidSignature,
            "request has no signature",
        ));
    };
    let message = signing_message(req).map_err(|e| {
        Verdict::unauthenticated(
            Refusal::InvalidSignature,
            format!("cannot sign parameters: {e}"),
        )
    })?;
    if !verify(ctx.secret.key(), &message, sig) {
        return Err(Verdict::unauthenticated(
            Refusal::InvalidSignature,
            "signature does not match",
        ));
    }
    Ok(())
}

/// The timestamp is within the window; returns it in Unix seconds.
pub fn freshness(ctx: &Ctx, req: &Request, now: i64) -> Stage<i64> {
    let ts =
        parse_timestamp(&req.timestamp).map_err(|e| Verdict::deny(Refusal::InvalidTimestamp, e))?;
    let skew = ctx.config.max_clock_skew_secs;
    match check_freshness(ts, now / 1000, skew) {
        Freshness::Fresh => Ok(ts),
        Freshness::Stale(s) => Err(Verdict::deny(
            Refusal::StaleTimestamp,
            format!(
                "timestamp {} is {s} s older than the {skew} s window",
                req.timestamp
            ),
        )),
        Freshness::Future(s) => Err(Verdict::deny(
            Refusal::FutureTimestamp,
            format!(
                "timestamp {} is {s} s ahead of the {skew} s window",
                req.timestamp
            ),
        )),
    }
}

/// An id is remembered for as long as a request carrying it could still be
/// fresh (its timestamp plus the window, and never less than now plus the
/// window, whichever clock is ahead). A dry run is checked, not remembered.
pub fn replay(
    ctx: &Ctx,
    store: &mut Store,
    req: &Request,
    peer: &Peer,
    ts: i64,
    now: i64,
) -> Stage<()> {
    let skew = i64::try_from(ctx.config.max_clock_skew_secs).unwrap_or(i64::MAX);
    if req.dry_run {
        return if store.is_replay(&req.id, now) {
            Err(Verdict::deny(Refusal::Replayed, "replayed request id"))
        } else {
            Ok(())
        };
    }
    let until = ts
        .saturating_add(skew)
        .max((now / 1000).saturating_add(skew))
        .saturating_mul(1000);
    let per_uid = ctx.config.max_ids_per_caller;
    store
        .remember_id(&req.id, peer.uid, per_uid, now, until)
        .map_err(|e| match e {
            Remember::Replayed => Verdict::deny(Refusal::Replayed, "replayed request id"),
            Remember::CallerFull => Verdict::deny(
                Refusal::ServerBusy,
                format!(
                    "uid {} holds {per_uid} live request ids (max_ids_per_caller)",
                    peer.uid
                ),
            ),
            Remember::Full => Verdict::deny(Refusal::ServerBusy, "replay cache full"),
            Remember::Io(e) => state(e),
        })
}

/// The action is known and enabled, its parameters valid, and the policy
/// lets this caller ask for it on this target (healing_policy::permit).
pub fn authorize(ctx: &Ctx, req: &Call<'_>, peer: &Peer) -> Stage<Action> {
    let name = match ActionName::from_wire(req.action) {
        Some(n) if !n.is_configurable() || ctx.config.action_enabled(n) => n,
        Some(_) => {
            return Err(Verdict::deny(
                Refusal::NotAllowed {
                    action: req.action.to_string(),
                },
                "action is disabled in the configuration (rule actions.enabled)",
            ))
        }
        None => {
            return Err(Verdict::deny(
                Refusal::NotAllowed {
                    action: req.action.to_string(),
                },
                "unknown action",
            ))
        }
    };
    let action = Action::parse(name, req.parameters).map_err(|e| {
        Verdict::deny(
            Refusal::InvalidParameters { detail: e.clone() },
            format!("invalid parameters: {e}"),
        )
    })?;
    if let Err(r) = healing_policy::permit(&ctx.policy, &caller_info(peer), &action) {
        let text = r.to_string();
        return Err(Verdict::deny(Refusal::Policy { text: text.clone() }, text));
    }
    if let Action::KillProcess { pid, .. } = &action {
        if i64::from(*pid) == i64::from(std::process::id()) {
            return Err(Verdict::deny(
                Refusal::InvalidParameters {
                    detail: format!("pid {pid} is the dispatcher"),
                },
                format!("pid {pid} is the dispatcher itself"),
            ));
        }
    }
    Ok(action)
}

/// The state log could not be written: the request is refused, nothing ran.
fn state(e: String) -> Verdict {
    Verdict::deny(Refusal::StateUnavailable { detail: e.clone() }, e)
}

/// Pause, status's own budget, the rate limits and the breaker. A dry run
/// is checked against each and counted in none.
pub fn admit(
    ctx: &Ctx,
    store: &mut Store,
    req: &Call<'_>,
    action: &Action,
    peer: &Peer,
    now: i64,
) -> Stage<()> {
    let name = action.name();
    if matches!(name, ActionName::Pause | ActionName::Resume) {
        return Ok(());
    }
    if name == ActionName::Status {
        let l = ctx.config.status_rate_limit;
        return if req.dry_run
            || store
                .admit_status(peer.uid, (l.max, l.window_secs), now)
                .map_err(state)?
        {
            Ok(())
        } else {
            Err(Verdict::deny(
                Refusal::RateLimited,
                format!(
                    "status allows uid {} {} requests per {} s (status_rate_limit)",
                    peer.uid, l.max, l.window_secs
                ),
            ))
        };
    }
    if let Some(p) = store.paused() {
        let reason = format!(
            "paused by uid {} since {}: {}",
            p.uid,
            crate::handle::utc_text(p.since),
            if p.reason.is_empty() {
                "no reason given"
            } else {
                &p.reason
            }
        );
        return Err(Verdict::deny(
            Refusal::Paused {
                reason: reason.clone(),
            },
            reason,
        ));
    }
    let al = ctx.config.action_rate_limit(name);
    let cl = ctx.config.caller_rate_limit;
    // The breaker first: a restart it holds must not spend the budget.
    if let Action::RestartService { unit } = action {
        let b = ctx.config.breaker();
        if !store
            .breaker(unit, (b.max, b.window_secs), now, false)
            .map_err(state)?
        {
            return Err(Verdict::deny(
                Refusal::Breaker {
                    unit: unit.clone(),
                    max: b.max,
                    window_secs: b.window_secs,
                },
                format!(
                    "{unit} was restarted {} times in {} s (rule breaker)",
                    b.max, b.window_secs
                ),
            ));
        }
    }
    let admitted = store
        .admit(
            req.action,
            (al.max, al.window_secs),
            peer.uid,
            (cl.max, cl.window_secs),
            now,
            !req.dry_run,
        )
        .map_err(state)?;
    match admitted {
        Admit::Ok => {}
        Admit::ActionLimited => {
            return Err(Verdict::deny(
                Refusal::RateLimited,
                format!(
                    "{} allows {} requests per {} s",
                    req.action, al.max, al.window_secs
                ),
            ))
        }
        Admit::CallerLimited => {
            return Err(Verdict::deny(
                Refusal::RateLimited,
                format!(
                    "uid {} allows {} requests per {} s",
                    peer.uid, cl.max, cl.window_secs
                ),
            ))
        }
    }
    if let (Action::RestartService { unit }, false) = (action, req.dry_run) {
        let b = ctx.config.breaker();
        store
            .breaker(unit, (b.max, b.window_secs), now, true)
            .map_err(state)?;
    }
    Ok(())
}

/// status, pause and resume are the dispatcher's own.
fn answer_locally(
    ctx: &Ctx,
    store: &mut Store,
    req: &Call<'_>,
    action: &Action,
    peer: &Peer,
    now: i64,
) -> Option<Verdict> {
    match action {
        Action::Status => Some(Verdict::success(
            crate::handle::status(ctx, store, peer.uid, now),
            "status",
        )),
        Action::Pause { reason } if req.dry_run => Some(Verdict::success(
            "would pause every action".into(),
            "dry run of pause",
        )),
        Action::Resume if req.dry_run => {
            Some(Verdict::success("would resume".into(), "dry run of resume"))
        }
        Action::Pause { reason } => {
            let text = reason.clone().unwrap_or_default();
            Some(match store.pause(peer.uid, &text, now) {
                Ok(()) => Verdict::success(
                    format!("paused: every action is refused until resume ({text})"),
                    format!("paused by uid {}: {text}", peer.uid),
                ),
                Err(e) => state(e),
            })
        }
        Action::Resume => Some(match store.paused().is_some() {
            false => Verdict::success("not paused".into(), "resume while not paused"),
            true => match store.resume(peer.uid, now) {
                Ok(()) => {
                    Verdict::success("resumed".into(), format!("resumed by uid {}", peer.uid))
                }
                Err(e) => state(e),
            },
        }),
        _ => None,
    }
}

/// Hands the request to its action, after the accepted record reached the
/// journal (fail closed: no record, no action).
pub fn execute(ctx: &Ctx, req: &Call<'_>, action: &Action, peer: &Peer) -> Verdict {
    if !req.dry_run {
        let caller = healing_audit::CallerIds {
            uid: Some(peer.uid),
            gid: Some(peer.gid),
            pid: Some(peer.pid),
        };
        if let Err(e) = healing_audit::received(
            req.id,
            req.action,
            &caller,
            req.protocol,
            ctx.audit_required,
        ) {
            return Verdict::deny(Refusal::AuditUnavailable { detail: e.clone() }, e);
        }
    }
    let name = action.name();
    // The action bounds its own work by this timeout; a little more here so
    // its own timeout reply, which names what timed out, arrives first.
    let timeout = Duration::from_secs(ctx.config.action_timeout_secs(name).saturating_add(5));
    let areq = ActionRequest {
        id: req.id.to_string(),
        action: req.action.to_string(),
        parameters: req.parameters.clone(),
        caller: Caller {
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            groups: peer.groups.clone(),
        },
        dry_run: req.dry_run,
    };
    match forward(&ctx.socket_dir, &areq, timeout) {
        Ok(r) if r.success => Verdict {
            reason: r.output.clone().unwrap_or_default(),
            ..Verdict::success(r.output.unwrap_or_default(), "")
        },
        Ok(r) => {
            let e = r
                .error
                .unwrap_or_else(|| format!("Action {} failed", req.action));
            // The action's own authorize stage refused on the facts it read:
            // nothing ran, so the record is a denial like the dispatcher's.
            let refused = Refusal::classify(&e) == healing_protocol::ErrorKind::Refused;
            Verdict {
                outcome: if refused {
                    Outcome::Denied
                } else {
                    Outcome::Failure
                },
                reason: e.clone(),
                output: r.output,
                error: Some(e),
                unauthenticated: false,
                refusal: None,
            }
        }
        Err(e) => Verdict {
            outcome: Outcome::Failure,
            reason: e.clone(),
            output: None,
            error: Some(e),
            unauthenticated: false,
            refusal: None,
        },
    }
}

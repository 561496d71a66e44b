//! The Varlink interface `io.luminous.Healing`, served by the dispatcher on
//! its second socket (`luminous-healing-varlink.socket`). Framing: one JSON
//! object per message, each terminated by a NUL byte; a connection may carry
//! several calls, answered in order. The accept loop reads each message
//! (healing_activation's `Framing::Varlink`); a handler answers one call and
//! hands the connection back for the next ([`Conn::keep`]). The interface description is
//! `io.luminous.Healing.varlink` beside this file, served as it is by
//! `org.varlink.service.GetInterfaceDescription`; a unit test holds it to
//! the method table below.
//!
//! Each method call becomes a [`VarlinkCall`] in the JSON protocol's wire
//! form and goes through [`decide_varlink`]: the caller check (SO_PEERCRED,
//! no key), then the same authorize, admit and execute stages, and the same
//! audit record, with `HEALING_PROTOCOL=varlink`.

use crate::handle::{account, now_ms, Ctx, Handled};
use crate::pipeline::{decide_varlink, VarlinkCall, Verdict};
use healing_activation::Conn;
use healing_audit::Outcome;
use healing_auth::{peer_pidfd, pidfd_exited, Peer};
use healing_policy::ActionName;
use healing_protocol::{truncate_output, uuid4, Refusal, MAX_MESSAGE};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Instant;

pub const INTERFACE: &str = healing_actions::VARLINK_INTERFACE;
pub const IDL: &str = include_str!("io.luminous.Healing.varlink");
const SERVICE: &str = "org.varlink.service";
const SERVICE_IDL: &str = "# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
}

impl Ty {
    fn idl(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "int",
        }
    }
}

/// One typed parameter: its Varlink name and the JSON protocol's key.
struct Param {
    name: &'static str,
    wire: &'static str,
    ty: Ty,
    optional: bool,
}

struct Method {
    name: String,
    action: ActionName,
    params: Vec<Param>,
    /// Takes `dryRun: ?bool`.
    dry_run: bool,
}

/// One method per action of the table (healing_actions::ACTIONS), whose
/// generated IDL is [`IDL`]: the two cannot drift apart.
fn methods() -> &'static [Method] {
    static METHODS: std::sync::OnceLock<Vec<Method>> = std::sync::OnceLock::new();
    METHODS.get_or_init(|| {
        healing_actions::ACTIONS
            .iter()
            .filter_map(|a| {
                Some(Method {
                    name: a.varlink_method(),
                    action: ActionName::from_wire(a.name)?,
                    params: a
                        .params
                        .iter()
                        .map(|p| Param {
                            name: p.varlink,
                            wire: p.name,
                            ty: if p.varlink_type() == "int" {
                                Ty::Int
                            } else {
                                Ty::Str
                            },
                            optional: p.optional(),
                        })
                        .collect(),
                    dry_run: a.varlink_dry_run(),
                })
            })
            .collect()
    })
}

/// The interface's errors, each `(reason: string, id: string)`.
#[cfg(test)]
fn errors() -> Vec<&'static str> {
    healing_actions::VARLINK_ERRORS
        .iter()
        .map(|(n, _)| *n)
        .collect()
}

/// The Varlink error of a verdict that is not a success: the dispatcher's
/// own refusal by its kind; an action's refusal on the facts it read is
/// `Refused`, its failure `ActionFailed`.
fn error_of(v: &Verdict) -> &'static str {
    match &v.refusal {
        Some(Refusal::RateLimited) => "RateLimited",
        Some(Refusal::NotAllowed { .. } | Refusal::CallerNotAllowed) => "NotAllowed",
        Some(Refusal::InvalidParameters { .. }) => "InvalidParameter",
        Some(Refusal::Paused { .. }) => "Paused",
        Some(Refusal::AuditUnavailable { .. }) => "AuditUnavailable",
        Some(Refusal::StateUnavailable { .. }) => "StateUnavailable",
        Some(_) => "Refused",
        None if v.outcome == Outcome::Denied => "Refused",
        None => "ActionFailed",
    }
}

/// A reply as it goes on the wire (without its NUL).
#[derive(Debug, PartialEq)]
enum Reply {
    Ok(Value),
    Error(String, Value),
}

impl Reply {
    fn error(name: &str, parameters: Value) -> Reply {
        Reply::Error(name.to_string(), parameters)
    }

    fn encode(&self) -> Vec<u8> {
        let v = match self {
            Reply::Ok(p) => json!({ "parameters": p }),
            Reply::Error(e, p) => json!({ "error": e, "parameters": p }),
        };
        let mut b = v.to_string().into_bytes();
        b.push(0);
        b
    }
}

/// What a parameter check found wrong: the Varlink name of the parameter
/// and, for the audit record, what was wrong with it.
#[derive(Debug, PartialEq)]
struct BadParameter {
    parameter: String,
    detail: String,
}

/// Checks the parameters against the method's types and renames them to
/// the JSON protocol's keys. Returns the wire parameters and dryRun.
fn typed(
    method: &Method,
    params: &Map<String, Value>,
) -> Result<(Map<String, Value>, bool), BadParameter> {
    let bad = |parameter: &str, detail: String| BadParameter {
        parameter: parameter.to_string(),
        detail,
    };
    for k in params.keys() {
        let known = method.params.iter().any(|p| p.name == k) || (method.dry_run && k == "dryRun");
        if !known {
            return Err(bad(
                k,
                format!("unknown parameter {k:?} for {}", method.name),
            ));
        }
    }
    let mut wire = Map::new();
    for p in &method.params {
        match params.get(p.name) {
            None | Some(Value::Null) if p.optional => {}
            None | Some(Value::Null) => {
                return Err(bad(p.name, format!("parameter {:?} is required", p.name)))
            }
            Some(v @ Value::String(_)) if p.ty == Ty::Str => {
                wire.insert(p.wire.to_string(), v.clone());
            }
            Some(v @ Value::Number(n)) if p.ty == Ty::Int && n.as_i64().is_some() => {
                wire.insert(p.wire.to_string(), v.clone());
            }
            Some(_) => {
                return Err(bad(
                    p.name,
                    format!("parameter {:?} must be of type {}", p.name, p.ty.idl()),
                ))
            }
        }
    }
    let dry_run = match params.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(bad(
                "dryRun",
                "parameter \"dryRun\" must be of type bool".into(),
            ))
        }
    };
    Ok((wire, dry_run))
}

/// One incoming message, as far as the dispatcher reads it.
struct Message {
    method: String,
    parameters: Map<String, Value>,
    oneway: bool,
    upgrade: bool,
}

fn parse_message(v: Value) -> Result<Message, String> {
    let Value::Object(mut o) = v else {
        return Err("a message is not a JSON object".into());
    };
    let Some(Value::String(method)) = o.remove("method") else {
        return Err("the message has no method".into());
    };
    let parameters = match o.remove("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("parameters is not an object".into()),
    };
    let flag = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
    Ok(Message {
        oneway: flag(&o, "oneway"),
        upgrade: flag(&o, "upgrade"),
        method,
        parameters,
    })
}

/// A decided call's audit record, written once its reply is sent (as on
/// the JSON socket: a slow journal never delays a caller; the accepted
/// record of an action has gone out before it ran).
struct Record {
    handled: Handled,
    duration_ms: u64,
}

/// Answers one method call. The reply is `None` when there is nothing to
/// send (oneway); the record is `None` for introspection and unknown
/// methods, which decide nothing.
fn call(ctx: &Ctx, msg: Message, peer: &Peer, t0: Instant) -> (Option<Reply>, Option<Record>) {
    let mut record = None;
    let (iface, name) = msg.method.rsplit_once('.').unwrap_or(("", &msg.method));
    let reply = match iface {
        SERVICE => service_call(name, &msg),
        INTERFACE => match methods().iter().find(|m| m.name == name) {
            Some(m) if msg.upgrade => Some(Reply::error(
                "org.varlink.service.MethodNotImplemented",
                json!({ "method": format!("{INTERFACE}.{}", m.name) }),
            )),
            Some(m) => {
                let (reply, r) = healing_call(ctx, m, &msg.parameters, peer, t0);
                record = Some(r);
                Some(reply)
            }
            None => Some(Reply::error(
                "org.varlink.service.MethodNotFound",
                json!({ "method": msg.method }),
            )),
        },
        _ => Some(Reply::error(
            "org.varlink.service.InterfaceNotFound",
            json!({ "interface": iface }),
        )),
    };
    (if msg.oneway { None } else { reply }, record)
}

fn service_call(name: &str, msg: &Message) -> Option<Reply> {
    Some(match name {
        "GetInfo" => Reply::Ok(json!({
            "vendor": "luminous-healing",
            "product": "luminous-healing",
            "version": env!("CARGO_PKG_VERSION"),
            "url": "man:luminous-healing(8)",
            "interfaces": [SERVICE, INTERFACE],
        })),
        "GetInterfaceDescription" => match msg.parameters.get("interface") {
            Some(Value::String(i)) if i == INTERFACE => Reply::Ok(json!({ "description": IDL })),
            Some(Value::String(i)) if i == SERVICE => {
                Reply::Ok(json!({ "description": SERVICE_IDL }))
            }
            Some(Value::String(i)) => Reply::error(
                "org.varlink.service.InterfaceNotFound",
                json!({ "interface": i }),
            ),
            _ => Reply::error(
                "org.varlink.service.InvalidParameter",
                json!({ "parameter": "interface" }),
            ),
        },
        _ => Reply::error(
            "org.varlink.service.MethodNotFound",
            json!({ "method": msg.method }),
        ),
    })
}

/// A method of io.luminous.Healing: typed, decided, audited, answered.
fn healing_call(
    ctx: &Ctx,
    method: &Method,
    params: &Map<String, Value>,
    peer: &Peer,
    t0: Instant,
) -> (Reply, Record) {
    // Without an id there is no record to tie the call to: refused, and
    // the record says why under the unknown id.
    let id = uuid4().unwrap_or_else(|_| healing_protocol::errors::UNKNOWN_ID.to_string());
    let action = method.action.as_str().to_string();
    let checked = typed(method, params);
    // The caller check comes first, as on the JSON socket: a caller who may
    // not ask learns nothing about the parameters.
    let (verdict, bad, wire, dry_run) = match checked {
        Ok((wire, dry_run)) => {
            let c = VarlinkCall {
                id: id.clone(),
                action: action.clone(),
                parameters: wire.clone(),
                dry_run,
            };
            (decide_varlink(ctx, &c, peer, now_ms()), None, wire, dry_run)
        }
        Err(b) => {
            let v = match crate::pipeline::permit_caller(ctx, peer) {
                Err(v) => v,
                Ok(()) => Verdict::deny(
                    Refusal::InvalidParameters {
                        detail: b.detail.clone(),
                    },
                    format!("invalid parameters: {}", b.detail),
                ),
            };
            let bad = (!v.unauthenticated).then_some(b.parameter);
            (v, bad, params.clone(), false)
        }
    };
    let duration_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let reply = match (&verdict.outcome, bad) {
        (_, Some(parameter)) => Reply::error(
            "org.varlink.service.InvalidParameter",
            json!({ "parameter": parameter }),
        ),
        (Outcome::Success, None) => Reply::Ok(json!({
            "output": truncate_output(verdict.output.as_deref().unwrap_or(""), MAX_MESSAGE - 4096),
            "id": id,
        })),
        (_, None) => Reply::error(
            &format!("{INTERFACE}.{}", error_of(&verdict)),
            json!({ "reason": verdict.error.clone().unwrap_or_default(), "id": id }),
        ),
    };
    let h = Handled {
        request_id: id,
        action,
        parameters: Value::Object(wire).to_string(),
        protocol: "varlink",
        dry_run,
        verdict,
    };
    (
        reply,
        Record {
            handled: h,
            duration_ms,
        },
    )
}

/// The caller as the audit records it: SO_PEERCRED's uid, gid and pid at
/// connect time, the pid checked through the connection's pidfd
/// (SO_PEERPIDFD, Linux 6.5) where the kernel has it: once the caller has
/// exited its pid may name another process, so the records say pid 0 (no
/// process) rather than a pid that could be someone else's.
fn caller_now(peer: &Peer, pidfd: Option<&OwnedFd>) -> Peer {
    let mut p = peer.clone();
    if pidfd.is_some_and(pidfd_exited) {
        p.pid = 0;
    }
    p
}

/// Answers one call read by the accept loop, then hands the connection
/// back for the next. A message that is not a Varlink call (not JSON, no
/// method, over the size cap, cut off) has nothing to answer it with: the
/// connection is closed, as systemd's own services do.
pub fn handle_conn(ctx: &Ctx, mut conn: Conn) {
    let t0 = Instant::now();
    let (Some(peer), Some(Ok(value))) = (conn.peer.as_ref(), conn.request.take()) else {
        return;
    };
    let Ok(msg) = parse_message(value) else {
        return;
    };
    let pidfd = peer_pidfd(&conn.stream).ok().flatten();
    let caller = caller_now(peer, pidfd.as_ref());
    let (reply, record) = call(ctx, msg, &caller, t0);
    // The write timeout was set at accept (healing_activation).
    let sent = reply.is_none_or(|r| (&conn.stream).write_all(&r.encode()).is_ok());
    // Accounted whether or not the reply arrived: the decision stands.
    if let Some(r) = record {
        account(ctx, &r.handled, Some(&caller), r.duration_ms);
    }
    if sent {
        conn.keep();
    }
}

/// What the accept loop sends on this socket when it refuses a connection
/// itself: a Varlink error for too many connections (the caller's first
/// call gets it as its reply), and nothing when no call arrived in time.
pub fn loop_refusal(reason: healing_activation::Refusal, text: &str) -> Vec<u8> {
    match reason {
        healing_activation::Refusal::Timeout => Vec::new(),
        healing_activation::Refusal::TooManyFromUid { .. } => Reply::error(
            &format!("{INTERFACE}.RateLimited"),
            json!({ "reason": text, "id": "" }),
        )
        .encode(),
        healing_activation::Refusal::NotAllowed => Reply::error(
            &format!("{INTERFACE}.NotAllowed"),
            json!({ "reason": text, "id": "" }),
        )
        .encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The method and error lines of an IDL, each on one line with single
    /// spaces (comments and blank lines dropped).
    fn declarations(idl: &str) -> Vec<String> {
        idl.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("method ") || l.starts_with("error "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn rendered() -> Vec<String> {
        let mut out: Vec<String> = methods()
            .iter()
            .map(|m| {
                let mut ps: Vec<String> = m
                    .params
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}{}",
                            p.name,
                            if p.optional { "?" } else { "" },
                            p.ty.idl()
                        )
                    })
                    .collect();
                if m.dry_run {
                    ps.push("dryRun: ?bool".into());
                }
                format!(
                    "method {}({}) -> (output: string, id: string)",
                    m.name,
                    ps.join(", ")
                )
            })
            .collect();
        out.extend(
            errors()
                .iter()
                .map(|e| format!("error {e}(reason: string, id: string)")),
        );
        out
    }

    #[test]
    fn the_checked_in_idl_is_the_code() {
        assert_eq!(declarations(IDL), rendered());
        assert!(IDL.lines().any(|l| l == format!("interface {INTERFACE}")));
        // every line is a comment, blank, the interface, or a declaration
        for l in IDL.lines() {
            assert!(
                l.is_empty()
                    || l.starts_with('#')
                    || l.starts_with("interface ")
                    || l.starts_with("method ")
                    || l.starts_with("error "),
                "{l}"
            );
        }
    }

    #[test]
    fn every_action_has_one_method_with_its_parameters() {
        for a in healing_policy::ALL_ACTIONS {
            let ms: Vec<_> = methods().iter().filter(|m| m.action == a).collect();
            assert_eq!(ms.len(), 1, "{a:?}");
            let mut wire: Vec<_> = ms[0].params.iter().map(|p| p.wire).collect();
            wire.sort_unstable();
            let mut want = a.parameter_names().to_vec();
            want.sort_unstable();
            assert_eq!(wire, want, "{a:?}");
        }
    }

    #[test]
    fn every_error_a_verdict_can_map_to_is_declared() {
        let all = [
            Refusal::NotAllowed { action: "x".into() },
            Refusal::RateLimited,
            Refusal::CallerNotAllowed,
            Refusal::InvalidParameters { detail: "x".into() },
            Refusal::Policy { text: "x".into() },
            Refusal::Breaker {
                unit: "a".into(),
                max: 1,
                window_secs: 1,
            },
            Refusal::Paused { reason: "x".into() },
            Refusal::AuditUnavailable { detail: "x".into() },
            Refusal::StateUnavailable { detail: "x".into() },
            Refusal::ServerBusy,
        ];
        for r in all {
            let e = error_of(&Verdict::deny(r.clone(), "x"));
            assert!(errors().contains(&e), "{r}: {e}");
        }
        let failed = Verdict {
            outcome: Outcome::Failure,
            refusal: None,
            ..Verdict::deny(Refusal::RateLimited, "x")
        };
        assert_eq!(error_of(&failed), "ActionFailed");
        assert_eq!(
            error_of(&Verdict::deny(Refusal::RateLimited, "x")),
            "RateLimited"
        );
    }

    #[test]
    fn parameters_are_typed_and_renamed() {
        let restart = &methods()[0];
        let params = |v: Value| v.as_object().cloned().unwrap();
        let (w, dry) = typed(
            restart,
            &params(json!({"unit": "a.service", "dryRun": true})),
        )
        .unwrap();
        assert_eq!(Value::Object(w), json!({"service": "a.service"}));
        assert!(dry);
        let e = typed(restart, &params(json!({"unit": 5}))).unwrap_err();
        assert_eq!(e.parameter, "unit");
        assert_eq!(
            typed(restart, &params(json!({}))).unwrap_err().parameter,
            "unit"
        );
        assert_eq!(
            typed(restart, &params(json!({"unit": "a", "service": "b"})))
                .unwrap_err()
                .parameter,
            "service"
        );
        let kill = methods().iter().find(|m| m.name == "KillProcess").unwrap();
        assert_eq!(
            typed(kill, &params(json!({"pid": 4.5, "signal": "TERM"})))
                .unwrap_err()
                .parameter,
            "pid"
        );
        let status = methods().iter().find(|m| m.name == "Status").unwrap();
        assert_eq!(
            typed(status, &params(json!({"dryRun": true})))
                .unwrap_err()
                .parameter,
            "dryRun"
        );
        let pause = methods().iter().find(|m| m.name == "Pause").unwrap();
        let (w, _) = typed(pause, &params(json!({"reason": null}))).unwrap();
        assert!(w.is_empty());
    }

    #[test]
    fn introspection_answers_without_a_caller_check() {
        let msg = parse_message(json!({"method": "org.varlink.service.GetInterfaceDescription", "parameters": {"interface": "io.luminous.Healing"}})).unwrap();
        let r = service_call("GetInterfaceDescription", &msg).unwrap();
        assert_eq!(r, Reply::Ok(json!({ "description": IDL })));
        let msg = parse_message(json!({"method": "org.varlink.service.GetInfo"})).unwrap();
        let Reply::Ok(info) = service_call("GetInfo", &msg).unwrap() else {
            panic!()
        };
        assert_eq!(info["interfaces"], json!([SERVICE, INTERFACE]));
        assert!(Reply::Ok(json!({})).encode().ends_with(b"}\0"));
    }

    #[test]
    fn calls_take_the_json_protocols_stages_and_reasons() {
        let tmp = std::env::temp_dir().join(format!("lh-varlink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let _servers = crate::golden::stand_in_actions(&tmp);
        let ctx = crate::golden::ctx("", &tmp).unwrap();
        let member = Peer {
            uid: 1000,
            gid: 3000,
            pid: 42,
            groups: vec![3000],
        };
        let stranger = Peer {
            uid: 1234,
            gid: 1234,
            pid: 43,
            groups: vec![],
        };
        let ask = |m: &str, p: Value, peer: &Peer| {
            call(
                &ctx,
                parse_message(json!({"method": format!("{INTERFACE}.{m}"), "parameters": p}))
                    .unwrap(),
                peer,
                Instant::now(),
            )
            .0
            .unwrap()
        };
        let err = |r: Reply| match r {
            Reply::Error(e, p) => (e, p),
            r => panic!("not an error: {r:?}"),
        };
        let (e, p) = err(ask("AdjustSwappiness", json!({"value": 101}), &member));
        assert_eq!(e, "io.luminous.Healing.InvalidParameter");
        assert_eq!(
            p["reason"],
            "Invalid parameters: swappiness 101 is outside 0-100"
        );
        let (e, p) = err(ask("AdjustSwappiness", json!({"value": "x"}), &member));
        assert_eq!(
            (e.as_str(), &p),
            (
                "org.varlink.service.InvalidParameter",
                &json!({"parameter": "value"})
            )
        );
        let (e, p) = err(ask("Status", json!({}), &stranger));
        assert_eq!(
            (e.as_str(), p["reason"].as_str()),
            ("io.luminous.Healing.NotAllowed", Some("Caller not allowed"))
        );
        let Reply::Ok(p) = ask("Status", json!({}), &member) else {
            panic!("status refused")
        };
        assert!(p["output"].as_str().unwrap().contains("\"version\""), "{p}");
        assert_eq!(p["id"].as_str().unwrap().len(), 36);
        let (e, _) = err(ask("Reboot", json!({}), &member));
        assert_eq!(e, "org.varlink.service.MethodNotFound");
        let oneway = json!({"method": "io.luminous.Healing.Status", "oneway": true});
        let (reply, record) = call(
            &ctx,
            parse_message(oneway).unwrap(),
            &member,
            Instant::now(),
        );
        // no reply, but the decision is recorded all the same
        assert!(reply.is_none());
        assert_eq!(record.unwrap().handled.verdict.outcome, Outcome::Success);
        let (_, record) = call(
            &ctx,
            parse_message(json!({"method": "org.varlink.service.GetInfo"})).unwrap(),
            &member,
            Instant::now(),
        );
        assert!(record.is_none(), "introspection decides nothing");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

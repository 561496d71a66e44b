//! Golden tests of the decision pipeline, without root or containers, in the
//! manner of zram-generator's `tests/NN-*/` folders: each folder under
//! `services/dispatcher/tests/decisions/` holds
//!
//! * `config.toml`: the dispatcher's configuration;
//! * `requests.json`: the requests, in order, each with its peer (as
//!   SO_PEERCRED would give it) and how it is signed;
//! * `expected.txt`: one line per request, `outcome | error`, then the
//!   audit reason indented below it.
//!
//! Forwarded actions reach a stand-in action server on a socket in a
//! temporary directory (named so: it only echoes what the dispatcher
//! forwarded; the real actions are tested end to end). `UPDATE_GOLDEN=1
//! cargo test` rewrites `expected.txt`; review the diff before committing.

use crate::fold::Fold;
use crate::handle::{decide_bytes, Ctx};
use crate::identity::Allowed;
use crate::state::Store;
use healing_auth::{sign, Peer, Secret, SecretSource};
use healing_policy::{Config, Policy};
use healing_protocol::{signing_message, ActionReply, ActionRequest, Request, Version};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

const KEY: &[u8] = b"golden-test-key";

fn resolve_user(n: &str) -> Result<Option<u32>, String> {
    Ok(match n {
        "monitor" => Some(1000),
        "other" => Some(1001),
        _ => None,
    })
}
fn resolve_group(n: &str) -> Result<Option<u32>, String> {
    Ok(match n {
        "luminous-healing" => Some(3000),
        "ops" => Some(2000),
        _ => None,
    })
}

/// A stand-in for every action service: answers each forwarded request with
/// what it received, so the golden file shows what was forwarded.
pub(crate) fn stand_in_actions(dir: &Path) -> Vec<std::thread::JoinHandle<()>> {
    healing_policy::ALL_ACTIONS
        .iter()
        .filter(|a| a.is_forwarded())
        .filter_map(|a| UnixListener::bind(dir.join(format!("{}.sock", a.as_str()))).ok())
        .map(|l| {
            std::thread::spawn(move || {
                for s in l.incoming() {
                    let Ok(mut s) = s else { return };
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf);
                    let reply = match serde_json::from_slice::<ActionRequest>(&buf) {
                        Ok(r) if r.parameters.contains_key("fail") => {
                            ActionReply::failed("stand-in action failed")
                        }
                        Ok(r) => ActionReply::ok(format!(
                            "stand-in {} {} dry_run={} caller={}",
                            r.action,
                            Value::Object(r.parameters),
                            r.dry_run,
                            r.caller.uid
                        )),
                        Err(e) => ActionReply::failed(format!("stand-in: bad request {e}")),
                    };
                    let _ = s.write_all(&serde_json::to_vec(&reply).unwrap_or_default());
                }
            })
        })
        .collect()
}

pub(crate) fn ctx(config_text: &str, dir: &Path) -> Result<Ctx, String> {
    let config = Config::parse(config_text).map_err(|e| e.0)?;
    let policy = Policy::from_config(&config, &resolve_user, &resolve_group).map_err(|e| e.0)?;
    let mut allowed = Allowed::default();
    for g in &config.allowed_groups {
        allowed.gids.extend(resolve_group(g).ok().flatten());
    }
    for u in &config.allowed_users {
        allowed.uids.extend(resolve_user(u).ok().flatten());
    }
    Ok(Ctx {
        policy,
        secret: Secret::from_bytes(KEY, SecretSource::Environment)?,
        allowed,
        store: Mutex::new(Store::open(None, crate::handle::now_ms())?),
        socket_dir: dir.to_path_buf(),
        handled: AtomicU64::new(0),
        denied: AtomicU64::new(0),
        audit_required: false,
        fold: Fold::default(),
        config,
    })
}

fn timestamp(kind: &str) -> String {
    let now = chrono::Local::now();
    let t = match kind {
        "stale" => now - chrono::Duration::seconds(3600),
        "future" => now + chrono::Duration::seconds(3600),
        _ => now,
    };
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Builds the wire bytes of one case entry; `k` numbers its repeats, which
/// get ids of their own unless the entry names one.
fn wire(entry: &Value, n: usize, k: u64) -> Value {
    if let Some(raw) = entry.get("raw") {
        return raw.clone();
    }
    let v2 = entry["version"].as_u64() == Some(2);
    let action = entry["action"].as_str().unwrap_or("status").to_string();
    let parameters = entry["parameters"].as_object().cloned().unwrap_or_default();
    let id = entry["id"]
        .as_str()
        .map_or_else(|| format!("golden-{n}-{k}"), str::to_string);
    let dry_run = entry["dry_run"].as_bool() == Some(true);
    let ts = timestamp(entry["ts"].as_str().unwrap_or("now"));
    let req = Request {
        version: if v2 { Version::V2 } else { Version::V1 },
        id: id.clone(),
        action: action.clone(),
        parameters: parameters.clone(),
        timestamp: ts.clone(),
        signature: None,
        dry_run,
    };
    let sig = match entry["sign"].as_str().unwrap_or("good") {
        "none" => Value::Null,
        "bad" => json!(sign(
            b"wrong-key",
            &signing_message(&req).unwrap_or_default()
        )),
        _ => json!(sign(KEY, &signing_message(&req).unwrap_or_default())),
    };
    let mut body = json!({"id": id, "action": action, "parameters": parameters,
        "timestamp": ts, "signature": sig});
    if v2 {
        body["version"] = json!(2);
    }
    if dry_run {
        body["dry_run"] = json!(true);
    }
    body
}

fn peer(entry: &Value) -> Option<Peer> {
    let p = entry.get("peer")?;
    if p.is_null() {
        return None;
    }
    Some(Peer {
        uid: u32::try_from(p["uid"].as_u64().unwrap_or(1000)).unwrap_or(1000),
        gid: u32::try_from(p["gid"].as_u64().unwrap_or(1000)).unwrap_or(1000),
        pid: 4242,
        groups: p["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                    .collect()
            })
            .unwrap_or_else(|| vec![3000]),
    })
}

/// Runs one case folder and returns the text `expected.txt` must equal.
fn run_case(dir: &Path) -> Result<String, String> {
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
    let requests: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("requests.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("requests.json: {e}"))?;
    let tmp = std::env::temp_dir().join(format!(
        "lh-golden-{}-{}",
        std::process::id(),
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let _servers = stand_in_actions(&tmp);
    let ctx = match ctx(&config, &tmp) {
        Ok(c) => c,
        Err(e) => return Ok(format!("start-up error | {e}\n")),
    };
    let mut out = String::new();
    for (n, entry) in requests.as_array().into_iter().flatten().enumerate() {
        let repeat = entry["repeat"].as_u64().unwrap_or(1);
        for k in 0..repeat {
            let h = decide_bytes(&ctx, Ok(wire(entry, n, k)), peer(entry).as_ref());
            let v = &h.verdict;
            out.push_str(&format!(
                "{}{} | {}\n    {}\n",
                v.outcome.as_str(),
                if v.unauthenticated { " (folded)" } else { "" },
                v.error.as_deref().or(v.output.as_deref()).unwrap_or(""),
                v.reason
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(scrub(&out))
}

/// Replaces what differs from run to run (clock times, second counts) by
/// placeholders, so the golden files compare exactly.
fn scrub(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let shape = |at: usize, pat: &[u8]| -> bool {
        pat.iter().enumerate().all(|(j, p)| {
            b.get(at + j).is_some_and(|c| {
                if *p == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == p
                }
            })
        })
    };
    while i < b.len() {
        if shape(i, b"9999-99-99T99:99:99") {
            out.push_str("<time>");
            i += 19;
            while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'.') {
                i += 1;
            }
        } else if shape(i, b"9999-99-99 99:99:99 UTC") {
            out.push_str("<time>");
            i += 23;
        } else if b[i..].starts_with(b"is ") && b.get(i + 3).is_some_and(u8::is_ascii_digit) {
            out.push_str("is N");
            i += 3;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    out
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/decisions");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_dir());
    v.sort();
    v
}

#[test]
fn decisions_match_the_golden_files() {
    let cases = cases();
    assert!(cases.len() >= 10, "golden cases missing: {}", cases.len());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failed = Vec::new();
    for dir in cases {
        let got = run_case(&dir).unwrap_or_else(|e| format!("runner error | {e}\n"));
        // Times in replies vary from run to run; the golden files hold none.
        let expected_path = dir.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &got).unwrap_or_default();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failed.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                dir.display()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

//! The test vectors in docs/protocol.md are checked against the code, so the
//! document cannot drift from what the dispatcher accepts.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // a test: failing loudly is the point

use healing_auth::{sign, verify};
use healing_protocol::{parse_request, signing_message};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let doc = include_str!("../../../docs/protocol.md");
    let start =
        doc.find("```json test-vectors").expect("vector block") + "```json test-vectors".len();
    let end = start + doc[start..].find("```").expect("end of vector block");
    serde_json::from_str(&doc[start..end]).expect("vectors are JSON")
}

#[test]
fn every_documented_vector_matches() {
    let vs = vectors();
    assert!(vs.len() >= 6);
    for v in vs {
        let name = v["name"].as_str().unwrap();
        let key = v["key"].as_str().unwrap().as_bytes();
        let req = parse_request(v["request"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let msg = signing_message(&req).unwrap();
        assert_eq!(msg, v["message"].as_str().unwrap(), "{name}: message");
        assert_eq!(
            sign(key, &msg),
            v["signature"].as_str().unwrap(),
            "{name}: signature"
        );
        assert!(
            verify(key, &msg, req.signature.as_deref().unwrap()),
            "{name}: verify"
        );
    }
}

#[test]
fn v2_parameter_order_does_not_matter_but_values_do() {
    let vs = vectors();
    let v = vs.iter().find(|v| v["name"] == "v2-kill-process").unwrap();
    let mut req = parse_request(v["request"].clone()).unwrap();
    let sig = req.signature.clone().unwrap();
    let key = v["key"].as_str().unwrap().as_bytes();
    req.parameters.insert("pid".into(), Value::from(4243));
    assert!(!verify(key, &signing_message(&req).unwrap(), &sig));
}

#[test]
fn a_dry_run_is_signed_as_a_last_line_and_v2_only() {
    let vs = vectors();
    let v = vs
        .iter()
        .find(|v| v["name"] == "v2-dry-run")
        .expect("the v2-dry-run vector");
    let key = v["key"].as_str().unwrap().as_bytes();
    let mut req = parse_request(v["request"].clone()).unwrap();
    assert!(req.dry_run);
    let sig = req.signature.clone().unwrap();
    let msg = signing_message(&req).unwrap();
    assert!(msg.ends_with("\ndry-run"), "{msg}");
    // The same request without the flag is a real one: its message lacks
    // the last line, and the dry run's signature does not cover it.
    req.dry_run = false;
    let real = signing_message(&req).unwrap();
    assert_eq!(format!("{real}\ndry-run"), msg);
    assert!(!verify(key, &real, &sig));
    // "dry_run": false signs exactly as no dry_run does.
    let mut explicit_false = v["request"].clone();
    explicit_false["dry_run"] = Value::Bool(false);
    assert_eq!(
        signing_message(&parse_request(explicit_false).unwrap()).unwrap(),
        real
    );
    // v1 has no way to sign it: the field is refused.
    let mut v1 = v["request"].clone();
    v1.as_object_mut().unwrap().remove("version");
    assert!(parse_request(v1).unwrap_err().contains("dry_run"));
}

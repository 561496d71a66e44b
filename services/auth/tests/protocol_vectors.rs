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
    assert!(vs.len() >= 5);
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

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: a failed unwrap is a failed test
//! Inputs the fuzz targets found (fuzz/regressions/<target>/), fed to the
//! same checks under plain `cargo test`.
use healing_protocol::{
    canonical_parameters, parse_request, read_one_object, signing_message, ActionRequest, ReadError,
};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    match std::fs::read_dir(&dir) {
        Ok(d) => d
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// As fuzz_targets/codec.rs: the first byte is the chunk size.
fn codec(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let owned = body.to_vec();
    let w = std::thread::spawn(move || {
        for c in owned.chunks(usize::from(step).max(1)) {
            if a.write_all(c).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let r = read_one_object(&mut b, 4096, Duration::from_secs(5));
    drop(b);
    w.join().unwrap();
    assert_ne!(r, Err(ReadError::Timeout));
    match r {
        // A bare number is not self-delimiting: "2" of "2-" reads as 2; the
        // envelope refuses it like any value that is not an object.
        Ok(v) if v.is_number() => assert!(parse_request(v).is_err()),
        Ok(v) => {
            let first = serde_json::Deserializer::from_slice(body)
                .into_iter::<serde_json::Value>()
                .next();
            assert_eq!(Some(v), first.and_then(Result::ok));
        }
        Err(_) => {}
    }
}

fn request(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(r) = parse_request(v) else { return };
    let _ = signing_message(&r);
    if let Ok(c) = canonical_parameters(&r.parameters) {
        let back: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&c).unwrap();
        assert_eq!(back, r.parameters);
    }
}

fn internal(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<ActionRequest>(data) {
        let back: ActionRequest = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn codec_regressions() {
    let all = inputs("codec");
    assert!(!all.is_empty());
    all.iter().for_each(|d| codec(d));
}

#[test]
fn request_and_internal_regressions() {
    inputs("request").iter().for_each(|d| request(d));
    inputs("internal").iter().for_each(|d| internal(d));
}

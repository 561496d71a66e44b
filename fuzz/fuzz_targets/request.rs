//! v1/v2 envelope parsing and the signing message: never a panic; whatever
//! parses signs deterministically, and v2's canonical parameters read back
//! as the same map.
#![no_main]
use healing_protocol::{canonical_parameters, parse_request, signing_message, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(r) = parse_request(v) else { return };
    let m1 = signing_message(&r);
    assert_eq!(m1, signing_message(&r));
    if let Ok(c) = canonical_parameters(&r.parameters) {
        let back: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&c).expect("canonical parameters are JSON");
        assert_eq!(back, r.parameters);
        assert_eq!(canonical_parameters(&back).as_deref(), Ok(c.as_str()));
    } else {
        assert!(r.version == Version::V1 || m1.is_err());
    }
});

//! The dispatcher-to-action messages: what deserializes serializes back to
//! the same value.
#![no_main]
use healing_protocol::{ActionReply, ActionRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<ActionRequest>(data) {
        let text = serde_json::to_vec(&r).expect("serializes");
        let back: ActionRequest = serde_json::from_slice(&text).expect("reads back");
        assert_eq!(back, r);
    }
    if let Ok(r) = serde_json::from_slice::<ActionReply>(data) {
        let text = serde_json::to_vec(&r).expect("serializes");
        let back: ActionReply = serde_json::from_slice(&text).expect("reads back");
        assert_eq!(back, r);
    }
});

use serde::{Deserialize, Serialize};

/// The reply. Exactly these five keys: the v1 client builds a dataclass from
/// them and fails on any other.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub request_id: String,
    pub success: bool,
    pub output: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

const MARKER: &str = "\n[output truncated by luminous-healing]";

/// Cuts `s` to at most `max` bytes on a character boundary, with a marker.
pub fn truncate_output(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max.saturating_sub(MARKER.len());
    while cut > 0 && !s.is_char_boundary(cut) {
        cut = cut.saturating_sub(1);
    }
    format!("{}{MARKER}", s.get(..cut).unwrap_or_default())
}

/// Encodes the reply so that it always fits the client's single 64 KiB read:
/// escaping can grow the output up to six times, so shrink until it fits.
pub fn encode_response(r: &Response) -> Vec<u8> {
    // Nearly every reply fits: serialized as it is, not copied first.
    let bytes = serde_json::to_vec(r).unwrap_or_else(|_| b"{}".to_vec());
    if bytes.len() < crate::MAX_MESSAGE - 512 {
        return bytes;
    }
    let mut r = r.clone();
    let mut budget = crate::MAX_MESSAGE - 1024;
    loop {
        let bytes = serde_json::to_vec(&r).unwrap_or_else(|_| b"{}".to_vec());
        if bytes.len() < crate::MAX_MESSAGE - 512 || budget < 64 {
            return bytes;
        }
        budget /= 2;
        r.output = r.output.as_deref().map(|o| truncate_output(o, budget));
        r.error = r
            .error
            .as_deref()
            .map(|e| truncate_output(e, budget.min(4096)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_five_keys_in_order() {
        let r = Response {
            request_id: "x".into(),
            success: true,
            output: None,
            error: None,
            duration_ms: 3,
        };
        assert_eq!(
            String::from_utf8(encode_response(&r)).unwrap(),
            r#"{"request_id":"x","success":true,"output":null,"error":null,"duration_ms":3}"#
        );
    }

    #[test]
    fn long_output_is_truncated_to_fit_one_read_even_when_escaped() {
        for filler in ["a", "\u{1}", "é"] {
            let r = Response {
                request_id: "x".into(),
                success: true,
                output: Some(filler.repeat(200_000)),
                error: None,
                duration_ms: 0,
            };
            let b = encode_response(&r);
            assert!(b.len() < 65536, "{}", b.len());
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert!(v["output"].as_str().unwrap().ends_with(MARKER));
        }
    }
}

//! Request envelope and the exact bytes each version signs.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The existing Python client: the signature covers id, action, timestamp.
    V1,
    /// The signature covers id, action, timestamp and the parameters.
    V2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub version: Version,
    pub id: String,
    pub action: String,
    pub parameters: Map<String, Value>,
    pub timestamp: String,
    pub signature: Option<String>,
    /// v2 only: check everything, run nothing, say what would be done.
    pub dry_run: bool,
}

const V1_FIELDS: [&str; 5] = ["id", "action", "parameters", "timestamp", "signature"];

/// Checks the envelope. Every field must be present with its type; any other
/// field is refused (the old service did the same). The `Err` text is for the
/// audit record; the caller always sees "Invalid request format".
pub fn parse_request(v: Value) -> Result<Request, String> {
    let Value::Object(mut m) = v else {
        return Err("request is not a JSON object".into());
    };
    let version = match m.remove("version") {
        None => Version::V1,
        Some(Value::Number(n)) if n.as_u64() == Some(2) => Version::V2,
        Some(other) => return Err(format!("unsupported version {other}")),
    };
    let dry_run = match (version, m.remove("dry_run")) {
        (_, None) => false,
        (Version::V2, Some(Value::Bool(b))) => b,
        (Version::V2, Some(_)) => return Err("field \"dry_run\" must be a boolean".into()),
        (Version::V1, Some(_)) => return Err("unknown field \"dry_run\" (v2 only)".into()),
    };
    if let Some(extra) = m.keys().find(|k| !V1_FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field {extra:?}"));
    }
    let string = |m: &mut Map<String, Value>, k: &str| match m.remove(k) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("field {k:?} must be a string")),
        None => Err(format!("field {k:?} is missing")),
    };
    let id = string(&mut m, "id")?;
    let action = string(&mut m, "action")?;
    let timestamp = string(&mut m, "timestamp")?;
    let parameters = match m.remove("parameters") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err("field \"parameters\" must be an object".into()),
        None => return Err("field \"parameters\" is missing".into()),
    };
    let signature = match m.remove("signature") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) => None,
        Some(_) => return Err("field \"signature\" must be a string or null".into()),
        None => return Err("field \"signature\" is missing".into()),
    };
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || invisible(c)) {
        return Err("field \"id\" must be 1-128 printable characters".into());
    }
    Ok(Request {
        version,
        id,
        action,
        parameters,
        timestamp,
        signature,
        dry_run,
    })
}

/// Unicode format characters (general category Cf: bidi overrides,
/// zero-width spaces and joiners, the BOM, tags) and the line and paragraph
/// separators: not printable, and in an audit record they make one id look
/// like another or reorder the text around it.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{0890}'..='\u{0891}' | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// The parameters as v2 signs them: JSON with keys sorted by code point, no
/// white space, non-ASCII left as UTF-8 (Python: `json.dumps(p, sort_keys=True,
/// separators=(",", ":"), ensure_ascii=False)`). Only strings, integers,
/// booleans and null are allowed as values, so every language encodes them
/// to the same bytes.
pub fn canonical_parameters(p: &Map<String, Value>) -> Result<String, String> {
    for (k, v) in p {
        match v {
            Value::String(_) | Value::Bool(_) | Value::Null => {}
            Value::Number(n) if n.is_i64() || n.is_u64() => {}
            _ => {
                return Err(format!(
                    "parameter {k:?}: v2 allows only strings, integers, booleans and null"
                ))
            }
        }
    }
    // serde_json's Map is a BTreeMap (no preserve_order feature), so keys come
    // out sorted by their UTF-8 bytes, which is code point order.
    serde_json::to_string(p).map_err(|e| e.to_string())
}

/// The exact message whose HMAC-SHA256 is the request's signature.
pub fn signing_message(r: &Request) -> Result<String, String> {
    Ok(match r.version {
        Version::V1 => format!("{}:{}:{}", r.id, r.action, r.timestamp),
        // A dry run is signed too, as a last line, so it cannot be turned
        // into a real request (or back) on the way; without it the message is
        // unchanged from before dry runs existed.
        Version::V2 => format!(
            "luminous-healing-v2\n{}\n{}\n{}\n{}{}",
            r.id,
            r.action,
            r.timestamp,
            canonical_parameters(&r.parameters)?,
            if r.dry_run { "\ndry-run" } else { "" }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1() -> Value {
        json!({"id": "a", "action": "status", "parameters": {}, "timestamp": "2025-01-01T00:00:00", "signature": null})
    }

    #[test]
    fn v1_envelope_parses_and_signs_the_old_message() {
        let r = parse_request(v1()).unwrap();
        assert_eq!(r.version, Version::V1);
        assert_eq!(signing_message(&r).unwrap(), "a:status:2025-01-01T00:00:00");
    }

    #[test]
    fn extra_or_missing_fields_are_refused() {
        let mut v = v1();
        v["extra"] = json!(1);
        assert!(parse_request(v).unwrap_err().contains("extra"));
        for k in V1_FIELDS {
            let mut v = v1();
            v.as_object_mut().unwrap().remove(k);
            assert!(parse_request(v).is_err(), "{k}");
        }
        assert!(parse_request(json!([1])).is_err());
        let mut v = v1();
        v["version"] = json!(3);
        assert!(parse_request(v).is_err());
    }

    #[test]
    fn v2_signs_sorted_compact_parameters() {
        let mut v = v1();
        v["version"] = json!(2);
        v["action"] = json!("kill_process");
        v["parameters"] = json!({"signal": "TERM", "pid": 1234});
        let r = parse_request(v).unwrap();
        assert_eq!(
            signing_message(&r).unwrap(),
            "luminous-healing-v2\na\nkill_process\n2025-01-01T00:00:00\n{\"pid\":1234,\"signal\":\"TERM\"}"
        );
        let mut r2 = r.clone();
        r2.parameters.insert("x".into(), json!(1.5));
        assert!(signing_message(&r2).is_err());
    }

    #[test]
    fn ids_with_format_or_separator_characters_are_refused() {
        // found by tests/reliability_hostile.sh: a bidi override or a
        // zero-width space in an id was accepted and reached the journal
        for id in [
            "req-\u{202e}1337",
            "req\u{200b}-1",
            "req\u{2028}-1",
            "\u{feff}a",
            "a\u{e0041}",
        ] {
            let mut v = v1();
            v["id"] = json!(id);
            assert!(
                parse_request(v).unwrap_err().contains("printable"),
                "{id:?}"
            );
        }
        // look-alikes are printable: distinct ids, compared byte for byte
        let mut v = v1();
        v["id"] = json!("id-\u{0430}");
        assert_eq!(parse_request(v).unwrap().id, "id-\u{0430}");
    }

    #[test]
    fn dry_run_is_v2_only_and_signed() {
        let mut v = v1();
        v["dry_run"] = json!(true);
        assert!(parse_request(v.clone()).unwrap_err().contains("v2 only"));
        v["version"] = json!(2);
        let r = parse_request(v.clone()).unwrap();
        assert!(r.dry_run);
        assert!(signing_message(&r).unwrap().ends_with("\n{}\ndry-run"));
        v["dry_run"] = json!("yes");
        assert!(parse_request(v).is_err());
    }
}

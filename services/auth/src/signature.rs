use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `message` under `key`.
pub fn sign(key: &[u8], message: &str) -> String {
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => String::new(),
    }
}

/// Constant-time check of a hex signature (upper or lower case). A signature
/// that is not 64 hex digits is simply wrong; its length is public anyway.
pub fn verify(key: &[u8], message: &str, signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    mac.update(message.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let s = sign(b"k", "m");
        assert!(verify(b"k", "m", &s));
        assert!(verify(b"k", "m", &s.to_uppercase()));
        assert!(!verify(b"k", "m2", &s));
        assert!(!verify(b"k2", "m", &s));
        assert!(!verify(b"k", "m", &s[..62]));
        assert!(!verify(b"k", "m", "zz"));
        assert!(!verify(b"k", "m", ""));
    }
}

use std::io::Read;

/// A random (version 4) UUID from /dev/urandom, as the v1 client sends and
/// as the dispatcher names each Varlink call.
pub fn uuid4() -> Result<String, String> {
    // Opened once: a Varlink call names itself with one read, not three
    // system calls.
    static URANDOM: std::sync::OnceLock<std::io::Result<std::fs::File>> =
        std::sync::OnceLock::new();
    let mut b = [0u8; 16];
    match URANDOM.get_or_init(|| std::fs::File::open("/dev/urandom")) {
        Ok(f) => {
            let mut f: &std::fs::File = f;
            f.read_exact(&mut b)
        }
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    }
    .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    // The version (4) and variant (10xx) bits of RFC 9562.
    if let Some(v) = b.get_mut(6) {
        *v = (*v & 0x0f) | 0x40;
    }
    if let Some(v) = b.get_mut(8) {
        *v = (*v & 0x3f) | 0x80;
    }
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{x:02x}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuid_is_version_4() {
        let u = super::uuid4().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}

use std::path::Path;

/// The shared HMAC key. Never printed: Debug shows only where it came from.
pub struct Secret {
    key: Vec<u8>,
    pub source: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `$CREDENTIALS_DIRECTORY/secret` (LoadCredential=secret:...).
    Credential,
    /// LUMINOUS_HEALING_SECRET: visible in the process environment, so only a
    /// fallback, with a warning.
    Environment,
    File(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({:?}, {} bytes)", self.source, self.key.len())
    }
}

pub const CREDENTIAL_NAME: &str = "secret";
pub const ENV_NAME: &str = "LUMINOUS_HEALING_SECRET";
/// What the unit's `SetCredential=` passes when the secret file is missing.
pub const MISSING_MARKER: &[u8] = b"luminous-healing-secret-missing";

impl Secret {
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn from_bytes(bytes: &[u8], source: SecretSource) -> Result<Secret, String> {
        // One trailing newline is what `echo secret > file` adds; the key is
        // the text before it.
        let key = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(bytes);
        if key.is_empty() {
            return Err(format!("the secret from {source:?} is empty"));
        }
        Ok(Secret {
            key: key.to_vec(),
            source,
        })
    }

    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read secret {}: {e}", path.display()))?;
        Secret::from_bytes(&bytes, SecretSource::File(path.display().to_string()))
    }

    /// The systemd credential `secret`, else the environment. There is no
    /// built-in key: without either, this is an error that says how to fix it.
    pub fn load() -> Result<Secret, String> {
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let p = Path::new(&dir).join(CREDENTIAL_NAME);
            if p.exists() {
                let bytes = std::fs::read(&p)
                    .map_err(|e| format!("cannot read credential {}: {e}", p.display()))?;
                if bytes == MISSING_MARKER {
                    return Err(format!(
                        "the secret file is missing: create /etc/luminous-healing/secret \
                         (scripts/install.sh does, mode 0600) or point \
                         LoadCredential={CREDENTIAL_NAME}:PATH at the key file"
                    ));
                }
                return Secret::from_bytes(&bytes, SecretSource::Credential).map_err(|_| {
                    format!(
                        "the credential {CREDENTIAL_NAME:?} is empty: its file is missing or empty; \
                         create /etc/luminous-healing/secret (scripts/install.sh does) or point \
                         LoadCredential={CREDENTIAL_NAME}:PATH at the key file"
                    )
                });
            }
        }
        if let Some(v) = std::env::var_os(ENV_NAME) {
            use std::os::unix::ffi::OsStrExt;
            return Secret::from_bytes(v.as_bytes(), SecretSource::Environment);
        }
        Err(format!(
            "no secret: set LoadCredential={CREDENTIAL_NAME}:/etc/luminous-healing/secret on the unit \
             (scripts/install.sh creates that file), or {ENV_NAME} when running by hand"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newline_stripped_and_empty_refused() {
        let s = Secret::from_bytes(b"abc\n", SecretSource::Environment).unwrap();
        assert_eq!(s.key(), b"abc");
        assert!(Secret::from_bytes(b"\n", SecretSource::Environment).is_err());
        assert!(Secret::from_bytes(b"", SecretSource::Environment).is_err());
        assert!(!format!("{s:?}").contains("abc"));
    }
}

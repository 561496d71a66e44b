//! Unit-name patterns and the built-in list of units no request may touch.
//!
//! Patterns are shell globs (`*`, `?`, `[...]`) over whole unit names, as
//! systemd's own `systemctl restart 'app-*'` matches them. A pattern without
//! a type suffix means a `.service`, the way a bare name does.

use crate::schema::validate_unit_name;

/// A validated unit-name glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPattern {
    text: String,
    pattern: glob::Pattern,
}

impl UnitPattern {
    /// Parses `text`. Characters outside systemd's unit-name set and the glob
    /// metacharacters, or an unclosed `[`, are an error naming the pattern.
    pub fn parse(text: &str) -> Result<UnitPattern, String> {
        if text.is_empty() {
            return Err("unit pattern is empty".into());
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ":_.-@\\*?[]!".contains(*c)))
        {
            return Err(format!("unit pattern {text:?} contains {c:?}"));
        }
        let full = if text.contains(['*', '?', '[']) {
            if has_suffix(text) || text.ends_with('*') {
                text.to_string()
            } else {
                format!("{text}.service")
            }
        } else {
            validate_unit_name(text).map_err(|e| format!("unit pattern {text:?}: {e}"))?
        };
        let pattern = glob::Pattern::new(&full)
            .map_err(|e| format!("unit pattern {text:?} is not a valid glob: {}", e.msg))?;
        Ok(UnitPattern {
            text: full,
            pattern,
        })
    }

    pub fn matches(&self, unit: &str) -> bool {
        self.pattern.matches(unit)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn has_suffix(s: &str) -> bool {
    [
        ".service", ".socket", ".target", ".timer", ".path", ".scope", ".slice", ".mount",
    ]
    .iter()
    .any(|x| s.ends_with(x))
}

/// Units whose restart or whose processes' death breaks the host or this
/// executor, with the reason given to the caller. docs/policy.md lists them.
pub const PROTECTED_UNITS: &[(&str, &str)] = &[
    (
        "luminous-healing.service",
        "the dispatcher itself: restarting it cuts the request that asked",
    ),
    (
        "luminous-healing.socket",
        "the dispatcher's socket: every caller would lose access",
    ),
    (
        "luminous-healing-*",
        "an action of this executor: it would stop the process doing the work",
    ),
    (
        "dbus*",
        "the system bus: every bus client on the host loses its connection",
    ),
    (
        "systemd-journald*",
        "the journal: the audit record of this very request could be lost",
    ),
    (
        "systemd-logind.service",
        "logind: every session on the host is affected",
    ),
    (
        "systemd-udevd*",
        "udev: device events are lost while it restarts",
    ),
    (
        "user@*",
        "a user's service manager: it ends that user's services",
    ),
    ("getty@*", "a login console: it ends the session on it"),
    (
        "serial-getty@*",
        "a serial console: it ends the session on it",
    ),
    (
        "console-getty.service",
        "the console login: it ends the session on it",
    ),
    (
        "emergency.service",
        "a rescue shell: restarting it starts a root shell on the console",
    ),
    (
        "rescue.service",
        "a rescue shell: restarting it starts a root shell on the console",
    ),
    (
        "debug-shell.service",
        "a root shell on tty9: starting it opens the host to anyone at the console",
    ),
];

/// Why `unit` is protected, or `None`.
pub fn protected_reason(unit: &str) -> Option<(&'static str, &'static str)> {
    PROTECTED_UNITS
        .iter()
        .find(|(pat, _)| glob::Pattern::new(pat).is_ok_and(|p| p.matches(unit)))
        .copied()
}

/// Every protected pattern with its reason, for docs and tests.
pub fn protected_units() -> impl Iterator<Item = (&'static str, &'static str)> {
    PROTECTED_UNITS.iter().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let p = UnitPattern::parse("app-*.service").unwrap();
        assert!(p.matches("app-web.service"));
        assert!(!p.matches("xapp-web.service"));
        assert!(!p.matches("app-web.socket"));
        let bare = UnitPattern::parse("nginx").unwrap();
        assert_eq!(bare.as_str(), "nginx.service");
        assert!(bare.matches("nginx.service"));
        let q = UnitPattern::parse("worker@?").unwrap();
        assert_eq!(q.as_str(), "worker@?.service");
        assert!(q.matches("worker@1.service"));
        assert!(UnitPattern::parse("web-*")
            .unwrap()
            .matches("web-a.service"));
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in ["", "app-[.service", "a b*", "../x", "x/y*", "foo.device"] {
            let e = UnitPattern::parse(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) || bad.is_empty(),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn protected_list() {
        for u in [
            "dbus.service",
            "dbus-broker.service",
            "systemd-journald.service",
            "systemd-journald@ns.service",
            "systemd-logind.service",
            "systemd-udevd.service",
            "user@1000.service",
            "getty@tty1.service",
            "serial-getty@ttyS0.service",
            "console-getty.service",
            "emergency.service",
            "rescue.service",
            "debug-shell.service",
            "luminous-healing.service",
            "luminous-healing-kill_process.service",
        ] {
            assert!(protected_reason(u).is_some(), "{u}");
        }
        for u in [
            "nginx.service",
            "systemd-networkd.service",
            "luminous-healingd.service",
        ] {
            assert!(protected_reason(u).is_none(), "{u}");
        }
        assert_eq!(protected_units().count(), 14);
    }
}

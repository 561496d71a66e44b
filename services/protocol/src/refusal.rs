//! Every reason the dispatcher refuses a request, typed. `Display` is the
//! `error` string on the wire: the v1 strings existing clients match on
//! ("Invalid request format", "Invalid signature", "Action X not allowed",
//! "Rate limit exceeded") are kept byte for byte, and [`Refusal::classify`]
//! maps a wire string back, so healctl decides by variant, not by prefix.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not one JSON object, or not the envelope.
    InvalidFormat,
    InvalidSignature,
    /// Unknown or disabled action (the v1 string).
    NotAllowed {
        action: String,
    },
    RateLimited,
    /// Not root, an allowed user or in an allowed group.
    CallerNotAllowed,
    /// The caller holds too many open connections.
    TooManyConnections,
    ProtocolNotAccepted {
        version: String,
    },
    InvalidTimestamp,
    StaleTimestamp,
    FutureTimestamp,
    Replayed,
    /// The caller's share of the replay cache is full.
    ServerBusy,
    InvalidParameters {
        detail: String,
    },
    /// The authorize stage's refusal, with the rule it names.
    Policy {
        text: String,
    },
    /// A unit restarted too often in the breaker's window.
    Breaker {
        unit: String,
        max: u32,
        window_secs: u64,
    },
    Paused {
        reason: String,
    },
    /// The accepted record could not be handed to the journal: nothing ran.
    AuditUnavailable {
        detail: String,
    },
    /// The state store could not record the request: nothing ran.
    StateUnavailable {
        detail: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InvalidFormat => f.write_str(crate::errors::INVALID_FORMAT),
            Refusal::InvalidSignature => f.write_str(crate::errors::INVALID_SIGNATURE),
            Refusal::NotAllowed { action } => write!(f, "Action {action} not allowed"),
            Refusal::RateLimited => f.write_str(crate::errors::RATE_LIMITED),
            Refusal::CallerNotAllowed => f.write_str("Caller not allowed"),
            Refusal::TooManyConnections => f.write_str("Too many connections"),
            Refusal::ProtocolNotAccepted { version } => {
                write!(f, "Protocol {version} not accepted")
            }
            Refusal::InvalidTimestamp => f.write_str("Invalid timestamp"),
            Refusal::StaleTimestamp => f.write_str("Stale timestamp"),
            Refusal::FutureTimestamp => f.write_str("Timestamp in the future"),
            Refusal::Replayed => f.write_str("Replayed request id"),
            Refusal::ServerBusy => f.write_str("Server busy"),
            Refusal::InvalidParameters { detail } => write!(f, "Invalid parameters: {detail}"),
            Refusal::Policy { text } => write!(f, "Refused: {text}"),
            Refusal::Breaker {
                unit,
                max,
                window_secs,
            } => write!(
                f,
                "Refused: {unit} was restarted {max} times in {window_secs} s; the breaker holds further restarts (rule breaker)"
            ),
            Refusal::Paused { reason } => write!(f, "Refused: luminous-healing is paused: {reason}"),
            Refusal::AuditUnavailable { detail } => write!(f, "Audit unavailable: {detail}"),
            Refusal::StateUnavailable { detail } => write!(f, "State unavailable: {detail}"),
        }
    }
}

/// What kind of answer a wire `error` is, for exit codes and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Authentication failed or the request was malformed: fix the caller.
    Rejected,
    /// Policy, rate limits, breaker, pause: allowed later or never.
    Refused,
    /// The dispatcher cannot vouch for the request now (audit, state).
    Unavailable,
    /// The action ran, or tried to, and failed.
    Failed,
}

impl Refusal {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Refusal::InvalidFormat
            | Refusal::InvalidSignature
            | Refusal::CallerNotAllowed
            | Refusal::ProtocolNotAccepted { .. }
            | Refusal::InvalidTimestamp
            | Refusal::StaleTimestamp
            | Refusal::FutureTimestamp
            | Refusal::Replayed
            | Refusal::InvalidParameters { .. } => ErrorKind::Rejected,
            Refusal::NotAllowed { .. }
            | Refusal::RateLimited
            | Refusal::TooManyConnections
            | Refusal::ServerBusy
            | Refusal::Policy { .. }
            | Refusal::Breaker { .. }
            | Refusal::Paused { .. } => ErrorKind::Refused,
            Refusal::AuditUnavailable { .. } | Refusal::StateUnavailable { .. } => {
                ErrorKind::Unavailable
            }
        }
    }

    /// The kind of a wire `error` string: a refusal's, or else an action's
    /// failure.
    pub fn classify(error: &str) -> ErrorKind {
        const EXACT: [(&str, ErrorKind); 11] = [
            (crate::errors::INVALID_FORMAT, ErrorKind::Rejected),
            (crate::errors::INVALID_SIGNATURE, ErrorKind::Rejected),
            ("Caller not allowed", ErrorKind::Rejected),
            ("Invalid timestamp", ErrorKind::Rejected),
            ("Stale timestamp", ErrorKind::Rejected),
            ("Timestamp in the future", ErrorKind::Rejected),
            ("Replayed request id", ErrorKind::Rejected),
            (crate::errors::RATE_LIMITED, ErrorKind::Refused),
            ("Too many connections", ErrorKind::Refused),
            ("Server busy", ErrorKind::Refused),
            ("", ErrorKind::Failed),
        ];
        if let Some((_, k)) = EXACT.iter().find(|(s, _)| *s == error && !s.is_empty()) {
            return *k;
        }
        let starts = |p: &str| error.starts_with(p);
        if starts("Invalid parameters: ")
            || (starts("Protocol ") && error.ends_with(" not accepted"))
        {
            ErrorKind::Rejected
        } else if starts("Refused: ") || (starts("Action ") && error.ends_with(" not allowed")) {
            ErrorKind::Refused
        } else if starts("Audit unavailable: ") || starts("State unavailable: ") {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Refusal> {
        vec![
            Refusal::InvalidFormat,
            Refusal::InvalidSignature,
            Refusal::NotAllowed {
                action: "reboot".into(),
            },
            Refusal::RateLimited,
            Refusal::CallerNotAllowed,
            Refusal::TooManyConnections,
            Refusal::ProtocolNotAccepted {
                version: "v1".into(),
            },
            Refusal::InvalidTimestamp,
            Refusal::StaleTimestamp,
            Refusal::FutureTimestamp,
            Refusal::Replayed,
            Refusal::ServerBusy,
            Refusal::InvalidParameters { detail: "x".into() },
            Refusal::Policy {
                text: "Unit a.target not allowed (rule services-only)".into(),
            },
            Refusal::Breaker {
                unit: "a.service".into(),
                max: 3,
                window_secs: 900,
            },
            Refusal::Paused {
                reason: "maintenance".into(),
            },
            Refusal::AuditUnavailable {
                detail: "journal".into(),
            },
            Refusal::StateUnavailable {
                detail: "disk".into(),
            },
        ]
    }

    #[test]
    fn v1_strings_are_byte_for_byte() {
        assert_eq!(Refusal::InvalidFormat.to_string(), "Invalid request format");
        assert_eq!(Refusal::InvalidSignature.to_string(), "Invalid signature");
        assert_eq!(Refusal::RateLimited.to_string(), "Rate limit exceeded");
        assert_eq!(
            Refusal::NotAllowed {
                action: "reboot".into()
            }
            .to_string(),
            "Action reboot not allowed"
        );
    }

    #[test]
    fn every_wire_string_classifies_as_its_variant() {
        for r in all() {
            assert_eq!(Refusal::classify(&r.to_string()), r.kind(), "{r}");
        }
        assert_eq!(
            Refusal::classify("restart of a.service failed: x"),
            ErrorKind::Failed
        );
        assert_eq!(Refusal::classify(""), ErrorKind::Failed);
    }
}

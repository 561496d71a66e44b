//! Audit records in the journal, sent with the native protocol so every field
//! is its own journal field: `journalctl HEALING_OUTCOME=denied` and
//! `journalctl -o json` answer who asked for what and what happened.
//!
//! Every request is accounted for by *decision* records (MESSAGE_ID
//! [`DENIED`] or [`FINISHED`], with HEALING_OUTCOME): one per authenticated
//! request, while refusals before authentication are folded per caller into
//! one record carrying HEALING_COUNT=N. The sum of HEALING_COUNT (1 where
//! absent) over decision records is the number of requests. A [`RECEIVED`]
//! record ("accepted") is written after authentication and before an action
//! runs; if it cannot be handed to the journal, the action does not run.
//! The ids are documented in units/catalog/luminous-healing.catalog.

use libsystemd::logging::{journal_send, Priority};
use std::borrow::Cow;
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, PoisonError};

pub const IDENTIFIER: &str = "luminous-healing";
/// A request was authenticated and admitted, and its action is about to run.
pub const RECEIVED: &str = "684efe4b464943ef96605297492e3d0a";
/// A request was refused before anything ran.
pub const DENIED: &str = "f93433f8a0d54625bb05ee63e832c15c";
/// An action ran and finished (successfully or not).
pub const FINISHED: &str = "f35f5bd52b974b76b3886613cc06b638";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CallerIds {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
}

/// One decision about one request.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub request_id: &'a str,
    pub action: &'a str,
    pub outcome: Outcome,
    /// Why denied or failed; for successes a short summary.
    pub reason: &'a str,
    pub caller: &'a CallerIds,
    pub duration_ms: u64,
    /// The request's parameters as JSON (or "{}" when unreadable).
    pub parameters: &'a str,
    /// Protocol version, "v1"/"v2", or "" before it is known.
    pub protocol: &'a str,
    /// Checked everything, ran nothing.
    pub dry_run: bool,
    /// How many requests this record stands for (refusals before
    /// authentication are folded); 1 is not written.
    pub count: u64,
}

fn caller_fields(c: &CallerIds, r: &mut Record) {
    if let Some(v) = c.uid {
        r.number("HEALING_CALLER_UID", v);
    }
    if let Some(v) = c.gid {
        r.number("HEALING_CALLER_GID", v);
    }
    if let Some(v) = c.pid {
        r.number("HEALING_CALLER_PID", v);
    }
}

/// Journal fields are limited in practice; an attacker-sized value must not
/// make the record fail to send (and so go missing).
fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…", &s[..cut]))
}

pub fn decision(d: &Decision<'_>) {
    let (id, prio) = match d.outcome {
        Outcome::Denied => (DENIED, Priority::Warning),
        Outcome::Failure => (FINISHED, Priority::Error),
        Outcome::Success => (FINISHED, Priority::Notice),
    };
    let action = clip(d.action, 128);
    let uid = fmt_uid(d.caller);
    let mut message = match d.outcome {
        Outcome::Denied => format!("denied {action} for uid {uid}: {}", clip(d.reason, 256)),
        Outcome::Failure => format!("{action} failed for uid {uid}: {}", clip(d.reason, 256)),
        Outcome::Success => format!("{action} succeeded for uid {uid}"),
    };
    if d.count > 1 {
        message.push_str(&format!(
            " (and {} more like it within a second)",
            d.count - 1
        ));
    }
    let mut r = Record::new(prio, &message, 256 + d.reason.len() + d.parameters.len());
    r.field("SYSLOG_IDENTIFIER", IDENTIFIER);
    r.field("MESSAGE_ID", id);
    r.field("HEALING_REQUEST_ID", &clip(d.request_id, 128));
    r.field("HEALING_ACTION", &action);
    r.field("HEALING_OUTCOME", d.outcome.as_str());
    r.field("HEALING_REASON", &clip(d.reason, 4096));
    r.number("HEALING_DURATION_MS", d.duration_ms);
    r.field("HEALING_PARAMETERS", &clip(d.parameters, 4096));
    if !d.protocol.is_empty() {
        r.field("HEALING_PROTOCOL", d.protocol);
    }
    if d.dry_run {
        r.field("HEALING_DRY_RUN", "1");
    }
    if d.count > 1 {
        r.number("HEALING_COUNT", d.count);
    }
    caller_fields(d.caller, &mut r);
    // A decision that cannot reach the journal still has its stderr copy;
    // the reply is sent either way.
    let _ = send(prio, &message, &r, false);
}

/// Whether this process logs to a journal: then records must reach it, and
/// the accepted record failing to is a refusal (fail closed). Run by hand on
/// a host without one, stderr is the audit trail.
pub fn journal_present() -> bool {
    std::path::Path::new("/run/systemd/journal/socket").exists()
        || std::env::var_os("JOURNAL_STREAM").is_some()
}

/// The accepted record. `Err` when `required` and the journal did not take
/// it: the caller must not run the action.
pub fn received(
    request_id: &str,
    action: &str,
    caller: &CallerIds,
    protocol: &str,
    required: bool,
) -> Result<(), String> {
    let action = clip(action, 128);
    let message = format!("accepted {action} from uid {}", fmt_uid(caller));
    let mut r = Record::new(Priority::Info, &message, 256);
    r.field("SYSLOG_IDENTIFIER", IDENTIFIER);
    r.field("MESSAGE_ID", RECEIVED);
    r.field("HEALING_REQUEST_ID", &clip(request_id, 128));
    r.field("HEALING_ACTION", &action);
    r.field("HEALING_PROTOCOL", protocol);
    caller_fields(caller, &mut r);
    send(Priority::Info, &message, &r, required)
}

/// A service-level message (start-up, configuration), not about a request.
pub fn service(prio: Priority, message: &str) {
    let mut r = Record::new(prio, message, 32);
    r.field("SYSLOG_IDENTIFIER", IDENTIFIER);
    let _ = send(prio, message, &r, false);
}

pub use libsystemd::logging::Priority as Level;

fn fmt_uid(c: &CallerIds) -> String {
    c.uid.map_or_else(|| "?".into(), |u| u.to_string())
}

/// journald's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// One datagram socket for the process, connected once: a record is then a
/// single send(2), with no path look-up per record (sendto(2) with an
/// address resolves the socket path every time).
static JOURNAL: Mutex<Option<UnixDatagram>> = Mutex::new(None);

/// One record in the native protocol, written straight into the datagram
/// it is sent as: each field `KEY=value\n`, or, when the value has a
/// newline, `KEY\n` + its length as little-endian u64 + value + `\n`.
/// Built in place rather than as a list of owned strings: a record is then
/// one allocation, on every request's path.
struct Record {
    buf: Vec<u8>,
}

impl Record {
    fn new(prio: Priority, message: &str, room: usize) -> Record {
        let mut r = Record {
            buf: Vec::with_capacity(room + message.len() + 32),
        };
        r.field("PRIORITY", priority_number(prio));
        r.field("MESSAGE", message);
        r
    }

    fn field(&mut self, key: &str, value: &str) {
        let buf = &mut self.buf;
        buf.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            buf.push(b'\n');
            buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            buf.push(b'=');
        }
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'\n');
    }

    fn number(&mut self, key: &str, value: impl std::fmt::Display) {
        use std::io::Write as _;
        self.buf.extend_from_slice(key.as_bytes());
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buf, "={value}");
    }

    /// The fields back as (key, value), PRIORITY and MESSAGE left out: for
    /// the rare paths that need them apart (a record too large for one
    /// datagram, no journal at all).
    fn fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = self.buf.as_slice();
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|b| *b == b'=' || *b == b'\n') else {
                break;
            };
            let key = String::from_utf8_lossy(&rest[..end]).into_owned();
            let (value, next) = if rest[end] == b'=' {
                let v = &rest[end + 1..];
                let stop = v.iter().position(|b| *b == b'\n').unwrap_or(v.len());
                (&v[..stop], v.get(stop + 1..).unwrap_or(&[]))
            } else {
                let v = &rest[end + 1..];
                let Some(len) = v.get(..8).and_then(|l| <[u8; 8]>::try_from(l).ok()) else {
                    break;
                };
                let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
                let body = v.get(8..).unwrap_or(&[]);
                let len = len.min(body.len());
                (&body[..len], body.get(len + 1..).unwrap_or(&[]))
            };
            if key != "PRIORITY" && key != "MESSAGE" {
                out.push((key, String::from_utf8_lossy(value).into_owned()));
            }
            rest = next;
        }
        out
    }
}

fn priority_number(p: Priority) -> &'static str {
    match u8::from(p) {
        0 => "0",
        1 => "1",
        2 => "2",
        3 => "3",
        4 => "4",
        5 => "5",
        6 => "6",
        _ => "7",
    }
}

/// Sends one datagram; (re)connects when there is no socket yet or journald
/// was restarted (the old socket's peer is gone).
fn send_native(buf: &[u8]) -> std::io::Result<()> {
    let mut sock = JOURNAL.lock().unwrap_or_else(PoisonError::into_inner);
    for attempt in 0..2 {
        if sock.is_none() {
            let s = UnixDatagram::unbound()?;
            s.connect(JOURNAL_SOCKET)?;
            *sock = Some(s);
        }
        let Some(s) = sock.as_ref() else { continue };
        match s.send(buf) {
            Ok(_) => return Ok(()),
            Err(e)
                if attempt == 0
                    && matches!(
                        e.raw_os_error(),
                        Some(libc_errno::ECONNREFUSED | libc_errno::ENOTCONN)
                    ) =>
            {
                *sock = None;
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("journal socket unavailable"))
}

/// The two errnos that mean "journald went away", without a libc dependency.
mod libc_errno {
    pub const ECONNREFUSED: i32 = 111;
    pub const ENOTCONN: i32 = 107;
}

/// `required`: the journal must take the record; no stderr fallback.
fn send(prio: Priority, message: &str, record: &Record, required: bool) -> Result<(), String> {
    let sent = match send_native(&record.buf) {
        Ok(()) => Ok(()),
        // Too large for one datagram: libsystemd passes it in a memfd.
        Err(e) if e.raw_os_error() == Some(90 /* EMSGSIZE */) => {
            let fields = record.fields();
            journal_send(
                prio,
                message,
                fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        if required {
            return Err(format!("the journal did not take the record: {e}"));
        }
        // No journal (run by hand outside systemd): keep the record on stderr
        // rather than lose it.
        let obj: serde_json::Map<String, serde_json::Value> = record
            .fields()
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .chain([(
                "MESSAGE".to_string(),
                serde_json::Value::String(message.into()),
            )])
            .collect();
        let mut line = serde_json::Value::Object(obj).to_string();
        line.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bit_hex_and_distinct() {
        for id in [RECEIVED, DENIED, FINISHED] {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_ne!(RECEIVED, DENIED);
        assert_ne!(DENIED, FINISHED);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("ééé", 3), "é…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn native_encoding_is_one_buffer_with_binary_safe_values() {
        let mut r = Record::new(Priority::Warning, "two\nlines", 0);
        r.field("HEALING_ACTION", "status");
        r.number("HEALING_COUNT", 12u64);
        let mut want = b"PRIORITY=4\nMESSAGE\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\nHEALING_ACTION=status\nHEALING_COUNT=12\n");
        assert_eq!(r.buf, want);
    }

    #[test]
    fn fields_read_back_what_was_written_newlines_included() {
        let mut r = Record::new(Priority::Notice, "m", 0);
        r.field("HEALING_REASON", "a\nb=c");
        r.field("HEALING_ACTION", "x=y");
        r.number("HEALING_CALLER_PID", 7u32);
        r.field("HEALING_PARAMETERS", "");
        let want: Vec<(String, String)> = [
            ("HEALING_REASON", "a\nb=c"),
            ("HEALING_ACTION", "x=y"),
            ("HEALING_CALLER_PID", "7"),
            ("HEALING_PARAMETERS", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(r.fields(), want);
    }
}

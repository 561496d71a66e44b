//! Hands a validated request to its action service over
//! `/run/luminous-healing/actions/<action>.sock` and waits for the reply.

use healing_protocol::{ActionReply, ActionRequest};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Largest reply read from an action; it is truncated for the client anyway.
const MAX_REPLY: u64 = 1024 * 1024;

pub fn forward(
    socket_dir: &Path,
    req: &ActionRequest,
    timeout: Duration,
) -> Result<ActionReply, String> {
    let path = socket_dir.join(format!("{}.sock", req.action));
    let unit = format!("luminous-healing-{}.socket", req.action);
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(format!(
                "Action {} unavailable: {} does not exist (is {unit} enabled?)",
                req.action,
                path.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "Action {} unavailable: cannot connect to {}: {e}",
                req.action,
                path.display()
            ))
        }
    };
    let io = |e: std::io::Error| format!("Action {} failed: {e}", req.action);
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_vec(req).map_err(|e| format!("Action {} failed: {e}", req.action))?;
    line.push(b'\n');
    s.write_all(&line).map_err(io)?;
    let _ = s.shutdown(Shutdown::Write);
    let mut buf = Vec::new();
    match (&mut s).take(MAX_REPLY).read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Err(format!(
                "Action {} timed out after {} s",
                req.action,
                timeout.as_secs()
            ))
        }
        Err(e) => return Err(io(e)),
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "Action {} ended without a reply (the service was stopped or crashed; see journalctl -u luminous-healing-{}.service)",
            req.action, req.action
        ));
    }
    serde_json::from_slice(&buf)
        .map_err(|e| format!("Action {} sent an invalid reply: {e}", req.action))
}

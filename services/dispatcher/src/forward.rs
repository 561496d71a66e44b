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
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            return Err(format!(
                "Action {} unavailable: nothing listens on {} (see systemctl status {unit})",
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
    // A service that cannot start (or dies before it answers) shows here as a
    // connection systemd resets, a write into a closed socket, or no reply.
    let unavailable = || {
        format!(
            "Action {} unavailable: its service failed to start or crashed; see journalctl -u luminous-healing-{}.service",
            req.action, req.action
        )
    };
    let io = |e: std::io::Error| match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => unavailable(),
        _ => format!("Action {} failed: {e}", req.action),
    };
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
        return Err(unavailable());
    }
    serde_json::from_slice(&buf)
        .map_err(|e| format!("Action {} sent an invalid reply: {e}", req.action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use healing_protocol::Caller;
    use std::os::unix::net::UnixListener;

    fn request() -> ActionRequest {
        ActionRequest {
            id: "t".into(),
            action: "clean_nix_store".into(),
            parameters: Default::default(),
            caller: Caller {
                uid: 0,
                gid: 0,
                pid: 1,
                groups: vec![],
            },
            dry_run: false,
        }
    }

    // What the dispatcher sees when systemd drops a queued connection (the
    // service never read it) or the service dies after reading it.
    #[test]
    fn reset_or_empty_reply_names_the_service_to_look_at() {
        let dir = std::env::temp_dir().join(format!("lh-forward-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(dir.join("clean_nix_store.sock")).unwrap();
        let want = "Action clean_nix_store unavailable: its service failed to start or crashed; \
                    see journalctl -u luminous-healing-clean_nix_store.service";
        for read_first in [false, true] {
            let server = std::thread::spawn({
                let l = listener.try_clone().unwrap();
                move || {
                    let (mut c, _) = l.accept().unwrap();
                    if read_first {
                        let mut b = Vec::new();
                        let _ = c.read_to_end(&mut b);
                    } else {
                        // close with the request unread: the peer gets a reset
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
            let err = forward(&dir, &request(), Duration::from_secs(5)).unwrap_err();
            server.join().unwrap();
            assert_eq!(err, want, "read_first={read_first}");
        }
        drop(listener);
        // a socket file that nothing listens on
        let err = forward(&dir, &request(), Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("nothing listens on"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

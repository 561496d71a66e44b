//! The baseline for scripts/bench: the cheapest possible socket-activated
//! (Accept=no) server. One thread, one read, the same bytes back, close.
//! Whatever the dispatcher costs beyond this is its own work (parsing,
//! checks, state, audit, thread per connection), not the kernel's or
//! systemd's. std only, so a bare `rustc` builds it.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;

fn main() {
    let activated = std::env::var("LISTEN_PID").ok() == Some(std::process::id().to_string())
        && std::env::var("LISTEN_FDS").ok().as_deref() == Some("1");
    let listener = if activated {
        // SAFETY: systemd passes exactly one listening socket as fd 3
        // (LISTEN_FDS=1 for our pid); nothing else owns it.
        unsafe { UnixListener::from_raw_fd(3) }
    } else {
        let Some(path) = std::env::args().nth(1) else {
            eprintln!("usage: lh-bench-echo PATH   (or socket-activated)");
            std::process::exit(2);
        };
        let _ = std::fs::remove_file(&path);
        UnixListener::bind(&path).unwrap_or_else(|e| {
            eprintln!("lh-bench-echo: bind {path}: {e}");
            std::process::exit(1)
        })
    };
    let mut buf = vec![0u8; 65536];
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        if let Ok(n) = s.read(&mut buf) {
            let _ = s.write_all(&buf[..n]);
        }
    }
}

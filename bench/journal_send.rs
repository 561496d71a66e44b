//! For scripts/bench: what the fail-closed audit's "accepted" record costs.
//!
//!   lh-bench-journal-send SOCKET DATAGRAM_FILE N
//!
//! Sends the bytes of DATAGRAM_FILE N times to journald's native socket,
//! exactly as the dispatcher sends a record (`healing_audit::send_native`:
//! one datagram socket, connected once, one send(2) per record), and times
//! each send(2). The driver fills DATAGRAM_FILE with a real RECEIVED record
//! taken from the journal in the same run, so the bytes are the ones the
//! dispatcher sent before forwarding. Timing the same send from outside
//! means the dispatcher needs no switch that could turn the record off.
//!
//! Output: "sends N cpu_ns C" (this process's own CPU spent in the sends,
//! from /proc/self/schedstat, less that of the same loop without them), then
//! one latency in ns per send. std only, so a
//! bare `rustc` builds it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: lh-bench-journal-send SOCKET DATAGRAM_FILE N");
        std::process::exit(2);
    }
    let bytes = std::fs::read(&a[2]).unwrap_or_else(|e| {
        eprintln!("lh-bench-journal-send: {}: {e}", a[2]);
        std::process::exit(1)
    });
    let n: usize = a[3].parse().unwrap_or(0);
    let sock = UnixDatagram::unbound()
        .and_then(|s| s.connect(&a[1]).map(|()| s))
        .unwrap_or_else(|e| {
            eprintln!("lh-bench-journal-send: connect {}: {e}", a[1]);
            std::process::exit(1)
        });
    // The same loop without the send first: its CPU (the sleeps' wake-ups)
    // is subtracted, so what is left is the send's own.
    let s0 = cpu_ns();
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(t.elapsed());
        std::thread::sleep(Duration::from_micros(200));
    }
    let idle_ns = cpu_ns().saturating_sub(s0);
    let mut lat = Vec::with_capacity(n);
    let c0 = cpu_ns();
    for _ in 0..n {
        let t = Instant::now();
        if let Err(e) = sock.send(&bytes) {
            eprintln!("lh-bench-journal-send: send: {e}");
            std::process::exit(1);
        }
        lat.push(t.elapsed());
        // One record per request, not a burst: the dispatcher sends one and
        // then forwards; a burst would fill journald's queue and time the
        // queue instead.
        std::thread::sleep(Duration::from_micros(200));
    }
    let send_ns = cpu_ns().saturating_sub(c0).saturating_sub(idle_ns);
    let mut out = format!("sends {n} cpu_ns {send_ns}\n");
    for l in lat {
        out.push_str(&format!("{}\n", l.as_nanos()));
    }
    print!("{out}");
}

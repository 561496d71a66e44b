//! Load generator for scripts/bench: sends pre-built request lines over a
//! Unix socket and prints one latency per request.
//!
//!   lh-bench-load SOCKET REQFILE CLIENTS [--check | --expect TEXT] [--varlink]
//!
//! Requests are signed ahead of time by bench/driver.py so that neither HMAC
//! nor JSON building in the client lands inside the timed interval: what is
//! timed is connect + write + read-to-EOF, i.e. what the server and the
//! kernel cost. Written against std only so that it builds with a bare
//! `rustc` and adds nothing to the workspace.
//!
//! Output: "wall_ns W ok K bad B" then one "index latency_ns" line per
//! request. --check counts a reply as bad unless it says "success": true,
//! so a rate-limited or refused request can never pass as a fast one;
//! --expect TEXT counts it as bad unless the reply contains TEXT (for the
//! refusal paths: a refusal of another kind must not pass either).
//! --varlink: each line is one Varlink call, sent with its NUL; the reply
//! ends at its NUL (a Varlink server keeps the connection open), and
//! --check counts it as bad when it is an error.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn one(path: &str, req: &[u8], varlink: bool) -> std::io::Result<Vec<u8>> {
    let mut s = UnixStream::connect(path)?;
    // A server that never answers must fail the bench, not hang it.
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    // Like the v1 client: one write, no newline, no shutdown of the write side.
    let mut buf = Vec::with_capacity(4096);
    if varlink {
        let mut msg = req.to_vec();
        msg.push(0);
        s.write_all(&msg)?;
        let mut chunk = [0u8; 4096];
        while !buf.contains(&0) {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(buf);
    }
    s.write_all(req)?;
    // Every server under test closes after its one reply, so EOF marks the end
    // of the reply for all of them alike.
    s.read_to_end(&mut buf)?;
    Ok(buf)
}

fn succeeded(reply: &[u8], varlink: bool) -> bool {
    let t = String::from_utf8_lossy(reply);
    if varlink {
        return t.ends_with('\0') && t.contains("\"parameters\"") && !t.contains("\"error\"");
    }
    t.contains("\"success\":true") || t.contains("\"success\": true")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: lh-bench-load SOCKET REQFILE CLIENTS [--check]");
        std::process::exit(2);
    }
    let path = Arc::new(args[1].clone());
    let text = std::fs::read(&args[2]).unwrap_or_else(|e| {
        eprintln!("lh-bench-load: {}: {e}", args[2]);
        std::process::exit(2)
    });
    let reqs: Arc<Vec<Vec<u8>>> = Arc::new(
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    );
    let clients: usize = args[3].parse().unwrap_or(1).max(1);
    let check = args.iter().any(|a| a == "--check");
    let varlink = args.iter().any(|a| a == "--varlink");
    let expect: Option<Arc<String>> = args
        .iter()
        .position(|a| a == "--expect")
        .and_then(|i| args.get(i + 1))
        .map(|s| Arc::new(s.clone()));

    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(vec![0u64; reqs.len()]));
    let bad = Arc::new(AtomicUsize::new(0));
    let first_bad: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let expect = expect.clone();
            let (path, reqs, next, lat, bad, first_bad) = (
                Arc::clone(&path),
                Arc::clone(&reqs),
                Arc::clone(&next),
                Arc::clone(&lat),
                Arc::clone(&bad),
                Arc::clone(&first_bad),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= reqs.len() {
                    break;
                }
                let t0 = Instant::now();
                let r = one(&path, &reqs[i], varlink);
                let ns = t0.elapsed().as_nanos() as u64;
                let ok = match &r {
                    Ok(reply) => {
                        !reply.is_empty()
                            && (!check || succeeded(reply, varlink))
                            && expect.as_ref().map_or(true, |e| {
                                String::from_utf8_lossy(reply).contains(e.as_str())
                            })
                    }
                    Err(_) => false,
                };
                if !ok {
                    bad.fetch_add(1, Ordering::Relaxed);
                    let mut fb = first_bad.lock().unwrap_or_else(|e| e.into_inner());
                    if fb.is_none() {
                        *fb = Some(match r {
                            Ok(reply) => String::from_utf8_lossy(&reply).into_owned(),
                            Err(e) => format!("I/O error: {e}"),
                        });
                    }
                }
                lat.lock().unwrap_or_else(|e| e.into_inner())[i] = ns;
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let wall = start.elapsed().as_nanos();
    let nbad = bad.load(Ordering::Relaxed);
    if let Some(fb) = first_bad.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let cut: String = fb.chars().take(400).collect();
        eprintln!("lh-bench-load: first bad reply: {cut}");
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let _ = writeln!(out, "wall_ns {wall} ok {} bad {nbad}", reqs.len() - nbad);
    for (i, ns) in lat.lock().unwrap_or_else(|e| e.into_inner()).iter().enumerate() {
        let _ = writeln!(out, "{i} {ns}");
    }
}

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Return after this long with no connection open and none arriving.
    pub idle: Duration,
    /// At most this many connections are handled at once; more wait in the
    /// kernel's backlog (owned by systemd when activated, so nothing is lost).
    pub max_connections: usize,
}

struct Active {
    count: usize,
    last_done: Instant,
}

/// Serves until idle. Each connection runs `handler` on its own thread, so a
/// slow or silent client only ever holds its own thread.
pub fn serve<H>(listener: &UnixListener, opts: ServeOptions, handler: H) -> std::io::Result<()>
where
    H: Fn(UnixStream) + Send + Sync + 'static,
{
    serve_all(&[listener], opts, move |_, s| handler(s))
}

/// [`serve`] on several listeners at once (one service behind several
/// socket units): `handler` is told the index of the listener a connection
/// came from. The idle period and `max_connections` count every listener's
/// connections together.
pub fn serve_all<H>(
    listeners: &[&UnixListener],
    opts: ServeOptions,
    handler: H,
) -> std::io::Result<()>
where
    H: Fn(usize, UnixStream) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let state = Arc::new((
        Mutex::new(Active {
            count: 0,
            last_done: Instant::now(),
        }),
        Condvar::new(),
    ));
    let max = opts.max_connections.max(1);
    loop {
        // Wait for a free slot (bounded concurrency).
        {
            let (lock, cv) = &*state;
            let mut a = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while a.count >= max {
                a = cv.wait(a).unwrap_or_else(PoisonError::into_inner);
            }
        }
        let (count, last_done) = {
            let a = state.0.lock().unwrap_or_else(PoisonError::into_inner);
            (a.count, a.last_done)
        };
        // With connections open we only wake up to re-check; with none, we
        // wait for whatever is left of the idle period.
        let wait = if count > 0 {
            Duration::from_millis(500)
        } else {
            let left = opts.idle.saturating_sub(last_done.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            left
        };
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX).max(1);
        let mut fds: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        // The first ready listener; the others are served on the next turn.
        let Some(which) = fds.iter().position(|f| {
            f.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
        }) else {
            continue;
        };
        drop(fds);
        let stream = match listeners[which].accept() {
            Ok((s, _)) => s,
            // The peer may have gone between poll and accept.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        {
            let mut a = state.0.lock().unwrap_or_else(PoisonError::into_inner);
            a.count += 1;
        }
        let h = Arc::clone(&handler);
        let st = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                // Decrement even if the handler panics, or the slot leaks.
                struct Done(Arc<(Mutex<Active>, Condvar)>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        let (lock, cv) = &*self.0;
                        let mut a = lock.lock().unwrap_or_else(PoisonError::into_inner);
                        a.count -= 1;
                        a.last_done = Instant::now();
                        cv.notify_all();
                    }
                }
                let _done = Done(st);
                h(which, stream);
            });
        if let Err(e) = spawned {
            // Could not get a thread: the stream was moved into the failed
            // closure and is closed; the client sees EOF and can retry.
            let mut a = state.0.lock().unwrap_or_else(PoisonError::into_inner);
            a.count -= 1;
            eprintln!("cannot spawn connection thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn silent_client_does_not_block_another_and_idle_returns() {
        let dir = std::env::temp_dir().join(format!("lh-act-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let p2 = path.clone();
        let t = std::thread::spawn(move || {
            let silent = UnixStream::connect(&p2).unwrap(); // never writes
            let mut c = UnixStream::connect(&p2).unwrap();
            c.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
            (b[0], silent)
        });
        let start = Instant::now();
        serve(
            &l,
            ServeOptions {
                idle: Duration::from_millis(300),
                max_connections: 4,
            },
            |mut s: UnixStream| {
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() {
                    s.write_all(b"y").unwrap();
                }
            },
        )
        .unwrap();
        let (reply, _silent) = t.join().unwrap();
        assert_eq!(reply, b'y');
        // returned only after the silent client's 1 s read timeout plus idle
        assert!(
            start.elapsed() >= Duration::from_millis(1300),
            "{:?}",
            start.elapsed()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

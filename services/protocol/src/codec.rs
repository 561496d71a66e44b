//! An incremental reader for one JSON object on an unframed stream.
//!
//! The v1 client writes one object and then waits for the answer without
//! closing its write side, so "read to EOF" would deadlock and "read a line"
//! would never see a newline. The only boundary is the end of the object
//! itself, so we parse what has arrived after every read.

use serde_json::Value;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// More than the cap arrived without a complete object.
    TooLarge,
    /// The deadline passed before a complete object arrived.
    Timeout,
    /// The bytes are not JSON (or not UTF-8).
    Malformed(String),
    /// The peer closed before a complete object arrived.
    Incomplete,
    Io(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge => write!(f, "request larger than 65536 bytes"),
            ReadError::Timeout => write!(f, "request not complete before the read timeout"),
            ReadError::Malformed(e) => write!(f, "malformed JSON: {e}"),
            ReadError::Incomplete => write!(f, "connection closed before a complete JSON object"),
            ReadError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

/// Outcome of trying to parse the bytes received so far.
enum Attempt {
    Complete(Value),
    NeedMore,
    Bad(String),
}

fn attempt(buf: &[u8]) -> Attempt {
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    match it.next() {
        None => Attempt::NeedMore, // only whitespace so far
        Some(Ok(v)) => Attempt::Complete(v),
        Some(Err(e)) if e.is_eof() => Attempt::NeedMore,
        Some(Err(e)) => Attempt::Bad(e.to_string()),
    }
}

/// Reads until one complete JSON value has arrived, at most `cap` bytes, and
/// no later than `timeout` from now (a slow client cannot trickle forever:
/// the deadline is for the whole request, not per read).
pub fn read_one_object(
    stream: &mut UnixStream,
    cap: usize,
    timeout: Duration,
) -> Result<Value, ReadError> {
    let start = Instant::now();
    // A timeout too large to represent is as good as none at all: a day.
    let deadline = start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(start);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| ReadError::Io(e.to_string()))?;
        // Never read past the cap: one byte more than allowed proves "too large".
        let room = cap
            .saturating_add(1)
            .saturating_sub(buf.len())
            .min(chunk.len());
        let Some(window) = chunk.get_mut(..room) else {
            return Err(ReadError::TooLarge);
        };
        let n = match stream.read(window) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ReadError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e.to_string())),
        };
        if n == 0 {
            return match attempt(&buf) {
                Attempt::Complete(v) => Ok(v),
                Attempt::Bad(e) => Err(ReadError::Malformed(e)),
                Attempt::NeedMore if buf.iter().all(u8::is_ascii_whitespace) => {
                    Err(ReadError::Incomplete)
                }
                Attempt::NeedMore => Err(ReadError::Malformed("truncated JSON".into())),
            };
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match attempt(&buf) {
            Attempt::Complete(v) => return Ok(v),
            Attempt::Bad(e) => return Err(ReadError::Malformed(e)),
            Attempt::NeedMore if buf.len() > cap => return Err(ReadError::TooLarge),
            Attempt::NeedMore => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::thread;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    #[test]
    fn object_split_over_writes_without_newline_or_shutdown() {
        let (mut a, mut b) = pair();
        let t = thread::spawn(move || {
            a.write_all(b"{\"id\": \"x\", ").unwrap();
            thread::sleep(Duration::from_millis(20));
            a.write_all(b"\"n\": 1}").unwrap();
            a // keep the write side open, as the v1 client does
        });
        let v = read_one_object(&mut b, 65536, Duration::from_secs(2)).unwrap();
        assert_eq!(v["n"], 1);
        drop(t.join().unwrap());
    }

    #[test]
    fn slow_client_hits_the_whole_request_deadline() {
        let (mut a, mut b) = pair();
        let t = thread::spawn(move || {
            for _ in 0..20 {
                if a.write_all(b" ").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(30));
            }
        });
        let r = read_one_object(&mut b, 65536, Duration::from_millis(200));
        assert_eq!(r, Err(ReadError::Timeout));
        drop(b);
        t.join().unwrap();
    }

    #[test]
    fn oversized_is_refused_without_reading_everything() {
        let (mut a, mut b) = pair();
        let t = thread::spawn(move || {
            let mut big = b"{\"k\":\"".to_vec();
            big.extend(std::iter::repeat_n(b'a', 200_000));
            let _ = a.write_all(&big);
        });
        let r = read_one_object(&mut b, 65536, Duration::from_secs(2));
        assert_eq!(r, Err(ReadError::TooLarge));
        drop(b);
        t.join().unwrap();
    }

    #[test]
    fn malformed_and_non_utf8_are_refused_at_once() {
        for bad in [
            &b"{\"a\": nope}"[..],
            &b"{\"a\": \"\xff\xfe\"}"[..],
            &b"]"[..],
        ] {
            let (mut a, mut b) = pair();
            a.write_all(bad).unwrap();
            let r = read_one_object(&mut b, 65536, Duration::from_secs(2));
            assert!(matches!(r, Err(ReadError::Malformed(_))), "{bad:?}: {r:?}");
        }
    }

    #[test]
    fn eof_before_complete_is_an_error() {
        let (mut a, mut b) = pair();
        a.write_all(b"{\"a\":").unwrap();
        drop(a);
        let r = read_one_object(&mut b, 65536, Duration::from_secs(2));
        assert!(matches!(r, Err(ReadError::Malformed(_))));
        let (a, mut b) = pair();
        drop(a);
        assert_eq!(
            read_one_object(&mut b, 65536, Duration::from_secs(2)),
            Err(ReadError::Incomplete)
        );
    }
}

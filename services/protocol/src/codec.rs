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
    let deadline = Instant::now() + timeout;
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
        let room = (cap + 1).saturating_sub(buf.len()).min(chunk.len());
        let n = match stream.read(&mut chunk[..room]) {
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
        buf.extend_from_slice(&chunk[..n]);
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

/// Properties of the framing (proptest): the reader's only state is the
/// bytes received so far, so what it decides on every prefix is what it
/// decides for every chunking; the socket-level ones check the loop itself.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};
    use std::io::Write;
    use std::thread;

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            // any Unicode, quotes, backslashes and braces included
            ".{0,12}".prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(".{0,8}", value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// Compact or pretty, as a client may send it.
    fn encoded() -> impl Strategy<Value = (Value, Vec<u8>)> {
        (object(), any::<bool>()).prop_map(|(v, pretty)| {
            let b = if pretty {
                serde_json::to_vec_pretty(&v)
            } else {
                serde_json::to_vec(&v)
            };
            (v, b.unwrap_or_default())
        })
    }

    /// Writes `chunks` one by one, each after the reader has had time to
    /// take the last (so they are separate reads), keeping the write side open.
    fn deliver(bytes: Vec<u8>, cuts: Vec<usize>) -> Result<Value, ReadError> {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = thread::spawn(move || {
            let mut at = 0;
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            for c in cuts.into_iter().chain([bytes.len()]) {
                if c > at {
                    if a.write_all(&bytes[at..c]).is_err() {
                        break;
                    }
                    at = c;
                    thread::sleep(Duration::from_micros(200));
                }
            }
            a
        });
        let r = read_one_object(&mut b, 65536, Duration::from_secs(5));
        drop(t.join().unwrap());
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every proper prefix of an object needs more; the whole reads as it.
        #[test]
        fn every_prefix_needs_more_and_the_whole_is_the_object((v, bytes) in encoded()) {
            for k in 0..bytes.len() {
                prop_assert!(matches!(attempt(&bytes[..k]), Attempt::NeedMore), "prefix {k} of {:?}", String::from_utf8_lossy(&bytes));
            }
            match attempt(&bytes) {
                Attempt::Complete(w) => prop_assert_eq!(w, v),
                _ => prop_assert!(false, "whole object not complete"),
            }
        }

        /// Only the first object is taken (the v1 client sends one and waits);
        /// whatever follows it, another object or junk, is never read as part of it.
        #[test]
        fn the_first_object_is_taken_whatever_follows(
            (v, bytes) in encoded(),
            tail in prop_oneof![
                encoded().prop_map(|(_, b)| b),
                prop::collection::vec(any::<u8>(), 0..64),
            ],
        ) {
            let mut all = bytes.clone();
            all.extend_from_slice(&tail);
            match attempt(&all) {
                Attempt::Complete(w) => prop_assert_eq!(w, v),
                _ => prop_assert!(false, "first object not taken"),
            }
        }

        /// Leading white space is skipped; junk before the object is malformed.
        #[test]
        fn leading_junk_is_malformed(ws in "[ \t\r\n]{0,4}", junk in "[^ \t\r\n\\[{\"0-9tfn-]", (_, bytes) in encoded()) {
            let mut a = ws.clone().into_bytes();
            a.extend_from_slice(&bytes);
            prop_assert!(matches!(attempt(&a), Attempt::Complete(_)));
            let mut b = ws.into_bytes();
            b.extend_from_slice(junk.as_bytes());
            b.extend_from_slice(&bytes);
            prop_assert!(matches!(attempt(&b), Attempt::Bad(_)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// On a real socket, any chunking reads the same object, without a
        /// newline or a shutdown of the write side, followed by anything.
        #[test]
        fn any_chunking_on_a_socket_reads_the_same(
            (v, bytes) in encoded(),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
            tail in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut all = bytes;
            all.extend_from_slice(&tail);
            prop_assert_eq!(deliver(all, cuts), Ok(v));
        }
    }
}

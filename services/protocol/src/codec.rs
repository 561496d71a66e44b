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

/// Below this size every read is followed by a parse attempt, so malformed
/// input is refused at once; above it, only when the scanner sees the top
/// level value close, so a client trickling one byte per read cannot make
/// the reader parse 64 KiB tens of thousands of times.
const EAGER_PARSE: usize = 4096;

/// What [`Decoder::push`] made of the bytes so far.
#[derive(Debug, PartialEq)]
pub enum Progress {
    Complete(Value),
    NeedMore,
    Failed(ReadError),
}

/// The incremental half of [`read_one_object`], for a caller that does its
/// own (non-blocking) reads: feed it what arrives, ask it at EOF.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    cap: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// How much of `buf` the scanner has seen. Below [`EAGER_PARSE`] it
    /// sees nothing (every read is parsed anyway); the first read past it
    /// scans the whole buffer, then each read its own bytes.
    scanned: usize,
}

impl Decoder {
    pub fn new(cap: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            cap,
            depth: 0,
            in_string: false,
            escaped: false,
            scanned: 0,
        }
    }

    /// How many more bytes may be read: one past the cap proves "too large".
    pub fn room(&self) -> usize {
        self.cap.saturating_add(1).saturating_sub(self.buf.len())
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Scans what the scanner has not seen yet for the end of a top-level
    /// string, object or array; true when one may have closed in it.
    fn scan_rest(&mut self) -> bool {
        let mut closed = false;
        let from = self.scanned.min(self.buf.len());
        self.scanned = self.buf.len();
        for &b in self.buf.get(from..).unwrap_or_default() {
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => {
                        self.in_string = false;
                        closed |= self.depth == 0;
                    }
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    // An unbalanced close is malformed: let the parser say so.
                    closed |= self.depth <= 1;
                    self.depth = self.depth.saturating_sub(1);
                }
                _ => {}
            }
        }
        closed
    }

    pub fn push(&mut self, bytes: &[u8]) -> Progress {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > EAGER_PARSE && !self.scan_rest() {
            return if self.buf.len() > self.cap {
                Progress::Failed(ReadError::TooLarge)
            } else {
                Progress::NeedMore
            };
        }
        match attempt(&self.buf) {
            Attempt::Complete(v) => Progress::Complete(v),
            Attempt::Bad(e) => Progress::Failed(ReadError::Malformed(e)),
            Attempt::NeedMore if self.buf.len() > self.cap => Progress::Failed(ReadError::TooLarge),
            Attempt::NeedMore => Progress::NeedMore,
        }
    }

    /// The peer closed its write side.
    pub fn eof(&self) -> Result<Value, ReadError> {
        match attempt(&self.buf) {
            Attempt::Complete(v) => Ok(v),
            Attempt::Bad(e) => Err(ReadError::Malformed(e)),
            Attempt::NeedMore if self.buf.iter().all(u8::is_ascii_whitespace) => {
                Err(ReadError::Incomplete)
            }
            Attempt::NeedMore => Err(ReadError::Malformed("truncated JSON".into())),
        }
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
    let mut dec = Decoder::new(cap);
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| ReadError::Io(e.to_string()))?;
        let room = dec.room().min(chunk.len());
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
            return dec.eof();
        }
        match dec.push(chunk.get(..n).unwrap_or_default()) {
            Progress::Complete(v) => return Ok(v),
            Progress::Failed(e) => return Err(e),
            Progress::NeedMore => {}
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

    #[test]
    fn decoder_finds_the_end_of_a_large_object_trickled_in() {
        let mut body = b"{\"k\":\"".to_vec();
        body.extend(std::iter::repeat_n(b'a', 10_000));
        body.extend_from_slice(b"\\\"}\" ,\"n\":[1,{\"x\":\"}\"}]}");
        let mut d = Decoder::new(65536);
        let (last, head) = body.split_last().unwrap();
        for b in head {
            assert_eq!(d.push(std::slice::from_ref(b)), Progress::NeedMore);
        }
        match d.push(std::slice::from_ref(last)) {
            Progress::Complete(v) => assert_eq!(v["n"][1]["x"], "}"),
            other => panic!("{other:?}"),
        }
        let mut d = Decoder::new(16);
        assert_eq!(
            d.push(b"{\"a\": nope"),
            Progress::Failed(ReadError::Malformed(
                "expected ident at line 1 column 8".into()
            ))
        );
        let mut d = Decoder::new(8);
        assert_eq!(
            d.push(b"{\"a\":\"123456789"),
            Progress::Failed(ReadError::TooLarge)
        );
        assert_eq!(Decoder::new(8).eof(), Err(ReadError::Incomplete));
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

//! The incremental reader on a real socket pair: the input is cut into
//! chunks (sizes from its first byte), written with the write side left
//! open, then closed. Never a panic; an object read is the first JSON value
//! of the bytes, whatever the chunking.
#![no_main]
use healing_protocol::{read_one_object, ReadError};
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

const CAP: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let (mut a, mut b) = UnixStream::pair().expect("socket pair");
    let owned = body.to_vec();
    let writer = std::thread::spawn(move || {
        for c in owned.chunks(step) {
            if a.write_all(c).is_err() {
                break;
            }
        }
        drop(a);
    });
    let r = read_one_object(&mut b, CAP, Duration::from_secs(5));
    drop(b);
    let _ = writer.join();
    let first = serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .next();
    match (&r, first) {
        // A bare top-level number is not self-delimiting: "12" then "3" reads
        // as 12. Refused later as "not a JSON object" either way.
        (Ok(v), _) if v.is_number() => {}
        (Ok(v), Some(Ok(w))) => assert_eq!(v, &w),
        (Ok(v), other) => panic!("read {v:?} but the bytes start with {other:?}"),
        (Err(ReadError::Timeout), _) => panic!("timeout on a closed stream"),
        (Err(ReadError::Incomplete), _) => {
            assert!(body.iter().all(u8::is_ascii_whitespace))
        }
        (Err(_), Some(Ok(w))) if body.len() <= CAP && !w.is_number() => {
            // a complete first value within the cap must be read
            panic!("{r:?} for a complete value")
        }
        (Err(_), _) => {}
    }
});

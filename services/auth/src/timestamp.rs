use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Older than the window by this many seconds.
    Stale(i64),
    /// Ahead of our clock by more than the window by this many seconds.
    Future(i64),
}

/// Unix time of a request timestamp. The v1 client sends Python's
/// `datetime.now().isoformat()`: naive local time, optional microseconds.
/// An explicit offset (`Z`, `+02:00`) is accepted too.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    if s.len() > 40 {
        return Err("timestamp too long".into());
    }
    let naive = match python_isoformat(s) {
        Some(n) => n,
        None => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.timestamp());
            }
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| {
                format!("timestamp {s:?} is not ISO 8601 (e.g. 2025-01-01T00:00:00)")
            })?
        }
    };
    // A naive time in a DST fold is ambiguous: take the earlier reading; one in
    // a DST gap does not exist and is refused.
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| format!("timestamp {s:?} does not exist in local time"))
}

/// The one shape every v1 request has, `YYYY-MM-DDTHH:MM:SS` with an
/// optional `.` and 1 to 9 digits, read without chrono's format-string
/// parser (which interprets "%Y-%m-%dT%H:%M:%S%.f" anew on every call: 3 %
/// of the dispatcher's CPU per refused request). Anything else, offsets
/// included, is `None` and goes the general way; for what it accepts, it
/// gives what that way gives (a unit test compares the two).
fn python_isoformat(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<u32> {
        let d = b.get(from..from.checked_add(n)?)?;
        d.iter().try_fold(0u32, |acc, c| {
            let v = u32::from(c.checked_sub(b'0').filter(|v| *v <= 9)?);
            acc.checked_mul(10)?.checked_add(v)
        })
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let year = i32::try_from(digits(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(5, 2)?, digits(8, 2)?)?;
    let (h, m, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let nanos = match b.len() {
        19 => 0,
        21..=29 if sep(19, b'.') => {
            let n = b.len().checked_sub(20)?;
            let f = digits(20, n)?;
            f.checked_mul(10u32.checked_pow(u32::try_from(9usize.checked_sub(n)?).ok()?)?)?
        }
        _ => return None,
    };
    date.and_hms_nano_opt(h, m, sec, nanos)
}

pub fn check_freshness(ts: i64, now: i64, window_secs: u64) -> Freshness {
    let w = i64::try_from(window_secs).unwrap_or(i64::MAX);
    let age = now.saturating_sub(ts);
    let ahead = ts.saturating_sub(now);
    if age > w {
        Freshness::Stale(age.saturating_sub(w))
    } else if ahead > w {
        Freshness::Future(ahead.saturating_sub(w))
    } else {
        Freshness::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_isoformat_both_shapes_and_offsets() {
        let a = parse_timestamp("2025-01-01T00:00:00").unwrap();
        let b = parse_timestamp("2025-01-01T00:00:00.123456").unwrap();
        assert_eq!(a, b);
        assert_eq!(parse_timestamp("2025-01-01T00:00:00Z").unwrap(), 1735689600);
        assert_eq!(
            parse_timestamp("2025-01-01T02:00:00+02:00").unwrap(),
            1735689600
        );
        for bad in [
            "",
            "yesterday",
            "2025-13-01T00:00:00",
            "2025-01-01 00:00:00x",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fast_shape_reads_as_the_general_parser_does() {
        let general = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok();
        for s in [
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00.1",
            "2025-01-01T00:00:00.123456",
            "2025-01-01T00:00:00.123456789",
            "2024-02-29T23:59:59.999999",
            "1999-12-31T12:30:45.000001",
            "0001-01-01T00:00:00",
        ] {
            assert_eq!(python_isoformat(s), general(s), "{s}");
            assert!(python_isoformat(s).is_some(), "{s}");
        }
        // Not the fast shape: left to the general way, which decides.
        for s in [
            "2023-02-29T00:00:00",
            "2025-01-01T24:00:00",
            "2025-01-01T00:60:00",
            "2025-01-01T00:00:00.",
            "2025-01-01T00:00:00.1234567890",
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00+02:00",
            "2025-01-01 00:00:00",
            "+2025-01-01T00:00:00",
            "2025-1-01T00:00:00",
            "2025-01-01T00:00:0x",
            "２025-01-01T00:00:00",
        ] {
            assert_eq!(python_isoformat(s), None, "{s}");
        }
    }

    #[test]
    fn window_in_both_directions() {
        assert_eq!(check_freshness(1000, 1000, 300), Freshness::Fresh);
        assert_eq!(check_freshness(700, 1000, 300), Freshness::Fresh);
        assert_eq!(check_freshness(699, 1000, 300), Freshness::Stale(1));
        assert_eq!(check_freshness(1300, 1000, 300), Freshness::Fresh);
        assert_eq!(check_freshness(1301, 1000, 300), Freshness::Future(1));
        assert_eq!(
            check_freshness(i64::MIN, 1000, 300),
            Freshness::Stale(i64::MAX - 300)
        );
    }
}

use chrono::{DateTime, Local, NaiveDateTime, TimeZone};

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
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|_| format!("timestamp {s:?} is not ISO 8601 (e.g. 2025-01-01T00:00:00)"))?;
    // A naive time in a DST fold is ambiguous: take the earlier reading; one in
    // a DST gap does not exist and is refused.
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| format!("timestamp {s:?} does not exist in local time"))
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

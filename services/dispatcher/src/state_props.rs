//! Properties of the state log (proptest): a store reopened from its log
//! behaves as the one that wrote it, after any sequence of operations; a log
//! cut at any byte, or with any byte changed, opens or is refused with an
//! error naming the file, never a panic.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Remember {
        id: String,
        uid: u32,
        live_ms: i64,
    },
    Admit {
        action: usize,
        uid: u32,
        count: bool,
    },
    Status {
        uid: u32,
    },
    Breaker {
        unit: usize,
        count: bool,
    },
    Pause {
        uid: u32,
        reason: String,
    },
    Resume {
        uid: u32,
    },
    Wait {
        ms: i64,
    },
}

const ACTIONS: [&str; 3] = ["restart_service", "kill_process", "adjust_swappiness"];
const UNITS: [&str; 2] = ["web.service", "getty@tty1.service"];
/// Small limits and windows, so that limits are reached and windows slide
/// within a sequence.
const ACTION_LIMIT: (u32, u64) = (3, 2);
const CALLER_LIMIT: (u32, u64) = (5, 3);
const STATUS_LIMIT: (u32, u64) = (2, 1);
const BREAKER_LIMIT: (u32, u64) = (2, 4);
const PER_UID: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    // ids and reasons as callers may send them: spaces, any printable
    // Unicode (parse_request and the schema refuse control characters)
    let text = "[^\\p{Cc}]{1,12}";
    prop_oneof![
        (text, 0u32..3, 0i64..5000).prop_map(|(id, uid, live_ms)| Op::Remember {
            id,
            uid,
            live_ms
        }),
        (0usize..3, 0u32..3, any::<bool>()).prop_map(|(action, uid, count)| Op::Admit {
            action,
            uid,
            count
        }),
        (0u32..3).prop_map(|uid| Op::Status { uid }),
        (0usize..2, any::<bool>()).prop_map(|(unit, count)| Op::Breaker { unit, count }),
        (0u32..3, "[^\\p{Cc}]{0,20}").prop_map(|(uid, reason)| Op::Pause { uid, reason }),
        (0u32..3).prop_map(|uid| Op::Resume { uid }),
        (0i64..1500).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// Every answer the store gives, for the ids and keys the ops used.
#[derive(Debug, PartialEq)]
struct Seen {
    replays: Vec<(String, bool)>,
    actions: Vec<u32>,
    callers: Vec<u32>,
    status: Vec<u32>,
    breakers: Vec<bool>,
    pause: Option<Pause>,
    seen_count: usize,
    per_uid: Vec<(u32, usize)>,
}

fn observe(s: &mut Store, ids: &[String], now: i64) -> Seen {
    s.mem.forget_expired(now);
    let mut per_uid: Vec<_> = s.mem.seen_per_uid.iter().map(|(u, n)| (*u, *n)).collect();
    per_uid.sort_unstable();
    Seen {
        replays: ids
            .iter()
            .map(|i| (i.clone(), s.is_replay(i, now)))
            .collect(),
        actions: ACTIONS
            .iter()
            .map(|a| s.remaining(a, ACTION_LIMIT, now))
            .collect(),
        callers: (0..3)
            .map(|u| s.remaining_caller(u, CALLER_LIMIT, now))
            .collect(),
        status: (0..3)
            .map(|u| s.remaining_status(u, STATUS_LIMIT, now))
            .collect(),
        breakers: UNITS
            .iter()
            .map(|u| s.breaker(u, BREAKER_LIMIT, now, false).unwrap())
            .collect(),
        pause: s.paused().cloned(),
        seen_count: s.seen_count(),
        per_uid,
    }
}

fn run(s: &mut Store, ops: &[Op], mut now: i64) -> (Vec<String>, i64) {
    let mut ids = Vec::new();
    for op in ops {
        match op {
            Op::Remember { id, uid, live_ms } => {
                let _ = s.remember_id(id, *uid, PER_UID, now, now + live_ms);
                ids.push(id.clone());
            }
            Op::Admit { action, uid, count } => {
                s.admit(
                    ACTIONS[*action],
                    ACTION_LIMIT,
                    *uid,
                    CALLER_LIMIT,
                    now,
                    *count,
                )
                .unwrap();
            }
            Op::Status { uid } => {
                s.admit_status(*uid, STATUS_LIMIT, now).unwrap();
            }
            Op::Breaker { unit, count } => {
                s.breaker(UNITS[*unit], BREAKER_LIMIT, now, *count).unwrap();
            }
            Op::Pause { uid, reason } => s.pause(*uid, reason, now).unwrap(),
            Op::Resume { uid } => s.resume(*uid, now).unwrap(),
            Op::Wait { ms } => now += ms,
        }
    }
    (ids, now)
}

fn dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("lh-state-props-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Reopened from its log, at the same instant or later, the store gives
    /// the same answers as the one that wrote it.
    #[test]
    fn reopened_from_the_log_equals_the_writer(
        ops in prop::collection::vec(op(), 0..60),
        later in 0i64..6000,
    ) {
        let d = dir("reopen");
        let p = d.join("state.log");
        let t0 = 1_700_000_000_000;
        let mut w = Store::open(Some(p.clone()), t0).unwrap();
        let (ids, now) = run(&mut w, &ops, t0);
        let mut r = Store::open(Some(p.clone()), now).unwrap();
        prop_assert_eq!(observe(&mut r, &ids, now), observe(&mut w, &ids, now));
        let mut r2 = Store::open(Some(p.clone()), now + later).unwrap();
        prop_assert_eq!(observe(&mut r2, &ids, now + later), observe(&mut w, &ids, now + later));
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A log cut at any byte (a crash in the middle of a write) opens: the
    /// torn last line is dropped, and the store is the one of the whole lines.
    #[test]
    fn a_log_cut_at_any_byte_opens(ops in prop::collection::vec(op(), 1..30), cut in any::<prop::sample::Index>()) {
        let d = dir("cut");
        let p = d.join("state.log");
        let t0 = 1_700_000_000_000;
        let mut w = Store::open(Some(p.clone()), t0).unwrap();
        let (ids, now) = run(&mut w, &ops, t0);
        drop(w);
        let bytes = std::fs::read(&p).unwrap();
        let k = cut.index(bytes.len() + 1);
        let whole = bytes[..k].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let cut_path = d.join("cut.log");
        std::fs::write(&cut_path, &bytes[..k]).unwrap();
        let mut c = Store::open(Some(cut_path.clone()), now);
        prop_assert!(c.is_ok(), "{:?}", c.as_ref().err());
        let whole_path = d.join("whole.log");
        std::fs::write(&whole_path, &bytes[..whole]).unwrap();
        let mut wl = Store::open(Some(whole_path), now).unwrap();
        let c = c.as_mut().unwrap();
        prop_assert_eq!(observe(c, &ids, now), observe(&mut wl, &ids, now));
        // and the torn line is gone from the file
        prop_assert_eq!(std::fs::read(&cut_path).unwrap().len(), whole);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Any byte changed, or any bytes inserted: opens, or an error that
    /// names the file and the line. Never a panic.
    #[test]
    fn a_damaged_log_opens_or_names_the_file(
        ops in prop::collection::vec(op(), 1..20),
        at in any::<prop::sample::Index>(),
        junk in prop::collection::vec(any::<u8>(), 1..8),
        replace in any::<bool>(),
    ) {
        let d = dir("damage");
        let p = d.join("state.log");
        let t0 = 1_700_000_000_000;
        let mut w = Store::open(Some(p.clone()), t0).unwrap();
        let (_, now) = run(&mut w, &ops, t0);
        drop(w);
        let mut bytes = std::fs::read(&p).unwrap();
        let i = at.index(bytes.len() + 1);
        if replace && i < bytes.len() {
            bytes[i] = junk[0];
        } else {
            bytes.splice(i..i, junk.iter().copied());
        }
        std::fs::write(&p, &bytes).unwrap();
        if let Err(e) = Store::open(Some(p.clone()), now) {
            prop_assert!(e.contains(&p.display().to_string()), "{}", e);
            prop_assert!(e.contains("line ") || e.contains("cannot"), "{}", e);
        }
        std::fs::remove_dir_all(d).unwrap();
    }
}

fn remember_heavy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => ("[a-z0-9 -]{1,10}", 0u32..3, 0i64..2000)
            .prop_map(|(id, uid, live_ms)| Op::Remember { id, uid, live_ms }),
        1 => (0usize..3, 0u32..3).prop_map(|(action, uid)| Op::Admit { action, uid, count: true }),
        1 => (0i64..400).prop_map(|ms| Op::Wait { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3))]

    /// The same across a compaction: enough records that the log is
    /// rewritten as the live state (at least 10,000 lines, four times the
    /// live entries) while the sequence runs.
    #[test]
    fn reopened_after_compaction_equals_the_writer(ops in prop::collection::vec(remember_heavy(), 12_000..12_500)) {
        let d = dir("compaction");
        let p = d.join("state.log");
        let t0 = 1_700_000_000_000;
        let mut w = Store::open(Some(p.clone()), t0).unwrap();
        let (ids, now) = run(&mut w, &ops, t0);
        let file_lines = std::fs::read_to_string(&p).unwrap().lines().count();
        prop_assert!(file_lines < 10_000, "no compaction: {} lines", file_lines);
        prop_assert_eq!(w.log_lines(), file_lines);
        let mut r = Store::open(Some(p.clone()), now).unwrap();
        prop_assert_eq!(observe(&mut r, &ids, now), observe(&mut w, &ids, now));
        std::fs::remove_dir_all(d).unwrap();
    }
}

//! Security state that must outlive the process: the replay cache, the
//! rate-limit windows, the restart breaker and the pause. The dispatcher
//! exits when idle and may be restarted at any time, so a reset would hand a
//! caller a fresh budget and make every id it already used valid again.
//!
//! On disk it is an append-only log of one-line records in the preserved
//! runtime directory: remembering an id or counting a request is one
//! `write(2)` of one line with O_APPEND, whatever the state's size, and is
//! done before the request is answered, so a `kill -9` at any instant loses
//! nothing that was answered (the page cache keeps what `write` returned; the
//! directory is a tmpfs, so there is no power loss to survive). When the log
//! holds several times more lines than live entries it is compacted: the live
//! state is written to a new file, which is renamed over the log.
//!
//! All times are wall-clock Unix milliseconds, so they mean the same after a
//! restart. Records (fields separated by one space; the free text last):
//!
//! ```text
//! I <until> <uid> <id>       an id, remembered until <until>
//! A <at> <action>            a request counted against the action's window
//! C <at> <uid>               ... and against the caller's (same write)
//! S <at> <uid>               a status request counted
//! B <at> <unit>              a restart counted by the breaker
//! P <at> <uid> <reason>      paused by <uid>
//! R <at> <uid>               resumed
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

/// The longest rate-limit window the configuration accepts (one day).
const MAX_WINDOW_MS: i64 = 86_400_000;

/// Beyond every caller's own bound, a ceiling on the whole cache so memory
/// stays bounded however many uids are allowed.
pub const MAX_SEEN_IDS: usize = 1_000_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Ok,
    ActionLimited,
    CallerLimited,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub since: i64,
    pub uid: u32,
    pub reason: String,
}

/// Why an id was not remembered.
#[derive(Debug, PartialEq, Eq)]
pub enum Remember {
    Replayed,
    /// The caller holds its whole share of the cache.
    CallerFull,
    Full,
    Io(String),
}

#[derive(Default)]
struct Mem {
    seen: HashMap<String, (i64, u32)>,
    seen_per_uid: HashMap<u32, usize>,
    /// (until, id): the oldest expiry first, to forget ids in O(log n).
    expiry: BinaryHeap<Reverse<(i64, String)>>,
    actions: HashMap<String, VecDeque<i64>>,
    callers: HashMap<u32, VecDeque<i64>>,
    status: HashMap<u32, VecDeque<i64>>,
    breaker: HashMap<String, VecDeque<i64>>,
    pause: Option<Pause>,
}

pub struct Store {
    mem: Mem,
    log: Option<Log>,
}

struct Log {
    path: PathBuf,
    file: File,
    lines: usize,
}

fn corrupt(path: &Path, n: usize, why: &str) -> String {
    format!(
        "state file {} is corrupt at line {n}: {why}; move it away to start with an empty state",
        path.display()
    )
}

impl Store {
    /// Loads the log. A missing file is an empty state; an unreadable or
    /// corrupt one is an error naming the file, because silently starting
    /// empty would reset the limits. A last line without its newline is a
    /// write cut short by a crash before its request was answered: dropped.
    pub fn open(path: Option<PathBuf>, now: i64) -> Result<Store, String> {
        let mut store = Store {
            mem: Mem::default(),
            log: None,
        };
        let Some(path) = path else { return Ok(store) };
        let mut lines = 0;
        match File::open(&path) {
            Ok(f) => {
                let mut r = BufReader::new(f);
                let mut buf = Vec::new();
                let mut good_len = 0u64;
                loop {
                    buf.clear();
                    let n = r
                        .read_until(b'\n', &mut buf)
                        .map_err(|e| format!("cannot read state file {}: {e}", path.display()))?;
                    if n == 0 || buf.last() != Some(&b'\n') {
                        break;
                    }
                    lines += 1;
                    let line = std::str::from_utf8(&buf[..n - 1])
                        .map_err(|_| corrupt(&path, lines, "not UTF-8"))?;
                    store
                        .mem
                        .apply(line, now)
                        .map_err(|why| corrupt(&path, lines, why))?;
                    good_len += n as u64;
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| format!("cannot open state file {}: {e}", path.display()))?;
                f.set_len(good_len)
                    .map_err(|e| format!("cannot repair state file {}: {e}", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read state file {}: {e}", path.display())),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open state file {}: {e}", path.display()))?;
        store.log = Some(Log { path, file, lines });
        store.mem.prune(now);
        store.compact_if_due(now)?;
        Ok(store)
    }

    /// One write for the records of one request. Nothing is applied in
    /// memory unless it is on disk, so memory never holds what a restart
    /// would forget.
    fn append(&mut self, lines: &[String], now: i64) -> Result<(), String> {
        if let Some(log) = &mut self.log {
            let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for l in lines {
                bytes.extend_from_slice(l.as_bytes());
                bytes.push(b'\n');
            }
            log.file
                .write_all(&bytes)
                .map_err(|e| format!("cannot write state file {}: {e}", log.path.display()))?;
            log.lines += lines.len();
        }
        for l in lines {
            self.mem.apply(l, now).map_err(str::to_string)?;
        }
        self.compact_if_due(now)
    }

    /// Rewrites the log as the live state once it holds four times as many
    /// lines as there are live entries (and at least 10,000): the cost is
    /// proportional to the lines appended since the last compaction, so it
    /// stays constant per request.
    fn compact_if_due(&mut self, now: i64) -> Result<(), String> {
        let live = self.mem.live_entries();
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        if log.lines < 10_000 || log.lines < live.saturating_mul(4) {
            return Ok(());
        }
        self.mem.prune(now);
        let lines = self.mem.snapshot();
        let tmp = log.path.with_extension("compact");
        let write = || -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            let mut text = String::with_capacity(lines.len() * 48);
            for l in &lines {
                text.push_str(l);
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
            std::fs::rename(&tmp, &log.path)?;
            OpenOptions::new().append(true).open(&log.path)
        };
        log.file = write()
            .map_err(|e| format!("cannot compact state file {}: {e}", log.path.display()))?;
        log.lines = lines.len();
        Ok(())
    }

    /// Records `id` for `uid` until `until`.
    pub fn remember_id(
        &mut self,
        id: &str,
        uid: u32,
        per_uid: usize,
        now: i64,
        until: i64,
    ) -> Result<(), Remember> {
        self.mem.forget_expired(now);
        if self.mem.seen.get(id).is_some_and(|(t, _)| *t > now) {
            return Err(Remember::Replayed);
        }
        if self.mem.seen_per_uid.get(&uid).copied().unwrap_or(0) >= per_uid {
            return Err(Remember::CallerFull);
        }
        if self.mem.seen.len() >= MAX_SEEN_IDS {
            return Err(Remember::Full);
        }
        self.append(&[format!("I {until} {uid} {id}")], now)
            .map_err(Remember::Io)
    }

    /// Whether `id` would be a replay, without remembering it (dry runs).
    pub fn is_replay(&self, id: &str, now: i64) -> bool {
        self.mem.seen.get(id).is_some_and(|(t, _)| *t > now)
    }

    /// Checks both sliding windows; with `count`, counts the request in both
    /// (only when both have room).
    pub fn admit(
        &mut self,
        action: &str,
        action_limit: (u32, u64),
        uid: u32,
        caller_limit: (u32, u64),
        now: i64,
        count: bool,
    ) -> Result<Admit, String> {
        if !has_room(self.mem.actions.get_mut(action), action_limit, now) {
            return Ok(Admit::ActionLimited);
        }
        if !has_room(self.mem.callers.get_mut(&uid), caller_limit, now) {
            return Ok(Admit::CallerLimited);
        }
        if count {
            self.append(
                &[format!("A {now} {action}"), format!("C {now} {uid}")],
                now,
            )?;
        }
        Ok(Admit::Ok)
    }

    /// `status`'s own per-caller window: it spends no action's budget.
    pub fn admit_status(&mut self, uid: u32, limit: (u32, u64), now: i64) -> Result<bool, String> {
        if !has_room(self.mem.status.get_mut(&uid), limit, now) {
            return Ok(false);
        }
        self.append(&[format!("S {now} {uid}")], now)?;
        Ok(true)
    }

    /// The breaker: whether `unit` may be restarted once more in the window;
    /// with `count`, counts this restart.
    pub fn breaker(
        &mut self,
        unit: &str,
        limit: (u32, u64),
        now: i64,
        count: bool,
    ) -> Result<bool, String> {
        if !has_room(self.mem.breaker.get_mut(unit), limit, now) {
            return Ok(false);
        }
        if count {
            self.append(&[format!("B {now} {unit}")], now)?;
        }
        Ok(true)
    }

    pub fn pause(&mut self, uid: u32, reason: &str, now: i64) -> Result<(), String> {
        self.append(&[format!("P {now} {uid} {reason}")], now)
    }

    pub fn resume(&mut self, uid: u32, now: i64) -> Result<(), String> {
        self.append(&[format!("R {now} {uid}")], now)
    }

    pub fn paused(&self) -> Option<&Pause> {
        self.mem.pause.as_ref()
    }

    /// Requests left in the window for an action and for a caller.
    pub fn remaining(&mut self, action: &str, limit: (u32, u64), now: i64) -> u32 {
        remaining(self.mem.actions.get_mut(action), limit, now)
    }

    pub fn remaining_caller(&mut self, uid: u32, limit: (u32, u64), now: i64) -> u32 {
        remaining(self.mem.callers.get_mut(&uid), limit, now)
    }

    pub fn remaining_status(&mut self, uid: u32, limit: (u32, u64), now: i64) -> u32 {
        remaining(self.mem.status.get_mut(&uid), limit, now)
    }

    pub fn seen_count(&self) -> usize {
        self.mem.seen.len()
    }

    #[cfg(test)]
    fn log_lines(&self) -> usize {
        self.log.as_ref().map_or(0, |l| l.lines)
    }
}

impl Mem {
    /// Applies one record. `Err` is why it is malformed.
    fn apply(&mut self, line: &str, now: i64) -> Result<(), &'static str> {
        let (kind, rest) = line.split_once(' ').ok_or("no fields")?;
        let mut f = rest.splitn(3, ' ');
        let mut num = || -> Result<i64, &'static str> {
            f.next()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("bad number")
        };
        let t = num()?;
        match kind {
            "I" => {
                let uid = u32::try_from(num()?).map_err(|_| "bad uid")?;
                let id = f.next().filter(|s| !s.is_empty()).ok_or("no id")?;
                if t > now {
                    let old = self.seen.insert(id.to_string(), (t, uid));
                    if let Some((_, old_uid)) = old {
                        self.dec_uid(old_uid);
                    }
                    *self.seen_per_uid.entry(uid).or_insert(0) += 1;
                    self.expiry.push(Reverse((t, id.to_string())));
                }
            }
            "A" => {
                let action = f.next().filter(|s| !s.is_empty()).ok_or("no action")?;
                self.actions
                    .entry(action.to_string())
                    .or_default()
                    .push_back(t);
            }
            "C" => {
                let uid = u32::try_from(num()?).map_err(|_| "bad uid")?;
                self.callers.entry(uid).or_default().push_back(t);
            }
            "S" => {
                let uid = u32::try_from(num()?).map_err(|_| "bad uid")?;
                self.status.entry(uid).or_default().push_back(t);
            }
            "B" => {
                let unit = f.next().filter(|s| !s.is_empty()).ok_or("no unit")?;
                self.breaker
                    .entry(unit.to_string())
                    .or_default()
                    .push_back(t);
            }
            "P" => {
                let uid = u32::try_from(num()?).map_err(|_| "bad uid")?;
                self.pause = Some(Pause {
                    since: t,
                    uid,
                    reason: f.next().unwrap_or("").to_string(),
                });
            }
            "R" => self.pause = None,
            _ => return Err("unknown record"),
        }
        Ok(())
    }

    fn dec_uid(&mut self, uid: u32) {
        if let Some(n) = self.seen_per_uid.get_mut(&uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.seen_per_uid.remove(&uid);
            }
        }
    }

    /// Pops expired ids off the heap: amortized O(log n) per id ever stored.
    fn forget_expired(&mut self, now: i64) {
        while let Some(Reverse((until, _))) = self.expiry.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((until, id))) = self.expiry.pop() else {
                break;
            };
            // Only if the entry is still this one (an id reused after expiry
            // has a newer heap entry of its own).
            if self.seen.get(&id).is_some_and(|(t, _)| *t == until) {
                if let Some((_, uid)) = self.seen.remove(&id) {
                    self.dec_uid(uid);
                }
            }
        }
    }

    fn prune(&mut self, now: i64) {
        self.forget_expired(now);
        let horizon = now.saturating_sub(MAX_WINDOW_MS);
        for q in self
            .actions
            .values_mut()
            .chain(self.callers.values_mut())
            .chain(self.status.values_mut())
            .chain(self.breaker.values_mut())
        {
            while q.front().is_some_and(|t| *t <= horizon) {
                q.pop_front();
            }
        }
        self.actions.retain(|_, q| !q.is_empty());
        self.callers.retain(|_, q| !q.is_empty());
        self.status.retain(|_, q| !q.is_empty());
        self.breaker.retain(|_, q| !q.is_empty());
    }

    fn live_entries(&self) -> usize {
        let windows: usize = self
            .actions
            .values()
            .chain(self.status.values())
            .chain(self.breaker.values())
            .map(VecDeque::len)
            .sum::<usize>()
            + self.callers.values().map(VecDeque::len).sum::<usize>();
        self.seen.len() + windows + 1
    }

    /// The live state as log lines.
    fn snapshot(&mut self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.live_entries());
        for (id, (until, uid)) in &self.seen {
            out.push(format!("I {until} {uid} {id}"));
        }
        for (action, q) in &self.actions {
            out.extend(q.iter().map(|t| format!("A {t} {action}")));
        }
        for (uid, q) in &self.callers {
            out.extend(q.iter().map(|t| format!("C {t} {uid}")));
        }
        for (uid, q) in &self.status {
            out.extend(q.iter().map(|t| format!("S {t} {uid}")));
        }
        for (unit, q) in &self.breaker {
            out.extend(q.iter().map(|t| format!("B {t} {unit}")));
        }
        if let Some(p) = &self.pause {
            out.push(format!("P {} {} {}", p.since, p.uid, p.reason));
        }
        out
    }
}

fn expire(q: &mut VecDeque<i64>, window_secs: u64, now: i64) {
    let start =
        now.saturating_sub(i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    while q.front().is_some_and(|t| *t <= start) {
        q.pop_front();
    }
}

fn has_room(q: Option<&mut VecDeque<i64>>, (max, window): (u32, u64), now: i64) -> bool {
    match q {
        None => max > 0,
        Some(q) => {
            expire(q, window, now);
            q.len() < max as usize
        }
    }
}

fn remaining(q: Option<&mut VecDeque<i64>>, (max, window): (u32, u64), now: i64) -> u32 {
    match q {
        None => max,
        Some(q) => {
            expire(q, window, now);
            max.saturating_sub(u32::try_from(q.len()).unwrap_or(u32::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(s: &mut Store, a: &str, al: (u32, u64), uid: u32, cl: (u32, u64), t: i64) -> Admit {
        s.admit(a, al, uid, cl, t, true).unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lh-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.log")
    }

    #[test]
    fn sliding_window_and_caller_limit() {
        let mut s = Store::open(None, 0).unwrap();
        for i in 0..10 {
            assert_eq!(admit(&mut s, "a", (10, 300), 1, (30, 300), i), Admit::Ok);
        }
        assert_eq!(
            admit(&mut s, "a", (10, 300), 1, (30, 300), 100),
            Admit::ActionLimited
        );
        // the first request leaves the window 300 s after it was made
        assert_eq!(
            admit(&mut s, "a", (10, 300), 1, (30, 300), 300_000),
            Admit::Ok
        );
        assert_eq!(
            admit(&mut s, "a", (10, 300), 1, (30, 300), 300_000),
            Admit::ActionLimited
        );
        assert_eq!(
            admit(&mut s, "a", (10, 300), 1, (30, 300), 300_001),
            Admit::Ok
        );
        assert_eq!(admit(&mut s, "b", (10, 300), 2, (1, 300), 0), Admit::Ok);
        assert_eq!(
            admit(&mut s, "c", (10, 300), 2, (1, 300), 1),
            Admit::CallerLimited
        );
        // a caller-limited request did not use the action's budget
        assert_eq!(s.remaining("c", (10, 300), 1), 10);
    }

    #[test]
    fn checking_without_counting_spends_nothing() {
        let mut s = Store::open(None, 0).unwrap();
        for _ in 0..5 {
            assert_eq!(s.admit("a", (1, 300), 1, (1, 300), 0, false), Ok(Admit::Ok));
            assert_eq!(s.breaker("u.service", (1, 300), 0, false), Ok(true));
        }
        assert_eq!(s.remaining("a", (1, 300), 0), 1);
    }

    #[test]
    fn replay_persistence_and_pause_survive_a_restart() {
        let p = tmp("persist");
        let mut s = Store::open(Some(p.clone()), 0).unwrap();
        s.remember_id("x y", 7, 10, 0, 1000).unwrap();
        assert_eq!(
            s.remember_id("x y", 7, 10, 1, 1000),
            Err(Remember::Replayed)
        );
        admit(&mut s, "a", (1, 300), 5, (30, 300), 0);
        assert_eq!(s.breaker("web.service", (1, 900), 0, true), Ok(true));
        s.pause(0, "upgrading the host", 0).unwrap();
        drop(s);
        let mut s2 = Store::open(Some(p.clone()), 2).unwrap();
        assert_eq!(
            s2.remember_id("x y", 7, 10, 2, 1000),
            Err(Remember::Replayed)
        );
        assert_eq!(
            admit(&mut s2, "a", (1, 300), 5, (30, 300), 10),
            Admit::ActionLimited
        );
        assert_eq!(s2.breaker("web.service", (1, 900), 10, false), Ok(false));
        assert_eq!(s2.paused().unwrap().reason, "upgrading the host");
        s2.resume(0, 20).unwrap();
        // expired ids may be reused
        assert!(s2.remember_id("x y", 7, 10, 1000, 2000).is_ok());
        drop(s2);
        let s3 = Store::open(Some(p.clone()), 30).unwrap();
        assert!(s3.paused().is_none());
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_garbage_is_an_error_naming_the_file() {
        let p = tmp("torn");
        std::fs::write(&p, b"I 5000 1 a\nI 5000 1 b").unwrap();
        let mut s = Store::open(Some(p.clone()), 0).unwrap();
        assert_eq!(s.seen_count(), 1);
        assert_eq!(s.remember_id("b", 1, 10, 0, 5000), Ok(()));
        drop(s);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "I 5000 1 a\nI 5000 1 b\n"
        );
        std::fs::write(&p, b"I 5000 1 a\n{garbage\n").unwrap();
        let e = Store::open(Some(p.clone()), 0).err().unwrap();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("line 2"),
            "{e}"
        );
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn one_caller_cannot_fill_the_cache_for_another() {
        let mut s = Store::open(None, 0).unwrap();
        for i in 0..3 {
            s.remember_id(&format!("m{i}"), 1000, 3, 0, 10_000).unwrap();
        }
        assert_eq!(
            s.remember_id("m3", 1000, 3, 0, 10_000),
            Err(Remember::CallerFull)
        );
        assert_eq!(s.remember_id("o1", 1001, 3, 0, 10_000), Ok(()));
        // once its ids expire, the caller has room again
        assert_eq!(s.remember_id("m3", 1000, 3, 10_000, 20_000), Ok(()));
    }

    #[test]
    fn the_log_is_appended_then_compacted() {
        let p = tmp("compact");
        let mut s = Store::open(Some(p.clone()), 0).unwrap();
        for i in 0..30_000i64 {
            // each id lives 1 s: almost all are expired when compaction runs
            s.remember_id(&format!("id{i}"), 1, 100_000, i, i + 1000)
                .unwrap();
        }
        assert!(s.log_lines() < 12_000, "{}", s.log_lines());
        drop(s);
        let s = Store::open(Some(p.clone()), 29_999).unwrap();
        assert!(s.is_replay("id29999", 29_999));
        assert!(!s.is_replay("id1", 29_999));
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}

#[cfg(test)]
#[path = "state_props.rs"]
mod props;

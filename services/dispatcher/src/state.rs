//! Security state that must outlive the process: the replay cache and the
//! rate-limit windows. The dispatcher exits when idle and may be restarted at
//! any time, so a reset would hand a caller a fresh budget and make every id
//! it already used valid again. The state is written to a file in the
//! preserved runtime directory after every change and read back at start.
//! All times are wall-clock Unix milliseconds, so they mean the same after a
//! restart.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;

/// Upper bound on remembered ids. Only authenticated, fresh requests add ids,
/// and each caller is rate limited, so reaching it means something is wrong:
/// refuse (fail closed) rather than forget ids early.
pub const MAX_SEEN_IDS: usize = 100_000;

/// The longest rate-limit window the configuration accepts (one day).
const MAX_WINDOW_MS: i64 = 86_400_000;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// request id -> time after which it may be forgotten
    seen: BTreeMap<String, i64>,
    /// action -> times of counted requests, oldest first
    actions: BTreeMap<String, VecDeque<i64>>,
    /// caller uid -> times of counted requests, oldest first
    callers: BTreeMap<u32, VecDeque<i64>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Ok,
    ActionLimited,
    CallerLimited,
}

pub struct Store {
    pub state: State,
    path: Option<PathBuf>,
}

impl Store {
    /// Loads the state file. A missing file is an empty state; an unreadable
    /// or corrupt one is an error, because silently starting empty would reset
    /// the limits.
    pub fn open(path: Option<PathBuf>) -> Result<Store, String> {
        let state = match &path {
            None => State::default(),
            Some(p) => match std::fs::read(p) {
                Ok(b) => serde_json::from_slice(&b)
                    .map_err(|e| format!("state file {} is corrupt: {e}", p.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
                Err(e) => return Err(format!("cannot read state file {}: {e}", p.display())),
            },
        };
        Ok(Store { state, path })
    }

    /// Drops what can no longer matter, then writes atomically (temp file +
    /// rename: a crash mid-write leaves the previous state, never a truncated
    /// one). Serialized into memory first: straight into the file it would be
    /// one write(2) per JSON token, thousands per request.
    pub fn save(&mut self, now: i64) -> Result<(), String> {
        self.prune(now);
        let Some(p) = &self.path else { return Ok(()) };
        let bytes =
            serde_json::to_vec(&self.state).map_err(|e| format!("cannot encode state: {e}"))?;
        let tmp = p.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            std::fs::rename(&tmp, p)
        };
        write().map_err(|e| format!("cannot write state file {}: {e}", p.display()))
    }

    /// Forgets expired ids and window entries older than the longest window
    /// a configuration may set, so the state stays as small as the traffic
    /// of the last window.
    pub fn prune(&mut self, now: i64) {
        self.state.seen.retain(|_, until| *until > now);
        let horizon = now.saturating_sub(MAX_WINDOW_MS);
        for q in self
            .state
            .actions
            .values_mut()
            .chain(self.state.callers.values_mut())
        {
            while q.front().is_some_and(|t| *t <= horizon) {
                q.pop_front();
            }
        }
        self.state.actions.retain(|_, q| !q.is_empty());
        self.state.callers.retain(|_, q| !q.is_empty());
    }

    /// Records `id` until `until`. False if it was seen already (a replay) or
    /// the cache is full.
    pub fn remember_id(&mut self, id: &str, now: i64, until: i64) -> Result<(), &'static str> {
        if let Some(t) = self.state.seen.get(id) {
            if *t > now {
                return Err("replayed request id");
            }
        }
        if self.state.seen.len() >= MAX_SEEN_IDS {
            self.prune(now);
            if self.state.seen.len() >= MAX_SEEN_IDS {
                return Err("replay cache full");
            }
        }
        self.state.seen.insert(id.to_string(), until);
        Ok(())
    }

    /// Counts a request against both sliding windows if both have room.
    pub fn admit(
        &mut self,
        action: &str,
        action_limit: (u32, u64),
        uid: u32,
        caller_limit: (u32, u64),
        now: i64,
    ) -> Admit {
        let a = self.state.actions.entry(action.to_string()).or_default();
        if !has_room(a, action_limit, now) {
            return Admit::ActionLimited;
        }
        let c = self.state.callers.entry(uid).or_default();
        if !has_room(c, caller_limit, now) {
            return Admit::CallerLimited;
        }
        c.push_back(now);
        if let Some(a) = self.state.actions.get_mut(action) {
            a.push_back(now);
        }
        Admit::Ok
    }

    /// Requests left in the window for an action and for a caller.
    pub fn remaining(&mut self, action: &str, limit: (u32, u64), now: i64) -> u32 {
        let a = self.state.actions.entry(action.to_string()).or_default();
        expire(a, limit.1, now);
        limit.0.saturating_sub(a.len() as u32)
    }

    pub fn remaining_caller(&mut self, uid: u32, limit: (u32, u64), now: i64) -> u32 {
        let c = self.state.callers.entry(uid).or_default();
        expire(c, limit.1, now);
        limit.0.saturating_sub(c.len() as u32)
    }

    pub fn seen_count(&self) -> usize {
        self.state.seen.len()
    }
}

fn expire(q: &mut VecDeque<i64>, window_secs: u64, now: i64) {
    let start =
        now.saturating_sub(i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    while q.front().is_some_and(|t| *t <= start) {
        q.pop_front();
    }
}

fn has_room(q: &mut VecDeque<i64>, (max, window): (u32, u64), now: i64) -> bool {
    expire(q, window, now);
    q.len() < max as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_and_caller_limit() {
        let mut s = Store::open(None).unwrap();
        for i in 0..10 {
            assert_eq!(s.admit("a", (10, 300), 1, (30, 300), i), Admit::Ok);
        }
        assert_eq!(
            s.admit("a", (10, 300), 1, (30, 300), 100),
            Admit::ActionLimited
        );
        // the first request leaves the window 300 s after it was made
        assert_eq!(s.admit("a", (10, 300), 1, (30, 300), 300_000), Admit::Ok);
        assert_eq!(
            s.admit("a", (10, 300), 1, (30, 300), 300_000),
            Admit::ActionLimited
        );
        assert_eq!(s.admit("a", (10, 300), 1, (30, 300), 300_001), Admit::Ok);
        assert_eq!(s.admit("b", (10, 300), 2, (1, 300), 0), Admit::Ok);
        assert_eq!(
            s.admit("c", (10, 300), 2, (1, 300), 1),
            Admit::CallerLimited
        );
        // a caller-limited request did not use the action's budget
        assert_eq!(s.remaining("c", (10, 300), 1), 10);
    }

    #[test]
    fn replay_and_persistence() {
        let dir = std::env::temp_dir().join(format!("lh-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        let mut s = Store::open(Some(p.clone())).unwrap();
        s.remember_id("x", 0, 1000).unwrap();
        assert!(s.remember_id("x", 1, 1000).is_err());
        s.admit("a", (1, 300), 5, (30, 300), 0);
        s.save(0).unwrap();
        let mut s2 = Store::open(Some(p.clone())).unwrap();
        assert!(s2.remember_id("x", 2, 1000).is_err());
        assert_eq!(
            s2.admit("a", (1, 300), 5, (30, 300), 10),
            Admit::ActionLimited
        );
        // expired ids may be reused
        assert!(s2.remember_id("x", 1000, 2000).is_ok());
        std::fs::write(&p, b"{garbage").unwrap();
        assert!(Store::open(Some(p)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Refusals before authentication, folded per caller uid into at most one
//! decision record a second. Anyone who can reach the socket can send them
//! as fast as the kernel allows; one record each would let a member without
//! the key push the journal to its rate limit and drown the records of real
//! actions. Each folded record carries HEALING_COUNT=N, the reason and the
//! first request id of its second, so the sum of HEALING_COUNT over decision
//! records still equals the number of requests.
//!
//! A slot opens with the first refusal of a uid and is written when its
//! second is over: by the next refusal of that uid, by [`Fold::flush_due`]
//! (the dispatcher's flusher thread calls it every second while any slot is
//! open) or by [`Fold::flush_all`] at exit.

use healing_audit::{CallerIds, Decision, Outcome};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

struct Slot {
    opened: Instant,
    count: u64,
    caller: CallerIds,
    first_id: String,
    action: String,
    reason: String,
    protocol: &'static str,
}

#[derive(Default)]
pub struct Fold {
    slots: Mutex<HashMap<Option<u32>, Slot>>,
    wake: Condvar,
}

impl Fold {
    pub fn add(
        &self,
        caller: &CallerIds,
        request_id: &str,
        action: &str,
        reason: &str,
        protocol: &'static str,
    ) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some(s) = slots.get_mut(&caller.uid) {
            if now.duration_since(s.opened) < WINDOW {
                s.count = s.count.saturating_add(1);
                return;
            }
            if let Some(old) = slots.remove(&caller.uid) {
                write(&old);
            }
        }
        slots.insert(
            caller.uid,
            Slot {
                opened: now,
                count: 1,
                caller: caller.clone(),
                first_id: request_id.to_string(),
                action: action.to_string(),
                reason: reason.to_string(),
                protocol,
            },
        );
        self.wake.notify_one();
    }

    /// Writes the slots whose second is over. Returns whether any is open.
    pub fn flush_due(&self) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let due: Vec<_> = slots
            .iter()
            .filter(|(_, s)| now.duration_since(s.opened) >= WINDOW)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            if let Some(s) = slots.remove(&k) {
                write(&s);
            }
        }
        !slots.is_empty()
    }

    pub fn flush_all(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, s) in slots.drain() {
            write(&s);
        }
    }

    /// The flusher's loop body: sleeps until a slot is open, then until its
    /// second is over, and writes it.
    pub fn wait_and_flush(&self) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = if slots.is_empty() {
            self.wake
                .wait_timeout(slots, Duration::from_secs(60))
                .map_or_else(|e| e.into_inner().0, |(g, _)| g)
        } else {
            slots
        };
        drop(slots);
        std::thread::sleep(WINDOW);
        self.flush_due();
    }

    #[cfg(test)]
    pub fn pending(&self) -> u64 {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.values().map(|s| s.count).sum()
    }
}

fn write(s: &Slot) {
    healing_audit::decision(&Decision {
        request_id: &s.first_id,
        action: &s.action,
        outcome: Outcome::Denied,
        reason: &s.reason,
        caller: &s.caller,
        duration_ms: 0,
        parameters: "{}",
        protocol: s.protocol,
        dry_run: false,
        count: s.count,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_one_second_fold_per_uid() {
        let f = Fold::default();
        let a = CallerIds {
            uid: Some(1000),
            ..Default::default()
        };
        let b = CallerIds {
            uid: Some(1001),
            ..Default::default()
        };
        for i in 0..50 {
            f.add(
                &a,
                &format!("a{i}"),
                "status",
                "signature does not match",
                "v1",
            );
        }
        f.add(&b, "b0", "status", "signature does not match", "v1");
        assert_eq!(f.pending(), 51);
        assert!(f.flush_due(), "nothing is due within the second");
        std::thread::sleep(WINDOW);
        assert!(!f.flush_due());
        assert_eq!(f.pending(), 0);
    }
}

//! Refusing replayed sealed requests within a bounded window.
//!
//! Every sealed request carries a fresh HPKE encapsulated key and, inside the
//! seal, the client's send time. The node accepts a request only if its send
//! time is within `window` of now and its encapsulated key was not seen in
//! that window; older keys are forgotten, so memory stays bounded by the
//! request rate times the window, and hard-capped by `capacity`.

use std::collections::{HashSet, VecDeque};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("the sealed request was already received")]
    Replayed,
    #[error("the sealed request's send time is outside the node's {0}-second window; check the client's clock")]
    OutsideWindow(u64),
    #[error("too many sealed requests in the replay window; retry shortly")]
    Full,
}

pub struct ReplayGuard {
    window_secs: u64,
    capacity: usize,
    seen: HashSet<[u8; 32]>,
    /// (time seen, key), oldest first.
    order: VecDeque<(u64, [u8; 32])>,
}

impl ReplayGuard {
    pub fn new(window_secs: u64, capacity: usize) -> Self {
        Self { window_secs, capacity, seen: HashSet::new(), order: VecDeque::new() }
    }

    /// Records `key` sent at `sent_at`, refusing replays and stale requests.
    pub fn check(&mut self, key: [u8; 32], sent_at: u64, now: u64) -> Result<(), ReplayError> {
        if sent_at.abs_diff(now) > self.window_secs {
            return Err(ReplayError::OutsideWindow(self.window_secs));
        }
        // A key is remembered for two windows: a request can be sent up to one
        // window in the future and still be accepted one window later.
        while let Some(&(at, old)) = self.order.front() {
            if now.saturating_sub(at) <= 2 * self.window_secs {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.contains(&key) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        self.seen.insert(key);
        self.order.push_back((now, key));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_second_use_and_stale_or_future_requests() {
        let mut guard = ReplayGuard::new(60, 100);
        assert_eq!(guard.check([1; 32], 1000, 1000), Ok(()));
        assert_eq!(guard.check([1; 32], 1000, 1001), Err(ReplayError::Replayed));
        assert_eq!(guard.check([2; 32], 900, 1000), Err(ReplayError::OutsideWindow(60)));
        assert_eq!(guard.check([3; 32], 1100, 1000), Err(ReplayError::OutsideWindow(60)));
    }

    #[test]
    fn forgets_old_keys_and_stays_bounded() {
        let mut guard = ReplayGuard::new(10, 2);
        guard.check([1; 32], 0, 0).unwrap();
        guard.check([2; 32], 0, 0).unwrap();
        assert_eq!(guard.check([3; 32], 0, 0), Err(ReplayError::Full));
        // After two windows the old keys are gone, and a replay of them is
        // stale by its send time anyway.
        guard.check([3; 32], 21, 21).unwrap();
        assert_eq!(guard.check([1; 32], 0, 21), Err(ReplayError::OutsideWindow(10)));
        assert_eq!(guard.seen.len(), 1);
    }
}

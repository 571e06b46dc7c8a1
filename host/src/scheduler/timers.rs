//! The hub's timers: one heap ordered by (deadline, sequence number), so
//! timers with the same deadline fire in the order they were set.
//!
//! A wait that ends early (a park woken, a join whose target ended, a killed
//! sleeper) leaves its timer in the heap: removing from the middle of a heap
//! costs a search. Such *stale* timers are skipped when they come up, and
//! counted; once they are the majority (and at least [`COMPACT_AT`]), the heap
//! is rebuilt without them, so a guest that starts millions of long timed
//! waits and ends each early holds memory for the live ones only (eventlet
//! compacts its cancelled timers the same way).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::{GuestKey, ThreadKey};

/// Fewest stale timers worth a rebuild.
const COMPACT_AT: usize = 1024;

/// About 30,000 years: the deadline of a wait whose length `Instant` cannot
/// add.
const FAR_FUTURE: Duration = Duration::from_secs(1 << 40);

/// One timer: it wakes green thread `thread` (key) of `guest` if that thread
/// is still the one with `id` and still in the wait `token` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timer {
    pub deadline: Instant,
    pub seq: u64,
    pub guest: GuestKey,
    pub thread: ThreadKey,
    pub id: u64,
    pub token: u64,
}

/// The timers of a hub.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    /// Timers in the heap whose wait has ended (an upper bound: a stale timer
    /// popped before a rebuild is not subtracted).
    stale: usize,
}

impl Timers {
    /// Sets a timer `after` from `now`.
    pub fn push(
        &mut self,
        now: Instant,
        after: Duration,
        guest: GuestKey,
        thread: ThreadKey,
        id: u64,
        token: u64,
    ) {
        let deadline = now.checked_add(after).unwrap_or_else(|| now + FAR_FUTURE);
        self.seq += 1;
        self.heap.push(Reverse(Timer {
            deadline,
            seq: self.seq,
            guest,
            thread,
            id,
            token,
        }));
    }

    /// The earliest timer, stale or not.
    pub fn peek(&self) -> Option<&Timer> {
        self.heap.peek().map(|t| &t.0)
    }

    pub fn pop(&mut self) -> Option<Timer> {
        self.heap.pop().map(|t| t.0)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Makes room for `n` timers in all, ahead of need: growing the heap
    /// while thousands of green threads go to sleep at once stalls the hub.
    pub fn reserve_total(&mut self, n: usize) {
        self.heap.reserve(n.saturating_sub(self.heap.len()));
    }

    /// Notes that `n` timers went stale; true if the heap should now be
    /// rebuilt with [`Timers::retain`].
    pub fn note_stale(&mut self, n: usize) -> bool {
        self.stale += n;
        self.stale >= COMPACT_AT && self.stale * 2 > self.heap.len()
    }

    /// Keeps only the timers `live` accepts.
    pub fn retain(&mut self, mut live: impl FnMut(&Timer) -> bool) {
        self.heap.retain(|t| live(&t.0));
        self.stale = 0;
        // A burst of stale timers should not pin its peak memory.
        if self.heap.capacity() > 4 * self.heap.len().max(COMPACT_AT) {
            self.heap.shrink_to(2 * self.heap.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_pop_in_deadline_then_sequence_order() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.push(
            now,
            Duration::from_millis(20),
            GuestKey(0),
            ThreadKey(1),
            1,
            0,
        );
        timers.push(
            now,
            Duration::from_millis(10),
            GuestKey(0),
            ThreadKey(2),
            2,
            0,
        );
        timers.push(
            now,
            Duration::from_millis(20),
            GuestKey(0),
            ThreadKey(3),
            3,
            0,
        );
        timers.push(
            now,
            Duration::from_millis(10),
            GuestKey(0),
            ThreadKey(4),
            4,
            0,
        );
        let order: Vec<usize> = std::iter::from_fn(|| timers.pop())
            .map(|t| t.thread.0)
            .collect();
        assert_eq!(order, [2, 4, 1, 3]);
    }

    #[test]
    fn a_wait_too_long_for_instant_gets_a_far_deadline() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.push(now, Duration::MAX, GuestKey(0), ThreadKey(0), 1, 0);
        assert!(timers.peek().unwrap().deadline > now + Duration::from_secs(1 << 39));
    }

    #[test]
    fn stale_timers_are_compacted_once_they_are_the_majority() {
        let now = Instant::now();
        let mut timers = Timers::default();
        for i in 0..3000 {
            timers.push(
                now,
                Duration::from_secs(3600),
                GuestKey(0),
                ThreadKey(i),
                i as u64,
                0,
            );
        }
        assert!(
            !timers.note_stale(1000),
            "a minority is not worth a rebuild"
        );
        assert!(timers.note_stale(600), "1,600 of 3,000 are stale");
        timers.retain(|t| t.thread.0 >= 1600);
        assert_eq!(timers.len(), 1400);
        assert!(
            !timers.note_stale(1),
            "the count starts again after a rebuild"
        );
    }
}

//! Waits between green threads: join, links, park/unpark, futexes.

use super::*;

impl<P> Scheduler<P> {
    /// Starts the caller waiting for `target` to end; `Some(status)` if it
    /// need not wait.
    pub fn join(
        &mut self,
        guest: GuestKey,
        caller: ThreadKey,
        target: ThreadId,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> Option<JoinStatus> {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return Some(JoinStatus::Ended);
        };
        if key == caller {
            return Some(JoinStatus::IsSelf);
        }
        if timeout == Some(Duration::ZERO) {
            return Some(JoinStatus::TimedOut);
        }
        let joiner = Waiter::of(caller, &g.threads[caller]);
        let mut joiners = std::mem::take(&mut g.threads[key].joiners);
        joiners.push(joiner);
        if worth_pruning(joiners.len()) {
            joiners.retain(|w| w.is_current(&g.threads));
        }
        g.threads[key].joiners = joiners;
        g.threads[caller].state = State::Joining {
            target,
            timed: timeout.is_some(),
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, caller, now, timeout);
        }
        None
    }

    /// What a `join` that waited finds when it resumes (a caller killed
    /// meanwhile finds `timed-out`, and asks whether it was killed).
    pub fn join_result(&self, guest: GuestKey, caller: ThreadKey, target: ThreadId) -> JoinStatus {
        let g = self.guest_ref(guest);
        match g.key_of(target) {
            Some(_) => JoinStatus::TimedOut,
            None if g.threads[caller].life.is_unwinding() => JoinStatus::TimedOut,
            None => JoinStatus::Ended,
        }
    }

    /// Adds a link to `target`; its id, or 0 if the target has ended.
    pub fn link(&mut self, guest: GuestKey, target: ThreadId, callback: u32) -> u64 {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return 0;
        };
        let id = g.next_link;
        g.next_link += 1;
        g.links += 1;
        g.threads[key].links.insert(id, callback);
        id
    }

    /// Removes a pending link; its callback, or 0 if there is none.
    pub fn unlink(&mut self, guest: GuestKey, target: ThreadId, link: u64) -> u32 {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return 0;
        };
        match g.threads[key].links.remove(&link) {
            Some(callback) => {
                g.links -= 1;
                callback
            }
            None => 0,
        }
    }

    /// The caller's next link in link order, or 0.
    pub fn next_link(&mut self, guest: GuestKey, thread: ThreadKey) -> u32 {
        let g = self.guest(guest);
        match g.threads[thread].links.pop_first() {
            Some((_, callback)) => {
                g.links -= 1;
                callback
            }
            None => 0,
        }
    }

    /// Parks the caller; `Some(result)` if it need not wait.
    pub fn park(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> Option<bool> {
        let t = &mut self.guest(guest).threads[thread];
        if t.permit {
            t.permit = false;
            return Some(true);
        }
        if timeout == Some(Duration::ZERO) {
            return Some(false);
        }
        t.unparked = false;
        t.state = State::Parked {
            timed: timeout.is_some(),
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, thread, now, timeout);
        }
        None
    }

    /// True if the caller's last park ended by `unpark` (and it has not been
    /// killed: a killed thread's park reports false, and the thread asks
    /// whether it was killed).
    pub fn park_result(&self, guest: GuestKey, thread: ThreadKey) -> bool {
        let t = &self.guest_ref(guest).threads[thread];
        t.unparked && !t.life.is_unwinding()
    }

    /// Wakes `target` if it is parked, else keeps a permit for its next park.
    /// False if it has ended or is ending (its wait never returns).
    pub fn unpark(&mut self, guest: GuestKey, target: ThreadId) -> bool {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return false;
        };
        let t = &mut g.threads[key];
        if matches!(t.state, State::Parked { .. }) {
            t.unparked = true;
            self.make_runnable(guest, key, false);
            return true;
        }
        if !t.life.killable() {
            return false;
        }
        t.permit = true;
        true
    }

    /// Starts the caller waiting on the futex at `address` (its value was
    /// what the caller expected); `Some(2)` ("timed out") if it need not.
    pub fn futex_wait(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        address: u64,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> Option<u32> {
        if timeout == Some(Duration::ZERO) {
            return Some(FUTEX_TIMED_OUT);
        }
        let g = self.guest(guest);
        let queue = g.futexes.entry(address).or_default();
        queue
            .waiters
            .push_back(Waiter::of(thread, &g.threads[thread]));
        queue.current += 1;
        if worth_pruning(queue.waiters.len()) {
            let threads = &g.threads;
            queue.waiters.retain(|w| w.is_current(threads));
        }
        let t = &mut g.threads[thread];
        t.unparked = false;
        t.state = State::Futex {
            address,
            timed: timeout.is_some(),
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, thread, now, timeout);
        }
        None
    }

    /// What a futex wait that waited returns: woken (0) or timed out (2).
    pub fn futex_result(&self, guest: GuestKey, thread: ThreadKey) -> u32 {
        if self.guest_ref(guest).threads[thread].unparked {
            FUTEX_WOKEN
        } else {
            FUTEX_TIMED_OUT
        }
    }

    /// Wakes up to `count` green threads waiting on the futex at `address`,
    /// first come first served; how many it woke.
    pub fn futex_notify(&mut self, guest: GuestKey, address: u64, count: u32) -> u32 {
        let mut woken = 0;
        while woken < count {
            let g = self.guest(guest);
            // While the queue is in the map, a current waiter is in it.
            let Some(queue) = g.futexes.get_mut(&address) else {
                break;
            };
            let waiter = queue.waiters.pop_front().expect("a current waiter");
            if !waiter.is_current(&g.threads) {
                continue;
            }
            g.threads[waiter.key].unparked = true;
            self.make_runnable(guest, waiter.key, false);
            woken += 1;
        }
        woken
    }
}

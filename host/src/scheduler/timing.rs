//! Timers: sleeping, the earliest deadline, firing what is due (a bounded
//! number a step), and whether another guest's timer is due.

use super::*;

impl<P> Scheduler<P> {
    // ---- timers ----

    pub(super) fn add_timer(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        now: impl FnOnce() -> Instant,
        after: Duration,
    ) {
        let g = self.guest(guest);
        g.timed += 1;
        let t = &g.threads[thread];
        let (id, token) = (t.id, t.wait_token);
        self.timers.push(now(), after, guest, thread, id, token);
    }

    /// The earliest deadline of a live timer (stale ones are dropped).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(timer) = self.timers.peek() {
            if timer_is_live(&self.guests, timer) {
                return Some(timer.deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// True if any timer is set (live or stale): only then is the clock
    /// worth reading for [`Scheduler::fire_due_timers`].
    pub fn has_timers(&self) -> bool {
        self.timers.len() > 0
    }

    /// True if the earliest timer (perhaps stale) is due at `now` and is not
    /// `guest`'s: pausing `guest`'s running green thread lets that other
    /// guest's wake-up run now (see `crate::execution::preemption`).
    pub fn foreign_timer_due(&self, guest: GuestKey, now: Instant) -> bool {
        self.timers
            .peek()
            .is_some_and(|t| t.deadline <= now && t.guest != guest)
    }

    /// Wakes every green thread whose timer is due at `now`. A guest that
    /// had nothing to run takes its turn before the guests already in the
    /// round robin (in timer order): those are running, or preempted, and
    /// would otherwise each spend a time slice before a due timer is served.
    /// It cannot starve them: once it runs a whole slice, preemption puts it
    /// at the back.
    ///
    /// At most [`TIMERS_PER_STEP`] fire in one call: the hub calls this
    /// before every step, so a burst (30,000 waits with one deadline) fires
    /// over a few steps instead of holding the hub for all of it, and a
    /// neighbour's timer, in deadline order among them, waits a few short
    /// steps at most.
    pub fn fire_due_timers(&mut self, now: Instant) {
        let mut ahead = 0;
        let mut fired = 0;
        while let Some(timer) = self.timers.peek() {
            if timer.deadline > now || fired == TIMERS_PER_STEP {
                break;
            }
            fired += 1;
            let timer = self.timers.pop().expect("peeked");
            if !timer_is_live(&self.guests, &timer) {
                continue;
            }
            let g = self.guest(timer.guest);
            let was_ready = g.in_ready;
            let t = &mut g.threads[timer.thread];
            if matches!(t.state, State::Parked { .. } | State::Futex { .. }) {
                t.unparked = false;
            }
            self.make_runnable(timer.guest, timer.thread, false);
            if !was_ready {
                let woken = self.ready.pop_back();
                debug_assert_eq!(woken, Some(timer.guest));
                self.ready.insert(ahead, timer.guest);
                ahead += 1;
            }
        }
    }

    /// Suspends the caller for `duration`; zero queues it behind every
    /// green thread already runnable.
    pub fn sleep(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        duration: Duration,
        now: impl FnOnce() -> Instant,
    ) {
        if duration.is_zero() {
            self.make_runnable(guest, thread, false);
            return;
        }
        self.guest(guest).threads[thread].state = State::Sleeping;
        self.add_timer(guest, thread, now, duration);
    }
}

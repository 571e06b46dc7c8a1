//! What the hub's run loop asks between two steps: which green thread runs
//! next, when the next timer is due, whether anything can still wake a
//! guest; and the ends of every guest at once.

use super::*;

impl HubState {
    /// Fires the timers due by now, then takes the next green thread to run
    /// (the next guest's turn, its run queue's head).
    pub fn next_to_run(&mut self) -> Option<(GuestKey, ThreadKey)> {
        if self.sched.has_timers() {
            self.sched.fire_due_timers(Instant::now());
        }
        self.sched.next_runnable()
    }

    /// Whether some green thread can run now.
    pub fn has_runnable(&self) -> bool {
        self.sched.has_runnable()
    }

    /// When the earliest timer is due, if any is set.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.sched.next_deadline()
    }

    /// Whether every guest has ended.
    pub fn all_ended(&self) -> bool {
        self.sched.live_guests().is_empty()
    }

    /// Whether something outside the hub may still wake a guest though no
    /// timer is set: a live plugin (the host may call it), or a green thread
    /// waiting for an embedder's future.
    pub fn may_be_woken_from_outside(&self) -> bool {
        self.plugin_alive() || self.sched.waits_outside()
    }

    /// A waiter woken from another thread (an embedder's future became
    /// ready): its green thread runs again, if it still waits.
    pub fn woken(&mut self, waiter: IoWaiter) {
        self.sched.io_ready(waiter);
    }

    /// Ends every live guest, each with `exit()`.
    pub fn end_all(&mut self, exit: impl Fn() -> GuestExit) {
        for guest in self.sched.live_guests() {
            self.end_guest(guest, exit());
        }
    }

    /// Ends every live guest as blocked with nothing left to wake it (the
    /// deadlock report).
    pub fn end_all_blocked(&mut self) {
        for guest in self.sched.live_guests() {
            self.end_blocked(guest);
        }
    }
}

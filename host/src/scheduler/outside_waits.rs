//! Waits for things outside the hub: host descriptors and embedders' futures.

use super::*;

impl<P> Scheduler<P> {
    /// Starts the caller waiting for host descriptor `fd` to be readable (or
    /// writable), or until `timeout` has passed; the waiter for the hub's
    /// poller to hand back.
    pub fn io_wait(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        fd: i32,
        write: bool,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> IoWaiter {
        let g = self.guest(guest);
        g.io += 1;
        let t = &mut g.threads[thread];
        t.state = State::Io {
            fd,
            write,
            timed: timeout.is_some(),
        };
        let waiter = IoWaiter {
            guest,
            thread,
            id: t.id,
            token: t.wait_token,
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, thread, now, timeout);
        }
        waiter
    }

    /// The waiter that the green thread's next wait will have: a future's
    /// waker is made before the future is polled, and so before the wait.
    pub fn next_waiter(&self, guest: GuestKey, thread: ThreadKey) -> IoWaiter {
        let t = &self.guest_ref(guest).threads[thread];
        IoWaiter {
            guest,
            thread,
            id: t.id,
            token: t.wait_token,
        }
    }

    /// Starts the caller waiting for an async host function's future (its
    /// waker carries [`Scheduler::next_waiter`]).
    pub fn future_wait(&mut self, guest: GuestKey, thread: ThreadKey) {
        let g = self.guest(guest);
        g.io += 1;
        g.threads[thread].state = State::Future;
    }

    /// True if a green thread of any guest waits for something outside the
    /// hub (which may wake it at any time).
    pub fn waits_outside(&self) -> bool {
        self.guests.iter().flatten().any(|g| g.io > 0)
    }

    /// The caller did not wait after all (its descriptor could not be
    /// polled): it goes on running.
    pub fn io_wait_abandoned(&mut self, guest: GuestKey, thread: ThreadKey) {
        self.stop_waiting(guest, thread);
        self.guest(guest).threads[thread].state = State::Running;
    }

    /// True while the waiter's green thread is still in that wait.
    pub fn io_waiter_is_live(&self, waiter: &IoWaiter) -> bool {
        self.guests
            .get(waiter.guest.0)
            .and_then(Option::as_ref)
            .and_then(|g| g.threads.get(waiter.thread.0))
            .is_some_and(|t| {
                t.id == waiter.id
                    && t.wait_token == waiter.token
                    && matches!(t.state, State::Io { .. } | State::Future)
            })
    }

    /// The descriptor the waiter waits on is ready: queues its green thread
    /// if it still waits, and says whether it did.
    pub fn io_ready(&mut self, waiter: IoWaiter) -> bool {
        let live = self.io_waiter_is_live(&waiter);
        if live {
            self.make_runnable(waiter.guest, waiter.thread, false);
        }
        live
    }
}

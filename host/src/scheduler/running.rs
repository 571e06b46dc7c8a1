//! The run queue and the round robin: what runs next, a green thread's start,
//! suspension and end, and a guest's end.

use super::*;

impl<P> Scheduler<P> {
    // ---- the run queue ----

    /// Moves a waiting (or running) green thread to the run queue. One that
    /// is queued already keeps its place.
    pub(super) fn make_runnable(&mut self, guest: GuestKey, thread: ThreadKey, front: bool) {
        if self.guest(guest).threads[thread].state == State::Queued {
            return;
        }
        self.stop_waiting(guest, thread);
        self.guest(guest).threads[thread].state = State::Queued;
        self.enqueue(guest, thread, front);
    }

    /// Ends the wait the green thread is in (if any): its timer goes stale
    /// and a join leaves its target's joiners.
    pub(super) fn stop_waiting(&mut self, guest: GuestKey, thread: ThreadKey) {
        let g = self.guest(guest);
        let t = &mut g.threads[thread];
        t.wait_token += 1;
        let state = t.state;
        // A joiner's entry in its target's list is left to go stale (see
        // `Waiter`); a futex waiter's too, but the count of current ones
        // follows at once, so an address nobody waits on leaves the map.
        if let State::Futex { address, .. } = state {
            if let Some(queue) = g.futexes.get_mut(&address) {
                queue.current -= 1;
                if queue.current == 0 {
                    g.futexes.remove(&address);
                }
            }
        }
        if let State::Io { .. } | State::Future = state {
            g.io -= 1;
        }
        if state.has_timer() {
            g.timed -= 1;
            if self.timers.note_stale(1) {
                let guests = &self.guests;
                self.timers.retain(|timer| timer_is_live(guests, timer));
            }
        }
    }

    pub(super) fn enqueue(&mut self, guest: GuestKey, thread: ThreadKey, front: bool) {
        let g = self.guest(guest);
        if front {
            g.run_queue.push_front(thread.0);
        } else {
            g.run_queue.push_back(thread.0);
        }
        if !g.in_ready {
            g.in_ready = true;
            self.ready.push_back(guest);
        }
    }

    /// True if some green thread is runnable.
    pub fn has_runnable(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The next green thread to run: the next guest's turn, its queue's head.
    pub fn next_runnable(&mut self) -> Option<(GuestKey, ThreadKey)> {
        while let Some(guest) = self.ready.pop_front() {
            let Some(g) = self.guests[guest].as_mut() else {
                continue;
            };
            g.in_ready = false;
            if let Some(thread) = g.run_queue.pop_front().map(ThreadKey) {
                debug_assert_eq!(g.threads[thread].state, State::Queued);
                if !g.run_queue.is_empty() {
                    g.in_ready = true;
                    self.ready.push_back(guest);
                }
                return Some((guest, thread));
            }
        }
        None
    }

    /// Marks the green thread as running and says what its next run executes
    /// (when it has no suspended call to resume).
    pub fn start(&mut self, guest: GuestKey, thread: ThreadKey) -> Entry {
        let g = self.guest(guest);
        let is_main = thread == g.main;
        let spawner_gone = {
            let t = &g.threads[thread];
            t.life == Life::Unstarted && t.spawner.is_some_and(|id| g.key_of(id).is_none())
        };
        let t = &mut g.threads[thread];
        t.state = State::Running;
        if let Life::Running { paused } = &mut t.life {
            *paused = false;
        }
        if is_main {
            return Entry::Main;
        }
        if spawner_gone {
            // spawn_after_local whose spawner has ended: it never runs.
            t.life.end(Ending::Cancelled, 0);
        }
        let entry = if t.std_thread {
            let tid = u32::try_from(t.id).unwrap_or(u32::MAX);
            Entry::Task(TaskCall::StdThread { tid, arg: t.task })
        } else {
            match t.life.ending() {
                Some((how, error)) => {
                    return Entry::Task(TaskCall::Finish {
                        task: t.task,
                        how,
                        error,
                    })
                }
                None => Entry::Task(TaskCall::Run { task: t.task }),
            }
        };
        if t.life == Life::Unstarted {
            t.life = Life::Running { paused: false };
            g.started += 1;
        }
        entry
    }

    /// The green thread suspended (its call returned Pending).
    ///
    /// `now` is read only for a green thread that preemption paused: the
    /// timers due by then fire first, so that the guests they wake take
    /// their turn before the paused guest's next slice (a spinning guest
    /// delays another guest's due timer by at most one time slice).
    pub fn suspended(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        now: impl FnOnce() -> Instant,
    ) -> Suspension {
        let t = &mut self.guest(guest).threads[thread];
        if t.state == State::Running {
            match t.life.unwinding() {
                Some(&mut Unwinding {
                    error,
                    spinning: true,
                    ..
                }) => {
                    // Killed, and a whole slice later it has still not
                    // reached a blocking call: a runaway, which only a hard
                    // end stops (the one place a thread is ended mid-code;
                    // it may leave a lock of the guest's held).
                    t.life.end(Ending::Killed, error);
                    self.make_runnable(guest, thread, true);
                    return Suspension::Drop;
                }
                // Killed, and computing since its last blocking call (one
                // that ignores the kill its wait reported, say): if the
                // next preemption finds it still so, it is a runaway.
                Some(u) => u.spinning = true,
                None => {}
            }
            if let Life::Running { paused } = &mut t.life {
                *paused = true;
            }
            // Nothing recorded a wait: preemption paused it so other guests
            // can run. It resumes before any other green thread of its guest,
            // while the guest waits its turn behind the other guests,
            // including those its slice made due.
            self.fire_due_timers(now());
            // Another runnable green thread of its own may already hold its
            // guest's place in the round robin: it gives that up too.
            let g = self.guest(guest);
            if g.in_ready {
                g.in_ready = false;
                self.ready.retain(|&r| r != guest);
            }
            self.make_runnable(guest, thread, true);
        }
        Suspension::Keep
    }

    /// A spawned green thread's call returned: normally (`failure` None) or
    /// with a trap or a hub error. Returns the payload if the green thread is
    /// gone; None if its ending (links, result) is queued to run first.
    ///
    /// A killed green thread that was unwinding ends as killed however its
    /// call ended: it returned early, leaving its ending to the hub, or it
    /// failed on the way (a panic on the kill's error, say).
    pub fn ended(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        failure: Option<Ending>,
    ) -> Option<P> {
        let t = &mut self.guest(guest).threads[thread];
        if let Life::Unwinding(u) = t.life {
            t.life.end(Ending::Killed, u.error);
            self.make_runnable(guest, thread, true);
            return None;
        }
        if let Some(how) = failure {
            if t.life.ending().is_none() {
                t.life.end(how, 0);
                self.make_runnable(guest, thread, true);
                return None;
            }
        }
        Some(self.remove(guest, thread))
    }

    pub(super) fn remove(&mut self, guest: GuestKey, thread: ThreadKey) -> P {
        self.stop_waiting(guest, thread);
        self.alive -= 1;
        let g = self.guest(guest);
        let t = g.threads.remove(thread.0);
        if g.threads.len() < self.guarantee {
            self.reserved += 1;
        }
        let g = self.guest(guest);
        g.keys.remove(t.id);
        g.started -= usize::from(t.life.started());
        g.links -= t.links.len();
        for joiner in t.joiners {
            if joiner.is_current(&self.guest(guest).threads) {
                self.make_runnable(guest, joiner.key, false);
            }
        }
        t.payload
    }

    /// Ends the guest: every green thread goes. Returns their payloads.
    pub fn end_guest(&mut self, guest: GuestKey) -> Vec<P> {
        let Some(g) = self.guests[guest].take() else {
            return Vec::new();
        };
        self.alive -= g.threads.len();
        self.reserved -= self.guarantee.saturating_sub(g.threads.len());
        if self.timers.note_stale(g.timed) {
            let guests = &self.guests;
            self.timers.retain(|timer| timer_is_live(guests, timer));
        }
        g.threads.into_iter().map(|(_, t)| t.payload).collect()
    }
}

//! One rule, one test: the scheduler's rules without wasm.

use std::time::{Duration, Instant};

use super::*;

mod killing;
mod outside_waits;
mod spawning;
mod timing;
mod turns;
mod waits;

const MS: Duration = Duration::from_millis(1);

/// The one guest most tests have.
const G: GuestKey = GuestKey(0);

/// The clock, stopped at `t`.
fn at(t: Instant) -> impl FnOnce() -> Instant {
    move || t
}

/// A hub's scheduler with one guest, whose main green thread is running.
struct Hub {
    s: Scheduler<()>,
    now: Instant,
    main: ThreadKey,
}

impl Hub {
    fn new() -> Hub {
        let mut s = Scheduler::default();
        let g = s.add_guest(());
        assert_eq!(g, G);
        let (_, main) = s.next_runnable().unwrap();
        assert_eq!(s.start(G, main), Entry::Main);
        Hub {
            s,
            now: Instant::now(),
            main,
        }
    }

    fn spawn(&mut self, caller: ThreadKey, delay: Duration, local: bool) -> ThreadId {
        let spawn = Spawn {
            task: 100,
            delay,
            local,
        };
        let id = self.s.spawn(G, caller, spawn, (), at(self.now));
        self.s.debug_check();
        id
    }

    fn key(&self, id: ThreadId) -> ThreadKey {
        self.s.guests[0].as_ref().unwrap().key_of(id).unwrap()
    }

    fn state(&self, id: ThreadId) -> Option<State> {
        let g = self.s.guests[0].as_ref().unwrap();
        g.key_of(id).map(|k| g.threads[k].state)
    }

    /// Runs the next runnable green thread up to its start; its key.
    fn next(&mut self) -> Option<ThreadKey> {
        self.s.fire_due_timers(self.now);
        let (_, key) = self.s.next_runnable()?;
        self.s.start(G, key);
        self.s.debug_check();
        Some(key)
    }

    /// The ids of green threads in the order they run, each suspending with
    /// `then` (e.g. ending).
    fn run_all(&mut self, mut then: impl FnMut(&mut Self, ThreadKey)) -> Vec<ThreadId> {
        let mut order = Vec::new();
        while let Some(key) = self.next() {
            order.push(self.s.current(G, key));
            then(self, key);
            self.s.debug_check();
        }
        order
    }

    fn end(&mut self, key: ThreadKey) {
        assert!(self.s.ended(G, key, None).is_some());
    }

    /// Ends a killed thread that has unwound: its call returns, its ending
    /// runs next, and then it goes.
    fn end_killed(&mut self, key: ThreadKey) {
        assert!(self.s.ended(G, key, None).is_none());
        assert_eq!(self.next(), Some(key));
        self.end(key);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }
}

//! What the scheduler says of a guest: the deadlock report, the per-thread
//! report, and (tests only) the invariants check.

use super::*;

impl<P> Scheduler<P> {
    /// If none of the guest's green threads can ever run again, the report
    /// that names each and what it waits for.
    pub fn deadlock(&self, guest: GuestKey) -> Option<String> {
        let g = self.guests[guest].as_ref()?;
        if !g.run_queue.is_empty() || g.timed > 0 || g.io > 0 {
            return None;
        }
        Some(self.blocked_report(guest))
    }

    /// Each green thread of a live guest and what it waits for, a line each
    /// (the deadlock report, and the threads in [`Scheduler::report`]).
    pub fn blocked_report(&self, guest: GuestKey) -> String {
        self.report(guest, |_| None)
    }

    /// Each green thread of a live guest, what it does or waits for, and
    /// what `label` says of it (a host call's function, say), a line each.
    pub fn report(&self, guest: GuestKey, label: impl Fn(ThreadId) -> Option<String>) -> String {
        let g = self.guest_ref(guest);
        let mut report = String::new();
        for (key, t) in g.threads.iter() {
            let what = match t.state {
                State::Joining { target, .. } => match g.key_of(target) {
                    Some(k) => format!("waiting for {} to end", g.name_of(k)),
                    None => format!("waiting for green thread #{target}"),
                },
                State::Parked { .. } => {
                    "parked (waiting on an Event, Queue, Semaphore or other SDK primitive)".into()
                }
                State::Futex { address, .. } => format!(
                    "waiting on a std lock, condition variable or other futex \
                     (memory.atomic.wait at {address:#x})"
                ),
                State::Io { fd, write, .. } => format!(
                    "waiting for host descriptor {fd} to be {}",
                    if write { "writable" } else { "readable" }
                ),
                State::Future => "waiting for an async host function".into(),
                State::Queued => "runnable".into(),
                State::Running => "running".into(),
                State::Sleeping => "sleeping".into(),
                State::Delayed => "spawned with a delay, not started".into(),
            };
            let label = label(t.id).map(|l| format!(" ({l})")).unwrap_or_default();
            let _ = writeln!(report, "  {}{label}: {what}", g.name_of(ThreadKey(key)));
        }
        report
    }

    /// Checks the invariants in the module docs (tests only: it walks
    /// everything).
    #[cfg(test)]
    pub fn debug_check(&self) {
        let mut alive = 0;
        for (key, g) in self.guests.iter().enumerate() {
            let Some(g) = g else { continue };
            alive += g.threads.len();
            assert_eq!(
                g.in_ready,
                !g.run_queue.is_empty(),
                "guest {key} round robin"
            );
            assert_eq!(
                self.ready.iter().filter(|&&r| r.0 == key).count(),
                usize::from(g.in_ready)
            );
            for (k, t) in g.threads.iter() {
                let queued = g.run_queue.iter().filter(|&q| q == k).count();
                assert_eq!(queued, usize::from(t.state == State::Queued), "thread {k}");
                assert_eq!(g.keys.get(t.id), Some(k));
            }
            let timed = g
                .threads
                .iter()
                .filter(|(_, t)| t.state.has_timer())
                .count();
            assert_eq!(g.timed, timed);
            let io = g
                .threads
                .iter()
                .filter(|(_, t)| matches!(t.state, State::Io { .. } | State::Future))
                .count();
            assert_eq!(g.io, io);
            let links: usize = g.threads.iter().map(|(_, t)| t.links.len()).sum();
            assert_eq!(g.links, links);
            for (address, queue) in &g.futexes {
                let current = queue
                    .waiters
                    .iter()
                    .filter(|w| w.is_current(&g.threads))
                    .count();
                assert_eq!(queue.current, current, "futex {address:#x}");
                assert!(current > 0, "futex {address:#x} has no current waiter");
            }
            let started = g.threads.iter().filter(|(_, t)| t.life.started()).count();
            assert_eq!(g.started, started);
        }
        assert_eq!(self.alive, alive);
        let reserved: usize = self
            .guests
            .iter()
            .flatten()
            .map(|g| self.guarantee.saturating_sub(g.threads.len()))
            .sum();
        assert_eq!(self.reserved, reserved);
    }
}

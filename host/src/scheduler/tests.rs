//! One rule, one test: the scheduler's rules without wasm.

use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

/// The clock, stopped at `t`.
fn at(t: Instant) -> impl FnOnce() -> Instant {
    move || t
}

/// A hub's scheduler with one guest, whose main green thread is running.
struct Hub {
    s: Scheduler<()>,
    now: Instant,
    main: usize,
}

impl Hub {
    fn new() -> Hub {
        let mut s = Scheduler::default();
        let g = s.add_guest(());
        assert_eq!(g, 0);
        let (_, main) = s.next_runnable().unwrap();
        assert_eq!(s.start(0, main), Entry::Main);
        Hub {
            s,
            now: Instant::now(),
            main,
        }
    }

    fn spawn(&mut self, caller: usize, delay: Duration, local: bool) -> ThreadId {
        let spawn = Spawn {
            task: 100,
            delay,
            local,
        };
        let id = self.s.spawn(0, caller, spawn, (), at(self.now));
        self.s.debug_check();
        id
    }

    fn key(&self, id: ThreadId) -> usize {
        self.s.guests[0].as_ref().unwrap().key_of(id).unwrap()
    }

    fn state(&self, id: ThreadId) -> Option<State> {
        let g = self.s.guests[0].as_ref().unwrap();
        g.key_of(id).map(|k| g.threads[k].state)
    }

    /// Runs the next runnable green thread up to its start; its key.
    fn next(&mut self) -> Option<usize> {
        self.s.fire_due_timers(self.now);
        let (_, key) = self.s.next_runnable()?;
        self.s.start(0, key);
        self.s.debug_check();
        Some(key)
    }

    /// The ids of green threads in the order they run, each suspending with
    /// `then` (e.g. ending).
    fn run_all(&mut self, mut then: impl FnMut(&mut Self, usize)) -> Vec<ThreadId> {
        let mut order = Vec::new();
        while let Some(key) = self.next() {
            order.push(self.s.current(0, key));
            then(self, key);
            self.s.debug_check();
        }
        order
    }

    fn end(&mut self, key: usize) {
        assert!(self.s.ended(0, key, None).is_some());
    }

    /// Ends a killed thread that has unwound: its call returns, its ending
    /// runs next, and then it goes.
    fn end_killed(&mut self, key: usize) {
        assert!(self.s.ended(0, key, None).is_none());
        assert_eq!(self.next(), Some(key));
        self.end(key);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }
}

#[test]
fn spawned_threads_run_in_fifo_order_after_the_spawner_yields() {
    let mut h = Hub::new();
    let ids: Vec<_> = (0..3)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let order = h.run_all(|h, key| {
        if key != h.main {
            h.end(key);
        }
    });
    assert_eq!(order, [ids[0], ids[1], ids[2], 1]);
}

#[test]
fn ids_count_spawns_from_main_and_are_never_reused() {
    let mut h = Hub::new();
    assert_eq!(h.s.current(0, h.main), 1);
    let first = h.spawn(h.main, Duration::ZERO, false);
    let key = h.key(first);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    h.next();
    h.end(key);
    let second = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!((first, second), (2, 3));
    assert_eq!(h.key(second), key, "the key is reused, the id is not");
    assert_eq!(h.s.join_result(0, h.main, first), JoinStatus::Ended);
    assert_eq!(h.s.link(0, first, 7), 0, "a stale id reaches nothing");
}

#[test]
fn a_thread_counts_as_started_from_its_first_run_until_it_is_gone() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let _b = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!((h.s.alive_in(0), h.s.started_in(0)), (3, 0));
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let a_key = h.next().unwrap();
    assert_eq!(h.s.started_in(0), 1);
    h.s.sleep(0, a_key, Duration::from_secs(1), at(h.now));
    let b_key = h.next().unwrap();
    assert_eq!(h.s.started_in(0), 2);
    h.end(b_key);
    assert_eq!(h.s.started_in(0), 1);
    assert_eq!(h.next(), Some(h.main));
    // Killed before it started, it runs only its ending: never counted.
    let c = h.spawn(h.main, Duration::ZERO, false);
    assert!(matches!(h.s.kill(0, h.main, c, 0, false), Kill::Target(_)));
    let c_key = h.next().unwrap();
    assert_eq!(h.s.current(0, c_key), c);
    assert_eq!(h.s.started_in(0), 1);
    h.end(c_key);
    assert_eq!(h.next(), Some(h.main));
    // Resumed to unwind, it is not counted twice; gone, it is not counted.
    assert_eq!(h.s.kill(0, h.main, a, 0, false), Kill::Unwind);
    assert_eq!(h.next(), Some(a_key));
    assert_eq!(h.s.started_in(0), 1);
    h.end_killed(a_key);
    assert_eq!((h.s.alive_in(0), h.s.started_in(0)), (1, 0));
}

#[test]
fn timers_fire_in_deadline_order_and_ties_in_the_order_set() {
    let mut h = Hub::new();
    let ids: Vec<_> = (0..4)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(0, h.main, Duration::from_secs(10), at(h.now));
    let delays = [20, 10, 20, 10];
    let mut started = 0;
    h.run_all(|h, key| {
        h.s.sleep(0, key, delays[started] * MS, at(h.now));
        started += 1;
    });
    h.advance(30 * MS);
    let order = h.run_all(|h, key| h.end(key));
    assert_eq!(order, [ids[1], ids[3], ids[0], ids[2]]);
}

#[test]
fn a_timer_belongs_to_one_wait_of_one_thread() {
    let mut h = Hub::new();
    let victim = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(0, key, 200 * MS, at(h.now));
    // main kills it while it sleeps; it unwinds, its ending runs and it
    // goes.
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, victim, 0, false), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    h.end_killed(key);
    // A new thread gets the same key and sleeps 2 s.
    let heir = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(h.key(heir), key);
    assert_eq!(h.next(), Some(h.main));
    h.s.sleep(0, h.main, Duration::from_secs(10), at(h.now));
    assert_eq!(h.next(), Some(key));
    h.s.sleep(0, key, Duration::from_secs(2), at(h.now));
    h.advance(300 * MS);
    assert_eq!(h.next(), None, "the dead thread's timer woke its heir");
    assert_eq!(h.state(heir), Some(State::Sleeping));
}

#[test]
fn a_wait_that_ends_early_leaves_no_timer_behind_for_long() {
    let mut h = Hub::new();
    let n = 5000;
    for _ in 0..n {
        assert_eq!(
            h.s.park(0, h.main, Some(Duration::from_secs(3600)), at(h.now)),
            None
        );
        assert!(h.s.unpark(0, 1));
        assert_eq!(h.next(), Some(h.main));
        assert!(h.s.park_result(0, h.main));
    }
    assert!(
        h.s.timers.len() < 2500,
        "{} timers kept for {n} ended waits",
        h.s.timers.len()
    );
    assert_eq!(h.s.next_deadline(), None);
}

#[test]
fn kill_queues_the_target_first_and_the_killer_last() {
    let mut h = Hub::new();
    let sleeper = h.spawn(h.main, Duration::ZERO, false);
    let bystander = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(0, key, Duration::from_secs(60), at(h.now));
    let b = h.next().unwrap();
    h.s.sleep(0, b, Duration::ZERO, at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, sleeper, 0, false), Kill::Unwind);
    assert_eq!(h.state(sleeper), Some(State::Queued));
    assert!(h.s.is_unwinding(0, key));
    let order = h.run_all(|h, key| {
        if key != h.main {
            h.s.ended(0, key, None);
        }
    });
    // The sleeper unwinds, then its ending runs; then the rest.
    assert_eq!(order, [sleeper, sleeper, bystander, 1]);
}

#[test]
fn a_killed_thread_runs_its_ending_with_the_kill_error() {
    let mut h = Hub::new();
    let target = h.spawn(h.main, Duration::ZERO, false);
    let key = h.key(target);
    assert_eq!(h.s.kill(0, h.main, target, 42, false), Kill::Target(key));
    assert_eq!(h.next(), Some(key));
    let g = h.s.guests[0].as_ref().unwrap();
    assert!(
        !g.threads[key].started,
        "a target that had not started never runs"
    );
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[key].ending,
        Some((Ending::Killed, 42))
    );
    assert_eq!(
        h.s.kill(0, h.main, target, 0, false),
        Kill::Done(KillStatus::NotAlive)
    );
}

#[test]
fn cancel_kills_only_a_thread_that_has_not_started() {
    let mut h = Hub::new();
    let started = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(0, key, Duration::from_secs(1), at(h.now));
    assert_eq!(h.next(), Some(h.main));
    let kill = h.s.kill(0, h.main, started, 0, true);
    assert_eq!(kill, Kill::Done(KillStatus::AlreadyStarted));
    let pending = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(
        h.s.kill(0, h.main, pending, 0, true),
        Kill::Target(h.key(pending))
    );
    assert_eq!(
        h.s.kill(0, h.main, 1, 0, true),
        Kill::Done(KillStatus::AlreadyStarted)
    );
}

#[test]
fn killing_main_ends_the_guest_even_from_main() {
    let mut h = Hub::new();
    h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.kill(0, key, 1, 0, false), Kill::Main);
    assert_eq!(h.s.kill(0, h.main, 1, 0, false), Kill::Main);
}

#[test]
fn a_thread_that_kills_itself_goes_on_unwinding_and_ends_killed_when_it_returns() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.kill(0, key, t, 7, false), Kill::Caller);
    assert_eq!(h.state(t), Some(State::Running), "it goes on, not queued");
    assert!(h.s.is_unwinding(0, key));
    assert_eq!(
        h.s.unwinding_call(0, key),
        Ok(true),
        "its waits answer at once"
    );
    assert_eq!(
        h.s.kill(0, key, t, 0, false),
        Kill::Done(KillStatus::NotAlive),
        "a second kill finds it unwinding"
    );
    assert_eq!(h.s.ended(0, key, None), None, "its ending runs first");
    assert_eq!(h.state(t), Some(State::Queued));
    assert_eq!(h.next(), Some(key));
}

#[test]
fn links_run_in_link_order_and_unlink_removes_a_pending_one() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    let ids: Vec<u64> = (1..=3).map(|cb| h.s.link(0, t, cb)).collect();
    assert!(ids.iter().all(|&id| id != 0));
    assert_eq!(h.s.unlink(0, t, ids[1]), 2);
    assert_eq!(h.s.unlink(0, t, ids[1]), 0, "only once");
    let key = h.key(t);
    assert_eq!(h.s.next_link(0, key), 1);
    let added = h.s.link(0, t, 4);
    assert_ne!(added, 0, "a link added while links run");
    assert_eq!(h.s.next_link(0, key), 3);
    assert_eq!(h.s.next_link(0, key), 4);
    assert_eq!(h.s.next_link(0, key), 0);
}

#[test]
fn join_wakes_when_the_target_ends_and_times_out_otherwise() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    let key = h.key(t);
    assert_eq!(
        h.s.join(0, h.main, 1, None, at(h.now)),
        Some(JoinStatus::IsSelf)
    );
    assert_eq!(
        h.s.join(0, h.main, t, Some(Duration::ZERO), at(h.now)),
        Some(JoinStatus::TimedOut)
    );
    assert_eq!(h.s.join(0, h.main, t, Some(10 * MS), at(h.now)), None);
    assert_eq!(h.next(), Some(key));
    h.s.sleep(0, key, Duration::from_secs(1), at(h.now));
    h.advance(10 * MS);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.join_result(0, h.main, t), JoinStatus::TimedOut);
    let g = h.s.guests[0].as_ref().unwrap();
    assert!(
        g.threads[key]
            .joiners
            .iter()
            .all(|j| !j.is_current(&g.threads)),
        "the timed-out join is no longer current"
    );
    assert_eq!(h.s.join(0, h.main, t, None, at(h.now)), None);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.next(), Some(key));
    h.end(key);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.join_result(0, h.main, t), JoinStatus::Ended);
}

#[test]
fn an_unpark_before_the_park_is_kept_and_one_for_an_ending_thread_fails() {
    let mut h = Hub::new();
    assert!(h.s.unpark(0, 1));
    assert_eq!(h.s.park(0, h.main, None, at(h.now)), Some(true));
    assert_eq!(
        h.s.park(0, h.main, Some(Duration::ZERO), at(h.now)),
        Some(false)
    );
    let t = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.park(0, key, None, at(h.now)), None);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, t, 0, false), Kill::Unwind);
    assert!(!h.s.unpark(0, t), "its park reports the kill instead");
    assert_eq!(h.next(), Some(key));
    assert!(!h.s.park_result(0, key));
    assert!(!h.s.unpark(0, 999), "no such thread");
}

#[test]
fn a_timed_park_reports_whether_it_was_unparked() {
    let mut h = Hub::new();
    assert_eq!(h.s.park(0, h.main, Some(5 * MS), at(h.now)), None);
    h.advance(5 * MS);
    assert_eq!(h.next(), Some(h.main));
    assert!(!h.s.park_result(0, h.main));
}

#[test]
fn a_preempted_thread_resumes_before_the_rest_of_its_guest() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    // main is paused by preemption: it suspends while still Running.
    assert_eq!(h.s.suspended(0, h.main, at(h.now)), Suspension::Keep);
    let order = h.run_all(|h, key| {
        if key != h.main {
            h.end(key);
        } else {
            h.s.sleep(0, key, Duration::from_secs(1), at(h.now));
        }
    });
    assert_eq!(order, [1, t]);
}

#[test]
fn guests_take_turns_one_switch_at_a_time() {
    let mut s: Scheduler<()> = Scheduler::default();
    let a = s.add_guest(());
    let b = s.add_guest(());
    let now = Instant::now();
    let spawn = Spawn {
        task: 1,
        delay: Duration::ZERO,
        local: false,
    };
    let mut order = Vec::new();
    for _ in 0..3 {
        let (g, key) = s.next_runnable().unwrap();
        s.start(g, key);
        if order.len() < 2 {
            s.spawn(g, key, spawn, (), at(now));
        }
        order.push(g);
        s.sleep(g, key, Duration::ZERO, at(now));
        s.debug_check();
    }
    assert_eq!(order, [a, b, a]);
}

#[test]
fn spawn_after_local_is_cancelled_when_its_spawner_has_ended() {
    for delay in [Duration::ZERO, 5 * MS] {
        let mut h = Hub::new();
        let spawner = h.spawn(h.main, Duration::ZERO, false);
        h.s.sleep(0, h.main, Duration::from_secs(1), at(h.now));
        let key = h.next().unwrap();
        let local = h.spawn(key, delay, true);
        let plain = h.spawn(key, delay, false);
        h.end(key);
        assert_eq!(h.s.join_result(0, h.main, spawner), JoinStatus::Ended);
        h.advance(5 * MS);
        let entries: Vec<Entry> = std::iter::from_fn(|| {
            h.s.fire_due_timers(h.now);
            let (_, key) = h.s.next_runnable()?;
            Some(h.s.start(0, key))
        })
        .collect();
        assert_eq!(
            entries,
            [
                Entry::Task(TaskCall::Finish {
                    task: 100,
                    how: Ending::Cancelled,
                    error: 0
                }),
                Entry::Task(TaskCall::Run { task: 100 }),
            ],
            "delay {delay:?}"
        );
        let _ = (local, plain);
    }
}

#[test]
fn a_guest_deadlocks_when_nothing_is_queued_and_no_timer_is_pending() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let b = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(h.s.join(0, h.main, a, None, at(h.now)), None);
    let ka = h.next().unwrap();
    assert_eq!(h.s.join(0, ka, b, None, at(h.now)), None);
    assert_eq!(h.s.deadlock(0), None, "b is still queued");
    let kb = h.next().unwrap();
    assert_eq!(h.s.park(0, kb, Some(MS), at(h.now)), None);
    assert_eq!(h.s.deadlock(0), None, "b's park has a timer");
    h.advance(MS);
    assert_eq!(h.next(), Some(kb));
    assert_eq!(h.s.join(0, kb, a, None, at(h.now)), None);
    let report = h.s.deadlock(0).expect("deadlocked");
    assert!(
        report.contains("main green thread: waiting for green thread #2 to end"),
        "{report}"
    );
    assert!(
        report.contains("green thread #2: waiting for green thread #3 to end"),
        "{report}"
    );
    assert!(
        report.contains("green thread #3: waiting for green thread #2 to end"),
        "{report}"
    );
}

#[test]
fn ending_a_guest_frees_its_threads_and_timers() {
    let mut h = Hub::new();
    for _ in 0..10 {
        h.spawn(h.main, Duration::from_secs(5), false);
    }
    assert_eq!(h.s.alive(), 11);
    assert_eq!(h.s.end_guest(0).len(), 11);
    assert_eq!(h.s.alive(), 0);
    assert_eq!(h.s.next_deadline(), None);
    assert_eq!(h.s.next_runnable(), None);
}

#[test]
fn futex_waiters_are_woken_first_come_first_served_up_to_the_count() {
    let mut h = Hub::new();
    let ids: Vec<_> = (0..3)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    for _ in 0..3 {
        let key = h.next().unwrap();
        assert_eq!(h.s.futex_wait(0, key, 0x100, None, at(h.now)), None);
    }
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.futex_notify(0, 0x200, 5), 0, "another address");
    assert_eq!(h.s.futex_notify(0, 0x100, 2), 2);
    h.s.sleep(0, h.main, Duration::from_secs(1), at(h.now));
    let order = h.run_all(|h, key| {
        assert_eq!(h.s.futex_result(0, key), FUTEX_WOKEN);
        h.end(key);
    });
    assert_eq!(order, [ids[0], ids[1]]);
    assert_eq!(
        h.state(ids[2]).unwrap(),
        State::Futex {
            address: 0x100,
            timed: false
        }
    );
    let report = h.s.blocked_report(0);
    assert!(report.contains("memory.atomic.wait at 0x100"), "{report}");
}

#[test]
fn a_timed_futex_wait_times_out_and_a_killed_waiter_leaves_the_queue() {
    let mut h = Hub::new();
    assert_eq!(
        h.s.futex_wait(0, h.main, 8, Some(Duration::ZERO), at(h.now)),
        Some(FUTEX_TIMED_OUT)
    );
    assert_eq!(h.s.futex_wait(0, h.main, 8, Some(MS), at(h.now)), None);
    h.advance(MS);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.futex_result(0, h.main), FUTEX_TIMED_OUT);
    let victim = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.futex_wait(0, key, 8, None, at(h.now)), None);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, victim, 0, false), Kill::Unwind);
    assert_eq!(
        h.s.futex_notify(0, 8, 1),
        0,
        "the killed waiter left the queue"
    );
    h.s.debug_check();
}

#[test]
fn a_guest_whose_timer_came_due_during_a_slice_runs_before_the_next_slice() {
    let mut s: Scheduler<()> = Scheduler::default();
    let now = Instant::now();
    let spinner = s.add_guest(());
    let sleeper = s.add_guest(());
    let (_, spin) = s.next_runnable().unwrap();
    s.start(spinner, spin);
    s.sleep(spinner, spin, Duration::ZERO, at(now));
    let (g, sleep) = s.next_runnable().unwrap();
    assert_eq!(g, sleeper);
    s.start(sleeper, sleep);
    s.sleep(sleeper, sleep, MS, at(now));
    // The spinner runs a whole slice, past the sleeper's deadline, and is
    // paused by preemption.
    let (g, spin) = s.next_runnable().unwrap();
    assert_eq!(g, spinner);
    s.start(spinner, spin);
    assert_eq!(
        s.suspended(spinner, spin, at(now + 10 * MS)),
        Suspension::Keep
    );
    s.debug_check();
    assert_eq!(
        s.next_runnable(),
        Some((sleeper, sleep)),
        "the due sleeper goes first"
    );
    assert_eq!(s.next_runnable(), Some((spinner, spin)));
}

#[test]
fn a_preempted_guest_with_other_runnable_threads_also_waits_behind_due_guests() {
    let mut s: Scheduler<()> = Scheduler::default();
    let now = Instant::now();
    let spinner = s.add_guest(());
    let sleeper = s.add_guest(());
    let (_, spin) = s.next_runnable().unwrap();
    s.start(spinner, spin);
    let spawn = Spawn {
        task: 1,
        delay: Duration::ZERO,
        local: false,
    };
    // A green thread of the spinner's, queued: it keeps the spinner's guest
    // in the round robin while main spins.
    s.spawn(spinner, spin, spawn, (), at(now));
    s.sleep(spinner, spin, Duration::ZERO, at(now));
    let (g, sleep) = s.next_runnable().unwrap();
    assert_eq!(g, sleeper);
    s.start(sleeper, sleep);
    s.sleep(sleeper, sleep, MS, at(now));
    let (g, spin) = s.next_runnable().unwrap();
    assert_eq!(g, spinner);
    s.start(spinner, spin);
    assert_eq!(
        s.suspended(spinner, spin, at(now + 10 * MS)),
        Suspension::Keep
    );
    s.debug_check();
    assert_eq!(
        s.next_runnable(),
        Some((sleeper, sleep)),
        "the due sleeper goes before the spinner's second slice"
    );
    assert_eq!(s.next_runnable(), Some((spinner, spin)));
}

#[test]
fn a_due_timer_waits_for_one_slice_however_many_guests_spin() {
    let mut s: Scheduler<()> = Scheduler::default();
    let now = Instant::now();
    let spinners = [s.add_guest(()), s.add_guest(()), s.add_guest(())];
    let (sleeper, first, second) = (s.add_guest(()), s.add_guest(()), s.add_guest(()));
    let mut mains = Vec::new();
    for _ in 0..6 {
        let (g, key) = s.next_runnable().unwrap();
        s.start(g, key);
        mains.push((g, key));
        if spinners.contains(&g) {
            s.sleep(g, key, Duration::ZERO, at(now));
        }
    }
    // Three guests sleep, with deadlines 1, 2 and 3 ms away.
    s.sleep(second, mains[5].1, 2 * MS, at(now));
    s.sleep(sleeper, mains[3].1, MS, at(now));
    s.sleep(first, mains[4].1, 3 * MS, at(now));
    // The first spinner runs a slice; all three timers come due meanwhile.
    let (g, key) = s.next_runnable().unwrap();
    assert_eq!(g, spinners[0]);
    s.start(g, key);
    s.suspended(g, key, at(now + 10 * MS));
    s.debug_check();
    let order: Vec<usize> = std::iter::from_fn(|| s.next_runnable().map(|(g, _)| g))
        .take(6)
        .collect();
    assert_eq!(
        order,
        [
            sleeper,
            second,
            first,
            spinners[1],
            spinners[2],
            spinners[0]
        ],
        "the woken guests in timer order, before the other spinners' slices"
    );
}

#[test]
fn an_io_wait_is_not_a_deadlock_and_wakes_only_its_own_wait() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let waiter = h.s.io_wait(0, h.main, 0, false, None, at(h.now));
    h.s.debug_check();
    let ka = h.next().unwrap();
    assert_eq!(h.s.park(0, ka, None, at(h.now)), None);
    assert_eq!(
        h.s.deadlock(0),
        None,
        "main waits for stdin, which may come"
    );
    assert!(h.s.io_waiter_is_live(&waiter));
    let report = h.s.blocked_report(0);
    assert!(
        report.contains("main green thread: waiting for host descriptor 0 to be readable"),
        "{report}"
    );
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert_eq!(h.next(), Some(h.main));
    assert!(!h.s.io_waiter_is_live(&waiter), "that wait is over");
    // A stale readiness (the same waiter again) must not wake a later wait.
    assert_eq!(h.s.park(0, h.main, None, at(h.now)), None);
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert!(
        h.s.deadlock(0).is_some(),
        "main parked, a parked: nothing left"
    );
    let _ = a;
}

#[test]
fn killing_an_io_waiter_ends_its_wait() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let ka = h.next().unwrap();
    let waiter = h.s.io_wait(0, ka, 1, true, None, at(h.now));
    assert_eq!(
        h.state(a),
        Some(State::Io {
            fd: 1,
            write: true,
            timed: false
        })
    );
    assert_eq!(h.s.kill(0, h.main, a, 0, false), Kill::Unwind);
    h.s.debug_check();
    assert!(!h.s.io_waiter_is_live(&waiter));
    assert_eq!(h.next(), Some(ka));
    assert!(h.s.is_unwinding(0, ka));
}

#[test]
fn a_future_wait_is_woken_by_its_waiter_once() {
    let mut h = Hub::new();
    let waiter = h.s.next_waiter(0, h.main);
    h.s.future_wait(0, h.main);
    h.s.debug_check();
    assert_eq!(h.s.deadlock(0), None, "the future may still complete");
    assert!(h.s.waits_outside());
    assert!(h
        .s
        .blocked_report(0)
        .contains("waiting for an async host function"));
    h.s.io_ready(waiter);
    assert_eq!(h.next(), Some(h.main));
    // The same waker again, during a later wait, wakes nothing.
    let later = h.s.next_waiter(0, h.main);
    assert_ne!(later, waiter);
    h.s.future_wait(0, h.main);
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert_eq!(h.next(), None);
    h.s.io_ready(later);
    assert_eq!(h.next(), Some(h.main));
}

#[test]
fn a_killed_thread_unwinds_through_its_next_calls_then_ends_as_killed() {
    let mut h = Hub::new();
    let target = h.spawn(h.main, Duration::ZERO, false);
    let other = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(0, key, Duration::from_secs(60), at(h.now));
    let ko = h.next().unwrap();
    h.s.sleep(0, ko, Duration::ZERO, at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, target, 7, false), Kill::Unwind);
    // It resumes before everything else, its sleep's timer gone.
    assert_eq!(h.next(), Some(key));
    assert!(h.s.is_unwinding(0, key));
    assert_eq!(h.s.next_deadline(), None);
    // Each blocking call answers at once, up to the bound.
    for _ in 0..UNWIND_CALLS {
        assert_eq!(h.s.unwinding_call(0, key), Ok(true));
    }
    assert_eq!(h.s.unwinding_call(0, key), Err(KeptBlocking));
    assert_eq!(h.s.unwinding_call(0, ko), Ok(false), "others wait as usual");
    assert_eq!(
        h.s.kill(0, h.main, target, 0, false),
        Kill::Done(KillStatus::NotAlive),
        "a second kill finds it dying"
    );
    // Its call returns (the SDK leaves its ending to the hub): the ending
    // runs next, with the kill's error.
    assert!(h.s.ended(0, key, None).is_none());
    assert_eq!(h.next(), Some(key));
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[key].ending,
        Some((Ending::Killed, 7))
    );
    h.end(key);
    let _ = other;
}

#[test]
fn a_killed_thread_that_fails_while_unwinding_still_ends_as_killed() {
    let mut h = Hub::new();
    let target = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.park(0, key, None, at(h.now)), None);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, target, 3, false), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // A panic on the kill's error traps it.
    assert!(h.s.ended(0, key, Some(Ending::TrapUnreachable)).is_none());
    assert_eq!(h.next(), Some(key));
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[key].ending,
        Some((Ending::Killed, 3))
    );
}

#[test]
fn only_a_thread_waiting_for_a_host_future_is_killed_hard() {
    // Paused by preemption: it unwinds from its next blocking call (it is
    // never ended at an arbitrary instruction, which might hold a lock).
    let mut h = Hub::new();
    let paused = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.suspended(0, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.next(), Some(key), "a paused thread resumes first");
    assert_eq!(h.s.suspended(0, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.s.kill_by_host(0, paused), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // It reaches a blocking call: from then on, preemption only pauses it.
    assert_eq!(h.s.unwinding_call(0, key), Ok(true));
    assert_eq!(h.s.suspended(0, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.next(), Some(key));
    // A runaway: paused when killed, and still running (no blocking call)
    // at its next preemption, it is ended there.
    h.end_killed(key);
    let runaway = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(h.next(), Some(h.main));
    h.s.sleep(0, h.main, Duration::from_secs(1), at(h.now));
    let kr = h.next().unwrap();
    assert_eq!(h.s.suspended(0, kr, at(h.now)), Suspension::Keep);
    assert_eq!(h.s.kill_by_host(0, runaway), Kill::Unwind);
    assert_eq!(h.next(), Some(kr));
    assert_eq!(h.s.suspended(0, kr, at(h.now)), Suspension::Drop);
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[kr].ending,
        Some((Ending::Killed, 0))
    );
    // Waiting for an async host function.
    let mut h = Hub::new();
    let waiting = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.future_wait(0, key);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, waiting, 0, false), Kill::Target(key));
    h.s.debug_check();
}

#[test]
fn an_unwinding_thread_that_kills_does_not_wait() {
    let mut h = Hub::new();
    let target = h.spawn(h.main, Duration::ZERO, false);
    let other = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(0, key, Duration::from_secs(1), at(h.now));
    let ko = h.next().unwrap();
    h.s.sleep(0, ko, Duration::from_secs(1), at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(0, h.main, target, 0, false), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // Unwinding, it kills another: it is not queued (it does not wait).
    assert_eq!(h.s.kill(0, key, other, 0, false), Kill::Unwind);
    assert_eq!(h.state(target), Some(State::Running));
    h.s.debug_check();
}

#[test]
fn started_tells_a_thread_waiting_to_start_from_one_that_has_run() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    let delayed = h.spawn(h.main, 5 * MS, false);
    assert!(h.s.started(0, 1), "main has always started");
    assert!(!h.s.started(0, t));
    assert!(!h.s.started(0, delayed));
    assert!(!h.s.started(0, 0) && !h.s.started(0, 99), "never were");
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert!(h.s.started(0, t));
    h.end(key);
    assert!(h.s.started(0, t), "an ended thread has started");
    assert!(!h.s.started(0, delayed));
}

#[test]
fn a_std_thread_runs_wasi_thread_start_with_its_id_and_cannot_be_killed() {
    let mut h = Hub::new();
    let id = h.s.spawn_std_thread(0, 0x5000, ());
    h.s.debug_check();
    assert!(!h.s.started(0, id));
    h.s.sleep(0, h.main, Duration::ZERO, at(h.now));
    let (_, key) = h.s.next_runnable().unwrap();
    assert_eq!(
        h.s.start(0, key),
        Entry::Task(TaskCall::StdThread {
            tid: id as u32,
            arg: 0x5000
        })
    );
    assert!(h.s.is_std_thread(0, key));
    h.s.sleep(0, key, MS, at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(
        h.s.kill(0, h.main, id, 0, false),
        Kill::Done(KillStatus::NotAlive)
    );
    assert_eq!(h.s.kill_by_host(0, id), Kill::Done(KillStatus::NotAlive));
    h.advance(MS);
    assert_eq!(h.next(), Some(key));
    h.end(key);
    h.s.debug_check();
}

#[test]
fn a_timed_io_wait_ends_at_its_timer_and_its_readiness_goes_stale() {
    let mut h = Hub::new();
    let waiter = h.s.io_wait(0, h.main, 5, false, Some(10 * MS), at(h.now));
    h.s.debug_check();
    assert_eq!(h.s.deadlock(0), None);
    assert_eq!(h.next(), None, "neither ready nor due");
    h.advance(10 * MS);
    assert_eq!(h.next(), Some(h.main), "its timer ended the wait");
    assert!(!h.s.io_waiter_is_live(&waiter));
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert_eq!(h.next(), None, "a late readiness wakes nothing");
}

#[test]
fn futex_waiters_timing_out_at_once_leave_no_entry_behind() {
    let mut h = Hub::new();
    let n = 5_000;
    let ids: Vec<_> = (0..n)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(0, h.main, Duration::from_secs(60), at(h.now));
    for _ in 0..n {
        // (Not `h.next()`: its invariant check is quadratic.)
        let (_, key) = h.s.next_runnable().unwrap();
        h.s.start(0, key);
        assert_eq!(h.s.futex_wait(0, key, 0x40, Some(10 * MS), at(h.now)), None);
    }
    h.now += 10 * MS;
    // Each timeout ends its wait in O(1), not by a search of the queue (two
    // calls: a step fires at most TIMERS_PER_STEP).
    h.s.fire_due_timers(h.now);
    h.s.fire_due_timers(h.now);
    h.s.debug_check();
    assert!(
        h.s.guests[0].as_ref().unwrap().futexes.is_empty(),
        "the address leaves the map with its last current waiter"
    );
    for id in &ids[..3] {
        let key = h.key(*id);
        assert_eq!(h.s.futex_result(0, key), FUTEX_TIMED_OUT);
    }
    assert_eq!(h.s.futex_notify(0, 0x40, u32::MAX), 0);
}

#[test]
fn a_notify_skips_waits_that_ended_and_wakes_the_current_ones_in_order() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let b = h.spawn(h.main, Duration::ZERO, false);
    let c = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::from_secs(60), at(h.now));
    let (ka, kb, kc) = (h.key(a), h.key(b), h.key(c));
    assert_eq!(h.next(), Some(ka));
    h.s.futex_wait(0, ka, 8, Some(MS), at(h.now));
    assert_eq!(h.next(), Some(kb));
    h.s.futex_wait(0, kb, 8, None, at(h.now));
    assert_eq!(h.next(), Some(kc));
    h.s.futex_wait(0, kc, 8, None, at(h.now));
    h.advance(MS);
    assert_eq!(h.next(), Some(ka), "a timed out");
    // a waits again: behind c now, its old entry stale at the front.
    h.s.futex_wait(0, ka, 8, None, at(h.now));
    assert_eq!(h.s.futex_notify(0, 8, 2), 2);
    assert_eq!(h.next(), Some(kb));
    assert_eq!(h.next(), Some(kc));
    assert_eq!(h.s.futex_notify(0, 8, 5), 1);
    assert_eq!(h.next(), Some(ka));
    assert!(h.s.guests[0].as_ref().unwrap().futexes.is_empty());
}

#[test]
fn a_burst_of_due_timers_fires_over_several_steps_in_deadline_order() {
    let mut h = Hub::new();
    let n = TIMERS_PER_STEP + 10;
    for _ in 0..n {
        h.spawn(h.main, Duration::ZERO, false);
    }
    h.s.sleep(0, h.main, 2 * MS, at(h.now));
    for _ in 0..n {
        let (_, key) = h.s.next_runnable().unwrap();
        h.s.start(0, key);
        h.s.sleep(0, key, MS, at(h.now));
    }
    h.now += 2 * MS;
    h.s.fire_due_timers(h.now);
    let g = h.s.guests[0].as_ref().unwrap();
    assert_eq!(g.run_queue.len(), TIMERS_PER_STEP, "one step's worth");
    h.s.fire_due_timers(h.now);
    let g = h.s.guests[0].as_ref().unwrap();
    assert_eq!(g.run_queue.len(), n + 1, "the rest, then main's, later");
    assert_eq!(g.run_queue.iter().last(), Some(h.main));
}

#[test]
fn a_killed_thread_that_computes_on_through_two_preemptions_is_ended_hard() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(0, h.main, Duration::from_secs(60), at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(0, key, Duration::from_secs(60), at(h.now));
    assert_eq!(h.s.kill_by_host(0, t), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // Its sleep reports the kill; it ignores it and computes on.
    assert_eq!(h.s.unwinding_call(0, key), Ok(true));
    assert_eq!(h.s.suspended(0, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.next(), Some(key), "the first preemption lets it go on");
    assert_eq!(h.s.suspended(0, key, at(h.now)), Suspension::Drop);
    assert_eq!(h.next(), Some(key), "its ending runs");
    // A blocking call between two preemptions would have spared it.
}

#[test]
fn a_guest_below_its_guarantee_has_room_however_full_the_hub_is() {
    let mut s: Scheduler<()> = Scheduler::with_bound(160);
    assert_eq!(s.guarantee, 10, "a sixteenth of a small bound");
    let (a, b) = (s.add_guest(()), s.add_guest(()));
    let main_a = s.guests[a].as_ref().unwrap().main;
    let spawn = Spawn {
        task: 1,
        delay: Duration::ZERO,
        local: false,
    };
    let now = Instant::now();
    let mut held = 1;
    while s.has_room(a, 160) {
        s.spawn(a, main_a, spawn, (), at(now));
        held += 1;
    }
    assert_eq!(
        held,
        160 - 1 - 9,
        "b holds 1 (its main), and 9 more are kept for it"
    );
    s.debug_check();
    assert!(s.has_room(b, 160));
    // A guest added now still gets its share.
    let c = s.add_guest(());
    assert!(s.has_room(c, 160));
    s.end_guest(a);
    s.debug_check();
    assert!(s.has_room(a + 1, 160));
}

#[test]
fn only_another_guests_due_timer_is_a_reason_to_pause() {
    let mut h = Hub::new();
    let other = h.s.add_guest(());
    h.s.sleep(0, h.main, MS, at(h.now));
    assert!(!h.s.foreign_timer_due(1, h.now), "not due yet");
    assert!(!h.s.foreign_timer_due(0, h.now + MS), "its own");
    assert!(h.s.foreign_timer_due(other, h.now + MS), "guest 0's, due");
}

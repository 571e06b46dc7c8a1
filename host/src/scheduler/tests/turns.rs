//! Turns between guests, preemption, deadlock, a guest's end.

use super::*;

#[test]
fn a_preempted_thread_resumes_before_the_rest_of_its_guest() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    // main is paused by preemption: it suspends while still Running.
    assert_eq!(h.s.suspended(G, h.main, at(h.now)), Suspension::Keep);
    let order = h.run_all(|h, key| {
        if key != h.main {
            h.end(key);
        } else {
            h.s.sleep(G, key, Duration::from_secs(1), at(h.now));
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
fn a_guest_deadlocks_when_nothing_is_queued_and_no_timer_is_pending() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let b = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(h.s.join(G, h.main, a, None, at(h.now)), None);
    let ka = h.next().unwrap();
    assert_eq!(h.s.join(G, ka, b, None, at(h.now)), None);
    assert_eq!(h.s.deadlock(G), None, "b is still queued");
    let kb = h.next().unwrap();
    assert_eq!(h.s.park(G, kb, Some(MS), at(h.now)), None);
    assert_eq!(h.s.deadlock(G), None, "b's park has a timer");
    h.advance(MS);
    assert_eq!(h.next(), Some(kb));
    assert_eq!(h.s.join(G, kb, a, None, at(h.now)), None);
    let report = h.s.deadlock(G).expect("deadlocked");
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
    assert_eq!(h.s.end_guest(G).len(), 11);
    assert_eq!(h.s.alive(), 0);
    assert_eq!(h.s.next_deadline(), None);
    assert_eq!(h.s.next_runnable(), None);
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
    let order: Vec<GuestKey> = std::iter::from_fn(|| s.next_runnable().map(|(g, _)| g))
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
fn only_another_guests_due_timer_is_a_reason_to_pause() {
    let mut h = Hub::new();
    let other = h.s.add_guest(());
    h.s.sleep(G, h.main, MS, at(h.now));
    assert!(!h.s.foreign_timer_due(GuestKey(1), h.now), "not due yet");
    assert!(!h.s.foreign_timer_due(G, h.now + MS), "its own");
    assert!(h.s.foreign_timer_due(other, h.now + MS), "guest 0's, due");
}

//! Waits for host descriptors and futures.

use super::*;

#[test]
fn an_io_wait_is_not_a_deadlock_and_wakes_only_its_own_wait() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let waiter = h.s.io_wait(G, h.main, 0, false, None, at(h.now));
    h.s.debug_check();
    let ka = h.next().unwrap();
    assert_eq!(h.s.park(G, ka, None, at(h.now)), None);
    assert_eq!(
        h.s.deadlock(G),
        None,
        "main waits for stdin, which may come"
    );
    assert!(h.s.io_waiter_is_live(&waiter));
    let report = h.s.blocked_report(G);
    assert!(
        report.contains("main green thread: waiting for host descriptor 0 to be readable"),
        "{report}"
    );
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert_eq!(h.next(), Some(h.main));
    assert!(!h.s.io_waiter_is_live(&waiter), "that wait is over");
    // A stale readiness (the same waiter again) must not wake a later wait.
    assert_eq!(h.s.park(G, h.main, None, at(h.now)), None);
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert!(
        h.s.deadlock(G).is_some(),
        "main parked, a parked: nothing left"
    );
    let _ = a;
}

#[test]
fn killing_an_io_waiter_ends_its_wait() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let ka = h.next().unwrap();
    let waiter = h.s.io_wait(G, ka, 1, true, None, at(h.now));
    assert_eq!(
        h.state(a),
        Some(State::Io {
            fd: 1,
            write: true,
            timed: false
        })
    );
    assert_eq!(h.s.kill(G, h.main, a, 0, false), Kill::Unwind);
    h.s.debug_check();
    assert!(!h.s.io_waiter_is_live(&waiter));
    assert_eq!(h.next(), Some(ka));
    assert!(h.s.is_unwinding(G, ka));
}

#[test]
fn a_future_wait_is_woken_by_its_waiter_once() {
    let mut h = Hub::new();
    let waiter = h.s.next_waiter(G, h.main);
    h.s.future_wait(G, h.main);
    h.s.debug_check();
    assert_eq!(h.s.deadlock(G), None, "the future may still complete");
    assert!(h.s.waits_outside());
    assert!(h
        .s
        .blocked_report(G)
        .contains("waiting for an async host function"));
    h.s.io_ready(waiter);
    assert_eq!(h.next(), Some(h.main));
    // The same waker again, during a later wait, wakes nothing.
    let later = h.s.next_waiter(G, h.main);
    assert_ne!(later, waiter);
    h.s.future_wait(G, h.main);
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert_eq!(h.next(), None);
    h.s.io_ready(later);
    assert_eq!(h.next(), Some(h.main));
}

#[test]
fn a_timed_io_wait_ends_at_its_timer_and_its_readiness_goes_stale() {
    let mut h = Hub::new();
    let waiter = h.s.io_wait(G, h.main, 5, false, Some(10 * MS), at(h.now));
    h.s.debug_check();
    assert_eq!(h.s.deadlock(G), None);
    assert_eq!(h.next(), None, "neither ready nor due");
    h.advance(10 * MS);
    assert_eq!(h.next(), Some(h.main), "its timer ended the wait");
    assert!(!h.s.io_waiter_is_live(&waiter));
    h.s.io_ready(waiter);
    h.s.debug_check();
    assert_eq!(h.next(), None, "a late readiness wakes nothing");
}

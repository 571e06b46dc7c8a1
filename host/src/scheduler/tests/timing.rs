//! Timers.

use super::*;

#[test]
fn timers_fire_in_deadline_order_and_ties_in_the_order_set() {
    let mut h = Hub::new();
    let ids: Vec<_> = (0..4)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(G, h.main, Duration::from_secs(10), at(h.now));
    let delays = [20, 10, 20, 10];
    let mut started = 0;
    h.run_all(|h, key| {
        h.s.sleep(G, key, delays[started] * MS, at(h.now));
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
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(G, key, 200 * MS, at(h.now));
    // main kills it while it sleeps; it unwinds, its ending runs and it
    // goes.
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, victim, 0, false), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    h.end_killed(key);
    // A new thread gets the same key and sleeps 2 s.
    let heir = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(h.key(heir), key);
    assert_eq!(h.next(), Some(h.main));
    h.s.sleep(G, h.main, Duration::from_secs(10), at(h.now));
    assert_eq!(h.next(), Some(key));
    h.s.sleep(G, key, Duration::from_secs(2), at(h.now));
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
            h.s.park(G, h.main, Some(Duration::from_secs(3600)), at(h.now)),
            None
        );
        assert!(h.s.unpark(G, 1));
        assert_eq!(h.next(), Some(h.main));
        assert!(h.s.park_result(G, h.main));
    }
    assert!(
        h.s.timers.len() < 2500,
        "{} timers kept for {n} ended waits",
        h.s.timers.len()
    );
    assert_eq!(h.s.next_deadline(), None);
}

#[test]
fn a_burst_of_due_timers_fires_over_several_steps_in_deadline_order() {
    let mut h = Hub::new();
    let n = TIMERS_PER_STEP + 10;
    for _ in 0..n {
        h.spawn(h.main, Duration::ZERO, false);
    }
    h.s.sleep(G, h.main, 2 * MS, at(h.now));
    for _ in 0..n {
        let (_, key) = h.s.next_runnable().unwrap();
        h.s.start(G, key);
        h.s.sleep(G, key, MS, at(h.now));
    }
    h.now += 2 * MS;
    h.s.fire_due_timers(h.now);
    let g = h.s.guests[0].as_ref().unwrap();
    assert_eq!(g.run_queue.len(), TIMERS_PER_STEP, "one step's worth");
    h.s.fire_due_timers(h.now);
    let g = h.s.guests[0].as_ref().unwrap();
    assert_eq!(g.run_queue.len(), n + 1, "the rest, then main's, later");
    assert_eq!(g.run_queue.iter().last(), Some(h.main.0));
}

//! Join, links, park, futexes.

use super::*;

#[test]
fn links_run_in_link_order_and_unlink_removes_a_pending_one() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    let ids: Vec<u64> = (1..=3).map(|cb| h.s.link(G, t, cb)).collect();
    assert!(ids.iter().all(|&id| id != 0));
    assert_eq!(h.s.unlink(G, t, ids[1]), 2);
    assert_eq!(h.s.unlink(G, t, ids[1]), 0, "only once");
    let key = h.key(t);
    assert_eq!(h.s.next_link(G, key), 1);
    let added = h.s.link(G, t, 4);
    assert_ne!(added, 0, "a link added while links run");
    assert_eq!(h.s.next_link(G, key), 3);
    assert_eq!(h.s.next_link(G, key), 4);
    assert_eq!(h.s.next_link(G, key), 0);
}

#[test]
fn join_wakes_when_the_target_ends_and_times_out_otherwise() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    let key = h.key(t);
    assert_eq!(
        h.s.join(G, h.main, 1, None, at(h.now)),
        Some(JoinStatus::IsSelf)
    );
    assert_eq!(
        h.s.join(G, h.main, t, Some(Duration::ZERO), at(h.now)),
        Some(JoinStatus::TimedOut)
    );
    assert_eq!(h.s.join(G, h.main, t, Some(10 * MS), at(h.now)), None);
    assert_eq!(h.next(), Some(key));
    h.s.sleep(G, key, Duration::from_secs(1), at(h.now));
    h.advance(10 * MS);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.join_result(G, h.main, t), JoinStatus::TimedOut);
    let g = h.s.guests[0].as_ref().unwrap();
    assert!(
        g.threads[key]
            .joiners
            .iter()
            .all(|j| !j.is_current(&g.threads)),
        "the timed-out join is no longer current"
    );
    assert_eq!(h.s.join(G, h.main, t, None, at(h.now)), None);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.next(), Some(key));
    h.end(key);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.join_result(G, h.main, t), JoinStatus::Ended);
}

#[test]
fn an_unpark_before_the_park_is_kept_and_one_for_an_ending_thread_fails() {
    let mut h = Hub::new();
    assert!(h.s.unpark(G, 1));
    assert_eq!(h.s.park(G, h.main, None, at(h.now)), Some(true));
    assert_eq!(
        h.s.park(G, h.main, Some(Duration::ZERO), at(h.now)),
        Some(false)
    );
    let t = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.park(G, key, None, at(h.now)), None);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, t, 0, false), Kill::Unwind);
    assert!(!h.s.unpark(G, t), "its park reports the kill instead");
    assert_eq!(h.next(), Some(key));
    assert!(!h.s.park_result(G, key));
    assert!(!h.s.unpark(G, 999), "no such thread");
}

#[test]
fn a_timed_park_reports_whether_it_was_unparked() {
    let mut h = Hub::new();
    assert_eq!(h.s.park(G, h.main, Some(5 * MS), at(h.now)), None);
    h.advance(5 * MS);
    assert_eq!(h.next(), Some(h.main));
    assert!(!h.s.park_result(G, h.main));
}

#[test]
fn futex_waiters_are_woken_first_come_first_served_up_to_the_count() {
    let mut h = Hub::new();
    let ids: Vec<_> = (0..3)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    for _ in 0..3 {
        let key = h.next().unwrap();
        assert_eq!(h.s.futex_wait(G, key, 0x100, None, at(h.now)), None);
    }
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.futex_notify(G, 0x200, 5), 0, "another address");
    assert_eq!(h.s.futex_notify(G, 0x100, 2), 2);
    h.s.sleep(G, h.main, Duration::from_secs(1), at(h.now));
    let order = h.run_all(|h, key| {
        assert_eq!(h.s.futex_result(G, key), FUTEX_WOKEN);
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
    let report = h.s.blocked_report(G);
    assert!(report.contains("memory.atomic.wait at 0x100"), "{report}");
}

#[test]
fn a_timed_futex_wait_times_out_and_a_killed_waiter_leaves_the_queue() {
    let mut h = Hub::new();
    assert_eq!(
        h.s.futex_wait(G, h.main, 8, Some(Duration::ZERO), at(h.now)),
        Some(FUTEX_TIMED_OUT)
    );
    assert_eq!(h.s.futex_wait(G, h.main, 8, Some(MS), at(h.now)), None);
    h.advance(MS);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.futex_result(G, h.main), FUTEX_TIMED_OUT);
    let victim = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.futex_wait(G, key, 8, None, at(h.now)), None);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, victim, 0, false), Kill::Unwind);
    assert_eq!(
        h.s.futex_notify(G, 8, 1),
        0,
        "the killed waiter left the queue"
    );
    h.s.debug_check();
}

#[test]
fn futex_waiters_timing_out_at_once_leave_no_entry_behind() {
    let mut h = Hub::new();
    let n = 5_000;
    let ids: Vec<_> = (0..n)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(G, h.main, Duration::from_secs(60), at(h.now));
    for _ in 0..n {
        // (Not `h.next()`: its invariant check is quadratic.)
        let (_, key) = h.s.next_runnable().unwrap();
        h.s.start(G, key);
        assert_eq!(h.s.futex_wait(G, key, 0x40, Some(10 * MS), at(h.now)), None);
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
        assert_eq!(h.s.futex_result(G, key), FUTEX_TIMED_OUT);
    }
    assert_eq!(h.s.futex_notify(G, 0x40, u32::MAX), 0);
}

#[test]
fn a_notify_skips_waits_that_ended_and_wakes_the_current_ones_in_order() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let b = h.spawn(h.main, Duration::ZERO, false);
    let c = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::from_secs(60), at(h.now));
    let (ka, kb, kc) = (h.key(a), h.key(b), h.key(c));
    assert_eq!(h.next(), Some(ka));
    h.s.futex_wait(G, ka, 8, Some(MS), at(h.now));
    assert_eq!(h.next(), Some(kb));
    h.s.futex_wait(G, kb, 8, None, at(h.now));
    assert_eq!(h.next(), Some(kc));
    h.s.futex_wait(G, kc, 8, None, at(h.now));
    h.advance(MS);
    assert_eq!(h.next(), Some(ka), "a timed out");
    // a waits again: behind c now, its old entry stale at the front.
    h.s.futex_wait(G, ka, 8, None, at(h.now));
    assert_eq!(h.s.futex_notify(G, 8, 2), 2);
    assert_eq!(h.next(), Some(kb));
    assert_eq!(h.next(), Some(kc));
    assert_eq!(h.s.futex_notify(G, 8, 5), 1);
    assert_eq!(h.next(), Some(ka));
    assert!(h.s.guests[0].as_ref().unwrap().futexes.is_empty());
}

//! Spawning, ids, started threads, the guaranteed share.

use super::*;

#[test]
fn spawned_threads_run_in_fifo_order_after_the_spawner_yields() {
    let mut h = Hub::new();
    let ids: Vec<_> = (0..3)
        .map(|_| h.spawn(h.main, Duration::ZERO, false))
        .collect();
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
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
    assert_eq!(h.s.current(G, h.main), 1);
    let first = h.spawn(h.main, Duration::ZERO, false);
    let key = h.key(first);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    h.next();
    h.end(key);
    let second = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!((first, second), (2, 3));
    assert_eq!(h.key(second), key, "the key is reused, the id is not");
    assert_eq!(h.s.join_result(G, h.main, first), JoinStatus::Ended);
    assert_eq!(h.s.link(G, first, 7), 0, "a stale id reaches nothing");
}

#[test]
fn a_thread_counts_as_started_from_its_first_run_until_it_is_gone() {
    let mut h = Hub::new();
    let a = h.spawn(h.main, Duration::ZERO, false);
    let _b = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!((h.s.alive_in(G), h.s.started_in(G)), (3, 0));
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let a_key = h.next().unwrap();
    assert_eq!(h.s.started_in(G), 1);
    h.s.sleep(G, a_key, Duration::from_secs(1), at(h.now));
    let b_key = h.next().unwrap();
    assert_eq!(h.s.started_in(G), 2);
    h.end(b_key);
    assert_eq!(h.s.started_in(G), 1);
    assert_eq!(h.next(), Some(h.main));
    // Killed before it started, it runs only its ending: never counted.
    let c = h.spawn(h.main, Duration::ZERO, false);
    assert!(matches!(h.s.kill(G, h.main, c, 0, false), Kill::Target(_)));
    let c_key = h.next().unwrap();
    assert_eq!(h.s.current(G, c_key), c);
    assert_eq!(h.s.started_in(G), 1);
    h.end(c_key);
    assert_eq!(h.next(), Some(h.main));
    // Resumed to unwind, it is not counted twice; gone, it is not counted.
    assert_eq!(h.s.kill(G, h.main, a, 0, false), Kill::Unwind);
    assert_eq!(h.next(), Some(a_key));
    assert_eq!(h.s.started_in(G), 1);
    h.end_killed(a_key);
    assert_eq!((h.s.alive_in(G), h.s.started_in(G)), (1, 0));
}

#[test]
fn spawn_after_local_is_cancelled_when_its_spawner_has_ended() {
    for delay in [Duration::ZERO, 5 * MS] {
        let mut h = Hub::new();
        let spawner = h.spawn(h.main, Duration::ZERO, false);
        h.s.sleep(G, h.main, Duration::from_secs(1), at(h.now));
        let key = h.next().unwrap();
        let local = h.spawn(key, delay, true);
        let plain = h.spawn(key, delay, false);
        h.end(key);
        assert_eq!(h.s.join_result(G, h.main, spawner), JoinStatus::Ended);
        h.advance(5 * MS);
        let entries: Vec<Entry> = std::iter::from_fn(|| {
            h.s.fire_due_timers(h.now);
            let (_, key) = h.s.next_runnable()?;
            Some(h.s.start(G, key))
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
fn started_tells_a_thread_waiting_to_start_from_one_that_has_run() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    let delayed = h.spawn(h.main, 5 * MS, false);
    assert!(h.s.started(G, 1), "main has always started");
    assert!(!h.s.started(G, t));
    assert!(!h.s.started(G, delayed));
    assert!(!h.s.started(G, 0) && !h.s.started(G, 99), "never were");
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert!(h.s.started(G, t));
    h.end(key);
    assert!(h.s.started(G, t), "an ended thread has started");
    assert!(!h.s.started(G, delayed));
}

#[test]
fn a_std_thread_runs_wasi_thread_start_with_its_id_and_cannot_be_killed() {
    let mut h = Hub::new();
    let id = h.s.spawn_std_thread(G, 0x5000, ());
    h.s.debug_check();
    assert!(!h.s.started(G, id));
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let (_, key) = h.s.next_runnable().unwrap();
    assert_eq!(
        h.s.start(G, key),
        Entry::Task(TaskCall::StdThread {
            tid: id as u32,
            arg: 0x5000
        })
    );
    assert!(h.s.is_std_thread(G, key));
    h.s.sleep(G, key, MS, at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(
        h.s.kill(G, h.main, id, 0, false),
        Kill::Done(KillStatus::NotAlive)
    );
    assert_eq!(h.s.kill_by_host(G, id), Kill::Done(KillStatus::NotAlive));
    h.advance(MS);
    assert_eq!(h.next(), Some(key));
    h.end(key);
    h.s.debug_check();
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
    assert!(s.has_room(GuestKey(a.0 + 1), 160));
}

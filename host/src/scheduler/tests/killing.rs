//! Kill, cancel and unwinding.

use super::*;

#[test]
fn kill_queues_the_target_first_and_the_killer_last() {
    let mut h = Hub::new();
    let sleeper = h.spawn(h.main, Duration::ZERO, false);
    let bystander = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(G, key, Duration::from_secs(60), at(h.now));
    let b = h.next().unwrap();
    h.s.sleep(G, b, Duration::ZERO, at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, sleeper, 0, false), Kill::Unwind);
    assert_eq!(h.state(sleeper), Some(State::Queued));
    assert!(h.s.is_unwinding(G, key));
    let order = h.run_all(|h, key| {
        if key != h.main {
            h.s.ended(G, key, None);
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
    assert_eq!(h.s.kill(G, h.main, target, 42, false), Kill::Target(key));
    assert_eq!(h.next(), Some(key));
    let g = h.s.guests[0].as_ref().unwrap();
    assert!(
        !g.threads[key].life.started(),
        "a target that had not started never runs"
    );
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[key].life.ending(),
        Some((Ending::Killed, 42))
    );
    assert_eq!(
        h.s.kill(G, h.main, target, 0, false),
        Kill::Done(KillStatus::NotAlive)
    );
}

#[test]
fn cancel_kills_only_a_thread_that_has_not_started() {
    let mut h = Hub::new();
    let started = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(G, key, Duration::from_secs(1), at(h.now));
    assert_eq!(h.next(), Some(h.main));
    let kill = h.s.kill(G, h.main, started, 0, true);
    assert_eq!(kill, Kill::Done(KillStatus::AlreadyStarted));
    let pending = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(
        h.s.kill(G, h.main, pending, 0, true),
        Kill::Target(h.key(pending))
    );
    assert_eq!(
        h.s.kill(G, h.main, 1, 0, true),
        Kill::Done(KillStatus::AlreadyStarted)
    );
}

#[test]
fn killing_main_ends_the_guest_even_from_main() {
    let mut h = Hub::new();
    h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.kill(G, key, 1, 0, false), Kill::Main);
    assert_eq!(h.s.kill(G, h.main, 1, 0, false), Kill::Main);
}

#[test]
fn a_thread_that_kills_itself_goes_on_unwinding_and_ends_killed_when_it_returns() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.kill(G, key, t, 7, false), Kill::Caller);
    assert_eq!(h.state(t), Some(State::Running), "it goes on, not queued");
    assert!(h.s.is_unwinding(G, key));
    assert_eq!(
        h.s.unwinding_call(G, key),
        Ok(true),
        "its waits answer at once"
    );
    assert_eq!(
        h.s.kill(G, key, t, 0, false),
        Kill::Done(KillStatus::NotAlive),
        "a second kill finds it unwinding"
    );
    assert_eq!(h.s.ended(G, key, None), None, "its ending runs first");
    assert_eq!(h.state(t), Some(State::Queued));
    assert_eq!(h.next(), Some(key));
}

#[test]
fn a_killed_thread_unwinds_through_its_next_calls_then_ends_as_killed() {
    let mut h = Hub::new();
    let target = h.spawn(h.main, Duration::ZERO, false);
    let other = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(G, key, Duration::from_secs(60), at(h.now));
    let ko = h.next().unwrap();
    h.s.sleep(G, ko, Duration::ZERO, at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, target, 7, false), Kill::Unwind);
    // It resumes before everything else, its sleep's timer gone.
    assert_eq!(h.next(), Some(key));
    assert!(h.s.is_unwinding(G, key));
    assert_eq!(h.s.next_deadline(), None);
    // Each blocking call answers at once, up to the bound.
    for _ in 0..UNWIND_CALLS {
        assert_eq!(h.s.unwinding_call(G, key), Ok(true));
    }
    assert_eq!(h.s.unwinding_call(G, key), Err(KeptBlocking));
    assert_eq!(h.s.unwinding_call(G, ko), Ok(false), "others wait as usual");
    assert_eq!(
        h.s.kill(G, h.main, target, 0, false),
        Kill::Done(KillStatus::NotAlive),
        "a second kill finds it dying"
    );
    // Its call returns (the SDK leaves its ending to the hub): the ending
    // runs next, with the kill's error.
    assert!(h.s.ended(G, key, None).is_none());
    assert_eq!(h.next(), Some(key));
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[key].life.ending(),
        Some((Ending::Killed, 7))
    );
    h.end(key);
    let _ = other;
}

#[test]
fn a_killed_thread_that_fails_while_unwinding_still_ends_as_killed() {
    let mut h = Hub::new();
    let target = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.park(G, key, None, at(h.now)), None);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, target, 3, false), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // A panic on the kill's error traps it.
    assert!(h.s.ended(G, key, Some(Ending::TrapUnreachable)).is_none());
    assert_eq!(h.next(), Some(key));
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[key].life.ending(),
        Some((Ending::Killed, 3))
    );
}

#[test]
fn only_a_thread_waiting_for_a_host_future_is_killed_hard() {
    // Paused by preemption: it unwinds from its next blocking call (it is
    // never ended at an arbitrary instruction, which might hold a lock).
    let mut h = Hub::new();
    let paused = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    assert_eq!(h.s.suspended(G, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.next(), Some(key), "a paused thread resumes first");
    assert_eq!(h.s.suspended(G, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.s.kill_by_host(G, paused), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // It reaches a blocking call: from then on, preemption only pauses it.
    assert_eq!(h.s.unwinding_call(G, key), Ok(true));
    assert_eq!(h.s.suspended(G, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.next(), Some(key));
    // A runaway: paused when killed, and still running (no blocking call)
    // at its next preemption, it is ended there.
    h.end_killed(key);
    let runaway = h.spawn(h.main, Duration::ZERO, false);
    assert_eq!(h.next(), Some(h.main));
    h.s.sleep(G, h.main, Duration::from_secs(1), at(h.now));
    let kr = h.next().unwrap();
    assert_eq!(h.s.suspended(G, kr, at(h.now)), Suspension::Keep);
    assert_eq!(h.s.kill_by_host(G, runaway), Kill::Unwind);
    assert_eq!(h.next(), Some(kr));
    assert_eq!(h.s.suspended(G, kr, at(h.now)), Suspension::Drop);
    assert_eq!(
        h.s.guests[0].as_ref().unwrap().threads[kr].life.ending(),
        Some((Ending::Killed, 0))
    );
    // Waiting for an async host function.
    let mut h = Hub::new();
    let waiting = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.future_wait(G, key);
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, waiting, 0, false), Kill::Target(key));
    h.s.debug_check();
}

#[test]
fn an_unwinding_thread_that_kills_does_not_wait() {
    let mut h = Hub::new();
    let target = h.spawn(h.main, Duration::ZERO, false);
    let other = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::ZERO, at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(G, key, Duration::from_secs(1), at(h.now));
    let ko = h.next().unwrap();
    h.s.sleep(G, ko, Duration::from_secs(1), at(h.now));
    assert_eq!(h.next(), Some(h.main));
    assert_eq!(h.s.kill(G, h.main, target, 0, false), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // Unwinding, it kills another: it is not queued (it does not wait).
    assert_eq!(h.s.kill(G, key, other, 0, false), Kill::Unwind);
    assert_eq!(h.state(target), Some(State::Running));
    h.s.debug_check();
}

#[test]
fn a_killed_thread_that_computes_on_through_two_preemptions_is_ended_hard() {
    let mut h = Hub::new();
    let t = h.spawn(h.main, Duration::ZERO, false);
    h.s.sleep(G, h.main, Duration::from_secs(60), at(h.now));
    let key = h.next().unwrap();
    h.s.sleep(G, key, Duration::from_secs(60), at(h.now));
    assert_eq!(h.s.kill_by_host(G, t), Kill::Unwind);
    assert_eq!(h.next(), Some(key));
    // Its sleep reports the kill; it ignores it and computes on.
    assert_eq!(h.s.unwinding_call(G, key), Ok(true));
    assert_eq!(h.s.suspended(G, key, at(h.now)), Suspension::Keep);
    assert_eq!(h.next(), Some(key), "the first preemption lets it go on");
    assert_eq!(h.s.suspended(G, key, at(h.now)), Suspension::Drop);
    assert_eq!(h.next(), Some(key), "its ending runs");
    // A blocking call between two preemptions would have spared it.
}

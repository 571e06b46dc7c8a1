//! Guests as plugins: the host calls their functions by name, each call a
//! green thread of its own (issue 10).

use crate::support::{guest, options, runtime};

use std::time::{Duration, Instant};

use wasmlet_host::{CallError, Hub, PendingCall, Program};

fn plugin_program(runtime: &wasmlet_host::Runtime) -> Program {
    Program::from_file(runtime.engine(), guest("plugin")).unwrap()
}

/// Drives the hub until `call` has a result.
fn finish(hub: &mut Hub, call: &PendingCall) -> Result<Vec<u8>, CallError> {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(result) = call.try_result() {
            return result;
        }
        assert!(Instant::now() < give_up, "the call never ended");
        hub.run_until(Instant::now() + Duration::from_millis(10));
    }
}

#[test]
fn calls_return_outputs_and_typed_errors_and_the_plugin_stays_usable() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let p = hub
        .add_plugin(&plugin_program(&runtime), options(&[]))
        .unwrap();
    let call = |hub: &mut Hub, f: &str, input: &str| {
        let pending = hub.call(p, f, input.as_bytes().to_vec()).unwrap();
        finish(hub, &pending)
    };
    assert_eq!(call(&mut hub, "upper", "hello").unwrap(), b"HELLO");
    assert!(matches!(
        call(&mut hub, "fails", "x"),
        Err(CallError::Failed(m)) if m == "bad input: x"
    ));
    assert!(matches!(
        call(&mut hub, "panics", ""),
        Err(CallError::Panicked(m)) if m == "boom"
    ));
    let trapped = call(&mut hub, "traps", "");
    assert!(
        matches!(&trapped, Err(CallError::Trapped(m)) if m.contains("unreachable")),
        "{trapped:?}"
    );
    assert!(matches!(
        call(&mut hub, "nope", ""),
        Err(CallError::NoSuchFunction(f)) if f == "nope"
    ));
    // serde types, as JSON (the SDK's `json` feature).
    assert_eq!(
        call(&mut hub, "total", r#"{"items": [3, 4, 5]}"#).unwrap(),
        br#"{"count":3,"sum":12}"#
    );
    assert!(matches!(
        call(&mut hub, "total", "[1, 2]"),
        Err(CallError::Failed(m)) if m.starts_with("the input is not the JSON expected")
    ));
    // After every kind of failure, the plugin still serves calls, with its
    // state kept between them.
    assert_eq!(call(&mut hub, "upper", "again").unwrap(), b"AGAIN");
    assert_eq!(call(&mut hub, "count", "").unwrap(), b"2");
    assert!(hub.exit(p).is_none(), "the plugin lives on");
    assert_eq!(hub.usage(p).unwrap().green_threads, 0, "no call in flight");
}

#[test]
fn calls_into_one_plugin_overlap_while_they_wait() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let p = hub
        .add_plugin(&plugin_program(&runtime), options(&[]))
        .unwrap();
    let calls: Vec<_> = (0..50)
        .map(|_| hub.call(p, "slow", b"60000".to_vec()).unwrap())
        .collect();
    // Until nothing can run: every call has started and sleeps, all at once
    // (one after the other, the first would be asleep alone).
    hub.run_until_idle();
    assert!(calls.iter().all(|c| c.try_result().is_none()));
    assert_eq!(
        hub.usage(p).unwrap().green_threads,
        50,
        "all asleep at once"
    );
    for call in &calls {
        call.cancel();
    }
    for call in &calls {
        assert!(matches!(finish(&mut hub, call), Err(CallError::Cancelled)));
    }
    assert_eq!(hub.usage(p).unwrap().green_threads, 0);
}

#[test]
fn a_call_can_be_cancelled_before_or_while_it_runs() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let p = hub
        .add_plugin(&plugin_program(&runtime), options(&[]))
        .unwrap();
    let running = hub.call(p, "slow", b"60000".to_vec()).unwrap();
    hub.run_until_idle();
    assert!(running.try_result().is_none());
    running.cancel();
    let unstarted = hub.call(p, "upper", b"never".to_vec()).unwrap();
    unstarted.cancel();
    assert!(matches!(
        finish(&mut hub, &running),
        Err(CallError::Cancelled)
    ));
    assert!(matches!(
        finish(&mut hub, &unstarted),
        Err(CallError::Cancelled)
    ));
    assert_eq!(hub.usage(p).unwrap().green_threads, 0);
    let after = hub.call(p, "count", b"".to_vec()).unwrap();
    assert_eq!(
        finish(&mut hub, &after).unwrap(),
        b"0",
        "the cancelled call never ran"
    );
}

#[test]
fn a_failure_fatal_to_the_plugin_ends_its_calls_and_it_can_be_restarted() {
    let runtime = runtime();
    let program = plugin_program(&runtime);
    let mut hub = Hub::new(&runtime);
    let p = hub.add_plugin(&program, options(&[])).unwrap();
    let waiting = hub.call(p, "slow", b"60000".to_vec()).unwrap();
    let exits = hub.call(p, "exits", b"".to_vec()).unwrap();
    let result = finish(&mut hub, &exits);
    assert!(
        matches!(&result, Err(CallError::GuestEnded(Some(exit))) if exit.code == 3),
        "{result:?}"
    );
    assert!(matches!(
        waiting.try_result(),
        Some(Err(CallError::GuestEnded(_)))
    ));
    assert!(matches!(
        hub.call(p, "upper", b"x".to_vec()),
        Err(CallError::GuestEnded(Some(_)))
    ));
    // A fresh instance from the compiled program.
    let again = hub.add_plugin(&program, options(&[])).unwrap();
    let call = hub.call(again, "upper", b"back".to_vec()).unwrap();
    assert_eq!(finish(&mut hub, &call).unwrap(), b"BACK");
}

#[test]
fn a_spinning_call_holds_only_its_own_plugin_and_can_be_cancelled() {
    let runtime = runtime();
    let program = plugin_program(&runtime);
    let mut hub = Hub::new(&runtime);
    let (p, other) = (
        hub.add_plugin(&program, options(&[])).unwrap(),
        hub.add_plugin(&program, options(&[])).unwrap(),
    );
    let spinning = hub.call(p, "spins", b"".to_vec()).unwrap();
    // Preemption lets the other plugin run; within its own plugin, the
    // spinning call keeps the cooperative rule (no other green thread of a
    // guest runs until it yields), so its neighbour call waits.
    let elsewhere = hub.call(other, "slow", b"5".to_vec()).unwrap();
    let behind = hub.call(p, "upper", b"behind".to_vec()).unwrap();
    assert_eq!(finish(&mut hub, &elsewhere).unwrap(), b"slept 5 ms");
    assert!(behind.try_result().is_none());
    spinning.cancel();
    assert!(matches!(
        finish(&mut hub, &spinning),
        Err(CallError::Cancelled)
    ));
    assert_eq!(finish(&mut hub, &behind).unwrap(), b"BEHIND");
}

/// A call cancelled while it waits, which ignores the kill its wait
/// reports and computes on, is ended at the second preemption after
/// (a whole slice without a blocking call): it ran on for ever, and the
/// plugin's next call got no answer.
#[test]
fn a_cancelled_call_that_ignores_its_kill_and_computes_on_is_ended() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let p = hub
        .add_plugin(&plugin_program(&runtime), options(&[]))
        .unwrap();
    let deaf = hub.call(p, "deaf", b"".to_vec()).unwrap();
    hub.run_until_idle();
    assert!(deaf.try_result().is_none(), "it waits in its sleep");
    deaf.cancel();
    assert!(matches!(finish(&mut hub, &deaf), Err(CallError::Cancelled)));
    let next = hub.call(p, "upper", b"next".to_vec()).unwrap();
    assert_eq!(finish(&mut hub, &next).unwrap(), b"NEXT");
    assert_eq!(hub.usage(p).unwrap().green_threads, 0);
}

#[test]
fn the_hub_can_be_driven_a_turn_at_a_time_until_idle_or_until_a_deadline() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let p = hub
        .add_plugin(&plugin_program(&runtime), options(&[]))
        .unwrap();
    // A turn runs main (preemption may split it over several turns on a
    // slow machine); once it is done, a turn finds nothing to do.
    assert!(hub.turn(), "main runs");
    hub.run_until_idle();
    assert!(!hub.turn());
    let call = hub.call(p, "slow", b"300".to_vec()).unwrap();
    assert!(hub.turn(), "the call starts");
    hub.run_until_idle();
    assert!(!hub.turn(), "nothing runnable while it sleeps");
    hub.run_until(Instant::now() + Duration::from_millis(5));
    assert!(call.try_result().is_none(), "not due yet");
    hub.run_until(Instant::now() + Duration::from_millis(1500));
    // run_until returns early only once every guest has ended; a plugin
    // lives on, so it ran the full time and the call is long done.
    assert_eq!(call.try_result().unwrap().unwrap(), b"slept 300 ms");
    // A non-plugin guest ends as before.
    let program = Program::from_file(runtime.engine(), guest("spawn_order")).unwrap();
    let g = hub.add_guest(&program, options(&[])).unwrap();
    hub.run_until_idle();
    assert_eq!(hub.exit(g).unwrap().code, 0);
    // Calling a program that is no plugin is refused.
    assert!(matches!(
        hub.call(g, "upper", b"x".to_vec()),
        Err(CallError::GuestEnded(_))
    ));
}

#[test]
fn a_plugin_killed_by_the_host_fails_its_calls_in_flight() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let p = hub
        .add_plugin(&plugin_program(&runtime), options(&[]))
        .unwrap();
    let call = hub.call(p, "slow", b"60000".to_vec()).unwrap();
    hub.run_until_idle();
    hub.kill_guest(p, "unloading");
    let result = call.try_result().expect("ended with its guest");
    assert!(
        matches!(&result, Err(CallError::GuestEnded(Some(exit))) if exit.code == 137),
        "{result:?}"
    );
    // Nothing is left: run() returns.
    hub.run();
}

/// A hub serving on a thread of its own, kept running by a plugin of its
/// own: its handle, that keeper, and the thread.
struct Served {
    handle: wasmlet_host::HubHandle,
    keeper: wasmlet_host::GuestId,
    thread: std::thread::JoinHandle<()>,
}

fn hub_on_a_thread(runtime: &wasmlet_host::Runtime) -> Served {
    let runtime = runtime.clone();
    let (send, receive) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut hub = Hub::new(&runtime);
        let keeper = hub
            .add_plugin(&plugin_program(&runtime), options(&[]))
            .unwrap();
        send.send((hub.handle(), keeper)).unwrap();
        hub.run();
    });
    let (handle, keeper) = receive.recv().unwrap();
    Served {
        handle,
        keeper,
        thread,
    }
}

impl Served {
    /// Ends the hub: with its last plugin gone, `run` returns.
    fn stop(self) {
        self.handle.kill_guest(self.keeper, "test over");
        self.thread.join().unwrap();
    }
}

#[test]
fn a_handle_adds_plugins_and_calls_them_from_other_threads_and_from_tokio() {
    let runtime = runtime();
    let program = plugin_program(&runtime);
    let served = hub_on_a_thread(&runtime);
    let handle = served.handle.clone();
    let wait = Duration::from_secs(10);
    let p = handle.add_plugin(&program, options(&[]), wait).unwrap();
    let call = handle.call(p, "upper", b"from afar".to_vec()).unwrap();
    assert_eq!(call.wait(wait).unwrap(), b"FROM AFAR");
    // From a tokio application: awaiting a call blocks no worker.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let answers = tokio.block_on(async {
        let calls: Vec<_> = (0..20)
            .map(|i| handle.call(p, "slow", format!("{}", 10 + i % 3)).unwrap())
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(String::from_utf8(call.await.unwrap()).unwrap());
        }
        answers
    });
    assert_eq!(answers.len(), 20);
    assert!(
        answers.iter().all(|a| a.starts_with("slept 1")),
        "{answers:?}"
    );
    // A timeout on the caller's side leaves the call running; cancel ends it.
    let long = handle.call(p, "slow", b"60000".to_vec()).unwrap();
    assert!(matches!(
        long.wait(Duration::from_millis(20)),
        Err(CallError::TimedOut)
    ));
    long.cancel();
    assert!(matches!(long.wait(wait), Err(CallError::Cancelled)));
    assert!(handle.usage(p, wait).is_some());
    handle.kill_guest(p, "done");
    served.stop();
}

#[test]
fn a_full_plugin_makes_callers_wait_or_fail_fast_by_their_choice() {
    let runtime = runtime();
    let program = plugin_program(&runtime);
    let served = hub_on_a_thread(&runtime);
    let handle = served.handle.clone();
    let wait = Duration::from_secs(10);
    let mut small = options(&[]);
    small.max_calls_in_flight = 2;
    let p = handle.add_plugin(&program, small, wait).unwrap();
    let first = handle.call(p, "slow", b"100".to_vec()).unwrap();
    let second = handle.call(p, "slow", b"100".to_vec()).unwrap();
    assert!(matches!(
        handle.try_call(p, "upper", b"x".to_vec()),
        Err(CallError::Busy)
    ));
    // This one waits for room: it is sent only once one of the two ended.
    let third = handle.call(p, "upper", b"third".to_vec()).unwrap();
    assert!(
        first.try_result().is_some() || second.try_result().is_some(),
        "room came from a call that ended"
    );
    assert_eq!(third.wait(wait).unwrap(), b"THIRD");
    assert_eq!(first.wait(wait).unwrap(), b"slept 100 ms");
    assert_eq!(second.wait(wait).unwrap(), b"slept 100 ms");
    // Killing the plugin wakes callers waiting for room, with an error.
    let blocked_a = handle.call(p, "slow", b"60000".to_vec()).unwrap();
    let blocked_b = handle.call(p, "slow", b"60000".to_vec()).unwrap();
    let (tid, waiter_tid) = std::sync::mpsc::channel();
    let waiter = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            tid.send(crate::support::os_thread_id()).unwrap();
            handle.call(p, "upper", b"never".to_vec()).map(|_| ())
        })
    };
    // Once it waits for room (asleep in the kernel).
    crate::support::wait_until_asleep(waiter_tid.recv().unwrap());
    handle.kill_guest(p, "unloading");
    assert!(matches!(
        waiter.join().unwrap(),
        Err(CallError::GuestEnded(_))
    ));
    assert!(matches!(
        blocked_a.wait(wait),
        Err(CallError::GuestEnded(_))
    ));
    assert!(matches!(
        blocked_b.wait(wait),
        Err(CallError::GuestEnded(_))
    ));
    served.stop();
}

#[test]
fn a_pool_of_two_hubs_places_plugins_on_both_and_routes_calls() {
    let runtime = runtime();
    let program = plugin_program(&runtime);
    let pool = wasmlet_host::HubPool::new(&runtime, 2).unwrap();
    assert_eq!(pool.len(), 2);
    let handle = pool.handle();
    let plugins: Vec<_> = (0..4)
        .map(|_| handle.add_plugin(&program, options(&[])).unwrap())
        .collect();
    let hubs: Vec<usize> = plugins.iter().map(|p| p.hub).collect();
    assert_eq!(hubs.iter().filter(|&&h| h == 0).count(), 2, "{hubs:?}");
    assert_eq!(hubs.iter().filter(|&&h| h == 1).count(), 2, "{hubs:?}");
    // Calls from several threads at once, each routed to its plugin's hub.
    let callers: Vec<_> = plugins
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|j| {
                        let input = format!("p{i}c{j}");
                        let call = handle.call(p, "upper", input.clone()).unwrap();
                        let output = call.wait(Duration::from_secs(10)).unwrap();
                        assert_eq!(output, input.to_uppercase().as_bytes());
                    })
                    .count()
            })
        })
        .collect();
    let served: usize = callers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(served, 200);
    for &p in &plugins {
        let count = handle.call(p, "count", b"".to_vec()).unwrap();
        assert_eq!(
            count.wait(Duration::from_secs(10)).unwrap(),
            b"50",
            "per plugin"
        );
    }
    let pending = handle.call(plugins[0], "slow", b"60000".to_vec()).unwrap();
    pool.shutdown();
    assert!(matches!(
        pending.wait(Duration::from_secs(10)),
        Err(CallError::GuestEnded(_))
    ));
}

#[test]
fn the_report_names_each_call_and_what_its_green_thread_waits_for() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let p = hub
        .add_plugin(&plugin_program(&runtime), options(&[]))
        .unwrap();
    let call = hub.call(p, "slow", b"60000".to_vec()).unwrap();
    hub.run_until_idle();
    let report = hub.report();
    assert!(
        report.starts_with("hub: 1 live guests, 1 green threads, 1 calls in flight\n"),
        "{report}"
    );
    assert!(
        report.contains("guest 0 (plugin): 1 green threads, 1 calls in flight"),
        "{report}"
    );
    assert!(
        report.contains("  green thread #2 (call of `slow`): sleeping"),
        "{report}"
    );
    call.cancel();
    finish(&mut hub, &call).unwrap_err();
    assert!(hub
        .report()
        .starts_with("hub: 1 live guests, 0 green threads, 0 calls in flight"));
}

#[test]
fn a_call_returning_more_than_max_output_fails_alone() {
    let runtime = runtime();
    let mut hub = Hub::new(&runtime);
    let mut small = options(&[]);
    small.max_output = 1024;
    let p = hub.add_plugin(&plugin_program(&runtime), small).unwrap();
    let big = hub.call(p, "upper", vec![b'a'; 2048]).unwrap();
    let result = finish(&mut hub, &big);
    assert!(
        matches!(&result, Err(CallError::Trapped(m)) if m.contains("more than the guest's max_output of 1024")),
        "{result:?}"
    );
    let fine = hub.call(p, "upper", vec![b'a'; 1000]).unwrap();
    assert_eq!(finish(&mut hub, &fine).unwrap(), vec![b'A'; 1000]);
}

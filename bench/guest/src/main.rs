//! The wasmlet side of the benchmark suite (`bench/run`): the same workloads
//! as `bench/greenbench.py` runs on eventlet and gevent, each printing one
//! JSON object of figures to stdout.
//!
//! Usage: greenbench WORKLOAD COUNT, where WORKLOAD is one of spawn, switch,
//! concurrent, timers, fanout, spawnall, switchmany, hold (for
//! `bench/memory.py`). `concurrent` reads the host's resident memory
//! from /proc/self/status, so run it with `--dir /proc::/proc`.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wasmlet::{Builder, Event, Queue};

mod hold;

/// Green threads spawned and waited for at a time in `spawn`.
const WAVE: usize = 1000;
/// Shadow stack of the sleepers in `concurrent`: a sleeping green thread
/// needs little, and 100,000 of the default 64 KiB would not fit in a wasm32
/// memory.
const SLEEPER_STACK: usize = 8 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).map(String::as_str).unwrap_or("");
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let json = match workload {
        "spawn" => spawn(count),
        "switch" => switch(count),
        "concurrent" => concurrent(count),
        "timers" => timers(count),
        "fanout" => fanout(count),
        "spawnall" => spawn_all(count),
        "switchmany" => switch_many(count),
        "hold" => {
            // An optional shadow-stack size: the million-sleeper figure uses
            // small stacks (a million of 8 KiB would not fit in 4 GiB).
            // And how long to hold them: many guests on one hub take
            // longer to get all theirs asleep. A stack of 0 is the hub's
            // default.
            let stack = args.get(3).and_then(|s| s.parse().ok());
            let seconds = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
            hold::hold(count, stack.unwrap_or(SLEEPER_STACK), seconds, || {
                let _ = wasmlet::sleep(Duration::from_secs(3600));
            })
        }
        _ => {
            eprintln!(
                "usage: greenbench spawn|switch|concurrent|timers|fanout|spawnall|switchmany|hold \
                 COUNT [hold: STACK_BYTES [SECONDS]]"
            );
            std::process::exit(2);
        }
    };
    println!("{json}");
}

/// spawn + run + wait, in waves of WAVE: µs per green thread.
fn spawn(count: usize) -> String {
    let started = Instant::now();
    let mut done = 0;
    let mut sum = 0;
    while done < count {
        let n = WAVE.min(count - done);
        let wave: Vec<_> = (0..n).map(|i| wasmlet::spawn(move || i)).collect();
        for gt in wave {
            sum += gt.wait().expect("a bench thread failed");
        }
        done += n;
    }
    assert!(sum > 0 || count <= 1);
    let us = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    format!(r#"{{"spawn_us": {us:.3}}}"#)
}

/// sleep(0) ping-pong between two green threads: ns per switch.
fn switch(rounds: usize) -> String {
    let started = Instant::now();
    let players: Vec<_> = (0..2)
        .map(|_| {
            wasmlet::spawn(move || {
                for _ in 0..rounds {
                    let _ = wasmlet::sleep(Duration::ZERO);
                }
            })
        })
        .collect();
    for p in players {
        p.wait().expect("a player failed");
    }
    let ns = started.elapsed().as_nanos() as f64 / (2 * rounds) as f64;
    format!(r#"{{"switch_ns": {ns:.1}}}"#)
}

/// The host's resident memory, in KiB (0 if /proc is not visible).
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A figure of /proc/self/status, in KiB (0 if /proc is not visible).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// An eventlet-style program: a loop of `count` plain spawns, then a wait
/// for each. µs per green thread, and the process's peak resident memory.
fn spawn_all(count: usize) -> String {
    let started = Instant::now();
    let all: Vec<_> = (0..count).map(|i| wasmlet::spawn(move || i)).collect();
    let mut sum = 0;
    for gt in all {
        sum += gt.wait().expect("a bench thread failed");
    }
    assert!(sum > 0 || count <= 1);
    let us = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    let peak = status_kib("VmHWM:") as f64 / 1024.0;
    format!(r#"{{"spawnall_us": {us:.3}, "spawnall_peak_mib": {peak:.1}}}"#)
}

/// Rounds of `sleep(0)` in each of the switch among many.
const MANY_ROUNDS: usize = 20;

/// `count` green threads each yielding `MANY_ROUNDS` times: ns per switch
/// among many (each switch touches another thread's store, instance and
/// stack).
fn switch_many(count: usize) -> String {
    let players: Vec<_> = (0..count)
        .map(|_| {
            wasmlet::spawn(|| {
                for _ in 0..MANY_ROUNDS {
                    let _ = wasmlet::sleep(Duration::ZERO);
                }
            })
        })
        .collect();
    // Every player starts (its first run is a spawn, not a switch) before
    // the clock does.
    let _ = wasmlet::sleep(Duration::ZERO);
    let started = Instant::now();
    for p in players {
        p.wait().expect("a player failed");
    }
    let ns = started.elapsed().as_nanos() as f64 / (count * (MANY_ROUNDS - 1)) as f64;
    format!(r#"{{"switchmany_ns": {ns:.1}}}"#)
}

/// `count` green threads asleep at once: the time to start them all, and
/// the resident memory each adds.
fn concurrent(count: usize) -> String {
    let builder = Builder::new().stack_size(SLEEPER_STACK);
    // Warm up: the first green threads pay for pools and memory growth that
    // later ones share.
    builder.spawn(|| ()).wait().expect("warm-up");
    let before = rss_kib();
    let started = Instant::now();
    let sleepers: Vec<_> = (0..count)
        .map(|_| builder.spawn_n(|| wasmlet::sleep(Duration::from_secs(3600))))
        .collect();
    // Every sleeper runs up to its sleep before main runs again.
    let _ = wasmlet::sleep(Duration::ZERO);
    let start_us = started.elapsed().as_secs_f64() * 1e6;
    let after = rss_kib();
    let per_thread = (after.saturating_sub(before)) as f64 * 1024.0 / count as f64;
    let stop = Instant::now();
    for t in sleepers {
        t.kill();
    }
    let kill_us = stop.elapsed().as_secs_f64() * 1e6 / count as f64;
    format!(
        r#"{{"start_ms": {:.1}, "rss_per_thread_bytes": {per_thread:.0}, "rss_total_mib": {:.1}, "kill_us": {kill_us:.3}}}"#,
        start_us / 1e3,
        after as f64 / 1024.0
    )
}

/// `count` green threads asleep at once, each timing one sleep of 1–10 ms:
/// how late they wake (ms). They all start, wait for a common go, then
/// sleep 50–150 ms to spread out (unmeasured), so that what is measured is
/// the timers with `count` sleepers, not the cost of starting them. Each
/// records its own lateness; the last one tells main, which so does no work
/// while the timers run.
fn timers(count: usize) -> String {
    let go: Event = Event::new();
    let done: Event = Event::new();
    let late: Rc<RefCell<Vec<f64>>> = Rc::new(RefCell::new(Vec::with_capacity(count)));
    for i in 0..count {
        let (go, done, late) = (go.clone(), done.clone(), late.clone());
        let settle = Duration::from_micros(50_000 + (i as u64 * 7919 % 100_000));
        let want = Duration::from_micros(1000 + (i as u64 * 7907 % 9001));
        wasmlet::spawn_n(move || {
            go.wait().expect("go is sent");
            let _ = wasmlet::sleep(settle);
            let start = Instant::now();
            let _ = wasmlet::sleep(want);
            let ms = start.elapsed().saturating_sub(want).as_secs_f64() * 1e3;
            let mut late = late.borrow_mut();
            late.push(ms);
            if late.len() == count {
                done.send(()).expect("sent once");
            }
        });
    }
    let _ = wasmlet::sleep(Duration::ZERO);
    go.send(()).expect("sent once");
    done.wait().expect("done is sent");
    let mut late = late.take();
    late.sort_by(f64::total_cmp);
    let pct = |p: f64| late[((late.len() - 1) as f64 * p) as usize];
    format!(
        r#"{{"late_p50_ms": {:.4}, "late_p99_ms": {:.4}, "late_max_ms": {:.4}}}"#,
        pct(0.50),
        pct(0.99),
        late[late.len() - 1]
    )
}

/// Fan-out/fan-in: a producer feeds `count` items through a bounded queue to
/// 100 workers, which send results back over another queue: µs per item.
fn fanout(count: usize) -> String {
    const WORKERS: usize = 100;
    let jobs: Queue<Option<u64>> = Queue::bounded(WORKERS);
    let results: Queue<u64> = Queue::new();
    let started = Instant::now();
    for _ in 0..WORKERS {
        let (jobs, results) = (jobs.clone(), results.clone());
        wasmlet::spawn_n(move || {
            while let Some(n) = jobs.get().expect("no timeout") {
                results.put(n * 2).expect("unbounded");
            }
        });
    }
    {
        let jobs = jobs.clone();
        wasmlet::spawn_n(move || {
            for n in 0..count as u64 {
                jobs.put(Some(n)).expect("no timeout");
            }
            for _ in 0..WORKERS {
                jobs.put(None).expect("no timeout");
            }
        });
    }
    let mut sum = 0u64;
    for _ in 0..count {
        sum += results.get().expect("no timeout");
    }
    let expected = (count as u64) * (count as u64).saturating_sub(1);
    assert_eq!(sum, expected, "fan-out lost or duplicated items");
    let us = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    format!(r#"{{"fanout_us": {us:.3}}}"#)
}

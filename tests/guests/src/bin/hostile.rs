//! What a hostile (or careless) guest does to its host's resources. Each
//! mode pushes one limit:
//!
//! - `spawn`: `try_spawn`s sleepers, letting each start, until the host
//!   refuses, then shows the refusal is an error it can handle (it finishes
//!   normally).
//! - `spawn-at-once N MS`: spawns N green threads without yielding (each
//!   sleeps MS ms unless MS is 0, then returns 1), then waits for each:
//!   how many ended well, and the first failure.
//! - `fill-hub`: `try_spawn`s hour-long sleepers without yielding until the
//!   host refuses, says how many it holds, and sleeps on.
//! - `big-stacks`: `try_spawn`s sleepers with 64 MiB shadow stacks, letting
//!   each start, until refused.
//! - `sleepers N`: puts N green threads to sleep for an hour, and main too.
//! - `links N`: links N callbacks to one sleeping green thread.
//! - `files DIR`: opens DIR's `data` file until refused, then closes them all
//!   and opens one again.
//! - `timed-waits N`: N channel receives with a 1 h timeout that a
//!   neighbour's send ends early (each leaves a timer the hub must free).
//! - `futex-storm N [PHASES]`: (1) N green threads wait on one condition
//!   variable with one deadline, all time out together; (2) N wait again
//!   and one `notify_all` wakes them all; (3) N links to one green thread
//!   are unlinked newest first. PHASES (default `123`) picks which run.
//! - `delayed N`: `spawn_after`s N green threads an hour away without
//!   yielding, and prints the slowest spawn call in microseconds.
//! - `deep N FRAMES hold|return`: N green threads each recurse FRAMES
//!   calls deep and sleep an hour, at the bottom (`hold`) or after
//!   returning (`return`); main prints `N deep` once all sleep, and ends.
//! - `spin`: spins for ever.
//! - `bursts N US`: computes N bursts of US microseconds each (timed on its
//!   own clock), sleeping 1 ms after each, and prints the time it computed
//!   in microseconds.
//! - `block`: waits for ever on stdin, then on a futex, then in
//!   `std::thread::sleep` (each in its own green thread).
use std::time::Duration;

/// Recurses `n` calls deep, then calls `at_bottom`.
#[inline(never)]
fn recurse(n: u32, at_bottom: &dyn Fn()) -> u64 {
    if n == 0 {
        at_bottom();
        return 1;
    }
    // Not a tail call, nor an accumulation LLVM turns into a loop; and no
    // local in memory (each frame would take shadow stack too).
    recurse(n - 1, at_bottom).rotate_left(n % 63 + 1) ^ u64::from(n)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    wasmlet::hub_exceptions(false);
    match arg(1) {
        "spawn" => {
            let mut sleepers = Vec::new();
            let error = loop {
                match wasmlet::try_spawn(|| wasmlet::sleep(Duration::from_millis(50))) {
                    Ok(gt) => sleepers.push(gt),
                    Err(e) => break e,
                }
                // Each starts (and goes to sleep) before the next spawn.
                let _ = wasmlet::sleep(Duration::ZERO);
            };
            println!("refused after {} green threads: {error}", sleepers.len());
            for gt in sleepers.drain(..) {
                let _ = gt.wait().unwrap();
            }
            let again = wasmlet::try_spawn(|| 7).map(|gt| gt.wait().unwrap());
            println!("once they ended: {again:?}");
        }
        "fill-hub" => {
            let mut held = Vec::new();
            let refusal = loop {
                match wasmlet::try_spawn(|| wasmlet::sleep(Duration::from_secs(3600))) {
                    Ok(gt) => held.push(gt),
                    Err(e) => break e,
                }
            };
            println!("held {} green threads, then: {refusal}", held.len());
            let _ = wasmlet::sleep(Duration::from_secs(3600));
        }
        "spawn-at-once" => {
            let n: usize = arg(2).parse().unwrap();
            let ms: u64 = arg(3).parse().unwrap();
            let all: Vec<_> = (0..n)
                .map(|_| {
                    wasmlet::spawn(move || {
                        if ms > 0 {
                            wasmlet::sleep(Duration::from_millis(ms)).unwrap();
                        }
                        1
                    })
                })
                .collect();
            let (mut ok, mut first_failure) = (0, None);
            for gt in all {
                match gt.wait() {
                    Ok(one) => ok += one,
                    Err(e) => {
                        first_failure.get_or_insert(e.to_string());
                    }
                }
            }
            println!("{ok} of {n} ended well; first failure: {first_failure:?}");
        }
        "big-stacks" => {
            let builder = wasmlet::Builder::new().stack_size(64 << 20);
            let mut sleepers = Vec::new();
            let error = loop {
                match builder.try_spawn(|| wasmlet::sleep(Duration::from_millis(10))) {
                    Ok(gt) => sleepers.push(gt),
                    Err(e) => break e,
                }
                let _ = wasmlet::sleep(Duration::ZERO);
                if sleepers.len() > 100 {
                    panic!("never refused");
                }
            };
            println!("refused after {} green threads: {error}", sleepers.len());
            for gt in sleepers.drain(..) {
                gt.wait().unwrap().unwrap();
            }
            println!("all ran");
        }
        "sleepers" => {
            let n: usize = arg(2).parse().unwrap();
            for _ in 0..n {
                wasmlet::spawn_n(|| {
                    let _ = wasmlet::sleep(Duration::from_secs(3600));
                });
            }
            let _ = wasmlet::sleep(Duration::from_secs(3600));
        }
        "links" => {
            let n: u64 = arg(2).parse().unwrap();
            let target = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
            for i in 0..n {
                target.link(|_| {});
                if i % 1_000_000 == 0 {
                    eprintln!("{i} links");
                }
            }
            println!("linked {n} times");
        }
        "files" => {
            let path = format!("{}/data", arg(2));
            let mut open = Vec::new();
            let error = loop {
                match std::fs::File::open(&path) {
                    Ok(file) => open.push(file),
                    Err(e) => break e,
                }
                if open.len() > 100_000 {
                    panic!("never refused");
                }
            };
            println!("refused after {} files: {error}", open.len());
            open.clear();
            println!(
                "after closing them: {:?}",
                std::fs::File::open(&path).map(|_| "opened")
            );
        }
        "timed-waits" => {
            let n: u64 = arg(2).parse().unwrap();
            let (to_main, from_sender) = std::sync::mpsc::channel::<u64>();
            let (to_sender, from_main) = std::sync::mpsc::channel::<u64>();
            wasmlet::spawn_n(move || {
                for i in 0..n {
                    to_main.send(i).unwrap();
                    // Waits with a timeout too, ended early by main's reply.
                    from_main.recv_timeout(Duration::from_secs(3600)).unwrap();
                }
            });
            let mut got = 0;
            for _ in 0..n {
                got += 1;
                let _ = from_sender.recv_timeout(Duration::from_secs(3600)).unwrap();
                to_sender.send(got).unwrap();
            }
            println!("{got} timed waits ended early");
        }
        "futex-storm" => {
            use std::sync::{Arc, Condvar, Mutex};
            let n: usize = arg(2).parse().unwrap();
            let phases = if arg(3).is_empty() { "123" } else { arg(3) };
            let pair = Arc::new((Mutex::new(false), Condvar::new()));
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let waiters: Vec<_> = (0..n * usize::from(phases.contains('1')))
                .map(|_| {
                    let pair = pair.clone();
                    wasmlet::spawn(move || {
                        let (lock, cond) = &*pair;
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        let guard = lock.lock().unwrap();
                        cond.wait_timeout(guard, left).unwrap().1.timed_out()
                    })
                })
                .collect();
            let timed_out = waiters.into_iter().filter(|w| w.wait().unwrap()).count();
            println!("{timed_out} of {n} timed out together");
            let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let n2 = n * usize::from(phases.contains('2'));
            let waiters: Vec<_> = (0..n2)
                .map(|_| {
                    let (pair, waiting) = (pair.clone(), waiting.clone());
                    wasmlet::spawn(move || {
                        let (lock, cond) = &*pair;
                        let mut go = lock.lock().unwrap();
                        waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        while !*go {
                            go = cond.wait(go).unwrap();
                        }
                    })
                })
                .collect();
            while waiting.load(std::sync::atomic::Ordering::Relaxed) < n2 {
                let _ = wasmlet::sleep(Duration::ZERO);
            }
            *pair.0.lock().unwrap() = true;
            pair.1.notify_all();
            for w in waiters {
                w.wait().unwrap();
            }
            println!("{n} woken by one notify_all");
            let target = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
            let n3 = n * usize::from(phases.contains('3'));
            let links: Vec<_> = (0..n3).map(|_| target.link(|_| {})).collect();
            let unlinked = links
                .into_iter()
                .rev()
                .filter(|&l| target.unlink(l))
                .count();
            target.kill();
            println!("{unlinked} links unlinked newest first");
        }
        "spin" => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins + 1);
            }
        }
        "deep" => {
            let (n, frames): (u32, u32) = (arg(2).parse().unwrap(), arg(3).parse().unwrap());
            let hold = arg(4) == "hold";
            let asleep = std::rc::Rc::new(std::cell::Cell::new(0u32));
            for _ in 0..n {
                let asleep = asleep.clone();
                wasmlet::spawn_n(move || {
                    let sleep = || {
                        asleep.set(asleep.get() + 1);
                        let _ = wasmlet::sleep(Duration::from_secs(3600));
                    };
                    if hold {
                        recurse(frames, &sleep);
                    } else {
                        recurse(frames, &|| ());
                        sleep();
                    }
                });
            }
            while asleep.get() < n {
                wasmlet::sleep(Duration::from_millis(1)).unwrap();
            }
            println!("{n} deep");
        }
        "deep-join" => {
            // One green thread that waits FRAMES calls deep; how it ended.
            let frames: u32 = arg(2).parse().unwrap();
            let deep = wasmlet::spawn(move || {
                recurse(frames, &|| {
                    let _ = wasmlet::sleep(Duration::from_millis(1));
                })
            });
            match deep.join() {
                Ok(_) => println!("returned"),
                Err(e) => println!("failed: {e}"),
            }
        }
        "delayed" => {
            let n: usize = arg(2).parse().unwrap();
            let mut held = Vec::with_capacity(n);
            let mut slowest = Duration::ZERO;
            for _ in 0..n {
                let began = std::time::Instant::now();
                held.push(wasmlet::spawn_after(Duration::from_secs(3600), || ()));
                slowest = slowest.max(began.elapsed());
            }
            println!("slowest spawn {} us", slowest.as_micros());
        }
        "bursts" => {
            let (bursts, micros): (u32, u64) = (arg(2).parse().unwrap(), arg(3).parse().unwrap());
            let burst = Duration::from_micros(micros);
            let mut computed = Duration::ZERO;
            for _ in 0..bursts {
                let began = std::time::Instant::now();
                let mut spins = 0u64;
                while began.elapsed() < burst {
                    spins = std::hint::black_box(spins + 1);
                }
                computed += began.elapsed();
                wasmlet::sleep(Duration::from_millis(1)).unwrap();
            }
            println!("computed {} us", computed.as_micros());
        }
        "block" => {
            wasmlet::spawn_n(|| {
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            });
            wasmlet::spawn_n(|| std::thread::sleep(Duration::from_secs(3600)));
            let lock = std::sync::Arc::new(std::sync::Mutex::new(()));
            let held = lock.clone();
            wasmlet::spawn_n(move || {
                let _guard = held.lock().unwrap();
                let _ = wasmlet::sleep(Duration::from_secs(3600));
            });
            let _ = wasmlet::sleep(Duration::from_millis(1));
            let _blocked = lock.lock().unwrap();
        }
        other => panic!("unknown mode {other:?}"),
    }
}

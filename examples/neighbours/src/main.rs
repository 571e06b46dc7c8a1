//! The guests of the hostile-neighbour example (`host/main.rs` next to this
//! folder runs them together on one hub). `argv[1]` says which one to be:
//!
//! - `good N`: a well-behaved guest: N one-millisecond sleeps, reporting the
//!   worst lateness of its timers.
//! - `spin`: never yields.
//! - `futex`: waits on a futex no one will ever wake (`thread::park`).
//! - `lock`: one green thread holds a `std::sync::Mutex` for an hour while
//!   main wants it.
//! - `sleep`: `std::thread::sleep` for an hour.
//! - `stdin`: reads a line from stdin.
//! - `hog`: allocates memory without end.
//! - `bomb`: spawns sleeping green threads without end.
//! - `files DIR`: opens `DIR/data` without end, then handles the refusal.
//! - `links`: links callbacks to one green thread without end.
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "good" => {
            let n: u32 = arg(2).parse().unwrap_or(300);
            let mut worst = Duration::ZERO;
            for _ in 0..n {
                let start = Instant::now();
                let _ = wasmlet::sleep(Duration::from_millis(1));
                worst = worst.max(start.elapsed() - Duration::from_millis(1));
            }
            println!("worst timer lateness {:.2} ms", worst.as_secs_f64() * 1e3);
        }
        "spin" => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins + 1);
            }
        }
        "futex" => std::thread::park(),
        "lock" => {
            let lock = std::sync::Arc::new(std::sync::Mutex::new(()));
            let held = lock.clone();
            wasmlet::spawn_n(move || {
                let _guard = held.lock().unwrap();
                let _ = wasmlet::sleep(Duration::from_secs(3600));
            });
            let _ = wasmlet::sleep(Duration::ZERO);
            drop(lock.lock().unwrap());
        }
        "sleep" => std::thread::sleep(Duration::from_secs(3600)),
        "stdin" => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            println!("read {line:?}");
        }
        "hog" => {
            let mut kept = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 20]);
            }
        }
        "bomb" => loop {
            wasmlet::spawn_n(|| wasmlet::sleep(Duration::from_secs(3600)));
        },
        "files" => {
            let path = format!("{}/data", arg(2));
            let mut open = Vec::new();
            let error = loop {
                match std::fs::File::open(&path) {
                    Ok(file) => open.push(file),
                    Err(e) => break e,
                }
            };
            println!("refused after {} files: {error}", open.len());
        }
        "links" => {
            let target = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
            loop {
                target.link(|_| {});
            }
        }
        other => panic!("unknown role {other:?}"),
    }
}

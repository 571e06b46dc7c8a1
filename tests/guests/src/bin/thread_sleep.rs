//! `std::thread::sleep` (WASI `poll_oneoff`) suspends only its green thread:
//! a neighbour keeps its 1 ms ticks, and a kill reaches the sleeper at once.
use std::time::{Duration, Instant};

fn main() {
    let ticker = wasmlet::spawn(|| {
        let mut worst = Duration::ZERO;
        for _ in 0..50 {
            let start = Instant::now();
            let _ = wasmlet::sleep(Duration::from_millis(1));
            worst = worst.max(start.elapsed());
        }
        worst
    });
    // The ticker is in its first tick when the sleeper goes to sleep.
    let sleeper = wasmlet::spawn(|| {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        start.elapsed()
    });
    let worst = ticker.wait().unwrap();
    let slept = sleeper.wait().unwrap();
    println!(
        "the sleeper slept its time: {}",
        slept >= Duration::from_millis(300)
    );
    // Unless the sleep were green, one tick would take the whole 300 ms.
    println!(
        "every tick under 150 ms: {}",
        worst < Duration::from_millis(150)
    );
    let start = Instant::now();
    std::thread::sleep(Duration::ZERO);
    println!(
        "sleep(0) returns: {}",
        start.elapsed() < Duration::from_secs(1)
    );
    let victim = wasmlet::spawn(|| std::thread::sleep(Duration::from_secs(3600)));
    let _ = wasmlet::sleep(Duration::from_millis(1));
    let start = Instant::now();
    victim.kill();
    println!(
        "killed in its sleep: {:?}, at once: {}",
        victim.wait().map_err(|e| e.to_string()),
        start.elapsed() < Duration::from_secs(1)
    );
}

//! Sleeps 1 ms N times and prints how late the latest wake-up was, in ms.
use std::time::{Duration, Instant};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let start = Instant::now();
        let _ = wasmlet::sleep(Duration::from_millis(1));
        worst = worst.max(start.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    println!("{:.3}", worst.as_secs_f64() * 1000.0);
}

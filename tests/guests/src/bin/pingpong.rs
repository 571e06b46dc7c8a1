//! sleep(0) ping-pong between two green threads; prints the cost of a switch.
//! Usage: pingpong ROUNDS
use std::time::{Duration, Instant};

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let started = Instant::now();
    let players: Vec<_> = (0..2)
        .map(|_| {
            wasmlet::spawn(move || {
                for _ in 0..rounds {
                    wasmlet::sleep(Duration::ZERO);
                }
            })
        })
        .collect();
    for p in &players {
        p.wait().unwrap();
    }
    let switches = 2 * rounds as u64;
    println!("ping-pong: {switches} switches done");
    eprintln!(
        "switch: {:.0} ns",
        started.elapsed().as_nanos() as f64 / switches as f64
    );
}

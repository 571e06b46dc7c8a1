//! Spins without yielding for argv[1] ms, then reports whether argv[2] (a
//! file another guest writes) appeared meanwhile.
use std::time::{Duration, Instant};

fn main() {
    let ms: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let path = std::env::args().nth(2).unwrap();
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < Duration::from_millis(ms) {
        spins = std::hint::black_box(spins + 1);
    }
    println!(
        "spinner saw the other guest finish: {}",
        std::path::Path::new(&path).exists()
    );
}

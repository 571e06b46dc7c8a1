//! Runs many short green threads in waves; memory must not grow with the
//! number of waves (everything a green thread held is reused).
//! Usage: waves TOTAL WAVE_SIZE
use std::time::Instant;

fn pages() -> usize {
    core::arch::wasm32::memory_size(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let wave: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let started = Instant::now();
    let mut sum = 0usize;
    let mut pages_after_first = 0;
    let mut done = 0;
    while done < total {
        let n = wave.min(total - done);
        let handles: Vec<_> = (0..n).map(|i| wasmlet::spawn(move || i * 2)).collect();
        for h in handles {
            sum += h.wait().unwrap();
        }
        done += n;
        if pages_after_first == 0 {
            pages_after_first = pages();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "ran {done} green threads, checksum ok: {}",
        sum == (total / wave) * wave * (wave - 1) + {
            let rest = total % wave;
            rest * rest.saturating_sub(1)
        }
    );
    println!(
        "memory pages after first wave: {pages_after_first}, at end: {}",
        pages()
    );
    eprintln!(
        "spawn+run+wait: {:.2} us per green thread",
        elapsed.as_secs_f64() * 1e6 / done as f64
    );
}

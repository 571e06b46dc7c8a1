//! The smallest wasmlet guest: three green threads taking turns.
use std::time::Duration;

fn main() {
    let workers: Vec<_> = ["alpha", "beta", "gamma"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            wasmlet::spawn(move || {
                for step in 1..=2 {
                    println!("{name}: step {step}");
                    let _ = wasmlet::sleep(Duration::ZERO);
                }
                (i + 1) * 10
            })
        })
        .collect();
    let total: usize = workers.iter().map(|w| w.wait().unwrap()).sum();
    println!(
        "hello from wasmlet: {} green threads returned {total}",
        workers.len()
    );
}

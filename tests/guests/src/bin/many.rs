//! An eventlet-style program: a loop of `spawn` (default stacks), then a
//! wait for each. Argument: how many.
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let all: Vec<_> = (0..n).map(|i| wasmlet::spawn(move || i)).collect();
    let sum: u64 = all.iter().map(|gt| gt.wait().unwrap()).sum();
    println!("spawned {n} at once, sum {sum}");
}

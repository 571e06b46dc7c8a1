//! A panic in a green thread: printed (hub_exceptions on by default), reported
//! by wait() to every waiter, and the guest's other green threads go on. A
//! trap that is not a panic is reported too.
use std::time::Duration;

fn main() {
    let bystander = wasmlet::spawn(|| {
        let _ = wasmlet::sleep(Duration::from_millis(5));
        "bystander finished"
    });
    let failing = wasmlet::spawn(|| -> u32 {
        let _ = wasmlet::sleep(Duration::from_millis(1));
        panic!("deliberate failure {}", 42)
    });
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let failing = failing.clone();
            wasmlet::spawn(move || format!("waiter {i}: {}", failing.wait().unwrap_err()))
        })
        .collect();
    for w in &waiters {
        println!("{}", w.wait().unwrap());
    }
    println!("{}", bystander.wait().unwrap());
    // A trap that is not a panic (no panic hook runs).
    let trapper = wasmlet::spawn(|| -> u32 { core::arch::wasm32::unreachable() });
    println!("trap: {}", trapper.wait().unwrap_err());
    wasmlet::hub_exceptions(false);
    let quiet = wasmlet::spawn(|| -> u32 { panic!("silenced failure") });
    println!("quiet: {}", quiet.wait().unwrap_err());
}

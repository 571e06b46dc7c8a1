//! The `hold` workload, for `bench/memory.py`, which reads the host's
//! memory map from outside while green threads sleep.
use std::io::Write;
use std::time::Duration;

use wasmlet::Builder;

/// Prints `base` and the size of the guest's memory once warm, then (a
/// second later) spawns `count` green threads with `stack_size`-byte shadow
/// stacks, each running `sleeper` (which should sleep), lets them all
/// start, prints `ready` and the memory's size, holds them for `seconds`
/// and exits.
pub fn hold(count: usize, stack_size: usize, seconds: u64, sleeper: fn()) -> ! {
    let builder = Builder::new().stack_size(stack_size);
    builder.spawn(|| ()).wait().expect("warm-up");
    let memory = || core::arch::wasm32::memory_size(0) * 64 * 1024;
    say(&format!("base {}", memory()));
    let _ = wasmlet::sleep(Duration::from_secs(1));
    let sleepers: Vec<_> = (0..count).map(|_| builder.spawn_n(sleeper)).collect();
    let _ = wasmlet::sleep(Duration::ZERO);
    say(&format!("ready {}", memory()));
    let _ = wasmlet::sleep(Duration::from_secs(seconds));
    std::process::exit(if sleepers.len() == count { 0 } else { 1 });
}

fn say(what: &str) {
    println!("{what}");
    let _ = std::io::stdout().flush();
}

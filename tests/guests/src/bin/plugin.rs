//! A plugin: functions the host calls (see `tests/all/plugins.rs`).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static CALLS: AtomicU64 = AtomicU64::new(0);

fn upper(input: &[u8]) -> Vec<u8> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    input.to_ascii_uppercase()
}

fn fails(input: &[u8]) -> Result<String, String> {
    Err(format!("bad input: {}", String::from_utf8_lossy(input)))
}

fn panics(_: &[u8]) -> String {
    panic!("boom")
}

fn traps(_: &[u8]) -> String {
    std::process::abort()
}

/// Sleeps the milliseconds its input says.
fn slow(input: &[u8]) -> String {
    let ms: u64 = std::str::from_utf8(input).unwrap().parse().unwrap();
    let _ = wasmlet::sleep(Duration::from_millis(ms));
    format!("slept {ms} ms")
}

/// How many calls of `upper` this plugin has served.
fn count(_: &[u8]) -> String {
    CALLS.load(Ordering::Relaxed).to_string()
}

fn exits(_: &[u8]) -> String {
    std::process::exit(3)
}

/// Waits 60 s, then (a kill ignored) spins for ever.
fn deaf(_: &[u8]) -> String {
    let _ = wasmlet::sleep(Duration::from_secs(60));
    let mut spins = 0u64;
    loop {
        spins = std::hint::black_box(spins + 1);
    }
}

fn spins(_: &[u8]) -> String {
    let mut spins = 0u64;
    loop {
        spins = std::hint::black_box(spins + 1);
    }
}

#[derive(serde::Deserialize)]
struct Order {
    items: Vec<u32>,
}

#[derive(serde::Serialize)]
struct Total {
    count: usize,
    sum: u32,
}

/// serde types in and out, as JSON.
fn total(input: &[u8]) -> Result<wasmlet::plugin::Json<Total>, String> {
    let wasmlet::plugin::Json(order): wasmlet::plugin::Json<Order> =
        wasmlet::plugin::Json::parse(input)?;
    Ok(wasmlet::plugin::Json(Total {
        count: order.items.len(),
        sum: order.items.iter().sum(),
    }))
}

wasmlet::export!(upper, fails, panics, traps, slow, count, exits, spins, deaf, total);

fn main() {
    CALLS.store(0, Ordering::Relaxed);
}

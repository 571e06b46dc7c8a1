//! Calls host functions that the embedder defined (module `app`, see
//! `tests/all/host_functions.rs`): plain ones, one that reads and writes guest
//! memory, and an async one that ten green threads wait on at once while a
//! neighbour ticks.
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[link(wasm_import_module = "app")]
extern "C" {
    fn add(a: i32, b: i32) -> i32;
    /// Writes the reverse of `len` bytes at `input` to `output`.
    fn reverse(input: u32, len: u32, output: u32) -> i32;
    /// 1 if the host's attempt to use guest memory from another thread was
    /// refused.
    fn leak() -> i32;
    /// Twice `n`, answered 20 ms later from another runtime.
    fn double_later(n: i64) -> i64;
}

fn main() {
    println!("add: {}", unsafe { add(40, 2) });
    let text = b"stressed";
    let mut out = [0u8; 8];
    unsafe { reverse(text.as_ptr() as u32, 8, out.as_mut_ptr() as u32) };
    println!("reverse: {}", String::from_utf8_lossy(&out));
    println!(
        "memory used elsewhere is refused: {}",
        unsafe { leak() } == 1
    );
    let done = Rc::new(Cell::new(false));
    let ticks = {
        let done = done.clone();
        wasmlet::spawn(move || {
            let mut ticks = 0;
            while !done.get() {
                let _ = wasmlet::sleep(Duration::from_millis(1));
                ticks += 1;
            }
            ticks
        })
    };
    let start = Instant::now();
    let waiters: Vec<_> = (1..=10i64)
        .map(|n| wasmlet::spawn(move || unsafe { double_later(n) }))
        .collect();
    let answers: Vec<i64> = waiters.into_iter().map(|w| w.wait().unwrap()).collect();
    let took = start.elapsed();
    done.set(true);
    println!("answers: {answers:?}");
    // One after the other, ten 20 ms waits would take 200 ms.
    println!("overlapped: {}", took < Duration::from_millis(150));
    println!(
        "the neighbour ticked meanwhile: {}",
        ticks.wait().unwrap() >= 5
    );
    // A green thread killed while it waits: its future is dropped.
    let victim = wasmlet::spawn(|| unsafe { double_later(1000) });
    let _ = wasmlet::sleep(Duration::from_millis(1));
    victim.kill();
    println!("killed while waiting: {}", victim.wait().is_err());
}

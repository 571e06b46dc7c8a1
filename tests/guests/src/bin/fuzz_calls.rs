//! Issues random hub calls with random arguments, straight through the raw
//! imports of `wit/hub.wit` (and WASI's clock), mixed with ordinary SDK
//! green threads whose ids it aims at. Used by `tests/all/fuzz.rs`: whatever
//! this does, the host must not panic, hang or leak; only this guest may
//! fail.
//!
//! Usage: fuzz_calls SEED CALLS
use std::time::Duration;

#[link(wasm_import_module = "wasmlet:runtime/hub@0.1.0")]
extern "C" {
    fn spawn(task: u32, stack_size: u32, delay_ns: u64, flags: u32) -> u64;
    fn sleep(ns: u64) -> u32;
    fn killed() -> u32;
    fn current() -> u64;
    fn kill(target: u64, error: u32) -> u32;
    fn cancel(target: u64, error: u32) -> u32;
    fn started(target: u64) -> u32;
    fn join(target: u64, timeout_ns: u64) -> u32;
    fn unlink(target: u64, link: u64) -> u32;
    fn park(timeout_ns: u64) -> u32;
    fn unpark(target: u64) -> u32;
    fn wait32(address: u32, expected: u32, timeout_ns: i64, offset: u32) -> u32;
    fn notify(address: u32, count: u32, offset: u32) -> u32;
    #[link_name = "try-spawn"]
    fn try_spawn(task: u32, stack_size: u32, delay_ns: u64, flags: u32) -> u64;
    #[link_name = "last-spawn-refusal"]
    fn last_spawn_refusal() -> u32;
    #[link_name = "call-begin"]
    fn call_begin(task: u32, name: u32, input: u32);
    #[link_name = "call-return"]
    fn call_return(status: u32, output: u32, len: u32);
}

#[link(wasm_import_module = "wasmlet:runtime/net@0.1.0")]
extern "C" {
    #[link_name = "read"]
    fn net_read(s: u32, buf: u32, len: u32, timeout_ns: u64) -> i64;
    fn readable(s: u32, timeout_ns: u64) -> i64;
    #[link_name = "write"]
    fn net_write(s: u32, buf: u32, len: u32, timeout_ns: u64) -> i64;
    #[link_name = "close"]
    fn net_close(s: u32) -> i64;
    fn address(s: u32, peer: bool, buf: u32, len: u32) -> i64;
    #[link_name = "tls-connect"]
    fn tls_connect(addr: u32, addr_len: u32, name: u32, name_len: u32, timeout_ns: u64) -> i64;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn clock_time_get(id: u32, precision: u64, out: u32) -> u32;
    fn fd_write(fd: u32, iovs: u32, iovs_len: u32, nwritten: u32) -> u32;
    fn fd_read(fd: u32, iovs: u32, iovs_len: u32, nread: u32) -> u32;
}

/// xorshift64*: the same calls for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An id: a live green thread's, a nearby one, or anything.
    fn id(&mut self, known: &[u64]) -> u64 {
        match self.below(4) {
            0 if !known.is_empty() => known[self.below(known.len() as u64) as usize],
            1 => self.below(64),
            2 => u64::MAX - self.below(4),
            _ => self.next(),
        }
    }

    /// A timeout the hub must honour: short, none (u64::MAX), or zero.
    fn timeout(&mut self) -> u64 {
        match self.below(5) {
            0 => 0,
            1 => u64::MAX,
            _ => self.below(3_000_000),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let calls: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    wasmlet::hub_exceptions(false);
    let mut rng = Rng(seed.max(1));
    let mut known: Vec<u64> = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..calls {
        // SAFETY (all calls below): the hub validates every argument; the
        // worst a bad one may do is trap this green thread.
        match rng.below(19) {
            18 => {
                // The socket calls with wild handles, pointers and lengths
                // (this guest may open no socket: none is valid).
                let (handle, buf, len) = (
                    match rng.below(3) {
                        0 => rng.below(8) as u32,
                        1 => u32::MAX - rng.below(4) as u32,
                        _ => rng.next() as u32,
                    },
                    rng.next() as u32,
                    rng.next() as u32,
                );
                let (which, timeout) = (rng.below(6), rng.below(2_000_000));
                let name = (rng.next() as u32, rng.below(300) as u32);
                let helper = wasmlet::spawn(move || unsafe {
                    match which {
                        0 => readable(handle, timeout),
                        1 => net_read(handle, buf, len, timeout),
                        2 => net_write(handle, buf, len, timeout),
                        3 => net_close(handle),
                        // No --connect rule: refused, or a trap for a
                        // pointer outside memory.
                        4 => tls_connect(buf, len % 300, name.0, name.1, timeout),
                        _ => address(handle, timeout % 2 == 0, buf, len),
                    }
                });
                known.push(helper.id());
            }
            15 => {
                // try-spawn with any stack size (0 task: the host runs the
                // SDK's call path, which traps outside a call), from a
                // helper.
                let (stack, delay) = (rng.next() as u32, rng.below(2_000_000));
                let helper = wasmlet::spawn(move || unsafe {
                    let id = try_spawn(0, stack, delay, 0);
                    (id, last_spawn_refusal())
                });
                known.push(helper.id());
            }
            16 => {
                // The call functions outside a call, with wild pointers.
                let (a, b, c) = (rng.next() as u32, rng.next() as u32, rng.next() as u32);
                let begin = rng.below(2) == 0;
                let helper = wasmlet::spawn(move || unsafe {
                    if begin {
                        call_begin(a, b, c)
                    } else {
                        call_return(a % 5, b, c)
                    }
                });
                known.push(helper.id());
            }
            17 => {
                // Reads and writes of the standard streams with wild iovecs
                // and counts.
                let (fd, iovs, len, out) = (
                    rng.below(4) as u32,
                    rng.next() as u32,
                    rng.below(2_000) as u32,
                    rng.next() as u32,
                );
                let write = fd != 0;
                let helper = wasmlet::spawn(move || unsafe {
                    if write {
                        fd_write(fd, iovs, len, out)
                    } else {
                        fd_read(fd, iovs, len, out)
                    }
                });
                known.push(helper.id());
            }
            13 | 14 => {
                // A futex call from a helper (a bad address traps it), on a
                // word of the heap, a stray address, or one with an offset.
                let word = Box::leak(Box::new(0u32)) as *mut u32 as u32;
                let address = match rng.below(3) {
                    0 => word,
                    1 => rng.next() as u32,
                    _ => word.wrapping_sub(rng.below(64) as u32),
                };
                let offset = rng.below(128) as u32;
                let (timeout, count) = (rng.below(2_000_000) as i64, rng.next() as u32);
                let wait = rng.below(2) == 0;
                let helper = wasmlet::spawn(move || unsafe {
                    if wait {
                        wait32(address, 0, timeout, offset)
                    } else {
                        notify(address, count, offset)
                    }
                });
                known.push(helper.id());
            }
            0 => {
                let pause = rng.below(2_000_000);
                let t = wasmlet::spawn(move || {
                    let _ = wasmlet::sleep(Duration::from_nanos(pause));
                    let _ = unsafe { park(pause) };
                });
                known.push(t.id());
                handles.push(t);
            }
            1 => {
                let stack = match rng.below(3) {
                    0 => 0,
                    1 => rng.next() as u32,
                    _ => rng.below(1 << 20) as u32,
                };
                let delay = rng.below(2_000_000);
                let flags = rng.next() as u32;
                // From a helper green thread: a stack the hub cannot give
                // traps the spawner, and main should go on.
                let helper = wasmlet::spawn(move || unsafe { spawn(0, stack, delay, flags) });
                known.push(helper.id());
                if let Ok(id) = helper.wait() {
                    known.push(id);
                }
            }
            2 => {
                let _ = unsafe { sleep(rng.below(1_000_000)) };
            }
            3 => known.push(unsafe { current() }),
            4 => {
                let target = rng.id(&known);
                if target != 1 {
                    let _ = unsafe { kill(target, 0) };
                }
            }
            5 => {
                let _ = unsafe { cancel(rng.id(&known), 0) };
                let _ = unsafe { started(rng.id(&known)) };
            }
            6 => {
                let _ = unsafe { join(rng.id(&known), rng.timeout().min(3_000_000)) };
            }
            7 => {
                let _ = unsafe { unlink(rng.id(&known), rng.next()) };
            }
            8 => {
                let _ = unsafe { park(rng.timeout().min(3_000_000)) };
            }
            9 => {
                let _ = unsafe { unpark(rng.id(&known)) };
            }
            10 => {
                let out = match rng.below(3) {
                    0 => rng.next() as u32,
                    1 => u32::MAX - rng.below(16) as u32,
                    _ => &mut 0u64 as *mut u64 as u32,
                };
                let _ = unsafe { clock_time_get(rng.below(6) as u32, rng.next(), out) };
            }
            11 => {
                if let Some(t) = handles.get(rng.below(handles.len() as u64 + 1) as usize) {
                    let _ = t.thread().link(|_| ());
                }
            }
            12 => {
                let _ = unsafe { killed() };
            }
            _ => {
                let _ = wasmlet::sleep(Duration::ZERO);
            }
        }
    }
    for t in &handles {
        t.kill();
    }
    println!("done {seed}");
}

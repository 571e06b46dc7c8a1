//! Many copies of one guest on one hub, for `bench/memory.py`'s "a million
//! green threads across ten guests" figure: the `wasmlet` CLI runs one guest
//! per process, an embedder runs many on a hub.
//!
//! ```text
//! cargo run --release --example memory-guests -- GUESTS fibers|compact WASM [ARGS...]
//! ```
//!
//! Every guest gets the same arguments and otherwise the defaults
//! (`GuestOptions::default()` and `Config::default()`, so the default 32 KiB
//! shadow stack), and passes its output through. Exits once every guest has
//! ended, with 1 if any ended with a non-zero code.

use std::error::Error;

use wasmlet_host::{Config, GuestOptions, Hub, Program, Runtime, Threads};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: memory-guests GUESTS fibers|compact WASM [ARGS...]";
    let (Some(guests), Some(model), Some(wasm)) = (args.first(), args.get(1), args.get(2)) else {
        return Err(usage.into());
    };
    let guests: usize = guests.parse().map_err(|_| usage)?;
    let threads = match model.as_str() {
        "fibers" => Threads::Fibers,
        "compact" => Threads::Compact,
        _ => return Err(usage.into()),
    };
    let runtime = Runtime::new(Config::default())?;
    let program = Program::from_file(runtime.engine(), wasm)?;
    let mut hub = Hub::new(&runtime);
    let mut ids = Vec::new();
    for _ in 0..guests {
        let options = GuestOptions {
            args: std::iter::once(wasm.clone())
                .chain(args[3..].iter().cloned())
                .collect(),
            threads,
            ..Default::default()
        };
        ids.push(hub.add_guest(&program, options)?);
    }
    hub.run();
    let failed = ids
        .iter()
        .filter(|&&id| hub.exit(id).is_none_or(|exit| exit.code != 0))
        .count();
    std::process::exit(i32::from(failed > 0));
}

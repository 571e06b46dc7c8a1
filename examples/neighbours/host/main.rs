//! The hostile-neighbour example: two well-behaved guests on one hub with
//! hostile ones, each hostile in its own way. Every hostile guest is stopped
//! by the limit made for it (or handles the refusal itself), and the good
//! guests' 1 ms timers stay on time: within a millisecond of it next to
//! guests that block (round 1), within one time slice (10 ms) next to guests
//! that spin (round 2).
//!
//! ```text
//! cargo build --release --manifest-path examples/Cargo.toml --target wasm32-wasip1-threads
//! cargo run --release --example neighbours [-- path/to/neighbours.wasm]
//! ```
//!
//! The guests are `examples/neighbours/src/main.rs`, one program in many
//! roles.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmlet_host::{Config, GuestOptions, Hub, Program, Runtime};

/// One guest of the example: its name, its role's arguments, and the limit
/// that stops it (or what it is given).
struct Neighbour {
    name: &'static str,
    args: &'static [&'static str],
    limit: fn(&mut GuestOptions),
}

const GOOD: &[Neighbour] = &[
    Neighbour {
        name: "good-1",
        args: &["good", "300"],
        limit: |_| {},
    },
    Neighbour {
        name: "good-2",
        args: &["good", "300"],
        limit: |_| {},
    },
];

/// Hostile guests that block: each once stopped every guest on the hub.
const BLOCKING: &[Neighbour] = &[
    Neighbour {
        name: "futex-sleeper",
        args: &["futex"],
        limit: |_| {},
    },
    Neighbour {
        name: "lock-holder",
        args: &["lock"],
        limit: |o| o.time_limit = Some(Duration::from_millis(250)),
    },
    Neighbour {
        name: "thread-sleeper",
        args: &["sleep"],
        limit: |o| o.time_limit = Some(Duration::from_millis(250)),
    },
    Neighbour {
        name: "stdin-reader",
        args: &["stdin"],
        limit: |o| {
            o.inherit_stdin = true;
            o.time_limit = Some(Duration::from_millis(250));
        },
    },
];

/// Hostile guests that take: CPU, memory, green threads, descriptors.
const GREEDY: &[Neighbour] = &[
    Neighbour {
        name: "spinner",
        args: &["spin"],
        limit: |o| o.max_cpu_time = Some(Duration::from_millis(200)),
    },
    Neighbour {
        name: "memory-hog",
        args: &["hog"],
        limit: |o| o.max_memory = Some(64 << 20),
    },
    Neighbour {
        name: "spawn-bomb",
        args: &["bomb"],
        limit: |o| o.max_green_threads = Some(1_000),
    },
    Neighbour {
        name: "descriptor-hog",
        args: &["files", "/data"],
        limit: |o| o.max_descriptors = 64,
    },
    Neighbour {
        name: "linker",
        args: &["links"],
        limit: |o| o.max_host_memory = 16 << 20,
    },
];

fn main() -> Result<(), Box<dyn Error>> {
    let wasm = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/target/wasm32-wasip1-threads/release/neighbours.wasm")
        });
    let data = std::env::temp_dir().join(format!("wasmlet-neighbours-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("data"), b"data")?;
    let runtime = Runtime::new(Config::default())?;
    let program = Program::from_file(runtime.engine(), &wasm).map_err(|e| {
        format!(
            "{e:#}\n(build the example guests first: cargo build --release \
             --manifest-path examples/Cargo.toml --target wasm32-wasip1-threads)"
        )
    })?;
    println!("round 1: the good guests with the blocking ones");
    run_round(&runtime, &program, &data, &[GOOD, BLOCKING])?;
    println!("\nround 2: the good guests with every hostile one");
    run_round(&runtime, &program, &data, &[GOOD, BLOCKING, GREEDY])?;
    std::fs::remove_dir_all(&data)?;
    Ok(())
}

/// Runs `groups` of guests together on one hub and prints how each ended.
fn run_round(
    runtime: &Runtime,
    program: &Program,
    data: &Path,
    groups: &[&[Neighbour]],
) -> Result<(), Box<dyn Error>> {
    let mut hub = Hub::new(runtime);
    let mut guests = Vec::new();
    for n in groups.iter().flat_map(|g| g.iter()) {
        let mut options = GuestOptions {
            args: std::iter::once("neighbours")
                .chain(n.args.iter().copied())
                .map(String::from)
                .collect(),
            dirs: vec![(data.to_path_buf(), "/data".into())],
            capture_output: true,
            ..GuestOptions::default()
        };
        (n.limit)(&mut options);
        guests.push((n.name, hub.add_guest(program, options)?));
    }
    let start = Instant::now();
    hub.run();
    let wall = start.elapsed();
    println!("{:<15} {:<5} {:>8}  what happened", "guest", "exit", "cpu");
    for (name, id) in guests {
        let exit = hub.exit(id).ok_or("Hub::run ends every guest")?;
        let (stdout, _) = hub.take_output(id).unwrap_or_default();
        let said = String::from_utf8_lossy(&stdout).trim().to_string();
        let what = match &exit.error {
            Some(error) => error.to_string(),
            None => said,
        };
        // A trap's message is followed by its wasm backtrace and, last,
        // its cause: the first and last lines say it.
        let lines: Vec<&str> = what.lines().filter(|l| !l.trim().is_empty()).collect();
        let shown = match lines.iter().position(|l| l.starts_with("Caused by")) {
            Some(_) => vec![lines[0], lines[lines.len() - 1]],
            None => lines,
        };
        println!(
            "{name:<15} {:<5} {:>6.3} s  {}",
            exit.code,
            exit.cpu_time.as_secs_f64(),
            shown.first().unwrap_or(&"")
        );
        for line in shown.iter().skip(1) {
            println!("{:<34}{}", "", line.trim());
        }
    }
    println!("all ended in {:.2} s", wall.as_secs_f64());
    Ok(())
}

//! The plugin-host example: a host program that loads 100 plugin instances
//! (text transforms, a rules check, and a price lookup that calls back into
//! the host's async `app::lookup`, which takes 5 ms) on a pool of hubs, one
//! per core; calls them 1,000 times at once from four threads; and loads a
//! misbehaving plugin whose failures stay its own.
//!
//! ```text
//! cargo build --release --manifest-path examples/Cargo.toml --target wasm32-wasip1-threads
//! cargo run --release --example plugin-host [-- DIR-OF-WASM]
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmlet_host::{CallError, Config, GuestOptions, HubPool, PoolGuest, Program, Runtime};

/// How many instances of each plugin, and a call for each: (function,
/// input).
const PLUGINS: &[(&str, usize, &str, &str)] = &[
    ("text", 40, "upper", "green threads for plugins"),
    ("rules", 30, "check", "name=wasmlet\nlevel=9"),
    ("lookup", 30, "price", "42"),
];

const CALLS_PER_PLUGIN: usize = 10;
const WAIT: Duration = Duration::from_secs(30);

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/target/wasm32-wasip1-threads/release")
        });
    // The host's own async service: a tokio runtime answering lookups after
    // 5 ms, as a database would.
    let service = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    let spawner = service.handle().clone();
    let runtime = Runtime::builder(Config::default())
        .func_async("app", "lookup", move |_memory, (id,): (i64,)| {
            let (answer, answered) = tokio::sync::oneshot::channel();
            spawner.spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = answer.send(id * 137 % 10_000);
            });
            async move { answered.await.map_err(wasmtime::Error::msg) }
        })
        .build()?;
    let load = |name: &str| {
        Program::from_file(runtime.engine(), dir.join(format!("{name}.wasm"))).map_err(|e| {
            format!(
                "{e:#}\n(build the example guests first: cargo build --release \
                 --manifest-path examples/Cargo.toml --target wasm32-wasip1-threads)"
            )
        })
    };
    let pool = HubPool::new(&runtime, 0)?;
    let handle = pool.handle();
    println!("{} hubs (one per core)", pool.len());

    // 100 instances, placed on the least loaded hub.
    let mut instances: Vec<(&str, PoolGuest, &str, &str)> = Vec::new();
    for &(name, count, function, input) in PLUGINS {
        let program = load(name)?;
        for _ in 0..count {
            let guest = handle.add_plugin(&program, GuestOptions::default())?;
            instances.push((name, guest, function, input));
        }
    }
    println!("loaded {} plugin instances", instances.len());

    // 1,000 calls at once, from four threads; each call's latency is from
    // its submission to its result.
    let latencies: Arc<Mutex<BTreeMap<&str, Vec<Duration>>>> = Arc::default();
    let samples: Arc<Mutex<BTreeMap<&str, String>>> = Arc::default();
    let start = Instant::now();
    let callers: Vec<_> = instances
        .chunks(instances.len().div_ceil(4))
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let (handle, latencies, samples) = (handle.clone(), latencies.clone(), samples.clone());
            std::thread::spawn(move || -> Result<(), CallError> {
                let mut pending = Vec::new();
                for &(name, guest, function, input) in &chunk {
                    for _ in 0..CALLS_PER_PLUGIN {
                        pending.push((name, Instant::now(), handle.call(guest, function, input)?));
                    }
                }
                for (name, submitted, call) in pending {
                    let output = call.wait(WAIT)?;
                    let took = submitted.elapsed();
                    latencies
                        .lock()
                        .unwrap()
                        .entry(name)
                        .or_default()
                        .push(took);
                    let said = String::from_utf8_lossy(&output).into_owned();
                    samples.lock().unwrap().entry(name).or_insert(said);
                }
                Ok(())
            })
        })
        .collect();
    for caller in callers {
        caller.join().map_err(|_| "a calling thread panicked")??;
    }
    let wall = start.elapsed();
    let latencies = latencies.lock().unwrap();
    let calls: usize = latencies.values().map(Vec::len).sum();
    println!(
        "{calls} calls in {:.0} ms ({:.0} calls/s)",
        wall.as_secs_f64() * 1e3,
        calls as f64 / wall.as_secs_f64()
    );
    println!(
        "{:<8} {:>6} {:>10} {:>10}  a result",
        "plugin", "calls", "p50", "p99"
    );
    for (name, times) in latencies.iter() {
        let mut times = times.clone();
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "{name:<8} {:>6} {:>7.2} ms {:>7.2} ms  {:?}",
            times.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            samples.lock().unwrap()[name]
        );
    }

    // A misbehaving plugin: each failure is its call's alone.
    let rogue_program = load("rogue")?;
    // Its panic message and allocation failure go to its own captured
    // stderr, not the host's.
    let rogue_options = || GuestOptions {
        max_memory: Some(32 << 20),
        capture_output: true,
        ..GuestOptions::default()
    };
    let rogue = handle.add_plugin(&rogue_program, rogue_options())?;
    let ask = |guest, function: &str| handle.call(guest, function, b"".to_vec());
    let spin = ask(rogue, "spin")?;
    let timed_out = spin.wait(Duration::from_millis(100));
    spin.cancel();
    println!(
        "rogue spin: {} -> cancelled: {}",
        show(&timed_out),
        show(&spin.wait(WAIT))
    );
    println!("rogue panic: {}", show(&ask(rogue, "panic")?.wait(WAIT)));
    println!("rogue ping: {}", show(&ask(rogue, "ping")?.wait(WAIT)));
    let hog = ask(rogue, "hog")?.wait(WAIT);
    println!("rogue hog: {}", show(&hog));
    if matches!(hog, Err(CallError::GuestEnded(_))) {
        let again = handle.add_plugin(&rogue_program, rogue_options())?;
        println!(
            "rogue restarted, ping: {}",
            show(&ask(again, "ping")?.wait(WAIT))
        );
    }
    // The well-behaved plugins never noticed.
    let (_, text, ..) = instances[0];
    println!(
        "text plugin after all that: {}",
        show(
            &handle
                .call(text, "reverse", b"stressed".to_vec())?
                .wait(WAIT)
        )
    );
    pool.shutdown();
    Ok(())
}

/// A call's result as one line.
fn show(result: &Result<Vec<u8>, CallError>) -> String {
    match result {
        Ok(output) => format!("{:?}", String::from_utf8_lossy(output)),
        Err(CallError::GuestEnded(Some(exit))) => match &exit.error {
            Some(error) => format!("plugin ended: {error}"),
            None => format!("plugin ended with exit code {}", exit.code),
        },
        Err(error) => format!("error: {error}"),
    }
}

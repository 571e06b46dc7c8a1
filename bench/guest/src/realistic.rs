//! A realistic guest for `bench/memory.py`: a wasm module of about a
//! megabyte (regex and serde_json), whose sleepers each parse a JSON
//! document and search it with a regex before they sleep, so that each
//! green thread's instance has that module's tables and its code has run.
//!
//! With `cpu COUNT` it does that work COUNT times in a row instead and prints
//! the time per document as JSON: the CPU-bound figure the two execution
//! models are compared on (the compact model's Asyncify instrumentation
//! costs there).
//!
//! Usage: realistic hold COUNT | realistic cpu COUNT
use std::sync::OnceLock;
use std::time::Duration;

mod hold;

const DOC: &str = r#"{"from": "ada@example.com", "to": ["bob@example.com", "eve@example.org"],
  "subject": "green threads", "body": "write to carol@example.com or dave@example.net"}"#;

/// Compiled once, shared by every green thread.
static ADDRESS: OnceLock<regex::Regex> = OnceLock::new();

/// Parses `DOC` and counts the addresses in it.
fn work() {
    let doc: serde_json::Value = serde_json::from_str(DOC).expect("the document parses");
    let re = ADDRESS.get_or_init(|| regex::Regex::new(r"[\w.]+@[\w.]+\.\w+").expect("regex"));
    let found = re.find_iter(&doc.to_string()).count();
    assert_eq!(found, 5);
}

/// Does the work, then sleeps for an hour.
fn sleeper() {
    work();
    let _ = wasmlet::sleep(Duration::from_secs(3600));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    match args.get(1).map(String::as_str) {
        Some("hold") => {
            // The regex is compiled once, here: compiling it needs a deeper
            // stack than a sleeper's 8 KiB, and is no sleeper's cost.
            work();
            hold::hold(count, 8 * 1024, 2, sleeper)
        }
        Some("cpu") => {
            work();
            let began = std::time::Instant::now();
            for _ in 0..count {
                work();
            }
            let us = began.elapsed().as_secs_f64() * 1e6 / count as f64;
            println!("{{\"cpu_us_per_doc\": {us:.3}}}");
        }
        _ => {
            eprintln!("usage: realistic hold COUNT | realistic cpu COUNT");
            std::process::exit(2);
        }
    }
}

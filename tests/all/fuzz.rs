//! Fuzzing on stable Rust, seeded so that every failure replays:
//!
//! - **loading**: `Program::from_bytes` on random bytes, on mutations of a
//!   real guest (bit flips, overwritten and dropped bytes, truncation,
//!   spliced sections), and on structurally valid modules from `wasm-smith`
//!   that import a shared memory and the hub; it must return `Ok` or `Err`,
//!   never panic.
//! - **hub calls**: the `fuzz_calls` guest issues random hub calls with random
//!   arguments (ids, sizes, delays, timeouts, flags, pointers) next to a
//!   well-behaved guest on the same hub; the host must not panic or hang,
//!   and the neighbour must finish with its usual output.
//!
//! The default test run does a short pass of each. For a long run, give a
//! time budget per target:
//!
//! ```sh
//! WASMLET_FUZZ_SECONDS=600 cargo test --release --test all fuzz:: -- --nocapture
//! ```
//!
//! Each target prints what it did (executions, outcomes, crashes: always 0,
//! since a crash fails the test with the seed that found it).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use wasmlet_host::{Config, Hub, Program, Runtime};

/// The run's budget: `WASMLET_FUZZ_SECONDS`, or a short default pass.
fn budget(default_iterations: u64) -> (Option<Duration>, u64) {
    match std::env::var("WASMLET_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seconds) => (Some(Duration::from_secs(seconds)), u64::MAX),
        None => (None, default_iterations),
    }
}

/// xorshift64*, as in the guest: a seed replays its inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A mutation of `seed_module`: flips, overwrites, drops, truncates,
/// duplicates a range.
fn mutate(rng: &mut Rng, seed_module: &[u8]) -> Vec<u8> {
    let mut bytes = seed_module.to_vec();
    for _ in 0..=rng.below(8) {
        let len = bytes.len().max(1) as u64;
        let at = rng.below(len) as usize;
        match rng.below(6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 if at < bytes.len() => bytes[at] = rng.next() as u8,
            2 => {
                let end = (at + rng.below(64) as usize).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => bytes.truncate(at.max(8)),
            4 => {
                let end = (at + rng.below(256) as usize).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() as u64) as usize;
                bytes.splice(to..to, copy);
            }
            _ => {
                let n = rng.below(32) as usize;
                let extra = rng.bytes(n);
                bytes.splice(at..at, extra);
            }
        }
    }
    bytes
}

/// A module of what wasm-smith may import (a shared memory as `env.memory`,
/// and some hub functions) and one it must export (`_start`), so that
/// generated modules get past the loader's first checks.
fn smith_config() -> wasm_smith::Config {
    use wasm_encoder::{
        CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection,
        ImportSection, Instruction, MemoryType, Module, TypeSection, ValType,
    };
    let hub = wasmlet_host::HUB_MODULE;
    let mut imports_module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    types.ty().function([ValType::I64], [ValType::I32]);
    types
        .ty()
        .function([ValType::I64, ValType::I32], [ValType::I32]);
    types.ty().function([], [ValType::I32]);
    imports_module.section(&types);
    let mut imports = ImportSection::new();
    let memory = MemoryType {
        minimum: 1,
        maximum: Some(64),
        memory64: false,
        shared: true,
        page_size_log2: None,
    };
    imports.import("env", "memory", EntityType::Memory(memory));
    imports.import(hub, "sleep", EntityType::Function(1));
    imports.import(hub, "kill", EntityType::Function(2));
    imports.import(hub, "killed", EntityType::Function(3));
    imports_module.section(&imports);
    let mut exports_module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    exports_module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    exports_module.section(&functions);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0);
    exports_module.section(&exports);
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instruction(&Instruction::End);
    code.function(&body);
    exports_module.section(&code);
    wasm_smith::Config {
        available_imports: Some(imports_module.finish()),
        exports: Some(exports_module.finish()),
        threads_enabled: true,
        max_memories: 1,
        min_imports: 3,
        gc_enabled: false,
        exceptions_enabled: false,
        memory64_enabled: false,
        tail_call_enabled: false,
        relaxed_simd_enabled: false,
        reference_types_enabled: false,
        ..wasm_smith::Config::default()
    }
}

#[test]
fn loading_any_bytes_returns_an_error_or_a_program_never_a_panic() {
    let runtime = Runtime::new(Config::default()).expect("runtime");
    let real = std::fs::read(crate::support::guest("exits")).expect("a built guest");
    let (time, iterations) = budget(400);
    let start = Instant::now();
    let (mut runs, mut loaded, mut smith_loaded) = (0u64, 0u64, 0u64);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    while runs < iterations && time.is_none_or(|t| start.elapsed() < t) {
        let seed = rng.next() | 1;
        let mut case = Rng(seed);
        let (kind, bytes) = match case.below(4) {
            0 => {
                let n = case.below(256) as usize;
                let mut bytes = case.bytes(n);
                if case.below(2) == 0 {
                    bytes.splice(0..0, *b"\0asm\x01\0\0\0");
                }
                ("random", bytes)
            }
            1 => {
                let raw = case.bytes(4096);
                let mut u = Unstructured::new(&raw);
                match wasm_smith::Module::new(smith_config(), &mut u) {
                    Ok(module) => ("smith", module.to_bytes()),
                    Err(_) => ("random", raw),
                }
            }
            _ => ("mutated", mutate(&mut case, &real)),
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            Program::from_bytes(runtime.engine(), &bytes)
        }));
        match result {
            Ok(Ok(_)) => {
                loaded += 1;
                smith_loaded += u64::from(kind == "smith");
            }
            Ok(Err(e)) => {
                if kind == "smith" && std::env::var_os("WASMLET_FUZZ_DEBUG").is_some() {
                    println!("smith refused: {e:#}");
                }
            }
            Err(_) => panic!("loading panicked on a {kind} input (seed {seed:#x})"),
        }
        runs += 1;
    }
    println!(
        "load fuzz: {runs} inputs in {:.1} s, {loaded} loaded ({smith_loaded} from wasm-smith), \
         the rest refused; 0 panics",
        start.elapsed().as_secs_f64()
    );
    assert!(runs > 0);
}

#[test]
fn random_hub_calls_never_hurt_the_host_or_a_neighbour() {
    let (time, iterations) = budget(12);
    let fuzz = crate::support::guest("fuzz_calls");
    let neighbour = crate::support::guest("spawn_order");
    let start = Instant::now();
    let mut runs = 0u64;
    let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
    while runs < iterations && time.is_none_or(|t| start.elapsed() < t) {
        let seed = runs + 1;
        let (fuzz, neighbour) = (fuzz.clone(), neighbour.clone());
        let (done, finished) = mpsc::channel();
        // On a thread of its own, so that a hang is reported, not waited out.
        std::thread::spawn(move || {
            let runtime = Runtime::new(Config::default()).expect("runtime");
            let fuzz = Program::from_file(runtime.engine(), fuzz).expect("load");
            let neighbour = Program::from_file(runtime.engine(), neighbour).expect("load");
            let mut hub = Hub::new(&runtime);
            let seed_arg = seed.to_string();
            let a = hub
                .add_guest(&fuzz, crate::support::options(&[&seed_arg, "300"]))
                .expect("add");
            let b = hub
                .add_guest(&neighbour, crate::support::options(&[]))
                .expect("add");
            hub.run();
            let (a, b) = (
                crate::support::finished(&hub, a),
                crate::support::finished(&hub, b),
            );
            let _ = done.send((a.code, a.error, b.code, b.stdout));
        });
        let (code, error, neighbour_code, neighbour_out) = finished
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("seed {seed}: the hub hung or the host panicked"));
        assert_eq!(neighbour_code, 0, "seed {seed}: the neighbour failed");
        assert!(
            neighbour_out.starts_with("spawned all, run 0"),
            "seed {seed}: {neighbour_out}"
        );
        let outcome = match (code, error) {
            (0, None) => "ended normally".to_string(),
            (code, Some(e)) => format!("exit {code}: {}", e.lines().next().unwrap_or("")),
            (code, None) => format!("exit {code}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
        runs += 1;
    }
    println!(
        "hub-call fuzz: {runs} guests of 300 random calls each in {:.1} s; 0 panics, 0 hangs",
        start.elapsed().as_secs_f64()
    );
    for (outcome, n) in outcomes {
        println!("  {n:>5} × {outcome}");
    }
    assert!(runs > 0);
}

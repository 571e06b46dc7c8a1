//! # wasmlet host
//!
//! Runs wasmlet guests: WebAssembly programs (built for
//! `wasm32-wasip1-threads` against the wasmlet guest SDK) whose green threads
//! the [`Hub`] schedules cooperatively, each on its own fiber stack.
//!
//! ```no_run
//! use wasmlet_host::{Config, GuestOptions, Hub, Program, Runtime};
//!
//! let runtime = Runtime::new(Config::default())?;
//! let program = Program::from_file(runtime.engine(), "hello.wasm")?;
//! let mut hub = Hub::new(&runtime);
//! let guest = hub.add_guest(&program, GuestOptions::default())?;
//! hub.run();
//! let exit = hub.exit(guest).expect("run() ends every guest");
//! std::process::exit(exit.code);
//! # Ok::<(), wasmtime::Error>(())
//! ```
//!
//! ## Layout
//!
//! The folders are the architecture, bottom up: no module uses one listed
//! after it (a test below checks it, between the top-level modules and
//! between the modules inside each folder).
//!
//! ```text
//! abi.rs, clock.rs, config.rs   the WIT types, the hub's clock, the runtime's settings
//! scheduler/       the scheduling rules, free of wasmtime: run queues, timers,
//!                  waits, kills (typed GuestKey/ThreadKey keys; a thread's Life)
//! io/              host descriptors, never blocking the hub: poller, stdio,
//!                  net_sockets, net_policy, resolver, descriptor_budget
//! guest/           a guest: its options and exit (mod.rs), program and rewrite
//!                  (loading and rewriting modules), module_cache (compiled
//!                  modules on disk), asyncify (the compact model's
//!                  transform), store_data, unwind (the
//!                  compact model's Asyncify state), shadow_stack (its green
//!                  threads' stacks in its memory), cpu_clock
//! execution/       how a green thread executes: the Execution seam (mod.rs) and
//!                  its two models, fibers (a store + instance per green thread,
//!                  on workers) and compact (one instance, saved stacks);
//!                  fiber_stack, stack_charge, preemption;
//!                  lifecycle (a green thread's call), ending (what its end
//!                  means: a pure function), reaper (drops what ends, off the hub)
//! call.rs, control.rs   plugin calls (PendingCall) and the HubHandle's messages
//! hub_state/       what host functions share with the run loop, split by job;
//!                  its fields are private: answers (what host functions ask),
//!                  turns (what the run loop asks), guest_record, thread_life,
//!                  spawning, waits, descriptors, calls, limits, context
//! host_functions/  what guests import: host_call (the toolkit: run as the
//!                  calling green thread, wait green), hub_imports, net_imports,
//!                  wasi_overrides, wasi_poll; guest_memory; one add_to_linker
//! runtime.rs       the Runtime: the engine, the linker, the epoch ticker
//! hub/             the Hub: the embedding API (mod.rs) and the run loop
//! pool.rs          the HubPool: guests on several hubs
//! remote/          calling hosts over NATS (feature `nats`): the Client
//!                  (mod.rs) and the protocol hosts and clients share
//! serve/           `wasmlet serve` (feature `serve`): a manifest's plugins on a
//!                  pool (mod.rs: the Service), over HTTP (http) and NATS
//!                  (nats), counted (metrics), from a TOML manifest (manifest)
//! ```

mod abi;
mod call;
mod clock;
mod config;
mod control;
mod execution;
pub mod guest;
mod host_functions;
mod hub;
mod hub_state;
mod io;
mod pool;
#[cfg(feature = "nats")]
pub mod remote;
pub mod runtime;
mod scheduler;
#[cfg(feature = "serve")]
pub mod serve;

pub use abi::HUB_MODULE;
pub use call::{CallError, CallResult, PendingCall};
pub use config::Config;
pub use control::HubHandle;
pub use guest::program::Program;
pub use guest::store_data::ThreadData;
pub use guest::GuestId;
pub use guest::{GuestError, GuestExit, GuestOptions, GuestUsage, Threads};
pub use host_functions::guest_memory::GuestMemory;
pub use host_functions::net_imports::NET_MODULE;
pub use hub::Hub;
pub use io::net_policy;
pub use io::net_policy::{ConnectRule, NetPolicy};
pub use io::stdio::StderrLog;
pub use io::tls;
pub use pool::{HubPool, PoolGuest, PoolHandle};
pub use runtime::{Runtime, RuntimeBuilder};

#[cfg(test)]
mod module_graph {
    //! The crate's modules form a DAG, at two levels: between the top-level
    //! modules (folders count as one), and between the modules inside each
    //! folder. Every `crate::a::b` a file's code names is an edge to the
    //! deepest module that path names; a circle fails.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// The module path of a file under `src/` (`io/poller.rs` is
    /// `["io", "poller"]`, `guest/mod.rs` is `["guest"]`); None for the crate
    /// root and the binaries.
    fn module_of(path: &Path, src: &Path) -> Option<Vec<String>> {
        let relative = path.strip_prefix(src).ok()?;
        let mut names: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_str().unwrap().to_string())
            .collect();
        let last = names.pop()?;
        if names.first().is_some_and(|n| n == "bin") || last == "lib.rs" {
            return None;
        }
        if last != "mod.rs" {
            names.push(last.strip_suffix(".rs")?.to_string());
        }
        Some(names)
    }

    /// The module `crate::<path>` names: the longest prefix of it that is a
    /// module file or folder.
    fn module_named(src: &Path, path: &[&str]) -> Vec<String> {
        let mut module = Vec::new();
        let mut dir = src.to_path_buf();
        for name in path {
            let is_module = dir.join(format!("{name}.rs")).exists() || dir.join(name).is_dir();
            if !is_module {
                break;
            }
            module.push(name.to_string());
            dir = dir.join(name);
        }
        module
    }

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every (user, used) pair of module paths, from the code of every file.
    fn edges(src: &Path) -> Vec<(Vec<String>, Vec<String>)> {
        let mut paths = Vec::new();
        files(src, &mut paths);
        let mut edges = Vec::new();
        for path in &paths {
            let Some(from) = module_of(path, src) else {
                continue;
            };
            // Code only: a doc comment may name any module.
            let text: String = std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (at, _) in text.match_indices("crate::") {
                let named: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let segments: Vec<&str> = named.split("::").filter(|s| !s.is_empty()).collect();
                let to = module_named(src, &segments);
                if !to.is_empty() {
                    edges.push((from.clone(), to));
                }
            }
        }
        edges
    }

    /// Panics with the circle if `uses` has one.
    fn assert_no_circle(level: &str, uses: &BTreeMap<String, BTreeSet<String>>) {
        fn visit(
            module: &str,
            uses: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            level: &str,
        ) {
            if done.contains(module) {
                return;
            }
            if let Some(at) = path.iter().position(|m| m == module) {
                panic!(
                    "a module circle {level}: {} -> {module}",
                    path[at..].join(" -> ")
                );
            }
            path.push(module.to_string());
            for next in uses.get(module).into_iter().flatten() {
                visit(next, uses, path, done, level);
            }
            path.pop();
            done.insert(module.to_string());
        }
        let mut done = BTreeSet::new();
        for module in uses.keys() {
            visit(module, uses, &mut Vec::new(), &mut done, level);
        }
    }

    #[test]
    fn no_module_uses_one_that_uses_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let edges = edges(&src);
        let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut inside: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for (from, to) in &edges {
            if from[0] != to[0] {
                top.entry(from[0].clone())
                    .or_default()
                    .insert(to[0].clone());
            } else if from.len() > 1 && to.len() > 1 && from[1] != to[1] {
                // Two modules of one folder (its `mod.rs`, the folder's
                // face, may use its children and they it).
                inside
                    .entry(from[0].clone())
                    .or_default()
                    .entry(from[1].clone())
                    .or_default()
                    .insert(to[1].clone());
            }
        }
        assert_no_circle("between top-level modules", &top);
        for (folder, uses) in &inside {
            assert_no_circle(&format!("inside {folder}/"), uses);
        }
        assert!(top.len() > 10, "the modules were found: {top:?}");
        assert!(
            inside.contains_key("io") && inside.contains_key("execution"),
            "the folders' inner edges were found: {inside:?}"
        );
    }

    /// The module map in the crate's doc lists the folders in an order that
    /// the uses keep: no module uses one listed after it.
    #[test]
    fn the_module_map_is_bottom_up() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let order = [
            "abi",
            "clock",
            "config",
            "scheduler",
            "io",
            "guest",
            "execution",
            "call",
            "control",
            "hub_state",
            "host_functions",
            "runtime",
            "hub",
            "pool",
            "remote",
            "serve",
        ];
        let rank = |m: &str| order.iter().position(|o| *o == m);
        for (from, to) in edges(&src) {
            let (Some(a), Some(b)) = (rank(&from[0]), rank(&to[0])) else {
                panic!("{} or {} is not in the module map", from[0], to[0]);
            };
            assert!(
                a >= b,
                "{} uses {}, listed after it",
                from.join("::"),
                to.join("::")
            );
        }
    }

    /// The execution model stays behind its seam (`execution`): only the
    /// place that picks a guest's model (`Hub::add_guest`) names one, and
    /// nothing outside `execution/` knows what a model runs a call on.
    #[test]
    fn only_the_execution_seam_is_seen_outside_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        files(&src, &mut paths);
        let mut pickers = Vec::new();
        for path in &paths {
            let relative = path.strip_prefix(&src).unwrap();
            if relative.starts_with("execution") || relative.ends_with("lib.rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                assert!(
                    !line.contains("Worker") && !line.contains("worker::"),
                    "{}: names a model's internals: {line}",
                    relative.display()
                );
                if line.contains("Fibers::new") || line.contains("Compact::new") {
                    pickers.push(relative.display().to_string());
                }
            }
        }
        pickers.dedup();
        assert_eq!(pickers, ["hub/mod.rs"], "only Hub::add_guest picks a model");
    }
}

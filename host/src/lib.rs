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
//! Module map, bottom up (no module uses one above it): `abi` (the WIT
//! types), `scheduler` (the scheduling rules, free of wasmtime, with typed
//! `GuestKey`/`ThreadKey` keys and a thread's `Life` as one enum), `config`,
//! `clock`, [`guest`] (a guest's options and its exit), [`program`] (loading
//! and checking modules) with `rewrite` (the loader's rewrite: stack checks,
//! entry points, green futexes), `shadow_stack` and `fiber_stack` (green
//! threads' stacks), `store_data`, `stack_charge` (what a fiber stack costs
//! its guest), `execution` (the seam for how a green thread executes:
//! the `Execution` trait, and `fibers`, a store + instance per green
//! thread, on `worker`s), `lifecycle` (a green thread's call and its end), `ending`
//! (what a call's end means for the thread and its guest: a pure function), `call` (the host's calls of plugin functions),
//! `control` ([`HubHandle`]), `descriptor_budget` (the process's descriptors
//! shared between guests), `poller` and `stdio` (waiting for host
//! descriptors), `resolver` (name lookups, shared fairly between guests),
//! `preemption` (when a running green thread is paused for other guests),
//! `cpu_clock` (what a guest's CPU time is measured on), `reaper` (drops
//! what ended green threads leave, off the hub), `hub_state` (what host
//! functions share with the run loop: the state, split by job into
//! `context`, `guest_record`, `thread_life`, `spawning`, `waits`, `io`,
//! `calls`, `limits`, `answers` (what host functions ask of it) and `turns`
//! (what the run loop asks of it); its fields are private),
//! `guest_memory`, `poll`, `host_call` (how a host function waits as its
//! green thread), `host_functions`, `net_functions` and `wasi_overrides` (the
//! host side of `wit/hub.wit` and of some WASI calls), [`runtime`], `hub`
//! ([`Hub`]: the embedding API and the run loop) and `pool` ([`HubPool`]).

mod abi;
mod call;
mod clock;
mod config;
mod control;
mod cpu_clock;
mod descriptor_budget;
mod ending;
mod execution;
mod fiber_stack;
pub mod guest;
mod guest_memory;
mod host_call;
mod host_functions;
mod hub;
mod hub_state;
mod lifecycle;
mod net_functions;
pub mod net_policy;
mod net_sockets;
mod poll;
mod poller;
mod pool;
mod preemption;
pub mod program;
mod reaper;
mod resolver;
mod rewrite;
pub mod runtime;
mod scheduler;
mod shadow_stack;
mod stack_charge;
mod stdio;
mod store_data;
mod wasi_overrides;

pub use abi::HUB_MODULE;
pub use call::{CallError, CallResult, PendingCall};
pub use config::Config;
pub use control::HubHandle;
pub use guest::GuestId;
pub use guest::{GuestError, GuestExit, GuestOptions, GuestUsage};
pub use guest_memory::GuestMemory;
pub use hub::Hub;
pub use net_functions::NET_MODULE;
pub use net_policy::{ConnectRule, NetPolicy};
pub use pool::{HubPool, PoolGuest, PoolHandle};
pub use program::Program;
pub use runtime::{Runtime, RuntimeBuilder};
pub use stdio::StderrLog;
pub use store_data::ThreadData;

#[cfg(test)]
mod module_graph {
    //! The crate's modules form a DAG (the module map above is bottom up):
    //! every `crate::module` a file's code names is an edge, and a circle
    //! fails.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The top-level module a file under `src/` belongs to.
    fn module_of(path: &Path, src: &Path) -> Option<String> {
        let relative = path.strip_prefix(src).ok()?;
        let first = relative.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        (!matches!(name, "lib" | "bin")).then(|| name.to_string())
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_module_uses_one_that_uses_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        files(&src, &mut paths);
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in &paths {
            let Some(from) = module_of(path, &src) else {
                continue;
            };
            // Code only: a doc comment may name any module.
            let text: String = std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let edges = uses.entry(from.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let name: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let is_module = src.join(format!("{name}.rs")).exists() || src.join(&name).is_dir();
                if is_module && name != from {
                    edges.insert(name);
                }
            }
        }
        // Depth-first search for a back edge.
        fn visit(
            module: &str,
            uses: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) {
            if done.contains(module) {
                return;
            }
            if let Some(at) = path.iter().position(|m| m == module) {
                panic!("a module circle: {} -> {module}", path[at..].join(" -> "));
            }
            path.push(module.to_string());
            for next in uses.get(module).into_iter().flatten() {
                visit(next, uses, path, done);
            }
            path.pop();
            done.insert(module.to_string());
        }
        let mut done = BTreeSet::new();
        for module in uses.keys() {
            visit(module, &uses, &mut Vec::new(), &mut done);
        }
        assert!(uses.len() > 20, "the modules were found: {uses:?}");
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
                if line.contains("Fibers") {
                    pickers.push(relative.display().to_string());
                }
            }
        }
        pickers.dedup();
        assert_eq!(pickers, ["hub/mod.rs"], "only Hub::add_guest picks a model");
    }
}

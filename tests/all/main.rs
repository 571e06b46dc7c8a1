//! The end-to-end tests: one test binary (as wasmtime's `tests/all`), so
//! wasmtime is linked once, not once per topic. Each module is one topic;
//! `support` builds the guests and runs them.
//!
//! Heavy cases (a million green threads, 100 M links, the benchmark suite's
//! quick run) and the eventlet twins are `#[ignore]`d: `.ci/run` (the
//! README's test command) runs them with `--ignored`.

mod support;

mod bench;
mod cli;
mod companions;
mod contract;
mod embedding;
mod examples;
mod fuzz;
mod greenthread;
mod host_functions;
mod http;
mod isolation;
mod nats;
mod net;
mod new_project;
mod plugins;
mod serve;
mod tls;

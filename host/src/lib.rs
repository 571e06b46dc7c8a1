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
//! Module map: [`program`] loads and checks `.wasm` files; [`runtime`] holds
//! the engine and linker; `hub` is the scheduler; `host_functions` is the
//! host side of `wit/hub.wit`; `shadow_stack` gives each green thread its
//! stack and TLS block in guest memory; [`guest`] holds a guest's options and
//! its exit.

mod abi;
mod clock;
mod config;
mod control;
mod fiber_stack;
pub mod guest;
mod host_functions;
mod hub;
mod hub_state;
mod lifecycle;
mod poll;
pub mod program;
mod rewrite;
pub mod runtime;
mod scheduler;
mod shadow_stack;
mod store_data;
mod worker;

pub use config::Config;
pub use control::HubHandle;
pub use guest::{GuestError, GuestExit, GuestOptions};
pub use host_functions::HUB_MODULE;
pub use hub::{GuestId, Hub};
pub use program::Program;
pub use runtime::Runtime;

//! # wasmlet guest SDK
//!
//! eventlet's `greenthread` API for Rust programs that run on the wasmlet hub.
//! Build your program with `cargo build --release --target wasm32-wasip1-threads`
//! and run it with `wasmlet run program.wasm`.
//!
//! Every green thread runs on its own stack; the host's hub switches between
//! them only where a green thread yields: [`sleep`], [`GreenThread::wait`],
//! [`kill`], and the blocking calls built on them. Between two yields a green
//! thread runs alone, so plain `Rc<RefCell<_>>` state shared between green
//! threads needs no locks.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let worker = wasmlet::spawn(|| -> Result<u32, wasmlet::Interrupted> {
//!     wasmlet::sleep(Duration::from_millis(10))?;
//!     Ok(6 * 7)
//! });
//! assert_eq!(worker.wait().unwrap().unwrap(), 42);
//! ```
//!
//! Around it are the eventlet modules that go with `greenthread`: [`Event`],
//! [`Queue`], [`Semaphore`] / [`BoundedSemaphore`], [`GreenPool`] /
//! [`GreenPile`] and [`Timeout`]. Their handles are cheap clones of one shared
//! object, to be moved into the closures of the green threads that share it;
//! blocked green threads are served first come, first served.
//!
//! A [`Timeout`] or a kill cannot raise into a green thread the way
//! eventlet's do (wasm has no unwinding here): the blocking call it
//! interrupts returns [`Interrupted`] in its `Err` instead, so every blocking
//! call ([`sleep`] too) returns a `Result`, for the caller to return with
//! `?`, dropping what it owns.
//!
//! Ordinary std code works unchanged: `std::thread` runs as green threads
//! of the guest, and std's locks, condition variables, channels, `join`,
//! `thread::scope`, `thread::sleep`, `yield_now` and reads of stdin wait or
//! yield green, parking only their own green thread.
//!
//! ## Rules of the road
//! - A kill is an error to return with: a killed green thread's blocking
//!   calls return [`Interrupted::Killed`] (the one it is suspended in, and
//!   every later one, at once); return with `?`, and its values are
//!   dropped. One that ignores the kill (16 more blocking calls) is ended at
//!   the 17th, its values leaked. A green thread that kills itself
//!   (`kill(getcurrent())`) goes on the same way: the kill returns, and its
//!   next blocking call reports it.
//! - A std::thread cannot be killed, and a panic in one aborts the guest.
//! - The host may limit green threads and memory: [`spawn`] traps the caller
//!   past a limit, [`try_spawn`] returns the refusal.
//! - A shadow-stack overflow traps the green thread at the overflowing frame
//!   (`Trapped("shadow stack overflow ...")`); give deep recursion a larger
//!   [`Builder::stack_size`].

mod error;
mod event;
mod greenthread;
#[cfg(feature = "http")]
pub mod http;
pub mod net;
pub mod plugin;
mod pool;
mod queue;
mod scheduled_call;
mod semaphore;
mod task;
mod thread_keys;
mod timeout;
mod waiter;

pub use error::{ErrorObject, GreenThreadError, Interrupted, SpawnError};
pub use event::{AlreadySent, Event, EventError, NeverSent};
pub use greenthread::{
    getcurrent, hub_exceptions, kill, kill_with, sleep, spawn, spawn_after, spawn_after_local,
    spawn_n, try_spawn, Builder, GreenThread, Link, Thread,
};
pub use pool::{GreenPile, GreenPool, Imap, StarCall, WaitallError};
pub use queue::{GetError, PutError, Queue, TaskDoneTooOften};
pub use scheduled_call::{schedule_call_global, schedule_call_local, ScheduledCall};
pub use semaphore::{
    BoundedSemaphore, CappedSemaphore, ReleasedTooOften, Semaphore, SemaphoreGuard,
};
pub use timeout::{try_with_timeout, with_timeout, TimedOut, Timeout};

/// The hub's imports, generated from `wit/hub.wit`: the one contract
/// between host and guest.
mod abi {
    wit_bindgen::generate!({ path: "wit", world: "guest" });
}

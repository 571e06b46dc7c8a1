//! How a green thread executes on wasm: the seam between the hub and an
//! execution model.
//!
//! The scheduler and the host functions know a green thread's execution only
//! as a [`ThreadFuture`]: a call the hub polls until it suspends (a host
//! function returned `Pending`, or preemption paused it) or ends. How that
//! call runs the guest's code is the execution model's business, behind
//! [`Execution`]:
//!
//! ```text
//!   hub_state ── call(data, entry, stack) ──► Execution ──► ThreadFuture
//!       ▲                                                     │ polled by the hub
//!       └── returned(leftover) ◄── (result, Some(leftover)) ◄─┘ when it returns
//! ```
//!
//! What stays outside every model, shared by all: the guest's memory and the
//! green threads' shadow stacks and TLS blocks in it (`shadow_stack`), its
//! WASI context, and the accounting of the native stack a call runs on
//! (`stack_charge`, through the [`StackUse`] a model hands out with each
//! call). A model must keep the hub's rule that, while one green thread of a
//! guest is suspended inside a call, no other green thread of that guest
//! runs in the same wasmtime call.
//!
//! Two models are built: [`Fibers`], each green thread its own `Store` +
//! `Instance` on its own wasmtime fiber, and [`Compact`], all of a guest's
//! green threads in one instance, each a saved stack in guest memory
//! (`GuestOptions::threads` picks one). The scheduler, the host functions
//! and `hub_state` are the same for both.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use wasmtime::{Result, StoreContextMut, UpdateDeadline};

use crate::execution::stack_charge::StackUse;
use crate::guest::store_data::ThreadData;
use crate::scheduler::{Entry, ThreadKey};

mod compact;
pub(crate) mod ending;
pub(crate) mod fiber_stack;
mod fibers;
pub(crate) mod lifecycle;
pub(crate) mod preemption;
pub(crate) mod reaper;
pub(crate) mod stack_charge;
mod worker;

pub(crate) use compact::Compact;
pub(crate) use fibers::Fibers;
pub(crate) use worker::STD_THREAD_START;

/// A green thread's wasm call, polled by the hub on its own thread: how it
/// ended, and what it ran on if that can run the guest's next green thread.
pub(crate) type ThreadFuture = Pin<Box<dyn Future<Output = CallOutcome> + Send>>;

/// What a green thread's call gives back when it ends: its result, and, if it
/// returned normally, what it ran on (a model's reusable unit: a worker for
/// [`Fibers`]), for [`Execution::returned`].
pub(crate) type CallOutcome = (Result<()>, Option<Leftover>);

/// What a call ran on, handed back to the model that made the call (only it
/// knows the type). Dropped off the hub, by the reaper, if the model does not
/// keep it.
pub(crate) type Leftover = Box<dyn Any + Send>;

/// What a store does at each epoch tick while wasm runs: pause (yield to
/// the hub) or go on (see `crate::execution::preemption`).
pub(crate) type Preempt = fn(StoreContextMut<'_, ThreadData>) -> Result<UpdateDeadline>;

/// Where a green thread's stacks are in guest memory: the shadow stack's top
/// and bottom, and its TLS block. Main's is the module's own shadow stack
/// (bottom and TLS base 0); a `std::thread`'s is all zeros (wasi-libc
/// placed it, and the hub does not know its bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackBounds {
    /// The initial stack pointer.
    pub top: u32,
    /// The lowest address the shadow stack may use.
    pub bottom: u32,
    /// The green thread's TLS block.
    pub tls_base: u32,
}

/// An execution model: how one guest's green threads run its code. One per
/// live guest, owned by the hub's record of it; used on the hub's thread,
/// dropped on the reaper's.
pub(crate) trait Execution: Send {
    /// The call that runs `entry` as the green thread `data` names, on
    /// `stack`, paused at epoch ticks by `preempt` (if set); and the native
    /// stack it runs on, to be charged to the guest.
    fn call(
        &mut self,
        data: ThreadData,
        entry: Entry,
        stack: StackBounds,
        preempt: Option<Preempt>,
    ) -> (ThreadFuture, StackUse);

    /// A call returned normally and handed back `leftover`; `fiber` is the
    /// use of its native stack, finished (its charge already ended). Keeps it
    /// for the guest's next green threads while fewer than `keep_at_most`
    /// are kept, else gives it back to be dropped off the hub.
    fn returned(
        &mut self,
        leftover: Leftover,
        fiber: StackUse,
        keep_at_most: usize,
    ) -> Option<Leftover>;

    /// One kept leftover if more than `keep` are kept (to be dropped), else
    /// None.
    fn surplus(&mut self, keep: usize) -> Option<Leftover>;

    /// How many leftovers it keeps (each a store and an instance for
    /// [`Fibers`]: the report's spare instances).
    fn kept(&self) -> usize;

    /// Whether the guest's module exports `name`.
    fn exports(&self, name: &str) -> bool;

    /// Bytes of guest memory a `std::thread` needs from the hub besides
    /// the stack wasi-libc gave it (0: none). The hub carves them as the
    /// thread's stack slot, and its call gets them as its [`StackBounds`].
    fn std_thread_room(&self) -> u32 {
        0
    }

    /// Host memory a started green thread of this model is charged (see
    /// `GuestOptions::max_host_memory`).
    fn host_bytes_per_thread(&self) -> u64 {
        crate::guest::HOST_BYTES_PER_GREEN_THREAD
    }

    /// Whether the call of green thread `thread`, which ends while its guest
    /// lives on, is to be dropped on the hub at once rather than off it (the hub's
    /// default: a call's own store is slow to drop), asked just before.
    fn drops_call_in_place(&self, _thread: ThreadKey) -> bool {
        false
    }
}

/// A future that is pending once, then ready: how a host function suspends
/// its green thread after recording why it waits, and how a compact call
/// waits between its green thread's unwind and the hub's next poll.
#[derive(Default)]
pub(crate) struct Suspend(bool);

impl Future for Suspend {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            std::task::Poll::Pending
        }
    }
}

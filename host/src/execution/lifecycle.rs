//! A green thread's life on wasm: the call that runs it (made by its guest's
//! execution model, see `crate::execution`), and what its end means.
//!
//! ```text
//!   spawn ──► queued ──► Run: wasmlet-run(task) ──returns──► what it ran on kept
//!                 │             │
//!                 │             ├─ suspends (hub call) ──► resumed later
//!                 │             └─ traps / is killed ──► its call dropped
//!                 │                                         │
//!                 └─ killed before it ran ──────────────────┴─► Finish:
//!                        wasmlet-finish(task, how, error) in a new call,
//!                        as the same green thread: records the result, runs
//!                        the links
//! ```

use std::sync::Arc;

use wasmtime::{format_err, Result, Trap, WasmBacktrace};

use crate::abi::Ending;
use crate::execution::stack_charge::StackUse;
use crate::execution::{Execution, Preempt, StackBounds, ThreadFuture};
use crate::guest::program::Layout;
use crate::guest::shadow_stack::{ShadowStacks, StackSlot};
use crate::guest::store_data::{ThreadData, WasiBox};
use crate::scheduler::{Entry, GuestKey, TaskCall, ThreadKey};

/// What the hub keeps with each green thread's scheduling record.
#[derive(Default)]
pub(crate) struct ThreadPayload {
    /// Its suspended call, while it has one.
    pub future: Option<ThreadFuture>,
    /// Its shadow stack and TLS block, from its first run on (None for
    /// main and std threads, which have the guest's own).
    pub stack: Option<StackSlot>,
    /// The shadow stack size it was spawned with (0: the default).
    pub stack_size: u32,
    /// The fiber stack its store runs on (see `crate::execution::stack_charge`).
    pub fiber: StackUse,
}

/// The wasm side of a guest while it runs.
pub(crate) struct LiveGuest {
    /// How its green threads run (see `crate::execution`); it holds their
    /// kept stores, so it drops before `wasi`.
    pub exec: Box<dyn Execution>,
    pub layout: Arc<Layout>,
    pub stacks: ShadowStacks,
    /// Every store of the guest points at it, so it is the last field:
    /// fields drop in declaration order, the kept stores first.
    pub wasi: WasiBox,
}

/// The call that runs `entry` for green thread `thread` of guest `guest`
/// (`stack` is its slot; every spawned green thread has one), and the fiber
/// stack it runs on.
///
/// # Errors
/// If a green thread of the SDK's has no stack slot (a bug of the hub's).
pub(crate) fn new_call(
    live: &mut LiveGuest,
    guest: GuestKey,
    thread: ThreadKey,
    entry: Entry,
    stack: Option<StackSlot>,
    preempt: Option<Preempt>,
) -> Result<(ThreadFuture, StackUse)> {
    let stack = match (entry, stack) {
        (Entry::Main, _) => StackBounds {
            top: live.layout.main_stack_top,
            bottom: 0,
            tls_base: 0,
        },
        // A region the model asked for (`Execution::std_thread_room`).
        (Entry::Task(TaskCall::StdThread { .. }), Some(slot)) => StackBounds {
            top: live.stacks.stack_top(&slot),
            bottom: live.stacks.stack_bottom(&slot),
            tls_base: 0,
        },
        // Its stack and TLS are the guest's own (see `TaskCall::StdThread`).
        (Entry::Task(TaskCall::StdThread { .. }), None) => StackBounds {
            top: 0,
            bottom: 0,
            tls_base: 0,
        },
        (Entry::Task(_), Some(slot)) => StackBounds {
            top: live.stacks.stack_top(&slot),
            bottom: live.stacks.stack_bottom(&slot),
            tls_base: slot.tls_base(),
        },
        (Entry::Task(_), None) => {
            return Err(format_err!(
                "green thread (key {}) has no stack slot",
                thread.0
            ))
        }
    };
    let data = ThreadData::new(guest, thread, live.wasi.ptr());
    Ok(live.exec.call(data, entry, stack, preempt))
}

/// How a green thread's call ended.
pub(crate) enum CallEnd {
    /// It returned.
    Returned,
    /// The guest called `exit(code)`.
    Exit(i32),
    /// It trapped, or a hub function refused it (`trap` false).
    Failed {
        how: Ending,
        trap: bool,
        error: wasmtime::Error,
    },
}

impl CallEnd {
    /// Classifies a call's result; `overflow_func` is the guest's stack
    /// check function (see `rewrite`), in which a shadow-stack overflow
    /// traps.
    pub(crate) fn of(result: Result<()>, overflow_func: Option<u32>) -> CallEnd {
        let error = match result {
            Ok(()) => return CallEnd::Returned,
            Err(error) => error,
        };
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return CallEnd::Exit(exit.0);
        }
        let trap = error.downcast_ref::<Trap>();
        let in_overflow_check = || {
            let frame = error
                .downcast_ref::<WasmBacktrace>()
                .and_then(|trace| trace.frames().first());
            overflow_func.is_some() && frame.map(|f| f.func_index()) == overflow_func
        };
        let how = match trap {
            Some(Trap::UnreachableCodeReached) if in_overflow_check() => {
                Ending::TrapShadowStackOverflow
            }
            Some(Trap::UnreachableCodeReached) => Ending::TrapUnreachable,
            Some(Trap::StackOverflow) => Ending::TrapStackOverflow,
            Some(Trap::MemoryOutOfBounds) => Ending::TrapMemoryOutOfBounds,
            Some(Trap::IntegerDivisionByZero) => Ending::TrapIntegerDivideByZero,
            Some(Trap::IntegerOverflow) => Ending::TrapIntegerOverflow,
            Some(Trap::BadConversionToInteger) => Ending::TrapBadConversion,
            Some(Trap::IndirectCallToNull | Trap::BadSignature) => Ending::TrapIndirectCall,
            _ => Ending::TrapOther,
        };
        CallEnd::Failed {
            how,
            trap: trap.is_some(),
            error,
        }
    }
}

//! A green thread's life on wasm: the call that runs it (on a reused or new
//! [`Worker`], or the main instance), and what its end means.
//!
//! ```text
//!   spawn ──► queued ──► Run: wasmlet-run(task) ──returns──► worker kept (spare)
//!                 │             │
//!                 │             ├─ suspends (hub call) ──► resumed later
//!                 │             └─ traps / is killed ──► instance dropped
//!                 │                                         │
//!                 └─ killed before it ran ──────────────────┴─► Finish:
//!                        wasmlet-finish(task, how, error) on another instance,
//!                        as the same green thread: records the result, runs
//!                        the links
//! ```

use std::sync::Arc;

use wasmtime::{format_err, InstancePre, Result, Trap, WasmBacktrace};

use crate::abi::Ending;
use crate::program::Layout;
use crate::scheduler::{Entry, TaskCall};
use crate::shadow_stack::{ShadowStacks, Slot};
use crate::stack_charge::{StackUse, StackWatch};
use crate::store_data::{ThreadData, WasiBox};
use crate::worker::{run_main, Preempt, Spares, Stack, ThreadFuture, Worker};

/// What the hub keeps with each green thread's scheduling record.
#[derive(Default)]
pub(crate) struct ThreadSlot {
    /// Its suspended call, while it has one.
    pub future: Option<ThreadFuture>,
    /// Its shadow stack and TLS block, from its first run on (None for
    /// main and std threads, which have the guest's own).
    pub stack: Option<Slot>,
    /// The shadow stack size it was spawned with (0: the default).
    pub stack_size: u32,
    /// The fiber stack its store runs on (see `crate::stack_charge`).
    pub fiber: StackUse,
}

/// The wasm side of a guest while it runs.
pub(crate) struct LiveGuest {
    pub pre: InstancePre<ThreadData>,
    pub layout: Arc<Layout>,
    pub stacks: ShadowStacks,
    /// Workers left by green threads that ended normally, for the next ones.
    pub spare: Spares,
    /// Every store of the guest points at it, so it is the last field:
    /// fields drop in declaration order, the spare workers' stores first.
    pub wasi: WasiBox,
}

/// The call that runs `entry` for green thread `thread` of guest `guest`
/// (`stack` is its slot; every spawned green thread has one), and the fiber
/// stack it runs on if it reuses a spare worker's.
pub(crate) fn new_call(
    live: &mut LiveGuest,
    guest: usize,
    thread: usize,
    entry: Entry,
    stack: Option<Slot>,
    preempt: Option<Preempt>,
) -> Result<(ThreadFuture, StackUse)> {
    let data = ThreadData::new(guest, thread, live.wasi.ptr());
    let call = match entry {
        Entry::Main => {
            let top = live.layout.main_stack_top;
            let watch = StackWatch::new();
            let main = run_main(live.pre.clone(), data, preempt, top, watch.clone());
            return Ok((Box::pin(main), StackUse::of(watch)));
        }
        Entry::Task(call) => call,
    };
    let stack = match (call, stack) {
        // Its stack and TLS are the guest's own (see `TaskCall::StdThread`).
        (TaskCall::StdThread { .. }, _) => Stack {
            top: 0,
            bottom: 0,
            tls_base: 0,
        },
        (_, Some(slot)) => Stack {
            top: live.stacks.stack_top(&slot),
            bottom: live.stacks.stack_bottom(&slot),
            tls_base: slot.tls_base(),
        },
        (_, None) => return Err(format_err!("green thread #{thread} has no stack slot")),
    };
    if live.layout.reuse_workers {
        if let Some(mut worker) = live.spare.pop() {
            worker.assign(thread);
            let fiber = worker.watch.take().map(StackUse::of).unwrap_or_default();
            return Ok((Box::pin(worker.run(stack, call)), fiber));
        }
    }
    let pre = live.pre.clone();
    let watch = StackWatch::new();
    let fiber = StackUse::of(watch.clone());
    let call = Box::pin(async move {
        match Worker::new(&pre, data, preempt, watch).await {
            Ok(worker) => worker.run(stack, call).await,
            Err(error) => (Err(error), None),
        }
    });
    Ok((call, fiber))
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

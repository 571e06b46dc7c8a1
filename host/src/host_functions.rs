//! The hub's side of `wit/hub.wit`: the functions a guest imports from
//! `wasmlet:runtime/hub@0.1.0`, as core wasm functions with the canonical
//! ABI's flat signatures (a test checks them against the WIT).
//!
//! Each function reads which guest and green thread calls it from the store's
//! [`ThreadData`], updates the hub's [`Core`](crate::hub::Core) and, where the
//! call yields, returns a future that suspends the green thread's fiber once.
//! Ids and pointers from the guest are never trusted: an unknown thread id is
//! reported through the result, and a request the hub cannot meet traps the
//! calling green thread alone.

use std::time::Duration;

use wasmtime::Result;
use wasmtime::{AsContextMut, Caller, Linker};

use crate::hub::{KillStatus, Suspend, ThreadData};

/// The WIT interface's import module name.
pub const HUB_MODULE: &str = "wasmlet:runtime/hub@0.1.0";

/// `spawn-flags.local`.
const SPAWN_LOCAL: u32 = 1;

fn who(caller: &Caller<'_, ThreadData>) -> (usize, usize) {
    (caller.data().guest, caller.data().thread)
}

/// Adds the hub interface (and a refusal of `wasi::thread-spawn`) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ThreadData>) -> Result<()> {
    linker.func_wrap(
        HUB_MODULE,
        "spawn",
        |caller: Caller<'_, ThreadData>, task: u32, stack_size: u32, delay_ns: u64, flags: u32| {
            let (guest, thread) = who(&caller);
            caller.data().core.with(|core| {
                core.spawn(
                    guest,
                    thread,
                    task,
                    stack_size,
                    Duration::from_nanos(delay_ns),
                    flags & SPAWN_LOCAL != 0,
                )
            })
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "sleep",
        |mut caller: Caller<'_, ThreadData>, (ns,): (u64,)| {
            let (guest, thread) = who(&caller);
            caller
                .data()
                .core
                .with(|core| core.sleep(guest, thread, Duration::from_nanos(ns)));
            Box::new(async move { suspend(&mut caller).await })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "current",
        |caller: Caller<'_, ThreadData>| -> u64 {
            let (guest, thread) = who(&caller);
            caller.data().core.with(|core| core.current(guest, thread))
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "kill",
        |mut caller: Caller<'_, ThreadData>, (target, error): (u64, u32)| {
            let (guest, thread) = who(&caller);
            let status = caller
                .data()
                .core
                .with(|core| core.kill(guest, thread, target, error, false));
            Box::new(async move { yield_if_killed(&mut caller, status).await })
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "cancel",
        |mut caller: Caller<'_, ThreadData>, (target,): (u64,)| {
            let (guest, thread) = who(&caller);
            let status = caller
                .data()
                .core
                .with(|core| core.kill(guest, thread, target, 0, true));
            Box::new(async move { yield_if_killed(&mut caller, status).await })
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "join",
        |mut caller: Caller<'_, ThreadData>, (target, timeout_ns): (u64, u64)| {
            let (guest, thread) = who(&caller);
            let now = caller
                .data()
                .core
                .with(|core| core.join(guest, thread, target, timeout_of(timeout_ns)));
            Box::new(async move {
                match now {
                    Some(status) => status as u32,
                    None => {
                        suspend(&mut caller).await;
                        caller
                            .data()
                            .core
                            .with(|core| core.join_result(guest, target))
                            as u32
                    }
                }
            })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "link",
        |caller: Caller<'_, ThreadData>, target: u64, callback: u32| -> u64 {
            let (guest, _) = who(&caller);
            caller
                .data()
                .core
                .with(|core| core.link(guest, target, callback))
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "unlink",
        |caller: Caller<'_, ThreadData>, target: u64, link: u64| -> u32 {
            let (guest, _) = who(&caller);
            caller
                .data()
                .core
                .with(|core| core.unlink(guest, target, link))
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "next-link",
        |caller: Caller<'_, ThreadData>| -> u32 {
            let (guest, thread) = who(&caller);
            caller
                .data()
                .core
                .with(|core| core.next_link(guest, thread))
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "park",
        |mut caller: Caller<'_, ThreadData>, (timeout_ns,): (u64,)| {
            let (guest, thread) = who(&caller);
            let now = caller
                .data()
                .core
                .with(|core| core.park(guest, thread, timeout_of(timeout_ns)));
            Box::new(async move {
                match now {
                    Some(unparked) => unparked as u32,
                    None => {
                        suspend(&mut caller).await;
                        caller
                            .data()
                            .core
                            .with(|core| core.park_result(guest, thread))
                            as u32
                    }
                }
            })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "unpark",
        |caller: Caller<'_, ThreadData>, target: u64| -> u32 {
            let (guest, _) = who(&caller);
            caller.data().core.with(|core| core.unpark(guest, target)) as u32
        },
    )?;
    // Rust's std::thread imports this. One OS thread runs all green threads,
    // so it is refused (std then reports an error to the caller).
    linker.func_wrap(
        "wasi",
        "thread-spawn",
        |_: Caller<'_, ThreadData>, _start_arg: u32| -> i32 {
            tracing::warn!(
            "std::thread::spawn is not supported in a guest; use wasmlet::spawn for a green thread"
        );
            -1
        },
    )?;
    Ok(())
}

/// A WIT `timeout-ns`: `u64::MAX` means none.
fn timeout_of(ns: u64) -> Option<Duration> {
    (ns != u64::MAX).then(|| Duration::from_nanos(ns))
}

async fn yield_if_killed(caller: &mut Caller<'_, ThreadData>, status: KillStatus) -> u32 {
    if status == KillStatus::Killed {
        suspend(caller).await;
    }
    status as u32
}

/// Suspends the calling green thread once (the hub has recorded why it
/// waits). When it resumes it gets a fresh time slice: the epoch deadline it
/// had may have passed while it waited, and would otherwise pause it again at
/// once.
async fn suspend(caller: &mut Caller<'_, ThreadData>) {
    Suspend::new().await;
    caller.as_context_mut().set_epoch_deadline(1);
}

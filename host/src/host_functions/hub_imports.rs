//! The hub's side of `wit/hub.wit`: the functions a guest imports from
//! `wasmlet:runtime/hub@0.1.0`, as core wasm functions with the canonical
//! ABI's flat signatures (a test checks them against the WIT). The WASI
//! functions the hub answers itself are in
//! [`wasi_overrides`](crate::host_functions::wasi_overrides).
//!
//! Each function reads which guest and green thread calls it from the store's
//! [`ThreadData`], updates the [`HubState`] and,
//! where the call yields, returns a future that suspends the green thread's
//! fiber once. Ids and pointers from the guest are never trusted: an unknown
//! thread id is reported through the result, and a request the hub cannot
//! meet traps the calling green thread alone.

use std::time::Duration;

use wasmtime::Result;
use wasmtime::{Caller, Linker};

use crate::abi::{
    errno, timeout_of, CallStatus, KillStatus, SpawnRefusal, HUB_MODULE, SPAWN_LOCAL,
};
use crate::call::CallRecord;
use crate::guest::store_data::ThreadData;
use crate::host_functions::host_call::{
    as_caller, func_wrap_green, suspend, wait_green, Answer, Calling, Me,
};
use crate::hub_state::HubState;
use crate::scheduler::GuestKey;

/// Adds the hub interface (and a refusal of `wasi::thread-spawn`) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ThreadData>) -> Result<()> {
    linker.func_wrap(
        HUB_MODULE,
        "spawn",
        |caller: Caller<'_, ThreadData>, task: u32, stack_size: u32, delay_ns: u64, flags: u32| {
            spawn_for(
                &caller,
                task,
                stack_size,
                delay_ns,
                flags,
                |_, _, refused| Err(wasmtime::Error::msg(refused.1)),
            )?
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "try-spawn",
        |caller: Caller<'_, ThreadData>, task: u32, stack_size: u32, delay_ns: u64, flags: u32| {
            spawn_for(
                &caller,
                task,
                stack_size,
                delay_ns,
                flags,
                |s, guest, refused| {
                    s.note_refusal(guest, refused.0);
                    Ok(0)
                },
            )?
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "last-spawn-refusal",
        |caller: Caller<'_, ThreadData>| -> Result<u32> {
            as_caller(&caller, |s, guest, _| s.last_refusal(guest) as u32)
        },
    )?;
    func_wrap_green(linker, HUB_MODULE, "sleep", |caller, (ns,): (u64,)| {
        let me = caller.me();
        async move {
            let waits = as_caller(&me, |s, guest, thread| {
                s.sleep_unless_killed(guest, thread, Duration::from_nanos(ns))
            })??;
            if !waits {
                return Ok(0);
            }
            suspend().await;
            Ok(u32::from(!killed(&me)?))
        }
    })?;
    linker.func_wrap(
        HUB_MODULE,
        "killed",
        |caller: Caller<'_, ThreadData>| -> Result<u32> { Ok(u32::from(killed(&caller)?)) },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "current",
        |caller: Caller<'_, ThreadData>| -> Result<u64> {
            as_caller(&caller, |s, guest, thread| s.current(guest, thread))
        },
    )?;
    func_wrap_green(
        linker,
        HUB_MODULE,
        "kill",
        |caller, (target, error): (u64, u32)| kill_for(caller.me(), target, error, false),
    )?;
    func_wrap_green(
        linker,
        HUB_MODULE,
        "cancel",
        |caller, (target, error): (u64, u32)| kill_for(caller.me(), target, error, true),
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "started",
        |caller: Caller<'_, ThreadData>, target: u64| -> Result<u32> {
            as_caller(&caller, |s, guest, _| u32::from(s.started(guest, target)))
        },
    )?;
    func_wrap_green(
        linker,
        HUB_MODULE,
        "join",
        |caller, (target, timeout_ns): (u64, u64)| {
            let status = wait_green(
                caller.me(),
                move |s, guest, thread| s.join(guest, thread, target, timeout_of(timeout_ns)),
                move |s, guest, thread| s.join_result(guest, thread, target),
            );
            async move { Ok(status.await? as u32) }
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "link",
        |caller: Caller<'_, ThreadData>, target: u64, callback: u32| -> Result<u64> {
            as_caller(&caller, |s, guest, _| s.link(guest, target, callback))?
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "unlink",
        |caller: Caller<'_, ThreadData>, target: u64, link: u64| -> Result<u32> {
            as_caller(&caller, |s, guest, _| s.unlink(guest, target, link))
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "next-link",
        |caller: Caller<'_, ThreadData>| -> Result<u32> {
            as_caller(&caller, |s, guest, thread| s.next_link(guest, thread))
        },
    )?;
    func_wrap_green(
        linker,
        HUB_MODULE,
        "park",
        |caller, (timeout_ns,): (u64,)| {
            let unparked = wait_green(
                caller.me(),
                move |s, guest, thread| s.park(guest, thread, timeout_of(timeout_ns)),
                |s, guest, thread| s.park_result(guest, thread),
            );
            async move { Ok(unparked.await? as u32) }
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "unpark",
        |caller: Caller<'_, ThreadData>, target: u64| -> Result<u32> {
            as_caller(&caller, |s, guest, _| s.unpark(guest, target) as u32)
        },
    )?;
    func_wrap_green(
        linker,
        HUB_MODULE,
        "wait32",
        |caller, (address, expected, timeout_ns, offset): (u32, u32, i64, u32)| {
            let address = address as u64 + offset as u64;
            Box::pin(futex_wait(
                caller.me(),
                address,
                expected as u64,
                4,
                timeout_ns,
            ))
        },
    )?;
    func_wrap_green(
        linker,
        HUB_MODULE,
        "wait64",
        |caller, (address, expected, timeout_ns, offset): (u32, u64, i64, u32)| {
            let address = address as u64 + offset as u64;
            futex_wait(caller.me(), address, expected, 8, timeout_ns)
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "notify",
        |caller: Caller<'_, ThreadData>, address: u32, count: u32, offset: u32| -> Result<u32> {
            let address = address as u64 + offset as u64;
            Ok(as_caller(&caller, |s, guest, _| {
                s.futex_notify(guest, address, count)
            })??)
        },
    )?;
    add_call_functions(linker)?;
    // wasi-threads' `thread-spawn`, which Rust's std::thread (wasi-libc's
    // pthread_create) calls: the new thread is a green thread of the guest.
    // It runs when the caller next yields, and its locks, joins and
    // channels wait green, so std-threaded code runs unchanged on the hub.
    linker.func_wrap(
        "wasi",
        "thread-spawn",
        |caller: Caller<'_, ThreadData>, start_arg: u32| -> Result<i32> {
            as_caller(&caller, |s, guest, _| {
                match s.spawn_std_thread(guest, start_arg) {
                    // Below 2^29: checked by spawn_std_thread.
                    Ok(id) => id as i32,
                    Err((_, why)) => {
                        tracing::debug!("a std::thread was refused: {why}");
                        // wasi-threads: negative is an error (EAGAIN to
                        // pthread_create, an Err to std::thread::Builder).
                        -errno::AGAIN
                    }
                }
            })
        },
    )?;
    Ok(())
}

/// `spawn` and `try-spawn`: starts the green thread the caller asks for, or
/// answers a refusal with `refused` (trap, or report).
fn spawn_for(
    caller: &Caller<'_, ThreadData>,
    task: u32,
    stack_size: u32,
    delay_ns: u64,
    flags: u32,
    refused: impl FnOnce(&mut HubState, GuestKey, (SpawnRefusal, String)) -> Result<u64>,
) -> Answer<u64, wasmtime::Error> {
    as_caller(caller, |s, guest, thread| {
        let delay = Duration::from_nanos(delay_ns);
        let local = flags & SPAWN_LOCAL != 0;
        match s.spawn(guest, thread, task, stack_size, delay, local) {
            Ok(id) => Ok(id),
            Err(refusal) => refused(s, guest, refusal),
        }
    })
}

/// The functions through which a green thread running a host call gets its
/// name and input and gives back its outcome (see `call-begin` in the WIT).
fn add_call_functions(linker: &mut Linker<ThreadData>) -> Result<()> {
    fn with_call<R>(
        caller: &Caller<'_, ThreadData>,
        f: impl FnOnce(&mut HubState, GuestKey, &mut CallRecord) -> Result<R>,
    ) -> Result<R> {
        as_caller(caller, |s, guest, thread| {
            s.with_own_call(guest, thread, |s, call| f(s, guest, call))
        })?
    }
    linker.func_wrap(
        HUB_MODULE,
        "call-name-len",
        |caller: Caller<'_, ThreadData>| -> Result<u32> {
            with_call(&caller, |_, _, call| Ok(call.name.len() as u32))
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "call-input-len",
        |caller: Caller<'_, ThreadData>| -> Result<u32> {
            with_call(&caller, |_, _, call| {
                Ok(call.input.as_ref().map_or(0, Vec::len) as u32)
            })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "call-begin",
        |caller: Caller<'_, ThreadData>, task: u32, name: u32, input: u32| -> Result<()> {
            let thread = caller.data().thread;
            with_call(&caller, |s, guest, call| {
                let bytes = call
                    .input
                    .take()
                    .ok_or_else(|| wasmtime::format_err!("call-begin was called twice"))?;
                if !s.write_guest_memory(guest, name, call.name.as_bytes())
                    || !s.write_guest_memory(guest, input, &bytes)
                {
                    wasmtime::bail!("call-begin: a buffer is outside the guest's memory");
                }
                s.set_task(guest, thread, task);
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "call-return",
        |caller: Caller<'_, ThreadData>, status: u32, output: u32, len: u32| -> Result<()> {
            let status = CallStatus::from_u32(status)
                .ok_or_else(|| wasmtime::format_err!("call-return: no call status {status}"))?;
            with_call(&caller, |s, guest, call| {
                if call.outcome.is_some() {
                    return Ok(());
                }
                let most = s.max_output(guest);
                if len as usize > most {
                    wasmtime::bail!(
                        "call-return: an output of {len} bytes is more than the guest's \
                         max_output of {most}"
                    );
                }
                let bytes = s
                    .read_guest_memory(guest, output, len as usize)
                    .ok_or_else(|| {
                        wasmtime::format_err!(
                            "call-return: the output is outside the guest's memory"
                        )
                    })?;
                call.outcome = Some((status, bytes));
                Ok(())
            })
        },
    )?;
    Ok(())
}

/// `wait32`/`wait64`: a futex wait of the calling green thread, with the
/// instruction's results and traps (a negative timeout waits for ever).
async fn futex_wait(
    me: Me,
    address: u64,
    expected: u64,
    width: u64,
    timeout_ns: i64,
) -> Result<u32> {
    let timeout = u64::try_from(timeout_ns).ok().map(Duration::from_nanos);
    wait_green(
        me,
        |s, guest, thread| s.futex_wait(guest, thread, address, expected, width, timeout),
        |s, guest, thread| s.futex_result(guest, thread),
    )
    .await
}

/// `kill` (or, with `cancel`, `cancel`) of `target` by the calling green
/// thread, with the kill's `error`; the caller yields to its target when
/// the hub says it should.
async fn kill_for(me: Me, target: u64, error: u32, cancel: bool) -> Result<u32> {
    let (status, caller_yields) = as_caller(&me, |s, guest, thread| {
        s.kill(guest, thread, target, error, cancel)
    })??;
    if status == KillStatus::Killed && caller_yields {
        suspend().await;
    }
    Ok(status as u32)
}

/// True once the calling green thread has been killed and is unwinding.
fn killed(caller: &impl Calling) -> Result<bool> {
    as_caller(caller, |s, guest, thread| s.is_unwinding(guest, thread))
}

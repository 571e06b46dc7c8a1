//! The hub's side of `wit/hub.wit`: the functions a guest imports from
//! `wasmlet:runtime/hub@0.1.0`, as core wasm functions with the canonical
//! ABI's flat signatures (a test checks them against the WIT). The WASI
//! functions the hub answers itself are in
//! [`wasi_overrides`](crate::wasi_overrides).
//!
//! Each function reads which guest and green thread calls it from the store's
//! [`ThreadData`], updates the [`HubState`](crate::hub_state::HubState) and,
//! where the call yields, returns a future that suspends the green thread's
//! fiber once. Ids and pointers from the guest are never trusted: an unknown
//! thread id is reported through the result, and a request the hub cannot
//! meet traps the calling green thread alone.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::Result;
use wasmtime::{AsContextMut, Caller, Linker};

use crate::abi::{
    errno, timeout_of, CallStatus, KillStatus, SpawnRefusal, HUB_MODULE, SPAWN_LOCAL,
};
use crate::call::CallRecord;
use crate::guest_memory::GuestMemory;
use crate::hub_state::{self, HubState};
use crate::poller::Interest;
use crate::store_data::ThreadData;

/// Runs `f` on the hub's state as the calling green thread `(guest, thread)`.
pub(crate) fn as_caller<R>(
    caller: &Caller<'_, ThreadData>,
    f: impl FnOnce(&mut HubState, usize, usize) -> R,
) -> Result<R> {
    let (guest, thread) = (caller.data().guest, caller.data().thread);
    hub_state::with(guest, |state| f(state, guest, thread))
}

/// Adds the hub interface (and a refusal of `wasi::thread-spawn`) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ThreadData>) -> Result<()> {
    linker.func_wrap(
        HUB_MODULE,
        "spawn",
        |caller: Caller<'_, ThreadData>, task: u32, stack_size: u32, delay_ns: u64, flags: u32| {
            spawn_for(&caller, task, stack_size, delay_ns, flags, |_, refused| {
                Err(wasmtime::Error::msg(refused.1))
            })?
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
                |record, refused| {
                    record.last_refusal = refused.0;
                    Ok(0)
                },
            )?
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "last-spawn-refusal",
        |caller: Caller<'_, ThreadData>| -> Result<u32> {
            as_caller(&caller, |s, guest, _| s.guests[guest].last_refusal as u32)
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "sleep",
        |mut caller: Caller<'_, ThreadData>, (ns,): (u64,)| {
            Box::new(async move {
                let waits = as_caller(&caller, |s, guest, thread| {
                    s.sleep_unless_killed(guest, thread, Duration::from_nanos(ns))
                })??;
                if !waits {
                    return Ok(0);
                }
                suspend(&mut caller).await;
                Ok(u32::from(!killed(&caller)?))
            })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "killed",
        |caller: Caller<'_, ThreadData>| -> Result<u32> { Ok(u32::from(killed(&caller)?)) },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "current",
        |caller: Caller<'_, ThreadData>| -> Result<u64> {
            as_caller(&caller, |s, guest, thread| s.sched.current(guest, thread))
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "kill",
        |mut caller: Caller<'_, ThreadData>, (target, error): (u64, u32)| {
            Box::new(async move {
                let status = as_caller(&caller, |s, guest, thread| {
                    s.kill(guest, thread, target, error, false)
                })??;
                Ok(yield_if_killed(&mut caller, status).await)
            })
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "cancel",
        |mut caller: Caller<'_, ThreadData>, (target, error): (u64, u32)| {
            Box::new(async move {
                let status = as_caller(&caller, |s, guest, thread| {
                    s.kill(guest, thread, target, error, true)
                })??;
                Ok(yield_if_killed(&mut caller, status).await)
            })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "started",
        |caller: Caller<'_, ThreadData>, target: u64| -> Result<u32> {
            as_caller(&caller, |s, guest, _| {
                u32::from(s.sched.started(guest, target))
            })
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "join",
        |mut caller: Caller<'_, ThreadData>, (target, timeout_ns): (u64, u64)| {
            Box::new(async move {
                let now = as_caller(&caller, |s, guest, thread| {
                    s.join(guest, thread, target, timeout_of(timeout_ns))
                })??;
                if let Some(status) = now {
                    return Ok(status as u32);
                }
                suspend(&mut caller).await;
                as_caller(&caller, |s, guest, thread| {
                    s.sched.join_result(guest, thread, target) as u32
                })
            })
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
            as_caller(&caller, |s, guest, _| s.sched.unlink(guest, target, link))
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "next-link",
        |caller: Caller<'_, ThreadData>| -> Result<u32> {
            as_caller(&caller, |s, guest, thread| s.sched.next_link(guest, thread))
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "park",
        |mut caller: Caller<'_, ThreadData>, (timeout_ns,): (u64,)| {
            Box::new(async move {
                let now = as_caller(&caller, |s, guest, thread| {
                    s.park(guest, thread, timeout_of(timeout_ns))
                })??;
                if let Some(unparked) = now {
                    return Ok(unparked as u32);
                }
                suspend(&mut caller).await;
                as_caller(&caller, |s, guest, thread| {
                    s.sched.park_result(guest, thread) as u32
                })
            })
        },
    )?;
    linker.func_wrap(
        HUB_MODULE,
        "unpark",
        |caller: Caller<'_, ThreadData>, target: u64| -> Result<u32> {
            as_caller(&caller, |s, guest, _| s.sched.unpark(guest, target) as u32)
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "wait32",
        |mut caller: Caller<'_, ThreadData>,
         (address, expected, timeout_ns, offset): (u32, u32, i64, u32)| {
            Box::new(async move {
                let address = address as u64 + offset as u64;
                futex_wait(&mut caller, address, expected as u64, 4, timeout_ns).await
            })
        },
    )?;
    linker.func_wrap_async(
        HUB_MODULE,
        "wait64",
        |mut caller: Caller<'_, ThreadData>,
         (address, expected, timeout_ns, offset): (u32, u64, i64, u32)| {
            Box::new(async move {
                let address = address as u64 + offset as u64;
                futex_wait(&mut caller, address, expected, 8, timeout_ns).await
            })
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
    crate::net_functions::add_to_linker(linker)?;
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
    refused: impl FnOnce(&mut crate::hub_state::GuestRecord, (SpawnRefusal, String)) -> Result<u64>,
) -> Result<Result<u64>> {
    as_caller(caller, |s, guest, thread| {
        let delay = Duration::from_nanos(delay_ns);
        let local = flags & SPAWN_LOCAL != 0;
        match s.spawn(guest, thread, task, stack_size, delay, local) {
            Ok(id) => Ok(id),
            Err(refusal) => refused(&mut s.guests[guest], refusal),
        }
    })
}

/// Defines the embedder's async host function `module::name` (see
/// `RuntimeBuilder::func_async`): the calling green thread waits alone for
/// the future `func` returns, polled with a waker that wakes it from any
/// thread.
pub(crate) fn define_async<Params, R, F, Fut>(
    linker: &mut Linker<ThreadData>,
    module: &str,
    name: &str,
    func: F,
) -> Result<()>
where
    Params: wasmtime::WasmTyList + Send + 'static,
    R: wasmtime::WasmRet + Send + 'static,
    F: Fn(GuestMemory, Params) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    let func = std::sync::Arc::new(func);
    linker.func_wrap_async(
        module,
        name,
        move |mut caller: Caller<'_, ThreadData>, params: Params| {
            let func = func.clone();
            Box::new(async move {
                let future = Box::pin(func(GuestMemory::of(&caller), params));
                await_green(&mut caller, future).await?
            })
        },
    )?;
    Ok(())
}

/// Polls `future` as the calling green thread, which waits alone while it
/// is pending (its waker wakes it from any thread).
///
/// # Errors
/// If the caller has been killed and the future is not ready: it cannot
/// wait, and the error ends it.
pub(crate) async fn await_green<T>(
    caller: &mut Caller<'_, ThreadData>,
    mut future: Pin<Box<dyn Future<Output = T> + Send>>,
) -> Result<T> {
    loop {
        let waker = as_caller(caller, |s, guest, thread| {
            std::task::Waker::from(std::sync::Arc::new(GreenWaker {
                waiter: s.sched.next_waiter(guest, thread),
                control: s.control.clone(),
            }))
        })?;
        if let Poll::Ready(result) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Ok(result);
        }
        as_caller(caller, |s, guest, thread| {
            if s.sched.is_unwinding(guest, thread) {
                // It cannot report the kill through the future, nor wait:
                // ended hard.
                wasmtime::bail!(
                    "{} was killed and then waited for an async host function",
                    s.sched.name_of(guest, thread)
                );
            }
            s.sched.future_wait(guest, thread);
            Ok(())
        })??;
        suspend(caller).await;
    }
}

/// Wakes the green thread that waits for a future, from any thread.
struct GreenWaker {
    waiter: crate::scheduler::IoWaiter,
    control: std::sync::Arc<crate::control::Control>,
}

impl std::task::Wake for GreenWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.control.wake_green_thread(self.waiter);
    }
}

/// The functions through which a green thread running a host call gets its
/// name and input and gives back its outcome (see `call-begin` in the WIT).
fn add_call_functions(linker: &mut Linker<ThreadData>) -> Result<()> {
    fn with_call<R>(
        caller: &Caller<'_, ThreadData>,
        f: impl FnOnce(&mut HubState, usize, &mut CallRecord) -> Result<R>,
    ) -> Result<R> {
        as_caller(caller, |s, guest, thread| {
            let id = s.sched.current(guest, thread);
            let mut call = s.calls.remove(&(guest, id)).ok_or_else(|| {
                wasmtime::format_err!(
                    "only a green thread the host started for a call may ask for it"
                )
            })?;
            let result = f(s, guest, &mut call);
            s.calls.insert((guest, id), call);
            result
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
                s.sched.set_task(guest, thread, task);
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
                let most = s.guests[guest].max_output;
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
    caller: &mut Caller<'_, ThreadData>,
    address: u64,
    expected: u64,
    width: u64,
    timeout_ns: i64,
) -> Result<u32> {
    let timeout = u64::try_from(timeout_ns).ok().map(Duration::from_nanos);
    let now = as_caller(caller, |s, guest, thread| {
        s.futex_wait(guest, thread, address, expected, width, timeout)
    })??;
    if let Some(result) = now {
        return Ok(result);
    }
    suspend(caller).await;
    as_caller(caller, |s, guest, thread| {
        s.sched.futex_result(guest, thread)
    })
}

async fn yield_if_killed(
    caller: &mut Caller<'_, ThreadData>,
    (status, caller_yields): (KillStatus, bool),
) -> u32 {
    if status == KillStatus::Killed && caller_yields {
        suspend(caller).await;
    }
    status as u32
}

/// True once the calling green thread has been killed and is unwinding.
fn killed(caller: &Caller<'_, ThreadData>) -> Result<bool> {
    as_caller(caller, |s, guest, thread| {
        s.sched.is_unwinding(guest, thread)
    })
}

/// How long a green thread whose descriptor can neither be polled nor
/// transferred waits before it tries again (not met in practice: what epoll
/// refuses is a regular file or `/dev/null`, which are always ready).
const RETRY_UNPOLLABLE: Duration = Duration::from_millis(1);

/// Parks the caller until `fd` is ready for `interest`, or `timeout` has
/// passed (or briefly, if `fd` cannot be polled). `Err(errno)`: `INTR` if
/// the caller has been killed (before or during the wait: it does not wait
/// again), `IO` if the hub's poller failed.
///
/// `fd` must stay open while the caller waits: the host's own streams, or
/// a guest's socket, which is forgotten in the poller (its waiters woken)
/// before it closes.
pub(crate) async fn wait_ready(
    caller: &mut Caller<'_, ThreadData>,
    fd: std::os::fd::RawFd,
    interest: Interest,
    timeout: Option<Duration>,
) -> Result<Result<(), i32>> {
    if as_caller(caller, |s, guest, thread| s.unwinding_call(guest, thread))?? {
        return Ok(Err(errno::INTR));
    }
    // SAFETY: open while the caller waits, as the function's contract says;
    // the poller keeps the descriptor's number, not this borrow.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let waits = as_caller(caller, |s, guest, thread| {
        s.io_wait(guest, thread, borrowed, interest, timeout)
    })?;
    match waits {
        Ok(true) => {}
        Ok(false) => {
            as_caller(caller, |s, guest, thread| {
                s.sleep(guest, thread, RETRY_UNPOLLABLE)
            })?;
        }
        Err(e) => {
            tracing::warn!("a green thread could not wait for a host descriptor: {e}");
            return Ok(Err(errno::IO));
        }
    }
    suspend(caller).await;
    // Killed while it waited: the wait reports it.
    if as_caller(caller, |s, guest, thread| {
        s.sched.is_unwinding(guest, thread)
    })? {
        return Ok(Err(errno::INTR));
    }
    Ok(Ok(()))
}

/// Suspends the calling green thread once (the hub has recorded why it
/// waits). When it resumes it gets a fresh time slice: the epoch deadline it
/// had may have passed while it waited, and would otherwise pause it again at
/// once.
pub(crate) async fn suspend(caller: &mut Caller<'_, ThreadData>) {
    Suspend(false).await;
    caller.as_context_mut().set_epoch_deadline(1);
}

/// A future that is pending once, then ready: how a hub function suspends its
/// green thread after recording why it waits.
struct Suspend(bool);

impl Future for Suspend {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

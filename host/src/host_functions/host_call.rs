//! The host-call toolkit: how a host function runs as the green thread that
//! called it, and how it makes that green thread wait without blocking the
//! hub. Every file of host functions (`hub_imports`, `net_imports`,
//! `wasi_overrides`, the embedder's async functions) builds on these, and
//! none of them on another.
//!
//! A hub wait has one shape: *decide* on the hub's state (answer at once,
//! or record why the caller waits), *suspend* once, and when it is resumed
//! *read the result* the hub left ([`wait_green`]). The waiting part of
//! every host function is a [`Green`] future that holds no borrow of the
//! call, so that one body serves both execution models
//! ([`func_wrap_green`]): on a fiber, suspending suspends the fiber; in the
//! compact model it unwinds the green thread's wasm frames.
//! Waiting for an embedder's future ([`await_green`]) and for a host
//! descriptor ([`wait_ready`]) are the two other waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::Result;
use wasmtime::{AsContextMut, Caller, Linker};

use crate::abi::errno;
use crate::guest::store_data::ThreadData;
use crate::guest::unwind;
use crate::host_functions::guest_memory::GuestMemory;
use crate::hub_state::{self, HubState};
use crate::io::poller::Interest;
use crate::scheduler::{GuestKey, ThreadKey};

/// What a step of a host function answers, two ways to fail told apart:
/// `Err` traps the calling green thread (a wild pointer past its memory, a
/// call the hub will not serve), `Ok(Err(e))` is an error the guest is told
/// and may handle (an errno, a `NetError`), `Ok(Ok(v))` is the value.
pub(crate) type Answer<T, E> = Result<Result<T, E>>;

/// The green thread a host function runs as: its guest and its key. What
/// the waiting part of a host function holds instead of the `Caller`, so
/// that the part can outlive one call of the import (see [`Green`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Me {
    guest: GuestKey,
    thread: ThreadKey,
}

/// What names the calling green thread: a `Caller` or a [`Me`].
pub(crate) trait Calling {
    /// The calling green thread.
    fn me(&self) -> Me;
}

impl Calling for Caller<'_, ThreadData> {
    fn me(&self) -> Me {
        Me {
            guest: self.data().guest,
            thread: self.data().thread,
        }
    }
}

impl Calling for Me {
    fn me(&self) -> Me {
        *self
    }
}

/// The waiting part of a host function: a future that holds no borrow of the
/// `Caller` (it reaches the hub through [`Me`]), is pending only while the
/// hub has recorded why its green thread waits, and is ready with the
/// import's result.
///
/// Owning nothing of the call is what lets one body serve both execution
/// models: on a fiber the import awaits it; in the compact model the import
/// polls it once, and if it is pending keeps it while the green thread's
/// wasm frames are unwound, and polls it again when they are rewound into
/// the same import (see [`func_wrap_green`]).
pub(crate) type Green<R> = Pin<Box<dyn Future<Output = Result<R>> + Send>>;

/// A [`Green`] that is ready at once.
pub(crate) fn ready<R: Send + 'static>(result: Result<R>) -> Green<R> {
    Box::pin(std::future::ready(result))
}

/// Defines the host function `module::name` that may make its green thread
/// wait: `start` does what needs the `Caller` (synchronously) and returns
/// the [`Green`] future that does the rest.
///
/// On a fiber the future is awaited (a pending poll suspends the fiber).
/// In the compact model (the store has an `Unwinder`) the import polls it
/// once; pending, the future is kept in the store's unwinder and the green
/// thread's wasm frames are unwound into its shadow stack
/// (`execution::compact` keeps them, and rewinds them into this import when
/// the hub wakes the thread, which polls the same future again). `start`
/// runs once per call of the import either way.
///
/// # Errors
/// If the name is defined twice (a bug of the host's).
pub(crate) fn func_wrap_green<P, R, F, Fut>(
    linker: &mut Linker<ThreadData>,
    module: &str,
    name: &str,
    start: F,
) -> Result<()>
where
    P: wasmtime::WasmTyList + Send + 'static,
    R: wasmtime::WasmRet + Default + Send + 'static,
    F: Fn(&mut Caller<'_, ThreadData>, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    if super::is_hosts(module) && !super::WAITING_IMPORTS.contains(&(module, name)) {
        wasmtime::bail!(
            "`{module}::{name}` may wait, but is missing from WAITING_IMPORTS: the compact \
             model would not instrument the code that calls it"
        );
    }
    linker.func_wrap_async(
        module,
        name,
        move |mut caller: Caller<'_, ThreadData>, params: P| {
            let step = if caller.data().unwinder.is_some() {
                Err(green_step(&mut caller, |caller| {
                    Box::pin(start(caller, params)) as Green<R>
                }))
            } else {
                Ok(start(&mut caller, params))
            };
            // On a fiber the waiting part lives in this one boxed future (no
            // box of its own: a switch is two of these calls).
            Box::new(async move {
                let call = match step {
                    Ok(call) => call,
                    Err(compact) => return compact,
                };
                let mut call = std::pin::pin!(call);
                let mut suspended = false;
                let result = std::future::poll_fn(|cx| {
                    let poll = call.as_mut().poll(cx);
                    suspended |= poll.is_pending();
                    poll
                })
                .await;
                if suspended {
                    // A fresh time slice: the epoch deadline it had may have
                    // passed while it waited, and would pause it again at once.
                    caller.as_context_mut().set_epoch_deadline(1);
                }
                result
            })
        },
    )?;
    Ok(())
}

/// The compact model's import: polls the waiting part once (the one
/// `start` makes, or the one left when the thread unwound out of this
/// import, if it is being rewound into it); if it is pending, keeps it and
/// unwinds the thread (the value returned is then ignored).
fn green_step<R: Default + Send + 'static>(
    caller: &mut Caller<'_, ThreadData>,
    start: impl FnOnce(&mut Caller<'_, ThreadData>) -> Green<R>,
) -> Result<R> {
    let mut call = match unwind::resume(caller.as_context_mut())? {
        Some(pending) => *pending
            .downcast::<Green<R>>()
            .map_err(|_| wasmtime::format_err!("rewound into another import than it left"))?,
        None => start(caller),
    };
    match call
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => {
            unwind::start_unwind(caller.as_context_mut(), Box::new(call))?;
            Ok(R::default())
        }
    }
}

/// Waits green: `decide` either answers at once (`Some`) or records why the
/// caller waits (`None`); the caller is then suspended until the hub wakes
/// it, and `result` reads the answer the hub left.
///
/// # Errors
/// What `decide` or `result` return, or if the hub is gone.
pub(crate) async fn wait_green<T>(
    me: Me,
    decide: impl FnOnce(&mut HubState, GuestKey, ThreadKey) -> Result<Option<T>>,
    result: impl FnOnce(&mut HubState, GuestKey, ThreadKey) -> T,
) -> Result<T> {
    if let Some(now) = as_caller(&me, decide)?? {
        return Ok(now);
    }
    suspend().await;
    as_caller(&me, result)
}

/// Runs `f` on the hub's state as the calling green thread `(guest, thread)`.
pub(crate) fn as_caller<R>(
    caller: &impl Calling,
    f: impl FnOnce(&mut HubState, GuestKey, ThreadKey) -> R,
) -> Result<R> {
    let Me { guest, thread } = caller.me();
    hub_state::with(guest, |state| f(state, guest, thread))
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
    R: wasmtime::WasmRet + Default + Send + 'static,
    F: Fn(GuestMemory, Params) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    func_wrap_green(linker, module, name, move |caller, params: Params| {
        let me = caller.me();
        let future = Box::pin(func(GuestMemory::of(caller), params));
        Box::pin(async move { await_green(me, future).await? })
    })
}

/// Polls `future` as the calling green thread, which waits alone while it
/// is pending (its waker wakes it from any thread).
///
/// # Errors
/// If the caller has been killed and the future is not ready: it cannot
/// wait, and the error ends it.
pub(crate) async fn await_green<T>(
    me: Me,
    mut future: Pin<Box<dyn Future<Output = T> + Send>>,
) -> Result<T> {
    loop {
        let waker = as_caller(&me, |s, guest, thread| {
            std::task::Waker::from(std::sync::Arc::new(GreenWaker {
                waiter: s.next_waiter(guest, thread),
                control: s.control(),
            }))
        })?;
        if let Poll::Ready(result) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Ok(result);
        }
        as_caller(&me, |s, guest, thread| {
            if s.is_unwinding(guest, thread) {
                // It cannot report the kill through the future, nor wait:
                // ended hard.
                wasmtime::bail!(
                    "{} was killed and then waited for an async host function",
                    s.thread_name(guest, thread)
                );
            }
            s.wait_for_future(guest, thread);
            Ok(())
        })??;
        suspend().await;
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
    me: Me,
    fd: std::os::fd::RawFd,
    interest: Interest,
    timeout: Option<Duration>,
) -> Answer<(), i32> {
    if as_caller(&me, |s, guest, thread| s.unwinding_call(guest, thread))?? {
        return Ok(Err(errno::INTR));
    }
    // SAFETY: open while the caller waits, as the function's contract says;
    // the poller keeps the descriptor's number, not this borrow.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let waits = as_caller(&me, |s, guest, thread| {
        s.io_wait(guest, thread, borrowed, interest, timeout)
    })?;
    match waits {
        Ok(true) => {}
        Ok(false) => {
            as_caller(&me, |s, guest, thread| {
                s.sleep(guest, thread, RETRY_UNPOLLABLE)
            })?;
        }
        Err(e) => {
            tracing::warn!("a green thread could not wait for a host descriptor: {e}");
            return Ok(Err(errno::IO));
        }
    }
    suspend().await;
    // Killed while it waited: the wait reports it.
    if as_caller(&me, |s, guest, thread| s.is_unwinding(guest, thread))? {
        return Ok(Err(errno::INTR));
    }
    Ok(Ok(()))
}

/// Suspends the calling green thread once (the hub has recorded why it
/// waits). Its fresh time slice on resuming is [`func_wrap_green`]'s.
pub(crate) async fn suspend() {
    crate::execution::Suspend::default().await;
}

//! The host-call toolkit: how a host function runs as the green thread that
//! called it, and how it makes that green thread wait without blocking the
//! hub. Every file of host functions (`hub_imports`, `net_imports`,
//! `wasi_overrides`, the embedder's async functions) builds on these, and
//! none of them on another.
//!
//! A hub wait has one shape: *decide* on the hub's state (answer at once,
//! or record why the caller waits), *suspend* the caller's fiber once, and
//! when it is resumed *read the result* the hub left ([`wait_green`]).
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
use crate::host_functions::guest_memory::GuestMemory;
use crate::hub_state::{self, HubState};
use crate::io::poller::Interest;
use crate::scheduler::{GuestKey, ThreadKey};

/// Waits green: `decide` either answers at once (`Some`) or records why the
/// caller waits (`None`); the caller is then suspended until the hub wakes
/// it, and `result` reads the answer the hub left.
///
/// # Errors
/// What `decide` or `result` return, or if the hub is gone.
/// What a step of a host function answers, two ways to fail told apart:
/// `Err` traps the calling green thread (a wild pointer past its memory, a
/// call the hub will not serve), `Ok(Err(e))` is an error the guest is told
/// and may handle (an errno, a `NetError`), `Ok(Ok(v))` is the value.
pub(crate) type Answer<T, E> = Result<Result<T, E>>;

pub(crate) async fn wait_green<T>(
    caller: &mut Caller<'_, ThreadData>,
    decide: impl FnOnce(&mut HubState, GuestKey, ThreadKey) -> Result<Option<T>>,
    result: impl FnOnce(&mut HubState, GuestKey, ThreadKey) -> T,
) -> Result<T> {
    if let Some(now) = as_caller(caller, decide)?? {
        return Ok(now);
    }
    suspend(caller).await;
    as_caller(caller, result)
}

/// Runs `f` on the hub's state as the calling green thread `(guest, thread)`.
pub(crate) fn as_caller<R>(
    caller: &Caller<'_, ThreadData>,
    f: impl FnOnce(&mut HubState, GuestKey, ThreadKey) -> R,
) -> Result<R> {
    let (guest, thread) = (caller.data().guest, caller.data().thread);
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
                waiter: s.next_waiter(guest, thread),
                control: s.control(),
            }))
        })?;
        if let Poll::Ready(result) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Ok(result);
        }
        as_caller(caller, |s, guest, thread| {
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
) -> Answer<(), i32> {
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
    if as_caller(caller, |s, guest, thread| s.is_unwinding(guest, thread))? {
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

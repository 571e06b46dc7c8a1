//! Calls of a guest's functions by the host (a guest used as a plugin): the
//! handle the caller waits on, and what the hub keeps of each call while
//! its green thread runs.
//!
//! Each call runs as a new green thread of its guest, so calls into one
//! plugin overlap whenever they wait. Its result reaches the caller through
//! a [`PendingCall`], which any thread can wait on (blocking, with a
//! timeout) or `.await` (its waker is woken from the hub's thread).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::guest::GuestExit;

/// Why a call of a guest function gave no output.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The function returned an error: its message.
    #[error("the call failed: {0}")]
    Failed(String),
    /// The function panicked: the panic's message.
    #[error("the call panicked: {0}")]
    Panicked(String),
    /// The guest exports no function of that name.
    #[error("the guest has no function `{0}`")]
    NoSuchFunction(String),
    /// The call's green thread trapped (not a panic): the trap.
    #[error("the call trapped: {0}")]
    Trapped(String),
    /// The call was cancelled ([`PendingCall::cancel`]) before it ended.
    #[error("the call was cancelled")]
    Cancelled,
    /// The guest is not running (it ended before or during the call, or is
    /// no plugin): how it ended, if it has.
    #[error("the guest is not running{}", .0.as_ref().map(|e| format!(" (exit code {})", e.code)).unwrap_or_default())]
    GuestEnded(Option<GuestExit>),
    /// The hub could not start the call's green thread (a limit of the
    /// hub's or the guest's): why.
    #[error("the call could not start: {0}")]
    Refused(String),
    /// No result came within the caller's timeout (the call goes on; cancel
    /// it to stop it).
    #[error("no result within the timeout")]
    TimedOut,
    /// The guest has as many calls in flight as its
    /// `GuestOptions::max_calls_in_flight` allows (from `try_call`).
    #[error("the guest has as many calls in flight as it may")]
    Busy,
}

/// The result of a call: its output bytes, or why there are none.
pub type CallResult = Result<Vec<u8>, CallError>;

/// Where a call's result goes: shared by the hub and every clone of the
/// caller's [`PendingCall`].
#[derive(Default)]
pub(crate) struct CallReply {
    state: Mutex<ReplyState>,
    done: Condvar,
    /// Set once the result is stored: read without the lock.
    finished: AtomicBool,
}

#[derive(Default)]
struct ReplyState {
    result: Option<CallResult>,
    waker: Option<Waker>,
    /// Set by `cancel`: the hub kills the call's green thread when it sees it.
    cancelled: bool,
}

impl CallReply {
    /// Stores the result (the first one counts) and wakes whoever waits.
    pub(crate) fn finish(&self, result: CallResult) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.result.is_some() {
            return;
        }
        state.result = Some(result);
        self.finished.store(true, Ordering::Release);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        self.done.notify_all();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancelled
    }
}

/// A call in flight: wait for its result ([`PendingCall::wait`], blocking),
/// `.await` it, or [`cancel`](PendingCall::cancel) it. `Send + Sync`;
/// clones share the call.
///
/// ```no_run
/// # let runtime = wasmlet_host::Runtime::new(Default::default())?;
/// # let program = wasmlet_host::Program::from_file(runtime.engine(), "plugin.wasm")?;
/// let mut hub = wasmlet_host::Hub::new(&runtime);
/// let plugin = hub.add_plugin(&program, Default::default())?;
/// let call = hub.call(plugin, "upper", b"hello".to_vec())?;
/// hub.run_until_idle();
/// assert_eq!(call.try_result().unwrap()?, b"HELLO");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PendingCall {
    pub(crate) reply: Arc<CallReply>,
    /// Tells the hub (and wakes it) when the call is cancelled.
    pub(crate) hub: Arc<dyn CancelListener>,
}

/// What a [`PendingCall`] tells when it is cancelled: the hub's control,
/// which wakes the hub to kill the call's green thread.
pub(crate) trait CancelListener: Send + Sync {
    fn call_cancelled(&self);
}

impl std::fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall")
            .field("done", &self.try_result().is_some())
            .finish()
    }
}

impl PendingCall {
    /// The result, if the call has ended.
    pub fn try_result(&self) -> Option<CallResult> {
        let state = self.reply.state.lock().unwrap_or_else(|e| e.into_inner());
        state.result.clone()
    }

    /// Whether the call has ended (its result is ready): a load, without a
    /// lock, so cheap enough to watch in a loop.
    pub fn is_finished(&self) -> bool {
        self.reply.finished.load(Ordering::Acquire)
    }

    /// Blocks the calling thread until the call ends or `timeout` passes.
    /// The hub must be running on another thread (or the call must have
    /// ended): on the hub's own thread, drive the hub instead
    /// ([`Hub::run_until_idle`](crate::Hub::run_until_idle)).
    ///
    /// # Errors
    /// The call's error, or [`CallError::TimedOut`].
    pub fn wait(&self, timeout: Duration) -> CallResult {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.reply.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = &state.result {
                return result.clone();
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(CallError::TimedOut);
            }
            state = self
                .reply
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Cancels the call: its green thread is killed (one that has not
    /// started never runs), and the result is [`CallError::Cancelled`].
    /// Does nothing once the call has ended.
    pub fn cancel(&self) {
        {
            let mut state = self.reply.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.result.is_some() {
                return;
            }
            state.cancelled = true;
        }
        self.hub.call_cancelled();
    }
}

impl Future for PendingCall {
    type Output = CallResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CallResult> {
        let mut state = self.reply.state.lock().unwrap_or_else(|e| e.into_inner());
        match &state.result {
            Some(result) => Poll::Ready(result.clone()),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// What the hub keeps of a call while its green thread lives.
pub(crate) struct CallRecord {
    pub name: String,
    /// Taken by the guest's `call-begin`.
    pub input: Option<Vec<u8>>,
    /// Given by the guest's `call-return`: the first one counts.
    pub outcome: Option<(crate::abi::CallStatus, Vec<u8>)>,
    /// How its green thread failed, if it did.
    pub trap: Option<String>,
    pub reply: Arc<CallReply>,
}

impl CallRecord {
    /// The result the call's end gives.
    pub fn result(self) -> CallResult {
        use crate::abi::CallStatus;
        if self.reply.is_cancelled() {
            return Err(CallError::Cancelled);
        }
        match self.outcome {
            Some((CallStatus::Ok, output)) => Ok(output),
            Some((CallStatus::Failed, message)) => Err(CallError::Failed(
                String::from_utf8_lossy(&message).into_owned(),
            )),
            Some((CallStatus::NoSuchFunction, _)) => Err(CallError::NoSuchFunction(self.name)),
            Some((CallStatus::Panicked, message)) => Err(CallError::Panicked(
                String::from_utf8_lossy(&message).into_owned(),
            )),
            None => Err(CallError::Trapped(self.trap.unwrap_or_else(|| {
                "the call's green thread ended without a result".into()
            }))),
        }
    }
}

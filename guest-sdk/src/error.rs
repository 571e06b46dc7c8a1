//! How a green thread can fail to produce its result.

use std::fmt;
use std::sync::Arc;

use crate::timeout::{TimedOut, Timeout};

/// An error a green thread is given to end or fail with: by
/// [`kill_with`](crate::kill_with), [`Event::send_error`](crate::Event::send_error),
/// or a [`Timeout`] made with an error of its own. One type for all of them,
/// shared by every waiter (hence `Arc`), and `Send + Sync` so that it rides
/// inside an `io::Error` (where `?` in I/O code takes it) and can be
/// downcast back out.
pub type ErrorObject = Arc<dyn std::error::Error + Send + Sync>;

/// Why a blocking call returned before what it waited for: eventlet raises
/// `Timeout` or `GreenletExit` into the waiting green thread there; Rust on
/// wasm has no unwinding, so the call returns this in its `Err`, and the
/// caller propagates it with `?`.
///
/// On [`Killed`](Interrupted::Killed), return: the green thread's values are
/// dropped on the way out (its std locks released, its borrows ended), its
/// links run, and its [`wait`](crate::GreenThread::wait) reports
/// [`GreenThreadError::Killed`]. Every blocking call it makes after the kill
/// returns `Killed` at once, without waiting; a green thread that goes on
/// making them (more than 16) is ended at the 17th, its values leaked. (A
/// green thread killed while it computes sees the kill at its next blocking
/// call.)
///
/// ```no_run
/// use std::time::Duration;
///
/// let worker = wasmlet::spawn(|| -> Result<u32, wasmlet::Interrupted> {
///     let guard = std::sync::Mutex::new(0); // dropped if killed
///     let _held = guard.lock().unwrap();
///     wasmlet::sleep(Duration::from_secs(60))?;
///     Ok(1)
/// });
/// wasmlet::sleep(Duration::ZERO).ok();
/// worker.kill();
/// assert!(worker.wait().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// A [`Timeout`] (or the call's own time limit) ran out.
    TimedOut(TimedOut),
    /// The calling green thread was killed: return.
    Killed,
}

impl Interrupted {
    /// The time limit that ran out, if that is why.
    pub fn timed_out(&self) -> Option<TimedOut> {
        match self {
            Interrupted::TimedOut(t) => Some(t.clone()),
            Interrupted::Killed => None,
        }
    }

    /// True if the calling green thread was killed.
    pub fn is_killed(&self) -> bool {
        matches!(self, Interrupted::Killed)
    }

    /// True if `timeout` is the one that ran out.
    pub fn is(&self, timeout: &Timeout) -> bool {
        self.timed_out().is_some_and(|t| t.is(timeout))
    }
}

impl From<TimedOut> for Interrupted {
    fn from(t: TimedOut) -> Self {
        Interrupted::TimedOut(t)
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupted::TimedOut(t) => t.fmt(f),
            Interrupted::Killed => f.write_str("interrupted by a kill"),
        }
    }
}

impl std::error::Error for Interrupted {}

/// Why [`GreenThread::wait`](crate::GreenThread::wait) has no result.
///
/// eventlet raises the green thread's exception out of `wait()`; here it is
/// the `Err` side of the result.
#[derive(Clone, Debug)]
pub enum GreenThreadError {
    /// Stopped by [`kill`](crate::kill) or [`cancel`](crate::Thread::cancel)
    /// (eventlet's `GreenletExit`).
    Killed,
    /// Stopped by [`kill_with`](crate::kill_with) with this error.
    KilledWith(ErrorObject),
    /// A [`spawn_after_local`](crate::spawn_after_local) thread whose spawner
    /// ended before it was due: it never ran.
    Cancelled,
    /// The green thread panicked with this message.
    Panicked(String),
    /// The green thread hit a wasm trap (described here) other than a panic.
    Trapped(&'static str),
    /// The green thread ended without leaving a result (its ending itself
    /// failed; the hub printed why).
    Vanished,
    /// The wait itself was interrupted: the waiting green thread's
    /// [`Timeout`] fired, or it was killed, before this one ended (which it
    /// may still do).
    Interrupted(Interrupted),
}

impl fmt::Display for GreenThreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GreenThreadError::Killed => f.write_str("green thread was killed (GreenletExit)"),
            GreenThreadError::KilledWith(e) => write!(f, "green thread was killed: {e}"),
            GreenThreadError::Cancelled => {
                f.write_str("green thread was cancelled: its spawner ended before it was due")
            }
            GreenThreadError::Panicked(msg) => write!(f, "green thread panicked: {msg}"),
            GreenThreadError::Trapped(what) => write!(f, "green thread trapped: {what}"),
            GreenThreadError::Vanished => f.write_str("green thread ended without a result"),
            GreenThreadError::Interrupted(i) => write!(f, "wait for green thread {i}"),
        }
    }
}

impl std::error::Error for GreenThreadError {}

impl From<Interrupted> for GreenThreadError {
    fn from(i: Interrupted) -> Self {
        GreenThreadError::Interrupted(i)
    }
}

/// Why [`try_spawn`](crate::try_spawn) started no green thread: a limit the
/// host set. [`spawn`](crate::spawn) traps the caller instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The hub holds as many green threads as it may (over all its guests).
    HubFull,
    /// This guest holds as many green threads as the host lets it.
    GuestFull,
    /// Another green thread would take this guest past its host-memory
    /// limit.
    HostMemory,
    /// No shadow stack could be had: this guest's linear memory is full.
    LinearMemory,
    /// This program cannot spawn (it does not export the SDK's entry
    /// points).
    Unsupported,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpawnError::HubFull => "the hub holds as many green threads as it may",
            SpawnError::GuestFull => "this guest holds as many green threads as it may",
            SpawnError::HostMemory => "another green thread would pass the host memory limit",
            SpawnError::LinearMemory => "no memory left for another green thread's stack",
            SpawnError::Unsupported => "this program cannot spawn green threads",
        })
    }
}

impl std::error::Error for SpawnError {}

impl From<GreenThreadError> for std::io::Error {
    /// For `?` in code that returns `io::Result`: an interruption keeps its
    /// kind (see [`Interrupted`]); anything else is `Other`, carrying the
    /// error itself (`get_ref()` and `downcast` find it, and a
    /// [`KilledWith`](GreenThreadError::KilledWith) error within it).
    fn from(e: GreenThreadError) -> std::io::Error {
        match e {
            GreenThreadError::Interrupted(i) => i.into(),
            e => std::io::Error::other(e),
        }
    }
}

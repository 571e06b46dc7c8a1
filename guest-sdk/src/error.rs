//! How a green thread can fail to produce its result.

use std::fmt;
use std::rc::Rc;

use crate::timeout::TimedOut;

/// Why [`GreenThread::wait`](crate::GreenThread::wait) has no result.
///
/// eventlet raises the green thread's exception out of `wait()`; here it is
/// the `Err` side of the result.
#[derive(Clone, Debug)]
pub enum GreenThreadError {
    /// Stopped by [`kill`](crate::kill) or [`cancel`](crate::GreenThread::cancel)
    /// (eventlet's `GreenletExit`).
    Killed,
    /// Stopped by [`kill_with`](crate::kill_with) with this error.
    KilledWith(Rc<dyn std::error::Error>),
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
    /// The waiting green thread's [`Timeout`](crate::Timeout) fired before
    /// this one ended (which it may still do).
    TimedOut(TimedOut),
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
            GreenThreadError::TimedOut(t) => write!(f, "wait for green thread {t}"),
        }
    }
}

impl std::error::Error for GreenThreadError {}

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

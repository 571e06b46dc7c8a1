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

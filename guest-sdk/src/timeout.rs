//! eventlet's `Timeout`: a time limit on the blocking calls a green thread
//! makes while it is pending.
//!
//! eventlet raises its `Timeout` exception into the green thread at the point
//! where it is suspended. Rust on wasm has no unwinding, so here the blocking
//! call that is suspended when the limit passes returns early with an
//! [`Interrupted::TimedOut`](crate::Interrupted) error instead (in its
//! `Err`), which the caller propagates with `?` like any other error. A timeout fires once, at one call; after
//! that it is spent, as an eventlet `Timeout` is once raised.
//!
//! Every blocking call of the SDK honours the calling green thread's pending
//! timeouts: [`sleep`](crate::sleep), [`GreenThread::wait`](crate::GreenThread::wait),
//! and the waits of [`Event`](crate::Event), [`Queue`](crate::Queue),
//! [`Semaphore`](crate::Semaphore) and [`GreenPool`](crate::GreenPool).
//! Code that never blocks is never interrupted.

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A time limit that ran out: eventlet's `Timeout` exception.
///
/// It names the [`Timeout`] that fired, so nested timeouts can tell whose
/// limit it was ([`TimedOut::is`]); a limit given to a single call (such as
/// [`Queue::get_timeout`](crate::Queue::get_timeout)) belongs to no
/// `Timeout`. A timeout made with [`Timeout::with_error`] carries its error
/// (eventlet's `Timeout(seconds, exception)` raises that exception).
#[derive(Clone, Debug)]
pub struct TimedOut {
    /// The id of the [`Timeout`] that fired; 0 for a call's own limit.
    timeout: u64,
    error: Option<Arc<dyn Error + Send + Sync>>,
}

impl PartialEq for TimedOut {
    /// Two are equal if the same limit ran out.
    fn eq(&self, other: &Self) -> bool {
        self.timeout == other.timeout
    }
}

impl Eq for TimedOut {}

impl TimedOut {
    /// The error of a call whose own time limit passed.
    pub(crate) const OWN: TimedOut = TimedOut {
        timeout: 0,
        error: None,
    };

    /// True if `timeout` is the one that fired.
    pub fn is(&self, timeout: &Timeout) -> bool {
        self.timeout != 0 && self.timeout == timeout.state.id
    }

    /// The error the [`Timeout`] was made with ([`Timeout::with_error`]),
    /// if any.
    pub fn custom_error(&self) -> Option<Arc<dyn Error + Send + Sync>> {
        self.error.clone()
    }
}

impl fmt::Display for TimedOut {
    /// "timed out", or the custom error's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(e) => e.fmt(f),
            None => f.write_str("timed out"),
        }
    }
}

impl Error for TimedOut {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Made with [`Timeout::unstarted`], or not started again since.
    Unstarted,
    Pending,
    Fired,
    Cancelled,
}

struct State {
    id: u64,
    deadline: Cell<Instant>,
    /// The duration it was made with (eventlet's `seconds`).
    duration: Duration,
    status: Cell<Status>,
    error: Option<Arc<dyn Error + Send + Sync>>,
}

/// A time limit on the calling green thread's blocking calls, from now until
/// it fires, is cancelled, or is dropped.
///
/// When `duration` has passed, the blocking call the green thread is in (or
/// its next one, if it is running then) returns
/// [`Interrupted::TimedOut`](crate::Interrupted) with its [`TimedOut`]. Nested
/// timeouts each fire their own error, earliest deadline first.
///
/// ```no_run
/// use std::time::Duration;
/// use wasmlet::{Queue, Timeout};
///
/// let queue: Queue<u32> = Queue::new();
/// let timeout = Timeout::new(Duration::from_millis(50));
/// match queue.get() {
///     Ok(item) => println!("got {item}"),
///     Err(e) if e.timed_out().is_some_and(|t| t.is(&timeout)) => println!("nothing came"),
///     Err(e) => println!("{e}"),
/// }
/// ```
pub struct Timeout {
    state: Rc<State>,
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("id", &self.state.id)
            .field("status", &self.state.status.get())
            .finish()
    }
}

thread_local! {
    /// The calling green thread's pending timeouts, oldest first. A raw
    /// pointer rather than a `Vec` so that the TLS slot needs no destructor
    /// (green threads end without running TLS destructors); the list is freed
    /// whenever it becomes empty.
    static PENDING: Cell<*mut Vec<Rc<State>>> = const { Cell::new(std::ptr::null_mut()) };
}

impl Timeout {
    /// Starts a time limit of `duration` on the calling green thread.
    pub fn new(duration: Duration) -> Timeout {
        let timeout = Timeout::made(duration, None);
        timeout.start();
        timeout
    }

    /// [`Timeout::new`], but when it fires the interrupted call's
    /// [`TimedOut`] carries `error` (its message is the error's; see
    /// [`TimedOut::custom_error`]): eventlet's `Timeout(seconds, exception)`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let _limit = wasmlet::Timeout::with_error(Duration::from_millis(5), "backend too slow");
    /// let err = wasmlet::sleep(Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(err.to_string(), "backend too slow");
    /// ```
    pub fn with_error(
        duration: Duration,
        error: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Timeout {
        let timeout = Timeout::made(duration, Some(Arc::from(error.into())));
        timeout.start();
        timeout
    }

    /// A timeout that is not running yet: [`start`](Self::start) starts it
    /// (eventlet schedules a `Timeout` when it is made; this is the form
    /// that waits for `start()`).
    ///
    /// ```no_run
    /// let limit = wasmlet::Timeout::unstarted(std::time::Duration::from_millis(5));
    /// assert!(!limit.pending());
    /// limit.start();
    /// assert!(limit.pending());
    /// ```
    pub fn unstarted(duration: Duration) -> Timeout {
        Timeout::made(duration, None)
    }

    fn made(duration: Duration, error: Option<Arc<dyn Error + Send + Sync>>) -> Timeout {
        let now = Instant::now();
        Timeout {
            state: Rc::new(State {
                id: next_id(),
                deadline: Cell::new(now),
                duration,
                status: Cell::new(Status::Unstarted),
                error,
            }),
        }
    }

    /// Starts the timeout: it fires `duration` from now, at the calling
    /// green thread's blocking call then. A timeout already pending starts
    /// over; a spent one (fired or cancelled) runs again.
    pub fn start(&self) {
        let now = Instant::now();
        let deadline = now
            .checked_add(self.state.duration)
            .unwrap_or(now + FAR_FUTURE);
        self.state.deadline.set(deadline);
        let was = self.state.status.replace(Status::Pending);
        if was != Status::Pending {
            with_pending(|list| {
                if !list.iter().any(|s| Rc::ptr_eq(s, &self.state)) {
                    list.push(self.state.clone());
                }
            });
        }
    }

    /// Stops the timeout: it never fires (unless started again).
    /// Cancelling a spent or unstarted timeout does nothing.
    pub fn cancel(&self) {
        if self.state.status.get() == Status::Pending {
            self.state.status.set(Status::Cancelled);
        }
    }

    /// True while the timeout may still fire.
    pub fn pending(&self) -> bool {
        self.state.status.get() == Status::Pending
    }

    /// The duration it was started with (eventlet's `seconds`).
    pub fn duration(&self) -> Duration {
        self.state.duration
    }

    /// True once the timeout has fired (interrupted a blocking call).
    pub fn fired(&self) -> bool {
        self.state.status.get() == Status::Fired
    }

    /// The error this timeout's firing returns.
    pub fn error(&self) -> TimedOut {
        TimedOut {
            timeout: self.state.id,
            error: self.state.error.clone(),
        }
    }
}

impl fmt::Display for Timeout {
    /// As eventlet's `Timeout.__str__`: its duration and whether it is
    /// still pending.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.state.status.get() {
            Status::Unstarted => "not started",
            Status::Pending => "pending",
            Status::Fired => "fired",
            Status::Cancelled => "cancelled",
        };
        write!(
            f,
            "timeout of {:.3} s ({status})",
            self.state.duration.as_secs_f64()
        )
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.cancel();
        prune();
    }
}

/// Runs `f` under a [`Timeout`] of `duration`; returns `default` instead of
/// `f`'s result if the timeout fired while `f` ran (eventlet's
/// `with_timeout(..., timeout_value=default)`).
///
/// ```no_run
/// use std::time::Duration;
///
/// let queue: wasmlet::Queue<&str> = wasmlet::Queue::new();
/// let got = wasmlet::with_timeout(Duration::from_millis(10), "nothing", || {
///     queue.get().unwrap_or("interrupted")
/// });
/// assert_eq!(got, "nothing");
/// ```
pub fn with_timeout<R>(duration: Duration, default: R, f: impl FnOnce() -> R) -> R {
    let timeout = Timeout::new(duration);
    let result = f();
    if timeout.fired() {
        default
    } else {
        result
    }
}

/// Runs `f` under a [`Timeout`] of `duration`, and reports the timeout if
/// it fired while `f` ran (eventlet's `with_timeout` without a
/// `timeout_value`, which re-raises).
///
/// ```no_run
/// use std::time::Duration;
///
/// let queue: wasmlet::Queue<u32> = wasmlet::Queue::new();
/// let got = wasmlet::try_with_timeout(Duration::from_millis(10), || queue.get().ok());
/// assert!(got.is_err(), "nothing came within 10 ms");
/// ```
///
/// # Errors
/// The timeout's [`TimedOut`], if it fired.
pub fn try_with_timeout<R>(duration: Duration, f: impl FnOnce() -> R) -> Result<R, TimedOut> {
    let timeout = Timeout::new(duration);
    let result = f();
    if timeout.fired() {
        Err(timeout.error())
    } else {
        Ok(result)
    }
}

/// About 30,000 years: a deadline that never comes, for durations past what
/// `Instant` can add.
const FAR_FUTURE: Duration = Duration::from_secs(1 << 40);

fn next_id() -> u64 {
    // Statics live in the guest's one shared memory: ids are guest-wide.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn with_pending<R>(f: impl FnOnce(&mut Vec<Rc<State>>) -> R) -> R {
    PENDING.with(|cell| {
        let mut list = cell.get();
        if list.is_null() {
            list = Box::into_raw(Box::default());
            cell.set(list);
        }
        // SAFETY: the list is this green thread's own (TLS), allocated above
        // or by an earlier call, and no reference to it outlives this call.
        let result = f(unsafe { &mut *list });
        // SAFETY: as above.
        if unsafe { (*list).is_empty() } {
            cell.set(std::ptr::null_mut());
            // SAFETY: allocated by Box::into_raw above; no longer referenced.
            drop(unsafe { Box::from_raw(list) });
        }
        result
    })
}

/// Drops spent timeouts from the calling green thread's list.
fn prune() {
    if PENDING.with(|cell| !cell.get().is_null()) {
        with_pending(|list| list.retain(|s| s.status.get() == Status::Pending));
    }
}

/// Forgets every timeout of the calling green thread: it is ending, and the
/// code that owned them is gone.
pub(crate) fn forget_all() {
    if PENDING.with(|cell| !cell.get().is_null()) {
        with_pending(Vec::clear);
    }
}

/// The earliest limit on one blocking call: its own deadline, if any, or the
/// calling green thread's earliest pending [`Timeout`]. If that timeout is
/// cancelled (by another green thread holding it) while the call waits, the
/// limit moves to the next one: the call neither fires it nor gives up.
pub(crate) struct Limit {
    /// The call's own deadline.
    own: Option<Instant>,
    deadline: Cell<Option<Instant>>,
    /// The timeout whose deadline it is (None: the call's own).
    by: Cell<Option<Rc<State>>>,
}

impl Limit {
    /// The limit for a call that may wait `own` at most (None: for ever).
    pub(crate) fn new(own: Option<Duration>) -> Limit {
        let limit = Limit {
            own: own.map(|d| {
                let now = Instant::now();
                now.checked_add(d).unwrap_or(now + FAR_FUTURE)
            }),
            deadline: Cell::new(None),
            by: Cell::new(None),
        };
        limit.refresh();
        limit
    }

    /// Finds the earliest of the call's own deadline and the pending
    /// timeouts'.
    fn refresh(&self) {
        let mut deadline = self.own;
        let mut by = None;
        prune();
        if PENDING.with(|cell| !cell.get().is_null()) {
            with_pending(|list| {
                for state in list.iter() {
                    if deadline.is_none_or(|d| state.deadline.get() < d) {
                        deadline = Some(state.deadline.get());
                        by = Some(state.clone());
                    }
                }
            });
        }
        self.deadline.set(deadline);
        self.by.set(by);
    }

    /// What to hand the hub as `timeout-ns`: `u64::MAX` for none, 0 once the
    /// limit has passed.
    pub(crate) fn timeout_ns(&self) -> u64 {
        match self.deadline.get() {
            None => u64::MAX,
            Some(deadline) => nanos(deadline.saturating_duration_since(Instant::now())),
        }
    }

    /// True if the call may wait for ever.
    pub(crate) fn unbounded(&self) -> bool {
        self.deadline.get().is_none()
    }

    /// After a wait that ended without what it waited for: the error if the
    /// limit has passed (firing the timeout that set it), else `Ok` (an early
    /// wake-up, or the timeout was cancelled meanwhile: wait again).
    pub(crate) fn check(&self) -> Result<(), TimedOut> {
        let Some(deadline) = self.deadline.get() else {
            return Ok(());
        };
        if Instant::now() < deadline {
            return Ok(());
        }
        let by = self.by.take();
        match &by {
            None => Err(TimedOut::OWN),
            Some(state) if state.status.get() == Status::Pending => {
                state.status.set(Status::Fired);
                prune();
                Err(TimedOut {
                    timeout: state.id,
                    error: state.error.clone(),
                })
            }
            Some(_) => {
                // Cancelled meanwhile (by another green thread holding it):
                // the next limit applies, or none.
                self.refresh();
                Ok(())
            }
        }
    }
}

/// A duration as the hub's nanoseconds, saturating just below `u64::MAX`
/// (which means "no timeout" to the hub).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

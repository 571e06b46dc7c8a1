//! eventlet's `event.Event`: a value (or an error) that any number of green
//! threads wait for, sent once.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ErrorObject, Interrupted};
use crate::timeout::Limit;
use crate::waiter::{keep, wait_in, WaitList};

/// What an [`Event`] carries once sent: the value, or the error sent with
/// [`Event::send_error`].
type Outcome<T> = Result<T, ErrorObject>;

/// Why [`Event::wait`] has no value.
#[derive(Clone, Debug)]
pub enum EventError {
    /// The wait's time limit, or a [`Timeout`](crate::Timeout), ran out, or
    /// the waiting green thread was killed.
    Interrupted(Interrupted),
    /// The event was sent this error ([`Event::send_error`]).
    Failed(ErrorObject),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Interrupted(i) => write!(f, "event wait {i}"),
            EventError::Failed(e) => write!(f, "event failed: {e}"),
        }
    }
}

impl Error for EventError {}

/// [`Event::send`] on an event already sent (and not [`reset`](Event::reset)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlreadySent;

impl fmt::Display for AlreadySent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event was already sent; reset() it before sending again")
    }
}

impl Error for AlreadySent {}

/// [`Event::reset`] of an event that was never sent (or already reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeverSent;

impl fmt::Display for NeverSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event was never sent: there is nothing to reset")
    }
}

impl Error for NeverSent {}

struct State<T> {
    sent: Option<Outcome<T>>,
    waiters: WaitList<Outcome<T>>,
}

/// A value that green threads wait for, sent once by another: eventlet's
/// `Event`. Clones are handles to the same event.
///
/// [`send`](Self::send) wakes every waiter without yielding; each gets its
/// own clone of the value, even if the event is [`reset`](Self::reset)
/// before it runs.
///
/// ```no_run
/// let done = wasmlet::Event::new();
/// let sender = done.clone();
/// wasmlet::spawn_n(move || sender.send(42).unwrap());
/// assert_eq!(done.wait().unwrap(), 42);
/// ```
pub struct Event<T = ()> {
    state: Rc<RefCell<State<T>>>,
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Self {
        Event {
            state: self.state.clone(),
        }
    }
}

impl<T> Default for Event<T> {
    fn default() -> Self {
        Event {
            state: Rc::new(RefCell::new(State {
                sent: None,
                waiters: WaitList::default(),
            })),
        }
    }
}

impl<T> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Event")
            .field("ready", &state.sent.is_some())
            .field("waiting", &state.waiters.len())
            .finish()
    }
}

impl<T: Clone> Event<T> {
    /// An event not sent yet.
    pub fn new() -> Self {
        Event::default()
    }

    /// Sends `value`: every waiter wakes with it (the caller does not yield),
    /// and later waits return it at once.
    pub fn send(&self, value: T) -> Result<(), AlreadySent> {
        self.deliver(Ok(value))
    }

    /// Sends an error: every waiter (and later wait) gets
    /// [`EventError::Failed`] with it. eventlet's `send_exception`.
    pub fn send_error(
        &self,
        error: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Result<(), AlreadySent> {
        self.deliver(Err(Arc::from(error.into())))
    }

    fn deliver(&self, outcome: Outcome<T>) -> Result<(), AlreadySent> {
        let mut state = self.state.borrow_mut();
        if state.sent.is_some() {
            return Err(AlreadySent);
        }
        state.waiters.wake_all(&outcome);
        state.sent = Some(outcome);
        Ok(())
    }

    /// Yields until the event is sent; returns its value or error.
    pub fn wait(&self) -> Result<T, EventError> {
        self.wait_limited(None)
    }

    /// [`wait`](Self::wait), giving up with [`EventError::Interrupted`]
    /// after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<T, EventError> {
        self.wait_limited(Some(timeout))
    }

    fn wait_limited(&self, own: Option<Duration>) -> Result<T, EventError> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if let Some(outcome) = &state.sent {
                return outcome.clone().map_err(EventError::Failed);
            }
            state.waiters.add(None)
        };
        let limit = Limit::new(own);
        wait_in(&self.state, |s| &mut s.waiters, keep, &waiter, &limit)
            .map_err(EventError::Interrupted)?;
        let outcome = waiter.take().expect("a woken waiter holds the outcome");
        outcome.map_err(EventError::Failed)
    }

    /// True once sent (value or error).
    pub fn ready(&self) -> bool {
        self.state.borrow().sent.is_some()
    }

    /// The sent value or error, without waiting; `None` if not sent yet.
    pub fn poll(&self) -> Option<Result<T, EventError>> {
        let state = self.state.borrow();
        let outcome = state.sent.as_ref()?;
        Some(outcome.clone().map_err(EventError::Failed))
    }

    /// True if the event was sent a value (eventlet's `has_result`).
    pub fn has_result(&self) -> bool {
        matches!(self.state.borrow().sent, Some(Ok(_)))
    }

    /// True if the event was sent an error (eventlet's `has_exception`).
    pub fn has_exception(&self) -> bool {
        matches!(self.state.borrow().sent, Some(Err(_)))
    }

    /// The value sent, if one was; never waits (eventlet's `poll_result`).
    pub fn poll_result(&self) -> Option<T> {
        match &self.state.borrow().sent {
            Some(Ok(value)) => Some(value.clone()),
            _ => None,
        }
    }

    /// The error sent, if one was; never waits (eventlet's
    /// `poll_exception`).
    pub fn poll_exception(&self) -> Option<ErrorObject> {
        match &self.state.borrow().sent {
            Some(Err(error)) => Some(error.clone()),
            _ => None,
        }
    }

    /// Makes the event unsent again, so it can be sent anew. Waiters woken
    /// by the last send still get that send's value.
    ///
    /// # Errors
    /// [`NeverSent`] if the event has not been sent since it was made or last
    /// reset (eventlet refuses to re-reset a fresh event too).
    pub fn reset(&self) -> Result<(), NeverSent> {
        let mut state = self.state.borrow_mut();
        if state.sent.is_none() {
            return Err(NeverSent);
        }
        state.sent = None;
        Ok(())
    }

    /// How many green threads are waiting.
    pub fn waiting(&self) -> usize {
        self.state.borrow().waiters.len()
    }
}

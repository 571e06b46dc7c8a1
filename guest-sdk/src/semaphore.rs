//! eventlet's `semaphore.Semaphore` and `BoundedSemaphore`: a counter of
//! permits that green threads acquire and release.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;
use std::time::Duration;

use crate::error::Interrupted;
use crate::timeout::{Limit, TimedOut};
use crate::waiter::{wait_in, WaitList};

/// [`BoundedSemaphore::release`] past the semaphore's initial count: a bug
/// in the caller (eventlet raises `ValueError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleasedTooOften;

impl fmt::Display for ReleasedTooOften {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("semaphore released too many times")
    }
}

impl std::error::Error for ReleasedTooOften {}

/// Invariant: `counter` > 0 only while no one waits (a release hands its
/// permit straight to the first waiter).
struct State {
    counter: usize,
    /// The most permits a bounded semaphore may hold.
    bound: Option<usize>,
    waiters: WaitList<()>,
}

impl State {
    /// Takes back the permit of a waiter killed before it could use it.
    fn give_back(&mut self, (): ()) {
        if self.waiters.hand_off(()).is_err() {
            self.counter += 1;
        }
    }
}

/// A counting semaphore: eventlet's `Semaphore`. Clones are handles to the
/// same semaphore.
///
/// Waiters are served first come, first served: a release hands its permit
/// to the green thread that has waited longest.
///
/// ```no_run
/// let sem = wasmlet::Semaphore::new(2);
/// let _permit = sem.guard().unwrap(); // released when dropped
/// assert_eq!(sem.balance(), 1);
/// ```
#[derive(Clone)]
pub struct Semaphore {
    state: Rc<RefCell<State>>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Semaphore")
            .field("counter", &state.counter)
            .field("waiting", &state.waiters.len())
            .finish()
    }
}

impl Default for Semaphore {
    /// A semaphore of one permit (eventlet's default `value=1`).
    fn default() -> Self {
        Semaphore::new(1)
    }
}

impl Semaphore {
    /// A semaphore holding `value` permits.
    pub fn new(value: usize) -> Semaphore {
        Semaphore::with_bound(value, None)
    }

    fn with_bound(value: usize, bound: Option<usize>) -> Semaphore {
        Semaphore {
            state: Rc::new(RefCell::new(State {
                counter: value,
                bound,
                waiters: WaitList::default(),
            })),
        }
    }

    /// Takes a permit, yielding until one is free.
    ///
    /// # Errors
    /// [`Interrupted`]: a [`Timeout`](crate::Timeout) of the caller fired,
    /// or the caller was killed, while it waited.
    pub fn acquire(&self) -> Result<(), Interrupted> {
        self.acquire_limited(Some(None))
    }

    /// [`acquire`](Self::acquire), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); `timeout` passing is
    /// [`Interrupted::TimedOut`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), Interrupted> {
        self.acquire_limited(Some(Some(timeout)))
    }

    /// Takes a permit if one is free, without yielding; true if it did
    /// (eventlet's `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> bool {
        self.acquire_limited(None).is_ok()
    }

    fn acquire_limited(&self, wait: Option<Option<Duration>>) -> Result<(), Interrupted> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.counter > 0 {
                state.counter -= 1;
                return Ok(());
            }
            if wait.is_none() {
                return Err(TimedOut::OWN.into());
            }
            state.waiters.add(None)
        };
        let limit = Limit::new(wait.flatten());
        wait_in(
            &self.state,
            |s| &mut s.waiters,
            State::give_back,
            &waiter,
            &limit,
        )
    }

    /// Takes a permit and returns a guard that releases it when dropped
    /// (eventlet's `with sem:`).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn guard(&self) -> Result<SemaphoreGuard, Interrupted> {
        self.acquire()?;
        Ok(SemaphoreGuard { sem: self.clone() })
    }

    /// Returns a permit: the longest waiter gets it (and is woken; the caller
    /// does not yield), or the count goes up.
    pub fn release(&self) {
        self.try_release()
            .expect("a BoundedSemaphore is released through BoundedSemaphore::release");
    }

    fn try_release(&self) -> Result<(), ReleasedTooOften> {
        let mut state = self.state.borrow_mut();
        if state.waiters.hand_off(()).is_ok() {
            return Ok(());
        }
        if state.bound.is_some_and(|bound| state.counter >= bound) {
            return Err(ReleasedTooOften);
        }
        state.counter += 1;
        Ok(())
    }

    /// Free permits minus waiting green threads: negative when green threads
    /// wait (eventlet's `balance`).
    pub fn balance(&self) -> isize {
        let state = self.state.borrow();
        state.counter as isize - state.waiters.len() as isize
    }

    /// Free permits.
    pub fn counter(&self) -> usize {
        self.state.borrow().counter
    }

    /// True if `acquire` would wait.
    pub fn locked(&self) -> bool {
        self.state.borrow().counter == 0
    }
}

/// A permit of a [`Semaphore`] (or [`BoundedSemaphore`]), released when
/// dropped.
#[must_use = "the permit is released as soon as the guard is dropped"]
pub struct SemaphoreGuard {
    sem: Semaphore,
}

impl fmt::Debug for SemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        // Never too often: the guard holds a permit it took.
        let _ = self.sem.try_release();
    }
}

/// A [`Semaphore`] that refuses to be released past its initial count:
/// eventlet's `BoundedSemaphore`. Everything but `release` is the
/// semaphore's.
///
/// ```no_run
/// let sem = wasmlet::BoundedSemaphore::new(1);
/// sem.acquire().unwrap();
/// sem.release().unwrap();
/// assert!(sem.release().is_err()); // one release too many
/// ```
#[derive(Clone, Debug)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// A semaphore holding `value` permits, and never more.
    pub fn new(value: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            sem: Semaphore::with_bound(value, Some(value)),
        }
    }

    /// Returns a permit; an error (and no change) if that would make more
    /// permits than the semaphore started with.
    pub fn release(&self) -> Result<(), ReleasedTooOften> {
        self.sem.try_release()
    }
}

impl Deref for BoundedSemaphore {
    type Target = Semaphore;

    fn deref(&self) -> &Semaphore {
        &self.sem
    }
}

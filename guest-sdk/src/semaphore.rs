//! eventlet's `semaphore.Semaphore` and `BoundedSemaphore`: a counter of
//! permits that green threads acquire and release.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;
use std::time::Duration;

use crate::error::Interrupted;
use crate::timeout::{Limit, TimedOut};
use crate::waiter::{wait_in, Wait, WaitList};

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
        self.acquire_limited(Wait::Forever)
    }

    /// [`acquire`](Self::acquire), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); `timeout` passing is
    /// [`Interrupted::TimedOut`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), Interrupted> {
        self.acquire_limited(Wait::For(timeout))
    }

    /// Takes a permit if one is free, without yielding; true if it did
    /// (eventlet's `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> bool {
        self.acquire_limited(Wait::No).is_ok()
    }

    fn acquire_limited(&self, wait: Wait) -> Result<(), Interrupted> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.counter > 0 {
                state.counter -= 1;
                return Ok(());
            }
            if wait == Wait::No {
                return Err(TimedOut::OWN.into());
            }
            state.waiters.add(None)
        };
        let limit = wait.limit();
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

/// A semaphore whose `release` waits while the count is at its limit:
/// eventlet's `CappedSemaphore`. `acquire` waits while the count is 0,
/// `release` while it is `limit`; a release hands its permit straight to
/// the longest-waiting acquirer, and an acquire admits the longest-waiting
/// releaser (or, with the count at 0, takes its permit directly, so a
/// `CappedSemaphore::new(0, 0)` passes permits from releasers to acquirers).
/// Clones are handles to the same semaphore.
///
/// ```no_run
/// let capped = wasmlet::CappedSemaphore::new(1, 1);
/// assert!(!capped.try_release()); // at its limit: release would wait
/// capped.acquire().unwrap();
/// capped.release().unwrap();
/// ```
#[derive(Clone)]
pub struct CappedSemaphore {
    state: Rc<RefCell<CappedState>>,
}

/// Invariant: acquirers wait only while `count` is 0, releasers only while
/// it is `limit` (or while an acquirer could take their permit first).
struct CappedState {
    count: usize,
    limit: usize,
    acquirers: WaitList<()>,
    releasers: WaitList<()>,
}

impl CappedState {
    /// A release that does not wait: to the longest-waiting acquirer, else
    /// into the count. Also how the permit of an acquirer killed after it
    /// was handed one goes back.
    fn put_back(&mut self, (): ()) {
        if self.acquirers.hand_off(()).is_err() {
            self.count += 1;
        }
    }
}

impl fmt::Debug for CappedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("CappedSemaphore")
            .field("count", &state.count)
            .field("limit", &state.limit)
            .field("acquiring", &state.acquirers.len())
            .field("releasing", &state.releasers.len())
            .finish()
    }
}

impl CappedSemaphore {
    /// A semaphore holding `count` permits, at most `limit` (a `count` above
    /// `limit` is taken as `limit`).
    pub fn new(count: usize, limit: usize) -> CappedSemaphore {
        CappedSemaphore {
            state: Rc::new(RefCell::new(CappedState {
                count: count.min(limit),
                limit,
                acquirers: WaitList::default(),
                releasers: WaitList::default(),
            })),
        }
    }

    /// Takes a permit, yielding while there is none.
    ///
    /// # Errors
    /// [`Interrupted`]: a [`Timeout`](crate::Timeout) of the caller fired,
    /// or the caller was killed, while it waited (nothing was taken).
    pub fn acquire(&self) -> Result<(), Interrupted> {
        self.acquire_limited(Wait::Forever)
    }

    /// [`acquire`](Self::acquire), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), Interrupted> {
        self.acquire_limited(Wait::For(timeout))
    }

    /// Takes a permit if one is there, without yielding.
    pub fn try_acquire(&self) -> bool {
        self.acquire_limited(Wait::No).is_ok()
    }

    fn acquire_limited(&self, wait: Wait) -> Result<(), Interrupted> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.count > 0 {
                state.count -= 1;
                // Room below the limit again: the longest-waiting releaser
                // puts its permit in.
                if state.releasers.take().is_some() {
                    state.count += 1;
                }
                return Ok(());
            }
            // None counted, but a releaser waits with one: take it.
            if state.releasers.take().is_some() {
                return Ok(());
            }
            if wait == Wait::No {
                return Err(TimedOut::OWN.into());
            }
            state.acquirers.add(None)
        };
        wait_in(
            &self.state,
            |s| &mut s.acquirers,
            CappedState::put_back,
            &waiter,
            &wait.limit(),
        )
    }

    /// Returns a permit, yielding while the count is at its limit.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire) (nothing was returned).
    pub fn release(&self) -> Result<(), Interrupted> {
        self.release_limited(true)
    }

    /// Returns a permit if that needs no wait (eventlet's
    /// `release(blocking=False)`); true if it did.
    pub fn try_release(&self) -> bool {
        self.release_limited(false).is_ok()
    }

    fn release_limited(&self, wait: bool) -> Result<(), Interrupted> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.acquirers.hand_off(()).is_ok() {
                return Ok(());
            }
            if state.count < state.limit {
                state.count += 1;
                return Ok(());
            }
            if !wait {
                return Err(TimedOut::OWN.into());
            }
            state.releasers.add(Some(()))
        };
        wait_in(
            &self.state,
            |s| &mut s.releasers,
            crate::waiter::keep,
            &waiter,
            &Limit::new(None),
        )
    }

    /// eventlet's `balance`: its lower semaphore's balance less its upper
    /// one's, where eventlet's two inner semaphores count each blocked waiter
    /// twice. A blocked acquirer has already released the upper semaphore
    /// (its counter is `limit - count + acquirers`) and waits on the lower
    /// one (`count - acquirers`); a blocked releaser the other way round. So
    /// the figure is `2 * (count + releasers - acquirers) - limit`:
    /// `CappedSemaphore::new(0, 2)` with three blocked acquirers says −8, as
    /// eventlet does.
    pub fn balance(&self) -> isize {
        let state = self.state.borrow();
        let (count, limit) = (state.count as isize, state.limit as isize);
        let (acquirers, releasers) = (
            state.acquirers.len() as isize,
            state.releasers.len() as isize,
        );
        let lower = count + releasers - acquirers;
        let upper = (limit - count) + acquirers - releasers;
        lower - upper
    }

    /// The count: permits that may be acquired.
    pub fn counter(&self) -> usize {
        self.state.borrow().count
    }

    /// True if `acquire` would wait.
    pub fn locked(&self) -> bool {
        let state = self.state.borrow();
        state.count == 0 && state.releasers.is_empty()
    }

    /// True if `release` would wait (the count is at its limit).
    pub fn bounded(&self) -> bool {
        let state = self.state.borrow();
        state.count >= state.limit && state.acquirers.is_empty()
    }
}

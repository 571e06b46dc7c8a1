//! Green threads blocked on an SDK primitive: the first-come, first-served
//! list each primitive keeps, and the park loop each waiter runs.
//!
//! Everything a waiter is given travels through its own slot, filled by the
//! green thread that wakes it. So a value never waits in the primitive for a
//! woken thread to come and fetch it (another thread could take it first),
//! and a waiter that timed out or was killed consumes nothing: the hub's
//! `unpark` reports a waiter that will never return, and the waker takes its
//! value back and tries the next.
//!
//! One race is left to close: a waiter that was served (woken with its value)
//! and then killed before it ran again. Its wait never returns, so it could
//! not hand the value on. For that, each wait is recorded in the green
//! thread's TLS: the SDK's `wasmlet-finish` finishes it, and the value goes
//! back to the primitive (the next getter, the queue, the semaphore's count,
//! the pool's free slots).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ptr;
use std::rc::Rc;

use crate::abi::wasmlet::runtime::hub;
use crate::error::Interrupted;
use crate::timeout::Limit;

/// One green thread blocked on a primitive.
/// How long a call of a companion (a queue's put or get, a semaphore's
/// acquire) may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all: the `*_nowait` and `try_*` calls.
    No,
    /// Until served (or an enclosing [`Timeout`](crate::Timeout) fires).
    Forever,
    /// At most this long (and no longer than an enclosing `Timeout` allows).
    For(std::time::Duration),
}

impl Wait {
    /// The limit of a call that waits: its own, if it has one, within any
    /// enclosing `Timeout`.
    pub(crate) fn limit(self) -> Limit {
        Limit::new(match self {
            Wait::For(limit) => Some(limit),
            Wait::No | Wait::Forever => None,
        })
    }
}

pub(crate) struct Waiter<T> {
    thread: u64,
    /// What it is handed (a getter) or what it offers (a putter).
    slot: Cell<Option<T>>,
    /// Set by the green thread that served it.
    done: Cell<bool>,
}

impl<T> Waiter<T> {
    /// A waiter for the calling green thread, offering `slot`.
    fn new(slot: Option<T>) -> Rc<Waiter<T>> {
        Rc::new(Waiter {
            thread: hub::current(),
            slot: Cell::new(slot),
            done: Cell::new(false),
        })
    }

    /// Takes what is in the slot.
    pub(crate) fn take(&self) -> Option<T> {
        self.slot.take()
    }

    /// Parks the calling green thread (the waiter's own) until it is served,
    /// `limit` passes or the thread is killed. A waiter killed after it was
    /// handed a value reports the kill too (the value goes back); one whose
    /// offer was taken (a putter's item, a releaser's permit) has done what
    /// it waited to do, and returns `Ok`: its next blocking call reports the
    /// kill. Early wake-ups (a wake-up meant for an earlier wait) just park
    /// again.
    pub(crate) fn wait(&self, limit: &Limit) -> Result<(), Interrupted> {
        while !self.done.get() {
            let unparked = hub::park(limit.timeout_ns());
            if !unparked {
                if hub::killed() {
                    if self.done.get() && !self.holds_value() {
                        return Ok(());
                    }
                    return Err(Interrupted::Killed);
                }
                if !self.done.get() {
                    limit.check()?;
                }
            }
        }
        Ok(())
    }

    fn holds_value(&self) -> bool {
        let value = self.slot.take();
        let holds = value.is_some();
        self.slot.set(value);
        holds
    }
}

/// The green threads blocked on one primitive, first come, first served.
pub(crate) struct WaitList<T> {
    waiters: VecDeque<Rc<Waiter<T>>>,
}

impl<T> Default for WaitList<T> {
    fn default() -> Self {
        WaitList {
            waiters: VecDeque::new(),
        }
    }
}

impl<T> WaitList<T> {
    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Puts the calling green thread at the end of the list, offering
    /// `slot`; the caller then waits as the waiter returned.
    pub(crate) fn add(&mut self, slot: Option<T>) -> Rc<Waiter<T>> {
        let waiter = Waiter::new(slot);
        self.waiters.push_back(waiter.clone());
        waiter
    }

    /// Removes a waiter that gave up (timed out, or was killed).
    fn remove(&mut self, waiter: &Waiter<T>) {
        self.waiters.retain(|w| !ptr::eq(Rc::as_ptr(w), waiter));
    }

    /// Hands `value` to the first waiter still waiting and wakes it; gives
    /// `value` back if there is none.
    pub(crate) fn hand_off(&mut self, mut value: T) -> Result<(), T> {
        while let Some(waiter) = self.waiters.pop_front() {
            waiter.slot.set(Some(value));
            if hub::unpark(waiter.thread) {
                waiter.done.set(true);
                return Ok(());
            }
            value = waiter.slot.take().expect("the slot was just filled");
        }
        Err(value)
    }

    /// Takes the value the first waiter still waiting offers and wakes it.
    pub(crate) fn take(&mut self) -> Option<T> {
        while let Some(waiter) = self.waiters.pop_front() {
            if hub::unpark(waiter.thread) {
                waiter.done.set(true);
                return waiter.slot.take();
            }
            // Its offer died with it.
            drop(waiter.slot.take());
        }
        None
    }

    /// Hands each waiter a clone of `value` and wakes them all.
    pub(crate) fn wake_all(&mut self, value: &T)
    where
        T: Clone,
    {
        for waiter in self.waiters.drain(..) {
            waiter.slot.set(Some(value.clone()));
            waiter.done.set(true);
            hub::unpark(waiter.thread);
        }
    }
}

/// The wait a green thread is in, as its TLS records it: raw pointers to
/// the primitive's state and the waiter, the two functions that know their
/// types, and `finish`, made for those types, that puts them back together.
///
/// The pointers stay valid if the thread is killed: its frames are never
/// dropped, so the `Rc`s they hold keep both alive, and `wasmlet-finish`
/// runs this before it drops the task (whose closure may hold the last
/// other handle to the state). Plain pointers and no allocation, because
/// every blocking wait records one.
#[derive(Clone, Copy)]
struct Abandoned {
    state: *const (),
    waiter: *const (),
    list: *const (),
    give_back: *const (),
    finish: unsafe fn(Abandoned),
}

thread_local! {
    /// The calling green thread's current wait (no TLS destructor: `Copy`).
    static WAITING: Cell<Option<Abandoned>> = const { Cell::new(None) };
}

/// Finishes the wait the calling green thread was killed in, if any: it
/// leaves the wait list, and a value it had been handed goes back. Called
/// by `wasmlet-finish`, as the dying thread, before it drops the task.
pub(crate) fn finish_abandoned_wait() {
    if let Some(wait) = WAITING.with(|cell| cell.take()) {
        // SAFETY: recorded by `wait_in` for these types; see `Abandoned`.
        unsafe { (wait.finish)(wait) };
    }
}

/// # Safety
/// `wait` was made by `wait_in::<S, T>` and its pointers are still valid.
unsafe fn finish_wait<S, T>(wait: Abandoned) {
    // SAFETY: see the function's contract; fn pointers round-trip through
    // `*const ()` unchanged.
    let (state, waiter, list, give_back) = unsafe {
        (
            &*(wait.state as *const RefCell<S>),
            &*(wait.waiter as *const Waiter<T>),
            std::mem::transmute::<*const (), fn(&mut S) -> &mut WaitList<T>>(wait.list),
            std::mem::transmute::<*const (), fn(&mut S, T)>(wait.give_back),
        )
    };
    abandon(state, list, give_back, waiter);
}

/// A waiter gives up (timed out, killed): it leaves the wait list, and a
/// value it had been handed goes back.
fn abandon<S, T>(
    state: &RefCell<S>,
    list: fn(&mut S) -> &mut WaitList<T>,
    give_back: fn(&mut S, T),
    waiter: &Waiter<T>,
) {
    let mut state = state.borrow_mut();
    if !waiter.done.get() {
        list(&mut state).remove(waiter);
    } else if let Some(value) = waiter.take() {
        give_back(&mut state, value);
    }
}

/// Waits as `waiter`, which the caller has put in the list `list` picks out
/// of `state`; takes it out of that list again if it gives up. If the green
/// thread is killed during the wait, it leaves the list, and a value it had
/// been handed goes back through `give_back` (whether the kill is reported
/// here, or the thread is ended hard and `wasmlet-finish` does it).
pub(crate) fn wait_in<S, T>(
    state: &Rc<RefCell<S>>,
    list: fn(&mut S) -> &mut WaitList<T>,
    give_back: fn(&mut S, T),
    waiter: &Rc<Waiter<T>>,
    limit: &Limit,
) -> Result<(), Interrupted> {
    let wait = Abandoned {
        state: Rc::as_ptr(state).cast(),
        waiter: Rc::as_ptr(waiter).cast(),
        list: list as *const (),
        give_back: give_back as *const (),
        finish: finish_wait::<S, T>,
    };
    WAITING.with(|cell| cell.set(Some(wait)));
    let result = waiter.wait(limit);
    WAITING.with(|cell| cell.set(None));
    result.inspect_err(|_| abandon(state, list, give_back, waiter))
}

/// For waits whose value is a copy or a signal: nothing to give back.
pub(crate) fn keep<S, T>(_: &mut S, _: T) {}

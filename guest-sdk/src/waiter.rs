//! Green threads blocked on an SDK primitive: the first-come, first-served
//! list each primitive keeps, and the park loop each waiter runs.
//!
//! Everything a waiter is given travels through its own slot, filled by the
//! green thread that wakes it. So a value never waits in the primitive for a
//! woken thread to come and fetch it (another thread could take it first),
//! and a waiter that timed out or was killed consumes nothing: the hub's
//! `unpark` reports a waiter that will never return, and the waker takes its
//! value back and tries the next.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::abi::wasmlet::runtime::hub;
use crate::timeout::{Limit, TimedOut};

/// One green thread blocked on a primitive.
pub(crate) struct Waiter<T> {
    thread: u64,
    /// What it is handed (a getter) or what it offers (a putter).
    slot: Cell<Option<T>>,
    /// Set by the green thread that served it.
    done: Cell<bool>,
}

impl<T> Waiter<T> {
    /// A waiter for the calling green thread, offering `slot`.
    pub(crate) fn new(slot: Option<T>) -> Rc<Waiter<T>> {
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

    /// Parks the calling green thread (the waiter's own) until it is served
    /// or `limit` passes. Early wake-ups (a wake-up meant for an earlier
    /// wait) just park again.
    pub(crate) fn wait(&self, limit: &Limit) -> Result<(), TimedOut> {
        while !self.done.get() {
            let unparked = hub::park(limit.timeout_ns());
            if !unparked && !self.done.get() {
                limit.check()?;
            }
        }
        Ok(())
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

    pub(crate) fn push(&mut self, waiter: Rc<Waiter<T>>) {
        self.waiters.push_back(waiter);
    }

    /// Removes a waiter that gave up (timed out).
    pub(crate) fn remove(&mut self, waiter: &Rc<Waiter<T>>) {
        self.waiters.retain(|w| !Rc::ptr_eq(w, waiter));
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

/// Waits as `waiter`, which the caller has put in the list `list` picks out
/// of `state`; takes it out of that list again if it gives up.
pub(crate) fn wait_in<S, T>(
    state: &RefCell<S>,
    list: impl FnOnce(&mut S) -> &mut WaitList<T>,
    waiter: &Rc<Waiter<T>>,
    limit: &Limit,
) -> Result<(), TimedOut> {
    waiter
        .wait(limit)
        .inspect_err(|_| list(&mut state.borrow_mut()).remove(waiter))
}

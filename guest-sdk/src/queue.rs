//! eventlet's `queue.Queue`: a first-in, first-out channel between green
//! threads, unbounded, bounded, or of size zero (a rendezvous).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use crate::error::Interrupted;
use crate::timeout::{Limit, TimedOut};
use crate::waiter::{keep, wait_in, Wait, WaitList};

/// Why a [`Queue`] did not take an item, with the item handed back: the
/// shape of std's `TrySendError`.
pub enum PutError<T> {
    /// The queue was full and the call did not wait (`put_nowait`).
    Full(T),
    /// The wait was interrupted first: its time limit ran out, or the caller
    /// was killed (then return).
    Interrupted(T, Interrupted),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(item) | PutError::Interrupted(item, _) => item,
        }
    }

    /// The time limit that ran out, if that is why.
    pub fn timed_out(&self) -> Option<TimedOut> {
        self.interrupted().and_then(Interrupted::timed_out)
    }

    /// What interrupted the wait, if it waited.
    pub fn interrupted(&self) -> Option<&Interrupted> {
        match self {
            PutError::Full(_) => None,
            PutError::Interrupted(_, i) => Some(i),
        }
    }

    /// True if the caller was killed while it waited: return.
    pub fn is_killed(&self) -> bool {
        self.interrupted().is_some_and(Interrupted::is_killed)
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Interrupted(_, i) => write!(f, "Interrupted(.., {i:?})"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("queue is full"),
            PutError::Interrupted(_, i) => write!(f, "queue put {i}"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

/// Why a [`Queue`] gave no item (nothing was consumed): the shape of std's
/// `TryRecvError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetError {
    /// The queue was empty and the call did not wait (`get_nowait`).
    Empty,
    /// The wait was interrupted first: its time limit ran out (eventlet's
    /// `get(timeout=)` raises `Empty` then), or the caller was killed (then
    /// return).
    Interrupted(Interrupted),
}

impl GetError {
    /// The time limit that ran out, if that is why.
    pub fn timed_out(&self) -> Option<TimedOut> {
        self.interrupted().and_then(Interrupted::timed_out)
    }

    /// What interrupted the wait, if it waited.
    pub fn interrupted(&self) -> Option<&Interrupted> {
        match self {
            GetError::Empty => None,
            GetError::Interrupted(i) => Some(i),
        }
    }

    /// True if the caller was killed while it waited: return.
    pub fn is_killed(&self) -> bool {
        self.interrupted().is_some_and(Interrupted::is_killed)
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("queue is empty"),
            GetError::Interrupted(i) => write!(f, "queue get {i}"),
        }
    }
}

impl std::error::Error for GetError {}

/// [`Queue::task_done`] called more often than items were put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDoneTooOften;

impl fmt::Display for TaskDoneTooOften {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than there were items put")
    }
}

impl std::error::Error for TaskDoneTooOften {}

/// The queue's state. Invariants: getters wait only while `items` is empty;
/// putters wait only while the queue has no room.
struct State<T> {
    items: VecDeque<T>,
    /// Which queued item `get` takes.
    order: Order<T>,
    /// None: unbounded.
    maxsize: Option<usize>,
    getters: WaitList<T>,
    putters: WaitList<T>,
    /// Items put and not yet marked done (`task_done`).
    unfinished: usize,
    joiners: WaitList<()>,
}

/// Which queued item a `get` takes.
enum Order<T> {
    /// The oldest (`Queue`).
    Fifo,
    /// The newest (eventlet's `LifoQueue`).
    Lifo,
    /// The least by this order, the oldest among equals (eventlet's
    /// `PriorityQueue`).
    Priority(fn(&T, &T) -> std::cmp::Ordering),
}

impl<T> State<T> {
    /// Queues `item` where its order says.
    fn push(&mut self, item: T) {
        match self.order {
            Order::Fifo | Order::Lifo => self.items.push_back(item),
            Order::Priority(cmp) => {
                // After every item not greater: equals keep their order.
                let at = self
                    .items
                    .partition_point(|queued| cmp(queued, &item).is_le());
                self.items.insert(at, item);
            }
        }
    }

    /// Takes the item a `get` gets.
    fn pop(&mut self) -> Option<T> {
        match self.order {
            Order::Lifo => self.items.pop_back(),
            Order::Fifo | Order::Priority(_) => self.items.pop_front(),
        }
    }

    fn has_room(&self) -> bool {
        self.maxsize.is_none_or(|max| self.items.len() < max)
    }

    /// Takes back the item of a getter killed before it could return it:
    /// the next getter gets it, or it goes back to the head of the queue.
    fn give_back(&mut self, item: T) {
        if let Err(item) = self.getters.hand_off(item) {
            match self.order {
                Order::Fifo => self.items.push_front(item),
                Order::Lifo | Order::Priority(_) => self.push(item),
            }
        }
    }

    /// Moves blocked putters' items in while there is room.
    fn admit_putters(&mut self) {
        while self.has_room() {
            match self.putters.take() {
                Some(item) => {
                    self.push(item);
                    self.unfinished += 1;
                }
                None => break,
            }
        }
    }
}

/// A FIFO queue between green threads: eventlet's `Queue`. Clones are handles
/// to the same queue.
///
/// Items come out in the order they were put; blocked getters are served,
/// and blocked putters admitted, first come, first served. A getter that
/// times out or is killed consumes nothing (one killed after it was handed
/// an item hands it to the next getter); a putter that times out takes its
/// item back. [`Queue::bounded(0)`](Self::bounded) is a rendezvous
/// channel: each `put` waits for a `get` to take its item.
///
/// ```no_run
/// let queue = wasmlet::Queue::bounded(2);
/// let producer = queue.clone();
/// wasmlet::spawn_n(move || {
///     for i in 0..5 {
///         producer.put(i).unwrap(); // waits while 2 items are queued
///     }
/// });
/// let got: Vec<i32> = (0..5).map(|_| queue.get().unwrap()).collect();
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// ```
pub struct Queue<T> {
    state: Rc<RefCell<State<T>>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            state: self.state.clone(),
        }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue::with_maxsize(None)
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Queue")
            .field("maxsize", &state.maxsize)
            .field("qsize", &state.items.len())
            .field("getting", &state.getters.len())
            .field("putting", &state.putters.len())
            .finish()
    }
}

impl<T: Ord> Queue<T> {
    /// A priority queue (eventlet's `PriorityQueue`): `get` takes the least
    /// item, the oldest among equals. `maxsize` None: unbounded.
    ///
    /// ```no_run
    /// let jobs = wasmlet::Queue::priority(None);
    /// jobs.put((2, "later")).unwrap();
    /// jobs.put((1, "first")).unwrap();
    /// assert_eq!(jobs.get().unwrap(), (1, "first"));
    /// ```
    pub fn priority(maxsize: Option<usize>) -> Self {
        Queue::with_order(maxsize, Order::Priority(T::cmp))
    }
}

impl<T> Queue<T> {
    /// An unbounded queue: `put` never waits.
    pub fn new() -> Self {
        Queue::default()
    }

    /// A queue holding at most `maxsize` items; `put` waits while it is full.
    /// `maxsize` 0 makes a rendezvous channel.
    pub fn bounded(maxsize: usize) -> Self {
        Queue::with_maxsize(Some(maxsize))
    }

    /// A LIFO queue (eventlet's `LifoQueue`): `get` takes the newest item.
    /// `maxsize` None: unbounded.
    pub fn lifo(maxsize: Option<usize>) -> Self {
        Queue::with_order(maxsize, Order::Lifo)
    }

    /// The items queued now, in the order `get` would take them (eventlet's
    /// `queue.queue`): a copy, to look at.
    pub fn items(&self) -> Vec<T>
    where
        T: Clone,
    {
        let state = self.state.borrow();
        let mut items: Vec<T> = state.items.iter().cloned().collect();
        if let Order::Lifo = state.order {
            items.reverse();
        }
        items
    }

    fn with_maxsize(maxsize: Option<usize>) -> Self {
        Queue::with_order(maxsize, Order::Fifo)
    }

    fn with_order(maxsize: Option<usize>, order: Order<T>) -> Self {
        Queue {
            state: Rc::new(RefCell::new(State {
                items: VecDeque::new(),
                order,
                maxsize,
                getters: WaitList::default(),
                putters: WaitList::default(),
                unfinished: 0,
                joiners: WaitList::default(),
            })),
        }
    }

    /// Puts `item`, yielding while the queue is full. Only a
    /// [`Timeout`](crate::Timeout) makes it fail.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_limited(item, Wait::Forever)
    }

    /// [`put`](Self::put), giving up after `timeout`.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_limited(item, Wait::For(timeout))
    }

    /// Puts `item` only if that needs no wait; never yields.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_limited(item, Wait::No)
    }

    fn put_limited(&self, item: T, wait: Wait) -> Result<(), PutError<T>> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            let item = match state.getters.hand_off(item) {
                Ok(()) => {
                    state.unfinished += 1;
                    // A rendezvous: as in eventlet, the getter runs before
                    // a waiting put returns.
                    let rendezvous = state.maxsize == Some(0) && wait != Wait::No;
                    drop(state);
                    if rendezvous {
                        // The item is the getter's already: a kill here is
                        // for the caller's next blocking call to report.
                        let _ = crate::sleep(Duration::ZERO);
                    }
                    return Ok(());
                }
                Err(item) => item,
            };
            if state.putters.is_empty() && state.has_room() {
                state.push(item);
                state.unfinished += 1;
                return Ok(());
            }
            if wait == Wait::No {
                return Err(PutError::Full(item));
            }
            state.putters.add(Some(item))
        };
        let limit = wait.limit();
        wait_in(&self.state, |s| &mut s.putters, keep, &waiter, &limit).map_err(|i| {
            let item = waiter
                .take()
                .expect("an unserved putter still holds its item");
            PutError::Interrupted(item, i)
        })
    }

    /// Takes the oldest item, yielding while there is none. Only an
    /// interruption (a [`Timeout`](crate::Timeout), a kill) makes it fail.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_limited(Wait::Forever)
    }

    /// [`get`](Self::get), giving up after `timeout` (eventlet raises
    /// `Empty` then too).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_limited(Wait::For(timeout))
    }

    /// Takes the oldest item only if one is queued; never yields. A
    /// putter blocked on a full (or rendezvous) queue is not served: as in
    /// eventlet, that needs a `get` that may wait.
    ///
    /// eventlet makes one exception: its `get_nowait` called from the hub
    /// itself (a `schedule_call_*` callback) does take a blocked putter's
    /// item. wasmlet's scheduled calls run as green threads, not in the hub,
    /// so they get no such exception. A callback that should take it calls
    /// `get_timeout(Duration::ZERO)`, which takes a blocked putter's item
    /// (or a queued one) at once and never waits.
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.get_limited(Wait::No)
    }

    fn get_limited(&self, wait: Wait) -> Result<T, GetError> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if let Some(item) = state.pop() {
                state.admit_putters();
                return Ok(item);
            }
            // Nothing is queued: a blocked putter's item is not taken
            // without waiting (eventlet's get_nowait reports Empty too).
            if wait == Wait::No {
                return Err(GetError::Empty);
            }
            // A rendezvous queue (or one resized to less than it holds).
            if let Some(item) = state.putters.take() {
                state.unfinished += 1;
                return Ok(item);
            }
            state.getters.add(None)
        };
        let limit = wait.limit();
        wait_in(
            &self.state,
            |s| &mut s.getters,
            State::give_back,
            &waiter,
            &limit,
        )
        .map_err(GetError::Interrupted)?;
        Ok(waiter.take().expect("a served getter holds its item"))
    }

    /// How many items are queued.
    pub fn qsize(&self) -> usize {
        self.state.borrow().items.len()
    }

    /// True if no item is queued.
    pub fn is_empty(&self) -> bool {
        self.qsize() == 0
    }

    /// True if a `put` would wait.
    pub fn full(&self) -> bool {
        !self.state.borrow().has_room()
    }

    /// The bound (`None`: unbounded).
    pub fn maxsize(&self) -> Option<usize> {
        self.state.borrow().maxsize
    }

    /// Changes the bound; room made admits waiting putters, in order. Items
    /// past a smaller bound stay queued.
    pub fn resize(&self, maxsize: Option<usize>) {
        let mut state = self.state.borrow_mut();
        state.maxsize = maxsize;
        state.admit_putters();
    }

    /// How many green threads wait in `get`.
    pub fn getting(&self) -> usize {
        self.state.borrow().getters.len()
    }

    /// How many green threads wait in `put`.
    pub fn putting(&self) -> usize {
        self.state.borrow().putters.len()
    }

    /// Marks one item taken by `get` as processed, for [`join`](Self::join).
    pub fn task_done(&self) -> Result<(), TaskDoneTooOften> {
        let mut state = self.state.borrow_mut();
        if state.unfinished == 0 {
            return Err(TaskDoneTooOften);
        }
        state.unfinished -= 1;
        if state.unfinished == 0 {
            state.joiners.wake_all(&());
        }
        Ok(())
    }

    /// How many items were put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.state.borrow().unfinished
    }

    /// Yields until every item put has been marked done with
    /// [`task_done`](Self::task_done).
    ///
    /// # Errors
    /// [`Interrupted`]: a [`Timeout`](crate::Timeout) of the caller fired,
    /// or the caller was killed, while it waited.
    pub fn join(&self) -> Result<(), Interrupted> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.unfinished == 0 {
                return Ok(());
            }
            state.joiners.add(None)
        };
        wait_in(
            &self.state,
            |s| &mut s.joiners,
            keep,
            &waiter,
            &Limit::new(None),
        )
    }
}

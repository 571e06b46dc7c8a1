//! eventlet's `greenpool`: [`GreenPool`], which bounds how many green
//! threads run at once, and [`GreenPile`], which gathers their results in
//! spawn order.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::rc::Rc;

use crate::error::GreenThreadError;
use crate::error::Interrupted;
use crate::greenthread::{getcurrent, spawn, spawn_n, GreenThread, Thread};
use crate::queue::{GetError, Queue};
use crate::timeout::Limit;
use crate::waiter::{keep, wait_in, WaitList};

struct State {
    size: usize,
    /// Green threads holding a slot (spawned and not yet ended).
    running: usize,
    /// Their ids: a member spawning into its full pool runs inline.
    members: HashSet<u64>,
    /// Spawners waiting for a slot, first come, first served.
    spawners: WaitList<()>,
    /// `waitall` callers.
    idle: WaitList<()>,
}

impl State {
    /// Gives back a slot: a member ended, or a spawner that was handed the
    /// slot was killed before it could spawn.
    fn free_slot(&mut self, (): ()) {
        self.running -= 1;
        self.admit_spawners();
        if self.running == 0 {
            self.idle.wake_all(&());
        }
    }

    /// Hands free slots to waiting spawners, in order.
    fn admit_spawners(&mut self) {
        while self.running < self.size {
            if self.spawners.hand_off(()).is_err() {
                break;
            }
            self.running += 1;
        }
    }
}

/// Why [`GreenPool::waitall`] did not wait.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitallError {
    /// A member of the pool called it: it would wait for itself (eventlet
    /// asserts the same).
    FromMember,
    /// The enclosing [`Timeout`](crate::Timeout) fired, or the caller was
    /// killed.
    Interrupted(Interrupted),
}

impl fmt::Display for WaitallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitallError::FromMember => f.write_str(
                "waitall() called from one of the pool's own green threads would never return",
            ),
            WaitallError::Interrupted(i) => write!(f, "waitall: {i}"),
        }
    }
}

impl std::error::Error for WaitallError {}

impl From<Interrupted> for WaitallError {
    fn from(i: Interrupted) -> Self {
        WaitallError::Interrupted(i)
    }
}

/// How a spawn into the pool gets its slot.
enum Slot {
    /// A slot is held for the new green thread.
    Held,
    /// The pool is full and the caller is one of its members: run inline.
    Inline,
}

/// A pool of at most `size` concurrently running green threads: eventlet's
/// `GreenPool`. Clones are handles to the same pool.
///
/// `spawn` yields while the pool is full. A member that ends for any reason
/// (returns, panics, is killed) frees its slot for the spawner that has
/// waited longest. A member spawning into its own full pool runs the
/// function inline instead of waiting for itself.
///
/// ```no_run
/// let pool = wasmlet::GreenPool::new(10);
/// let lengths: Vec<usize> = pool
///     .imap(["a", "bb", "ccc"], |s: &str| s.len())
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(lengths, [1, 2, 3]);
/// ```
#[derive(Clone)]
pub struct GreenPool {
    state: Rc<RefCell<State>>,
}

impl fmt::Debug for GreenPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("GreenPool")
            .field("size", &state.size)
            .field("running", &state.running)
            .field("waiting", &state.spawners.len())
            .finish()
    }
}

impl Default for GreenPool {
    /// A pool of 1,000 (eventlet's default size).
    fn default() -> Self {
        GreenPool::new(1000)
    }
}

impl GreenPool {
    /// A pool running at most `size` green threads at once (eventlet's
    /// default is 1000: [`GreenPool::default`]).
    pub fn new(size: usize) -> GreenPool {
        GreenPool {
            state: Rc::new(RefCell::new(State {
                size,
                running: 0,
                members: HashSet::new(),
                spawners: WaitList::default(),
                idle: WaitList::default(),
            })),
        }
    }

    /// Runs `f` in a pool member, yielding first while the pool is full.
    /// Only a [`Timeout`](crate::Timeout) makes it fail.
    pub fn spawn<T: 'static>(
        &self,
        f: impl FnOnce() -> T + 'static,
    ) -> Result<GreenThread<T>, Interrupted> {
        match self.take_slot()? {
            Slot::Held => {
                let gt = spawn(f);
                self.join(gt.thread());
                Ok(gt)
            }
            Slot::Inline => Ok(GreenThread::finished(getcurrent(), Ok(f()))),
        }
    }

    /// [`spawn`](Self::spawn) with no result to wait for.
    pub fn spawn_n<R>(&self, f: impl FnOnce() -> R + 'static) -> Result<Thread, Interrupted> {
        match self.take_slot()? {
            Slot::Held => {
                let thread = spawn_n(f);
                self.join(thread);
                Ok(thread)
            }
            Slot::Inline => {
                drop(f());
                Ok(getcurrent())
            }
        }
    }

    fn take_slot(&self) -> Result<Slot, Interrupted> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.running < state.size && state.spawners.is_empty() {
                state.running += 1;
                return Ok(Slot::Held);
            }
            if state.members.contains(&getcurrent().id()) {
                return Ok(Slot::Inline);
            }
            state.spawners.add(None)
        };
        let limit = Limit::new(None);
        wait_in(
            &self.state,
            |s| &mut s.spawners,
            State::free_slot,
            &waiter,
            &limit,
        )?;
        Ok(Slot::Held)
    }

    /// Makes `thread`, which holds a slot, a member until it ends.
    fn join(&self, thread: Thread) {
        self.state.borrow_mut().members.insert(thread.id());
        let state = self.state.clone();
        thread.link(move |thread| {
            let mut state = state.borrow_mut();
            state.members.remove(&thread.id());
            state.free_slot(());
        });
    }

    /// Yields until no member is running.
    ///
    /// # Errors
    /// [`WaitallError::FromMember`] if called by a member (it would wait
    /// for itself; the pool stays usable), or the enclosing
    /// [`Timeout`](crate::Timeout)'s (or a kill's) [`Interrupted`].
    pub fn waitall(&self) -> Result<(), WaitallError> {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.members.contains(&getcurrent().id()) {
                return Err(WaitallError::FromMember);
            }
            if state.running == 0 {
                return Ok(());
            }
            state.idle.add(None)
        };
        wait_in(
            &self.state,
            |s| &mut s.idle,
            keep,
            &waiter,
            &Limit::new(None),
        )
        .map_err(WaitallError::Interrupted)
    }

    /// The pool's size.
    pub fn size(&self) -> usize {
        self.state.borrow().size
    }

    /// Changes the pool's size. Members running past a smaller size run to
    /// their end; a larger size admits waiting spawners at once.
    pub fn resize(&self, size: usize) {
        let mut state = self.state.borrow_mut();
        state.size = size;
        state.admit_spawners();
    }

    /// How many members are running.
    pub fn running(&self) -> usize {
        self.state.borrow().running
    }

    /// How many more green threads could be spawned without waiting:
    /// negative after a [`resize`](Self::resize) below the running count
    /// (as eventlet's docstring says).
    pub fn free(&self) -> isize {
        let state = self.state.borrow();
        state.size as isize - state.running as isize
    }

    /// How many green threads wait in `spawn` for a slot.
    pub fn waiting(&self) -> usize {
        self.state.borrow().spawners.len()
    }

    /// Runs `f` on each item in pool members and yields the results lazily,
    /// in the items' order (eventlet's `imap`). At most the pool's size run
    /// at once; items are taken from `items` as slots free up.
    pub fn imap<A, R, I, F>(&self, items: I, f: F) -> Imap<I::IntoIter, R, impl Fn(A) -> R>
    where
        I: IntoIterator<Item = A>,
        A: 'static,
        R: 'static,
        F: Fn(A) -> R + 'static,
    {
        Imap {
            pool: self.clone(),
            items: items.into_iter(),
            f: Rc::new(f),
            pending: VecDeque::new(),
        }
    }

    /// [`imap`](Self::imap) for a function of several arguments, each item
    /// being a tuple of them (eventlet's `starmap`).
    ///
    /// ```no_run
    /// let pool = wasmlet::GreenPool::new(4);
    /// let sums: Vec<i32> = pool
    ///     .starmap([(1, 2), (3, 4)], |a: i32, b: i32| a + b)
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(sums, [3, 7]);
    /// ```
    pub fn starmap<A, R, I, F>(&self, items: I, f: F) -> Imap<I::IntoIter, R, impl Fn(A) -> R>
    where
        I: IntoIterator<Item = A>,
        A: 'static,
        R: 'static,
        F: StarCall<A, Output = R> + 'static,
    {
        self.imap(items, move |args| f.call(args))
    }
}

/// A function called with a tuple's elements as its arguments, for
/// [`GreenPool::starmap`]; implemented for functions of 1 to 4 arguments.
pub trait StarCall<Args> {
    /// What the function returns.
    type Output;
    /// Calls the function with `args` spread out.
    fn call(&self, args: Args) -> Self::Output;
}

macro_rules! star_call {
    ($($arg:ident),+) => {
        impl<Func, Ret, $($arg),+> StarCall<($($arg,)+)> for Func
        where
            Func: Fn($($arg),+) -> Ret,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call(&self, ($($arg,)+): ($($arg,)+)) -> Ret {
                self($($arg),+)
            }
        }
    };
}

star_call!(A);
star_call!(A, B);
star_call!(A, B, C);
star_call!(A, B, C, D);

/// The results of [`GreenPool::imap`], in the items' order.
pub struct Imap<I, R, F> {
    pool: GreenPool,
    items: I,
    f: Rc<F>,
    pending: VecDeque<GreenThread<R>>,
}

impl<I, R, F> Imap<I, R, F>
where
    I: Iterator,
    I::Item: 'static,
    R: 'static,
    F: Fn(I::Item) -> R + 'static,
{
    fn start(&mut self, item: I::Item) -> Result<(), Interrupted> {
        let f = self.f.clone();
        let gt = self.pool.spawn(move || f(item))?;
        self.pending.push_back(gt);
        Ok(())
    }
}

impl<I, R, F> Iterator for Imap<I, R, F>
where
    I: Iterator,
    I::Item: 'static,
    R: 'static,
    F: Fn(I::Item) -> R + 'static,
{
    type Item = Result<R, GreenThreadError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Fill the free slots without waiting; then, if nothing is under
        // way, start the next item even if that means waiting for a slot.
        while self.pool.free() > 0 && self.pool.waiting() == 0 {
            let Some(item) = self.items.next() else { break };
            if let Err(t) = self.start(item) {
                return Some(Err(GreenThreadError::Interrupted(t)));
            }
        }
        if self.pending.is_empty() {
            let item = self.items.next()?;
            if let Err(t) = self.start(item) {
                return Some(Err(GreenThreadError::Interrupted(t)));
            }
        }
        let gt = self.pending.pop_front()?;
        Some(gt.take_result())
    }
}

/// Green threads whose results are collected in the order they were spawned:
/// eventlet's `GreenPile`. Iterating it waits for each result in turn.
///
/// ```no_run
/// let mut pile = wasmlet::GreenPile::new(10);
/// for n in [3u64, 1, 2] {
///     pile.spawn(move || {
///         wasmlet::sleep(std::time::Duration::from_millis(n));
///         n
///     })
///     .unwrap();
/// }
/// let got: Vec<u64> = pile.map(Result::unwrap).collect();
/// assert_eq!(got, [3, 1, 2]);
/// ```
pub struct GreenPile<T> {
    pool: GreenPool,
    /// Shared by the pile's clones, so one green thread may spawn while
    /// another iterates: the spawned green threads in the order they got
    /// their pool slots. `None` wakes an iterator that waits for a spawn
    /// which then failed (it looks at `promised` again).
    spawned: Queue<Option<GreenThread<T>>>,
    /// Spawns begun and not yet handed out, counted before a spawn waits for
    /// its slot (eventlet's `counter`): while it is not 0, iterating waits
    /// for the next result instead of ending.
    promised: Rc<Cell<usize>>,
}

impl<T> Clone for GreenPile<T> {
    /// Another handle to the same pile: spawns through either are handed
    /// out, in spawn order, by whichever iterates.
    fn clone(&self) -> Self {
        GreenPile {
            pool: self.pool.clone(),
            spawned: self.spawned.clone(),
            promised: self.promised.clone(),
        }
    }
}

impl<T> fmt::Debug for GreenPile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPile")
            .field("pool", &self.pool)
            .field("pending", &self.promised.get())
            .finish()
    }
}

impl<T: 'static> GreenPile<T> {
    /// A pile over a pool of its own of `size`.
    pub fn new(size: usize) -> GreenPile<T> {
        GreenPile::with_pool(GreenPool::new(size))
    }

    /// A pile whose green threads run in (and count against) `pool`.
    pub fn with_pool(pool: GreenPool) -> GreenPile<T> {
        GreenPile {
            pool,
            spawned: Queue::new(),
            promised: Rc::default(),
        }
    }

    /// Runs `f` in the pool (yielding while it is full); its result is
    /// handed out after those of earlier spawns. It counts at once, before
    /// it waits for room: a green thread iterating the pile meanwhile waits
    /// for its result instead of ending (as eventlet's pile does).
    ///
    /// # Errors
    /// [`Interrupted`] if the wait for room in the pool was (nothing was
    /// spawned).
    pub fn spawn(&self, f: impl FnOnce() -> T + 'static) -> Result<(), Interrupted> {
        self.promised.set(self.promised.get() + 1);
        match self.pool.spawn(f) {
            Ok(gt) => {
                put_unbounded(&self.spawned, Some(gt));
                Ok(())
            }
            Err(interrupted) => {
                self.promised.set(self.promised.get() - 1);
                if self.promised.get() == 0 {
                    // Nothing more is coming: iterators waiting for this
                    // spawn end.
                    for _ in 0..self.spawned.getting() {
                        put_unbounded(&self.spawned, None);
                    }
                }
                Err(interrupted)
            }
        }
    }

    /// How many results are still to be handed out, spawns still waiting
    /// for a pool slot included.
    pub fn len(&self) -> usize {
        self.promised.get()
    }

    /// True if every result has been handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A put into an unbounded queue, which never waits and so never fails.
fn put_unbounded<T>(queue: &Queue<T>, item: T) {
    if queue.put_nowait(item).is_err() {
        unreachable!("an unbounded queue is never full");
    }
}

impl<T: 'static> Iterator for GreenPile<T> {
    type Item = Result<T, GreenThreadError>;

    /// Waits for the oldest spawn's result; None once nothing is pending
    /// (a spawn after that, through any clone, is handed out by the next
    /// call). A spawn still waiting for its pool slot is waited for.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.promised.get() == 0 {
                return None;
            }
            match self.spawned.get() {
                Ok(Some(oldest)) => {
                    self.promised.set(self.promised.get() - 1);
                    return Some(oldest.take_result());
                }
                // A spawn failed: look at the count again.
                Ok(None) => continue,
                Err(GetError::Interrupted(why)) => {
                    return Some(Err(GreenThreadError::Interrupted(why)));
                }
                Err(GetError::Empty) => {
                    unreachable!("a get that may wait fails only when interrupted")
                }
            }
        }
    }
}

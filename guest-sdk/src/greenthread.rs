//! eventlet's `greenthread` module: spawn, spawn_n, spawn_after,
//! spawn_after_local, sleep, getcurrent, kill, and the [`GreenThread`] handle
//! with wait / kill / cancel / link / unlink.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::abi::wasmlet::runtime::hub::{self, JoinStatus, KillStatus};
use crate::error::{ErrorObject, GreenThreadError, Interrupted, SpawnError};
use crate::task::{self, Body};
use crate::timeout::{nanos, Limit};

/// A green thread's identity: a cheap, copyable handle to any green thread,
/// typed or not (what [`getcurrent`] returns).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thread {
    id: u64,
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thread(#{})", self.number())
    }
}

impl Thread {
    /// The hub's id for this green thread (unique within the guest; never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once the green thread has ended (asked of the hub, without
    /// waiting): what a [`spawn_n`] handle can tell of it.
    pub fn dead(&self) -> bool {
        matches!(hub::join(self.id, 0), JoinStatus::Ended)
    }

    /// The green thread's number in messages: a guest's green threads are
    /// numbered from 1 (main) in the order they were spawned.
    pub fn number(&self) -> u64 {
        self.id
    }

    /// Stops this green thread where it is suspended; see [`kill`].
    pub fn kill(&self) -> bool {
        kill_raw(self.id, 0)
    }

    /// Stops this green thread, making it end with `error`; see [`kill_with`].
    pub fn kill_with(&self, error: impl Into<Box<dyn Error + Send + Sync>>) -> bool {
        let error: ErrorObject = Arc::from(error.into());
        let raw = task::kill_error_into_raw(error);
        let killed = kill_raw(self.id, raw);
        if !killed {
            // SAFETY: the hub did not keep it.
            drop(unsafe { task::kill_error_from_raw(raw) });
        }
        killed
    }

    /// Kills this green thread only if it has not started yet; returns true if
    /// it did. Yields (like [`kill`]) only when it kills.
    pub fn cancel(&self) -> bool {
        hub::cancel(self.id, 0) == KillStatus::Killed
    }

    /// [`cancel`](Self::cancel), making the target's `wait()` report
    /// [`GreenThreadError::KilledWith`] this error (eventlet's
    /// `cancel(g, *throw_args)`).
    pub fn cancel_with(&self, error: impl Into<Box<dyn Error + Send + Sync>>) -> bool {
        let error: ErrorObject = Arc::from(error.into());
        let raw = task::kill_error_into_raw(error);
        let cancelled = hub::cancel(self.id, raw) == KillStatus::Killed;
        if !cancelled {
            // SAFETY: the hub did not keep it.
            drop(unsafe { task::kill_error_from_raw(raw) });
        }
        cancelled
    }

    /// True once this green thread has started running (or has ended);
    /// false while it waits to start: what decides whether
    /// [`cancel`](Self::cancel) stops it.
    pub fn started(&self) -> bool {
        hub::started(self.id)
    }

    /// Calls `f` when this green thread ends, in its own context (as the
    /// ending thread), after any earlier links. If it has already ended, `f`
    /// runs at once, here.
    pub fn link(&self, f: impl FnOnce(Thread) + 'static) -> Link {
        let me = *self;
        self.link_raw(Box::new(move || f(me)))
    }

    /// Removes a link made by [`link`](Self::link); true if it was still
    /// pending (so it will never run).
    pub fn unlink(&self, link: Link) -> bool {
        if link.id == 0 || link.target != self.id {
            return false;
        }
        let raw = hub::unlink(self.id, link.id);
        if raw == 0 {
            return false;
        }
        // SAFETY: the hub returned the callback it held: ours to drop.
        drop(unsafe { task::callback_from_raw(raw) });
        true
    }

    fn link_raw(&self, f: task::Callback) -> Link {
        let raw = task::callback_into_raw(f);
        let id = hub::link(self.id, raw);
        if id == 0 {
            // SAFETY: the hub did not keep it: the target has ended.
            unsafe { task::callback_from_raw(raw)() };
        }
        Link {
            target: self.id,
            id,
        }
    }
}

fn kill_raw(id: u64, error: u32) -> bool {
    hub::kill(id, error) == KillStatus::Killed
}

/// Names one link, for [`Thread::unlink`] (a [`GreenThread`] derefs to its `Thread`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    target: u64,
    /// 0: the target had already ended and the callback ran at once.
    id: u64,
}

/// The result slot a [`GreenThread`] handle shares with its running body.
struct Shared<T> {
    result: RefCell<Option<Result<T, GreenThreadError>>>,
    /// The handle of a call a pool member ran inline: no green thread of
    /// its own ever ends, so links run at once.
    inline: bool,
}

/// A handle to a green thread started by [`spawn`] and friends, through which
/// its result can be waited for. Clones are handles to the same green thread:
/// several green threads may wait on it.
///
/// A `GreenThread` is a [`Thread`] with a result, as eventlet's `GreenThread`
/// is a greenlet: every method of `Thread` (`id`, `kill`, `kill_with`,
/// `cancel`, `cancel_with`, `started`, `unlink`) works on it through
/// `Deref`. What it adds: [`wait`](Self::wait) and [`join`](Self::join) for
/// the result, [`dead`](Self::dead) read from the result, and
/// [`link`](Self::link) whose callback gets this handle.
///
/// ```no_run
/// let gt = wasmlet::spawn(|| 1 + 1);
/// gt.kill(); // Thread::kill
/// assert!(gt.wait().is_err());
/// ```
pub struct GreenThread<T> {
    thread: Thread,
    shared: Rc<Shared<T>>,
}

impl<T> Clone for GreenThread<T> {
    fn clone(&self) -> Self {
        GreenThread {
            thread: self.thread,
            shared: self.shared.clone(),
        }
    }
}

impl<T> Deref for GreenThread<T> {
    type Target = Thread;

    fn deref(&self) -> &Thread {
        &self.thread
    }
}

impl<T> fmt::Debug for GreenThread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GreenThread(#{})", self.thread.number())
    }
}

impl<T: 'static> GreenThread<T> {
    /// The untyped handle to this green thread.
    pub fn thread(&self) -> Thread {
        self.thread
    }

    /// True once the green thread has ended and its result is recorded.
    pub fn dead(&self) -> bool {
        self.shared.result.borrow().is_some()
    }

    /// Yields until the green thread ends; returns its result, or why it has
    /// none (killed, panicked, ...).
    ///
    /// # Panics
    /// If a green thread waits for itself (it would wait forever).
    pub fn wait(&self) -> Result<T, GreenThreadError>
    where
        T: Clone,
    {
        self.wait_end()?;
        let result = self.shared.result.borrow();
        result.clone().unwrap_or(Err(GreenThreadError::Vanished))
    }

    /// [`wait`](Self::wait) for a result that is not `Clone` (an
    /// `io::Result`, say), as std's `JoinHandle::join`: moves the result out
    /// of this handle. A clone of the handle that waits afterwards finds
    /// [`GreenThreadError::Vanished`].
    ///
    /// ```no_run
    /// let gt = wasmlet::spawn(|| std::fs::read("data.txt"));
    /// let bytes = gt.join().unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn join(self) -> Result<T, GreenThreadError> {
        self.take_result()
    }

    /// [`wait`](Self::wait) for the one handle that will ever ask: moves the
    /// result out instead of cloning it.
    pub(crate) fn take_result(self) -> Result<T, GreenThreadError> {
        self.wait_end()?;
        let result = self.shared.result.borrow_mut().take();
        result.unwrap_or(Err(GreenThreadError::Vanished))
    }

    /// Yields until the green thread has ended (or a
    /// [`Timeout`](crate::Timeout) fires).
    fn wait_end(&self) -> Result<(), GreenThreadError> {
        if self.dead() {
            return Ok(());
        }
        let limit = Limit::new(None);
        loop {
            match hub::join(self.thread.id, limit.timeout_ns()) {
                JoinStatus::Ended => return Ok(()),
                JoinStatus::IsSelf => panic!("a green thread cannot wait for itself"),
                JoinStatus::TimedOut => {
                    if task::killed() {
                        return Err(Interrupted::Killed.into());
                    }
                    limit.check().map_err(Interrupted::from)?;
                }
            }
        }
    }

    /// A handle to `thread`, which has already produced `result` (a pool
    /// member that ran a spawn inline).
    pub(crate) fn finished(thread: Thread, result: Result<T, GreenThreadError>) -> Self {
        GreenThread {
            thread,
            shared: Rc::new(Shared {
                result: RefCell::new(Some(result)),
                inline: true,
            }),
        }
    }

    /// Calls `f(handle)` when the green thread ends, in its own context, after
    /// earlier links. On a green thread that has ended, `f` runs at once.
    ///
    /// ```no_run
    /// let gt = wasmlet::spawn(|| 1 + 1);
    /// gt.link(|gt| println!("done: {:?}", gt.wait()));
    /// ```
    pub fn link(&self, f: impl FnOnce(&GreenThread<T>) + 'static) -> Link {
        if self.shared.inline {
            f(self);
            return Link {
                target: self.thread.id,
                id: 0,
            };
        }
        let me = self.clone();
        self.thread.link_raw(Box::new(move || f(&me)))
    }
}

struct ResultBody<F, T> {
    f: Option<F>,
    shared: Rc<Shared<T>>,
}

impl<F: FnOnce() -> T, T> Body for ResultBody<F, T> {
    fn run(&mut self) -> bool {
        if let Some(f) = self.f.take() {
            let value = f();
            if task::killed() {
                // eventlet: a killed thread's wait() raises GreenletExit,
                // whatever the thread made of it.
                return false;
            }
            *self.shared.result.borrow_mut() = Some(Ok(value));
        }
        true
    }

    fn fail(&mut self, error: GreenThreadError) {
        self.f = None;
        let mut result = self.shared.result.borrow_mut();
        if result.is_none() {
            *result = Some(Err(error));
        }
    }
}

struct PlainBody<F> {
    f: Option<F>,
}

impl<F: FnOnce() -> R, R> Body for PlainBody<F> {
    fn run(&mut self) -> bool {
        if let Some(f) = self.f.take() {
            drop(f());
        }
        !task::killed()
    }

    fn fail(&mut self, _error: GreenThreadError) {
        self.f = None;
    }
}

/// Spawns green threads with non-default settings.
///
/// ```no_run
/// // A deep recursion needs a larger shadow stack than the hub's default.
/// let gt = wasmlet::Builder::new().stack_size(1 << 20).spawn(|| 7);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    stack_size: u32,
}

impl Builder {
    /// Settings as for [`spawn`].
    pub fn new() -> Self {
        Builder::default()
    }

    /// The size of the green thread's shadow stack (the part of the stack in
    /// linear memory: arrays, and locals whose address is taken), its
    /// thread-locals' block included (at its top, as glibc places a
    /// pthread's). Rounded up to 128 bytes; 0 means the hub's default
    /// (32 KiB unless the host configures otherwise). A green thread takes
    /// its stack when it first runs, and gives it back when it ends: smaller
    /// stacks let more of them run at once, as many as the guest's memory
    /// (4 GiB at most) holds.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = u32::try_from(bytes).unwrap_or(u32::MAX);
        self
    }

    /// [`spawn`] with these settings.
    pub fn spawn<T: 'static>(&self, f: impl FnOnce() -> T + 'static) -> GreenThread<T> {
        self.spawn_result(f, Duration::ZERO, false)
    }

    /// [`spawn_n`] with these settings.
    pub fn spawn_n<R>(&self, f: impl FnOnce() -> R + 'static) -> Thread {
        let body = Box::new(PlainBody { f: Some(f) });
        Thread {
            id: task::start(body, self.stack_size, 0, false),
        }
    }

    /// [`spawn_after`] with these settings.
    pub fn spawn_after<T: 'static>(
        &self,
        delay: Duration,
        f: impl FnOnce() -> T + 'static,
    ) -> GreenThread<T> {
        self.spawn_result(f, delay, false)
    }

    /// [`spawn_after_local`] with these settings.
    pub fn spawn_after_local<T: 'static>(
        &self,
        delay: Duration,
        f: impl FnOnce() -> T + 'static,
    ) -> GreenThread<T> {
        self.spawn_result(f, delay, true)
    }

    /// [`try_spawn`] with these settings.
    ///
    /// # Errors
    /// Why the host refused to start the green thread (`f` is dropped,
    /// unrun).
    pub fn try_spawn<T: 'static>(
        &self,
        f: impl FnOnce() -> T + 'static,
    ) -> Result<GreenThread<T>, SpawnError> {
        let (body, shared) = result_body(f);
        let id = task::try_start(body, self.stack_size, 0, false)?;
        Ok(GreenThread {
            thread: Thread { id },
            shared,
        })
    }

    fn spawn_result<T: 'static>(
        &self,
        f: impl FnOnce() -> T + 'static,
        delay: Duration,
        local: bool,
    ) -> GreenThread<T> {
        let (body, shared) = result_body(f);
        let id = task::start(body, self.stack_size, nanos(delay), local);
        GreenThread {
            thread: Thread { id },
            shared,
        }
    }
}

/// The task body of a green thread whose result is kept, and where.
fn result_body<T: 'static>(f: impl FnOnce() -> T + 'static) -> (Box<dyn Body>, Rc<Shared<T>>) {
    let shared = Rc::new(Shared {
        result: RefCell::new(None),
        inline: false,
    });
    let body = Box::new(ResultBody {
        f: Some(f),
        shared: shared.clone(),
    });
    (body, shared)
}

/// Starts `f` in a new green thread and returns its handle at once; `f` runs
/// when the caller next yields, after every green thread already runnable.
///
/// ```no_run
/// let gt = wasmlet::spawn(|| "hi".to_string());
/// assert_eq!(gt.wait().unwrap(), "hi");
/// ```
pub fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> GreenThread<T> {
    Builder::new().spawn(f)
}

/// [`spawn`], but a refusal by the host (a limit it set: green threads,
/// memory) is returned for the caller to handle instead of trapping it.
///
/// ```no_run
/// let mut workers = Vec::new();
/// loop {
///     match wasmlet::try_spawn(|| wasmlet::sleep(std::time::Duration::from_secs(1))) {
///         Ok(gt) => workers.push(gt),
///         Err(full) => {
///             eprintln!("{} workers, then: {full}", workers.len());
///             break;
///         }
///     }
/// }
/// ```
///
/// # Errors
/// Why the host refused to start the green thread (`f` is dropped, unrun).
pub fn try_spawn<T: 'static>(
    f: impl FnOnce() -> T + 'static,
) -> Result<GreenThread<T>, SpawnError> {
    Builder::new().try_spawn(f)
}

/// Like [`spawn`], but with no result to wait for: cheaper, and what to use
/// for fire-and-forget work. Whatever `f` returns is dropped (eventlet's
/// `spawn_n` discards it too). Returns the untyped handle.
///
/// ```no_run
/// wasmlet::spawn_n(|| println!("in the background"));
/// wasmlet::sleep(std::time::Duration::ZERO).ok(); // let it run
/// ```
pub fn spawn_n<R>(f: impl FnOnce() -> R + 'static) -> Thread {
    Builder::new().spawn_n(f)
}

/// Runs `f` in a new green thread once `delay` has passed, whether or not the
/// caller is still alive then.
///
/// ```no_run
/// let gt = wasmlet::spawn_after(std::time::Duration::from_millis(5), || 1);
/// assert_eq!(gt.wait().unwrap(), 1);
/// ```
pub fn spawn_after<T: 'static>(delay: Duration, f: impl FnOnce() -> T + 'static) -> GreenThread<T> {
    Builder::new().spawn_after(delay, f)
}

/// Like [`spawn_after`], but `f` never runs if the calling green thread has
/// ended by then: its `wait()` reports [`GreenThreadError::Cancelled`]
/// (eventlet would block forever).
///
/// ```no_run
/// let gt = wasmlet::spawn_after_local(std::time::Duration::from_millis(5), || 1);
/// assert_eq!(gt.wait().unwrap(), 1); // the spawner is alive: it ran
/// ```
pub fn spawn_after_local<T: 'static>(
    delay: Duration,
    f: impl FnOnce() -> T + 'static,
) -> GreenThread<T> {
    Builder::new().spawn_after_local(delay, f)
}

/// Yields for at least `duration`. `sleep(Duration::ZERO)` is the cooperative
/// yield: every green thread already runnable runs before the caller resumes.
///
/// As in eventlet, a sleep is where a [`Timeout`](crate::Timeout) or a kill
/// reaches a green thread: it then returns early with [`Interrupted`], for
/// the caller to return with (`?`), dropping what it owns.
///
/// ```no_run
/// fn ticker() -> Result<(), wasmlet::Interrupted> {
///     loop {
///         println!("tick");
///         wasmlet::sleep(std::time::Duration::from_millis(100))?;
///     }
/// }
/// ```
///
/// # Errors
/// [`Interrupted::TimedOut`] if a pending [`Timeout`](crate::Timeout) of
/// the caller fired during the sleep; [`Interrupted::Killed`] if the caller
/// was killed (before or during the sleep).
pub fn sleep(duration: Duration) -> Result<(), Interrupted> {
    let limit = Limit::new(None);
    if limit.unbounded() {
        return match hub::sleep(nanos(duration)) {
            true => Ok(()),
            false => Err(Interrupted::Killed),
        };
    }
    let end = Instant::now().checked_add(duration);
    loop {
        let rest = end.map_or(u64::MAX - 1, |end| {
            nanos(end.saturating_duration_since(Instant::now()))
        });
        let bounded = limit.timeout_ns();
        if !hub::sleep(rest.min(bounded)) {
            return Err(Interrupted::Killed);
        }
        if bounded > rest {
            return Ok(());
        }
        // A Timeout's deadline came first (or with it): it fires, unless it
        // was cancelled meanwhile, and then the sleep goes on.
        limit.check()?;
        if rest == 0 {
            return Ok(());
        }
    }
}

/// A handle to the calling green thread.
///
/// ```no_run
/// let me = wasmlet::getcurrent();
/// let child = wasmlet::spawn(move || wasmlet::getcurrent() != me);
/// assert!(child.wait().unwrap());
/// ```
pub fn getcurrent() -> Thread {
    Thread { id: hub::current() }
}

/// Stops `thread` where it is suspended; its `wait()` then reports
/// [`GreenThreadError::Killed`]. A thread that has not started never runs.
/// Its links run (as the dying thread) before this returns. Killing an ended
/// thread does nothing. The caller yields. Returns true if it killed.
///
/// Killing the calling green thread itself (`kill(getcurrent())`) returns
/// true at once, without yielding, and the caller is killed from then on:
/// its next blocking call returns [`Interrupted::Killed`]; return with `?`,
/// and what it holds (a permit, a lock guard, a pool slot) is dropped on the
/// way out, as eventlet's `GreenletExit` unwinds. Its `wait()` reports
/// [`GreenThreadError::Killed`] whatever it returns. Killing main ends the
/// guest.
///
/// ```no_run
/// let gt = wasmlet::spawn(|| wasmlet::sleep(std::time::Duration::from_secs(60)));
/// wasmlet::kill(gt.thread());
/// assert!(gt.wait().is_err());
/// ```
pub fn kill(thread: Thread) -> bool {
    thread.kill()
}

/// [`kill`], making the target's `wait()` report
/// [`GreenThreadError::KilledWith`] this error.
pub fn kill_with(thread: Thread, error: impl Into<Box<dyn Error + Send + Sync>>) -> bool {
    thread.kill_with(error)
}

/// Whether a green thread's failure (a panic or trap) is printed to stderr as
/// it happens (on by default, as in eventlet). `wait()` reports it either way.
pub fn hub_exceptions(on: bool) {
    task::set_hub_exceptions(on);
}

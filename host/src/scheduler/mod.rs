//! The hub's scheduling rules, free of wasmtime: which green thread runs
//! next, what each one waits for, and what wakes it.
//!
//! The [`Scheduler`] knows green threads only as records with a state; what
//! runs them (a wasmtime store, a fiber, a stack slot) is the hub's payload
//! `P`, which the scheduler keeps with each record and hands back when the
//! record goes. So every rule here is tested without wasm (the unit tests
//! below, and `model_tests`, a property test against a small model of
//! eventlet's semantics), and the end-to-end tests check the wiring.
//!
//! The rules:
//! - **Guests take turns** one switch at a time (a round robin of guests that
//!   have a runnable green thread), so no guest starves another. A guest
//!   whose timer comes due goes to the head of the round robin, and a
//!   running green thread of another guest is paused at the next epoch tick
//!   (`foreign_timer_due`, see `crate::execution::preemption`), so however many guests
//!   spin, a due timer waits for one tick (1 ms) at most.
//! - **Within a guest, a FIFO run queue**: `spawn` and every wake-up queue at
//!   the back; a green thread paused by preemption, and a green thread that
//!   was killed (its ending runs next), queue at the front.
//! - **Timers** fire in (deadline, order set) order; each belongs to one wait
//!   of one green thread's life (its id and a wait token), so a timer never
//!   wakes a later wait, or a later green thread that got the same key.
//! - **A guest deadlocks** when none of its green threads is queued, waits
//!   on a timer or waits for a host descriptor: nothing can wake any of them
//!   again.
//! - **Kill unwinds.** A started green thread killed while suspended in a hub
//!   wait resumes at once (ahead of its killer), and that wait reports the
//!   kill; from then on it never waits again: each blocking call reports the
//!   kill at once, so the thread returns through its frames and drops what it
//!   owns. Its ending (result `killed`, links) runs when it returns. One that
//!   preemption paused resumes where it was, and its next blocking call
//!   reports the kill. A thread is ended hard (its suspended call dropped,
//!   as a thread that has not started) only where that is safe, at a hub
//!   call: waiting for an async host function's future, or making more than
//!   [`UNWIND_CALLS`] blocking calls after its kill. The one exception is a
//!   runaway: a killed thread that runs a whole time slice without a
//!   blocking call (killed while paused, or one that ignored the kill its
//!   wait reported and computes on) is ended at the preemption that finds
//!   it so; ending it mid-code may leave a lock of its guest held
//!   (wasi-libc's malloc lock among them), but nothing else would stop it.
//!
//! Invariants (checked by `debug_check` in tests):
//! - a green thread is in its guest's run queue exactly when its state is
//!   [`State::Queued`], and at most once;
//! - a guest is in the round robin exactly when its run queue is not empty;
//! - `timed` counts the guest's green threads whose state has a timer, and
//!   `io` those waiting for a host descriptor, and `links` their pending
//!   links;
//! - a futex address is in its guest's map exactly while some green thread
//!   waits on it, and its queue counts those current waits (the queue may
//!   also hold ended ones, skipped when reached: see `Waiter`);
//! - `alive` counts the records of every live guest, and `reserved` what
//!   each live guest holds short of its guaranteed share.

mod keys;
mod killing;
mod life;
mod outside_waits;
mod report;
mod run_queue;
mod running;
mod spawning;
mod thread_ids;
mod timers;
mod timing;
mod waits;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use slab::Slab;

use crate::abi::{Ending, JoinStatus, KillStatus, ThreadId};
pub(crate) use keys::{GuestKey, ThreadKey};
pub(crate) use life::{KeptBlocking, UNWIND_CALLS};
use life::{Life, Unwinding};
use run_queue::RunQueue;
use thread_ids::ThreadIds;
use timers::{Timer, Timers};

/// What a green thread is doing, from the hub's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// In its guest's run queue.
    Queued,
    /// Being run right now (or, between a call and its suspension, about to
    /// say what it waits for).
    Running,
    /// Waiting for its timer (`sleep`).
    Sleeping,
    /// Spawned with a delay; waiting for its timer to start.
    Delayed,
    /// Waiting for the green thread `target` to end, with or without a timer.
    Joining { target: ThreadId, timed: bool },
    /// Waiting for `unpark`, with or without a timer.
    Parked { timed: bool },
    /// Waiting for a `notify` on a guest address (a futex: what
    /// `memory.atomic.wait` becomes), with or without a timer.
    Futex { address: u64, timed: bool },
    /// Waiting for a host descriptor to be ready (the hub's poller wakes
    /// it): `write` for writable, else readable; with or without a timer.
    Io { fd: i32, write: bool, timed: bool },
    /// Waiting for an async host function's future (its waker wakes it).
    Future,
}

impl State {
    fn has_timer(self) -> bool {
        matches!(
            self,
            State::Sleeping
                | State::Delayed
                | State::Parked { timed: true }
                | State::Joining { timed: true, .. }
                | State::Futex { timed: true, .. }
                | State::Io { timed: true, .. }
        )
    }
}

/// What a green thread's next run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The guest's `_start` (the main green thread).
    Main,
    /// A spawned green thread's task.
    Task(TaskCall),
}

/// What runs of a spawned green thread's task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskCall {
    /// The task (a guest pointer), from its beginning.
    Run { task: u32 },
    /// The guest's ending of a task that was killed, cancelled or trapped;
    /// `error` is the kill's error (a guest pointer, 0 for none).
    Finish { task: u32, how: Ending, error: u32 },
    /// A thread the guest's own `std::thread` (wasi-libc's `pthread_create`)
    /// asked for through `wasi::thread-spawn`: its `wasi_thread_start(tid,
    /// arg)`, which sets up the stack and TLS the guest allocated.
    StdThread { tid: u32, arg: u32 },
}

/// A green thread waiting in the hub's poller: woken only if it is still in
/// that wait (it may have been killed, or its guest ended, meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoWaiter {
    guest: GuestKey,
    thread: ThreadKey,
    id: ThreadId,
    token: u64,
}

/// `memory.atomic.wait`'s results.
pub(crate) const FUTEX_WOKEN: u32 = 0;
pub(crate) const FUTEX_NOT_EQUAL: u32 = 1;
pub(crate) const FUTEX_TIMED_OUT: u32 = 2;

/// A `spawn` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spawn {
    /// The guest's task pointer, handed back to its `wasmlet-run`.
    pub task: u32,
    /// Queued at once if zero, else when a timer of this length fires.
    pub delay: Duration,
    /// `spawn_after_local`: cancelled if the spawner has ended before it
    /// starts.
    pub local: bool,
}

/// What the hub does after `kill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Nothing more: this is the status.
    Done(KillStatus),
    /// The target (this key) was killed hard: its suspended call, if any,
    /// must be dropped. The status is `killed`; caller and target are queued.
    Target(ThreadKey),
    /// The target was killed and resumes to unwind (its suspended call is
    /// kept). The status is `killed`; caller and target are queued.
    Unwind,
    /// The caller killed itself (not main): it is unwinding from here on,
    /// and goes on at once without yielding, so that it returns through its
    /// frames and drops what it owns (eventlet's `kill(getcurrent())` raises
    /// `GreenletExit` in place). The status is `killed`; nothing is queued.
    Caller,
    /// The main green thread was killed: the guest ends.
    Main,
}

/// What the hub does with a green thread that has just suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspension {
    /// Keep its call, to be resumed when it is next run.
    Keep,
    /// A runaway killed while paused: drop its call; its ending is queued.
    Drop,
}

/// One green thread's record.
struct Thread<P> {
    id: ThreadId,
    state: State,
    /// Guest pointer to its task (0 for main).
    task: u32,
    /// Where it is in its life (what it waits for is `state`).
    life: Life,
    /// Started by `wasi::thread-spawn` (a `std::thread`): `task` is the
    /// start argument; it cannot be killed, and it has no SDK ending.
    std_thread: bool,
    /// `(link id, callback)`, in link order.
    /// Link ids rise in link order, so the map's order is link order; a
    /// map, not a queue, so that `unlink` finds and removes one in
    /// O(log links) (a scan of 30 million took 64 ms of the hub).
    links: BTreeMap<u64, u32>,
    /// The green threads joining it, as their waits were when they began:
    /// an entry whose wait has ended (timed out, killed) stays until the
    /// thread ends or the list is pruned (see [`Waiter`]).
    joiners: Vec<Waiter>,
    /// Bumped whenever it stops waiting, so that the timer of an ended wait
    /// is recognised as stale.
    wait_token: u64,
    /// An `unpark` came while it was not parked.
    permit: bool,
    /// Its last park (or futex wait) ended by `unpark` (or `notify`), not by
    /// its timer.
    unparked: bool,
    /// For `spawn_after_local`: the spawner, which must be alive when it starts.
    spawner: Option<ThreadId>,
    payload: P,
}

/// Green threads each guest may hold however full the hub is (see
/// [`Scheduler::has_room`]), unless the hub's bound is small: then a
/// sixteenth of it.
pub(crate) const GUARANTEED_GREEN_THREADS: usize = 1024;

/// Most timers [`Scheduler::fire_due_timers`] fires in one call (about
/// 0.4 ms of work).
pub(crate) const TIMERS_PER_STEP: usize = 4096;

/// One green thread's wait, as a queue of waiters records it: still
/// current while the thread (its key and id) has not stopped waiting since
/// (its wait token is unchanged).
///
/// Queues keep the entries of waits that ended otherwise (a timeout, a
/// kill) until they are passed or pruned, instead of searching for them
/// when the wait ends: that search made a wait's end cost O(waiters), and
/// 30,000 futex waiters timing out together held the hub for half a second.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    key: ThreadKey,
    id: ThreadId,
    token: u64,
}

impl Waiter {
    fn of<P>(key: ThreadKey, t: &Thread<P>) -> Waiter {
        Waiter {
            key,
            id: t.id,
            token: t.wait_token,
        }
    }

    /// True while the wait it recorded goes on.
    fn is_current<P>(&self, threads: &Slab<Thread<P>>) -> bool {
        threads
            .get(self.key.0)
            .is_some_and(|t| t.id == self.id && t.wait_token == self.token)
    }
}

/// True when a list of waiters of length `len` should be pruned of ended
/// waits: when it reaches a power of two past 64, so that pruning costs O(1)
/// a push, amortised, and ended waits never pile up past the current ones.
fn worth_pruning(len: usize) -> bool {
    len >= 64 && len.is_power_of_two()
}

/// The green threads waiting on one futex address.
///
/// Invariant: `current` counts the entries of `waiters` whose wait goes on;
/// the queue is removed from its guest's map when it reaches 0.
#[derive(Default)]
struct FutexQueue {
    waiters: VecDeque<Waiter>,
    current: usize,
}

/// The green threads of one live guest.
struct Guest<P> {
    threads: Slab<Thread<P>>,
    keys: ThreadIds,
    main: ThreadKey,
    next_id: ThreadId,
    next_link: u64,
    run_queue: RunQueue,
    /// The green threads waiting on each futex address, in the order they
    /// started waiting.
    futexes: FxHashMap<u64, FutexQueue>,
    /// In the scheduler's round robin.
    in_ready: bool,
    /// Green threads waiting on a timer: while none do, none waits for a
    /// host descriptor and none is queued, nothing can wake the guest again.
    timed: usize,
    /// Green threads waiting for something outside the hub: a host
    /// descriptor or an async host function's future.
    io: usize,
    /// Links pending over all its green threads.
    links: usize,
    /// Its green threads whose task has begun (`Life::started`): the
    /// ones that hold a store, an instance and a fiber stack; the others
    /// are records in a queue.
    started: usize,
}

impl<P> Guest<P> {
    fn key_of(&self, id: ThreadId) -> Option<ThreadKey> {
        self.keys.get(id).map(ThreadKey)
    }

    fn name_of(&self, key: ThreadKey) -> String {
        if key == self.main {
            "main green thread".into()
        } else {
            format!("green thread #{}", self.threads[key].id)
        }
    }
}

/// The scheduling state of one hub: its guests' green threads, their run
/// queues, the round robin of guests and the timers. `P` is what the hub
/// keeps with each green thread (its suspended call and stack).
///
/// Functions that may set a timer take the time as `now: impl FnOnce() ->
/// Instant`: reading the clock costs as much as the rest of a switch, so it
/// is read only when a timer is set.
pub(crate) struct Scheduler<P> {
    guests: Vec<Option<Guest<P>>>,
    /// Guests with a runnable green thread, in turn order.
    ready: VecDeque<GuestKey>,
    timers: Timers,
    /// Green threads alive over all guests.
    alive: usize,
    /// Green threads set aside for guests below their guarantee: the sum
    /// over live guests of `guarantee` less what each holds (see
    /// [`Scheduler::has_room`]).
    reserved: usize,
    /// Green threads each guest may hold however full the hub is.
    guarantee: usize,
}

impl<P> Default for Scheduler<P> {
    fn default() -> Self {
        Scheduler {
            guests: Vec::new(),
            ready: VecDeque::new(),
            timers: Timers::default(),
            alive: 0,
            reserved: 0,
            guarantee: GUARANTEED_GREEN_THREADS,
        }
    }
}

impl<P> Scheduler<P> {
    /// A scheduler for a hub that holds at most `most` green threads (a
    /// sanity bound: see [`Scheduler::has_room`]).
    pub fn with_bound(most: usize) -> Self {
        Scheduler {
            guarantee: GUARANTEED_GREEN_THREADS.min(most / 16).max(1),
            ..Scheduler::default()
        }
    }

    /// Adds a guest whose main green thread (id 1) is queued; returns the
    /// guest's key.
    pub fn add_guest(&mut self, main_payload: P) -> GuestKey {
        let mut guest = Guest {
            threads: Slab::new(),
            keys: ThreadIds::default(),
            main: ThreadKey(0),
            next_id: 1,
            next_link: 1,
            run_queue: RunQueue::default(),
            futexes: FxHashMap::default(),
            in_ready: false,
            timed: 0,
            io: 0,
            links: 0,
            started: 0,
        };
        guest.main = insert(&mut guest, 0, State::Queued, main_payload);
        self.guests.push(Some(guest));
        self.alive += 1;
        self.reserved += self.guarantee - 1;
        let key = GuestKey(self.guests.len() - 1);
        let main = self.guest(key).main;
        self.enqueue(key, main, false);
        key
    }

    /// Green threads alive over all guests.
    pub fn alive(&self) -> usize {
        self.alive
    }

    /// Green threads of one guest whose task has begun and not ended (0
    /// once the guest has ended).
    pub fn started_in(&self, guest: GuestKey) -> usize {
        self.guests
            .get(guest.0)
            .and_then(Option::as_ref)
            .map_or(0, |g| g.started)
    }

    /// Green threads alive in one guest (0 once it has ended).
    /// Whether the guest may have one more green thread under a hub bound
    /// of `most`: below its guarantee ([`GUARANTEED_GREEN_THREADS`], or a
    /// sixteenth of a smaller bound) it always may (the bound is a sanity bound, passed by at most that many a
    /// guest); past them, only while the hub stays under `most` with every
    /// other guest's unused guarantee set aside. So one guest filling the
    /// hub (with millions of delayed spawns, say) leaves each other guest,
    /// and each guest added after it, its guaranteed share.
    pub fn has_room(&self, guest: GuestKey, most: usize) -> bool {
        self.alive_in(guest) < self.guarantee || self.alive + self.reserved < most
    }

    pub fn alive_in(&self, guest: GuestKey) -> usize {
        self.guests
            .get(guest.0)
            .and_then(Option::as_ref)
            .map_or(0, |g| g.threads.len())
    }

    /// Links pending in one guest (0 once it has ended).
    pub fn links_in(&self, guest: GuestKey) -> usize {
        self.guests
            .get(guest.0)
            .and_then(Option::as_ref)
            .map_or(0, |g| g.links)
    }

    /// True while the guest has not ended.
    pub fn is_live(&self, guest: GuestKey) -> bool {
        self.guests.get(guest.0).is_some_and(Option::is_some)
    }

    /// Keys of the guests that have not ended.
    pub fn live_guests(&self) -> Vec<GuestKey> {
        (0..self.guests.len())
            .map(GuestKey)
            .filter(|&g| self.is_live(g))
            .collect()
    }

    pub fn is_main(&self, guest: GuestKey, thread: ThreadKey) -> bool {
        self.guest_ref(guest).main == thread
    }

    /// The hub's payload of a green thread.
    pub fn payload_mut(&mut self, guest: GuestKey, thread: ThreadKey) -> &mut P {
        &mut self.guest(guest).threads[thread].payload
    }

    /// The payload of a green thread, if its guest is live and it has a
    /// record.
    pub fn payload_if_live(&mut self, guest: GuestKey, thread: ThreadKey) -> Option<&mut P> {
        let g = self.guests.get_mut(guest.0)?.as_mut()?;
        g.threads.get_mut(thread.0).map(|t| &mut t.payload)
    }

    /// How messages name a green thread.
    pub fn name_of(&self, guest: GuestKey, thread: ThreadKey) -> String {
        self.guest_ref(guest).name_of(thread)
    }

    fn guest(&mut self, guest: GuestKey) -> &mut Guest<P> {
        self.guests[guest]
            .as_mut()
            .expect("a guest's green threads run only while it is live")
    }

    fn guest_ref(&self, guest: GuestKey) -> &Guest<P> {
        self.guests[guest]
            .as_ref()
            .expect("a guest's green threads run only while it is live")
    }
}

/// Inserts a new green thread record with the guest's next id.
fn insert<P>(g: &mut Guest<P>, task: u32, state: State, payload: P) -> ThreadKey {
    let id = g.next_id;
    g.next_id += 1;
    let key = g.threads.insert(Thread {
        id,
        state,
        task,
        life: Life::Unstarted,
        std_thread: false,
        links: BTreeMap::new(),
        joiners: Vec::new(),
        wait_token: 0,
        permit: false,
        unparked: false,
        spawner: None,
        payload,
    });
    g.keys.insert(id, key);
    ThreadKey(key)
}

/// True if the timer's green thread is still in the wait that set it.
fn timer_is_live<P>(guests: &[Option<Guest<P>>], timer: &Timer) -> bool {
    guests
        .get(timer.guest.0)
        .and_then(Option::as_ref)
        .and_then(|g| g.threads.get(timer.thread.0))
        .is_some_and(|t| t.id == timer.id && t.wait_token == timer.token && t.state.has_timer())
}

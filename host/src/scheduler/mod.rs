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
//!   (`foreign_timer_due`, see `crate::preemption`), so however many guests
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

mod run_queue;
mod thread_ids;
mod timers;

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
    guest: usize,
    thread: usize,
    id: ThreadId,
    token: u64,
}

/// `memory.atomic.wait`'s results.
pub(crate) const FUTEX_WOKEN: u32 = 0;
pub(crate) const FUTEX_NOT_EQUAL: u32 = 1;
pub(crate) const FUTEX_TIMED_OUT: u32 = 2;

/// How many blocking calls a killed green thread may make (each reporting
/// the kill at once) before it is taken to ignore the kill and ended hard.
/// Cleanup rarely blocks; a loop that retries on every error does, and this
/// bounds it.
pub(crate) const UNWIND_CALLS: u32 = 16;

/// A killed green thread made more than [`UNWIND_CALLS`] blocking calls
/// after its kill: it ignores it, and the hub ends it hard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeptBlocking;

/// A killed green thread on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unwinding {
    /// The kill's error (a guest pointer, 0 for none).
    error: u32,
    /// How many more blocking calls it may make (see [`UNWIND_CALLS`]).
    calls_left: u32,
    /// It has not reached a blocking call since it was killed while
    /// preemption had paused it, or since a preemption found it unwinding:
    /// a spinner, perhaps, that never will. Still running at its next
    /// preemption, it is ended there.
    spinning: bool,
}

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
    Target(usize),
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
    /// Set once it is killed, cancelled or trapped: its next run is its
    /// ending, and it can no longer be killed. Never set on main.
    ending: Option<(Ending, u32)>,
    /// Its task has begun (for `cancel`).
    started: bool,
    /// Killed while it ran its task, and unwinding.
    unwinding: Option<Unwinding>,
    /// Its last suspension was preemption's (not a hub wait): a kill
    /// cannot be reported there.
    paused: bool,
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
    key: usize,
    id: ThreadId,
    token: u64,
}

impl Waiter {
    fn of<P>(key: usize, t: &Thread<P>) -> Waiter {
        Waiter {
            key,
            id: t.id,
            token: t.wait_token,
        }
    }

    /// True while the wait it recorded goes on.
    fn is_current<P>(&self, threads: &Slab<Thread<P>>) -> bool {
        threads
            .get(self.key)
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
    main: usize,
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
    /// Its green threads whose task has begun (`Thread::started`): the
    /// ones that hold a store, an instance and a fiber stack; the others
    /// are records in a queue.
    started: usize,
}

impl<P> Guest<P> {
    fn key_of(&self, id: ThreadId) -> Option<usize> {
        self.keys.get(id)
    }

    fn name_of(&self, key: usize) -> String {
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
    ready: VecDeque<usize>,
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
    pub fn add_guest(&mut self, main_payload: P) -> usize {
        let mut guest = Guest {
            threads: Slab::new(),
            keys: ThreadIds::default(),
            main: 0,
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
        let key = self.guests.len() - 1;
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
    pub fn started_in(&self, guest: usize) -> usize {
        self.guests
            .get(guest)
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
    pub fn has_room(&self, guest: usize, most: usize) -> bool {
        self.alive_in(guest) < self.guarantee || self.alive + self.reserved < most
    }

    pub fn alive_in(&self, guest: usize) -> usize {
        self.guests
            .get(guest)
            .and_then(Option::as_ref)
            .map_or(0, |g| g.threads.len())
    }

    /// Links pending in one guest (0 once it has ended).
    pub fn links_in(&self, guest: usize) -> usize {
        self.guests
            .get(guest)
            .and_then(Option::as_ref)
            .map_or(0, |g| g.links)
    }

    /// True while the guest has not ended.
    pub fn is_live(&self, guest: usize) -> bool {
        self.guests.get(guest).is_some_and(Option::is_some)
    }

    /// Keys of the guests that have not ended.
    pub fn live_guests(&self) -> Vec<usize> {
        (0..self.guests.len())
            .filter(|&g| self.is_live(g))
            .collect()
    }

    pub fn is_main(&self, guest: usize, thread: usize) -> bool {
        self.guest_ref(guest).main == thread
    }

    /// The hub's payload of a green thread.
    pub fn payload_mut(&mut self, guest: usize, thread: usize) -> &mut P {
        &mut self.guest(guest).threads[thread].payload
    }

    /// The payload of a green thread, if its guest is live and it has a
    /// record.
    pub fn payload_if_live(&mut self, guest: usize, thread: usize) -> Option<&mut P> {
        let g = self.guests.get_mut(guest)?.as_mut()?;
        g.threads.get_mut(thread).map(|t| &mut t.payload)
    }

    /// How messages name a green thread.
    pub fn name_of(&self, guest: usize, thread: usize) -> String {
        self.guest_ref(guest).name_of(thread)
    }

    fn guest(&mut self, guest: usize) -> &mut Guest<P> {
        self.guests[guest]
            .as_mut()
            .expect("a guest's green threads run only while it is live")
    }

    fn guest_ref(&self, guest: usize) -> &Guest<P> {
        self.guests[guest]
            .as_ref()
            .expect("a guest's green threads run only while it is live")
    }

    // ---- the run queue ----

    /// Moves a waiting (or running) green thread to the run queue. One that
    /// is queued already keeps its place.
    fn make_runnable(&mut self, guest: usize, thread: usize, front: bool) {
        if self.guest(guest).threads[thread].state == State::Queued {
            return;
        }
        self.stop_waiting(guest, thread);
        self.guest(guest).threads[thread].state = State::Queued;
        self.enqueue(guest, thread, front);
    }

    /// Ends the wait the green thread is in (if any): its timer goes stale
    /// and a join leaves its target's joiners.
    fn stop_waiting(&mut self, guest: usize, thread: usize) {
        let g = self.guest(guest);
        let t = &mut g.threads[thread];
        t.wait_token += 1;
        let state = t.state;
        // A joiner's entry in its target's list is left to go stale (see
        // `Waiter`); a futex waiter's too, but the count of current ones
        // follows at once, so an address nobody waits on leaves the map.
        if let State::Futex { address, .. } = state {
            if let Some(queue) = g.futexes.get_mut(&address) {
                queue.current -= 1;
                if queue.current == 0 {
                    g.futexes.remove(&address);
                }
            }
        }
        if let State::Io { .. } | State::Future = state {
            g.io -= 1;
        }
        if state.has_timer() {
            g.timed -= 1;
            if self.timers.note_stale(1) {
                let guests = &self.guests;
                self.timers.retain(|timer| timer_is_live(guests, timer));
            }
        }
    }

    fn enqueue(&mut self, guest: usize, thread: usize, front: bool) {
        let g = self.guest(guest);
        if front {
            g.run_queue.push_front(thread);
        } else {
            g.run_queue.push_back(thread);
        }
        if !g.in_ready {
            g.in_ready = true;
            self.ready.push_back(guest);
        }
    }

    /// True if some green thread is runnable.
    pub fn has_runnable(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The next green thread to run: the next guest's turn, its queue's head.
    pub fn next_runnable(&mut self) -> Option<(usize, usize)> {
        while let Some(guest) = self.ready.pop_front() {
            let Some(g) = self.guests[guest].as_mut() else {
                continue;
            };
            g.in_ready = false;
            if let Some(thread) = g.run_queue.pop_front() {
                debug_assert_eq!(g.threads[thread].state, State::Queued);
                if !g.run_queue.is_empty() {
                    g.in_ready = true;
                    self.ready.push_back(guest);
                }
                return Some((guest, thread));
            }
        }
        None
    }

    /// Marks the green thread as running and says what its next run executes
    /// (when it has no suspended call to resume).
    pub fn start(&mut self, guest: usize, thread: usize) -> Entry {
        let g = self.guest(guest);
        let is_main = thread == g.main;
        let spawner_gone = {
            let t = &g.threads[thread];
            !t.started && t.ending.is_none() && t.spawner.is_some_and(|id| g.key_of(id).is_none())
        };
        let t = &mut g.threads[thread];
        t.state = State::Running;
        t.paused = false;
        if is_main {
            return Entry::Main;
        }
        if spawner_gone {
            // spawn_after_local whose spawner has ended: it never runs.
            t.ending = Some((Ending::Cancelled, 0));
        }
        let entry = if t.std_thread {
            let tid = u32::try_from(t.id).unwrap_or(u32::MAX);
            Entry::Task(TaskCall::StdThread { tid, arg: t.task })
        } else {
            match t.ending {
                Some((how, error)) => {
                    return Entry::Task(TaskCall::Finish {
                        task: t.task,
                        how,
                        error,
                    })
                }
                None => Entry::Task(TaskCall::Run { task: t.task }),
            }
        };
        if !t.started {
            t.started = true;
            g.started += 1;
        }
        entry
    }

    /// The green thread suspended (its call returned Pending).
    ///
    /// `now` is read only for a green thread that preemption paused: the
    /// timers due by then fire first, so that the guests they wake take
    /// their turn before the paused guest's next slice (a spinning guest
    /// delays another guest's due timer by at most one time slice).
    pub fn suspended(
        &mut self,
        guest: usize,
        thread: usize,
        now: impl FnOnce() -> Instant,
    ) -> Suspension {
        let t = &mut self.guest(guest).threads[thread];
        if t.state == State::Running {
            match &mut t.unwinding {
                Some(Unwinding {
                    error,
                    spinning: true,
                    ..
                }) => {
                    // Killed, and a whole slice later it has still not
                    // reached a blocking call: a runaway, which only a hard
                    // end stops (the one place a thread is ended mid-code;
                    // it may leave a lock of the guest's held).
                    t.ending = Some((Ending::Killed, *error));
                    self.make_runnable(guest, thread, true);
                    return Suspension::Drop;
                }
                // Killed, and computing since its last blocking call (one
                // that ignores the kill its wait reported, say): if the
                // next preemption finds it still so, it is a runaway.
                Some(u) => u.spinning = true,
                None => {}
            }
            t.paused = true;
            // Nothing recorded a wait: preemption paused it so other guests
            // can run. It resumes before any other green thread of its guest,
            // while the guest waits its turn behind the other guests,
            // including those its slice made due.
            self.fire_due_timers(now());
            // Another runnable green thread of its own may already hold its
            // guest's place in the round robin: it gives that up too.
            let g = self.guest(guest);
            if g.in_ready {
                g.in_ready = false;
                self.ready.retain(|&r| r != guest);
            }
            self.make_runnable(guest, thread, true);
        }
        Suspension::Keep
    }

    /// A spawned green thread's call returned: normally (`failure` None) or
    /// with a trap or a hub error. Returns the payload if the green thread is
    /// gone; None if its ending (links, result) is queued to run first.
    ///
    /// A killed green thread that was unwinding ends as killed however its
    /// call ended: it returned early, leaving its ending to the hub, or it
    /// failed on the way (a panic on the kill's error, say).
    pub fn ended(&mut self, guest: usize, thread: usize, failure: Option<Ending>) -> Option<P> {
        let t = &mut self.guest(guest).threads[thread];
        if let (Some(u), None) = (t.unwinding, t.ending) {
            t.ending = Some((Ending::Killed, u.error));
            self.make_runnable(guest, thread, true);
            return None;
        }
        if let Some(how) = failure {
            if t.ending.is_none() {
                t.ending = Some((how, 0));
                self.make_runnable(guest, thread, true);
                return None;
            }
        }
        Some(self.remove(guest, thread))
    }

    fn remove(&mut self, guest: usize, thread: usize) -> P {
        self.stop_waiting(guest, thread);
        self.alive -= 1;
        let g = self.guest(guest);
        let t = g.threads.remove(thread);
        if g.threads.len() < self.guarantee {
            self.reserved += 1;
        }
        let g = self.guest(guest);
        g.keys.remove(t.id);
        g.started -= usize::from(t.started);
        g.links -= t.links.len();
        for joiner in t.joiners {
            if joiner.is_current(&self.guest(guest).threads) {
                self.make_runnable(guest, joiner.key, false);
            }
        }
        t.payload
    }

    /// Ends the guest: every green thread goes. Returns their payloads.
    pub fn end_guest(&mut self, guest: usize) -> Vec<P> {
        let Some(g) = self.guests[guest].take() else {
            return Vec::new();
        };
        self.alive -= g.threads.len();
        self.reserved -= self.guarantee.saturating_sub(g.threads.len());
        if self.timers.note_stale(g.timed) {
            let guests = &self.guests;
            self.timers.retain(|timer| timer_is_live(guests, timer));
        }
        g.threads.into_iter().map(|(_, t)| t.payload).collect()
    }

    /// If none of the guest's green threads can ever run again, the report
    /// that names each and what it waits for.
    pub fn deadlock(&self, guest: usize) -> Option<String> {
        let g = self.guests[guest].as_ref()?;
        if !g.run_queue.is_empty() || g.timed > 0 || g.io > 0 {
            return None;
        }
        Some(self.blocked_report(guest))
    }

    /// Each green thread of a live guest and what it waits for, a line each
    /// (the deadlock report, and the threads in [`Scheduler::report`]).
    pub fn blocked_report(&self, guest: usize) -> String {
        self.report(guest, |_| None)
    }

    /// Each green thread of a live guest, what it does or waits for, and
    /// what `label` says of it (a host call's function, say), a line each.
    pub fn report(&self, guest: usize, label: impl Fn(ThreadId) -> Option<String>) -> String {
        let g = self.guest_ref(guest);
        let mut report = String::new();
        for (key, t) in g.threads.iter() {
            let what = match t.state {
                State::Joining { target, .. } => match g.key_of(target) {
                    Some(k) => format!("waiting for {} to end", g.name_of(k)),
                    None => format!("waiting for green thread #{target}"),
                },
                State::Parked { .. } => {
                    "parked (waiting on an Event, Queue, Semaphore or other SDK primitive)".into()
                }
                State::Futex { address, .. } => format!(
                    "waiting on a std lock, condition variable or other futex \
                     (memory.atomic.wait at {address:#x})"
                ),
                State::Io { fd, write, .. } => format!(
                    "waiting for host descriptor {fd} to be {}",
                    if write { "writable" } else { "readable" }
                ),
                State::Future => "waiting for an async host function".into(),
                State::Queued => "runnable".into(),
                State::Running => "running".into(),
                State::Sleeping => "sleeping".into(),
                State::Delayed => "spawned with a delay, not started".into(),
            };
            let label = label(t.id).map(|l| format!(" ({l})")).unwrap_or_default();
            let _ = writeln!(report, "  {}{label}: {what}", g.name_of(key));
        }
        report
    }

    // ---- timers ----

    fn add_timer(
        &mut self,
        guest: usize,
        thread: usize,
        now: impl FnOnce() -> Instant,
        after: Duration,
    ) {
        let g = self.guest(guest);
        g.timed += 1;
        let t = &g.threads[thread];
        let (id, token) = (t.id, t.wait_token);
        self.timers.push(now(), after, guest, thread, id, token);
    }

    /// The earliest deadline of a live timer (stale ones are dropped).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(timer) = self.timers.peek() {
            if timer_is_live(&self.guests, timer) {
                return Some(timer.deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// True if any timer is set (live or stale): only then is the clock
    /// worth reading for [`Scheduler::fire_due_timers`].
    pub fn has_timers(&self) -> bool {
        self.timers.len() > 0
    }

    /// True if the earliest timer (perhaps stale) is due at `now` and is not
    /// `guest`'s: pausing `guest`'s running green thread lets that other
    /// guest's wake-up run now (see `crate::preemption`).
    pub fn foreign_timer_due(&self, guest: usize, now: Instant) -> bool {
        self.timers
            .peek()
            .is_some_and(|t| t.deadline <= now && t.guest != guest)
    }

    /// Wakes every green thread whose timer is due at `now`. A guest that
    /// had nothing to run takes its turn before the guests already in the
    /// round robin (in timer order): those are running, or preempted, and
    /// would otherwise each spend a time slice before a due timer is served.
    /// It cannot starve them: once it runs a whole slice, preemption puts it
    /// at the back.
    ///
    /// At most [`TIMERS_PER_STEP`] fire in one call: the hub calls this
    /// before every step, so a burst (30,000 waits with one deadline) fires
    /// over a few steps instead of holding the hub for all of it, and a
    /// neighbour's timer, in deadline order among them, waits a few short
    /// steps at most.
    pub fn fire_due_timers(&mut self, now: Instant) {
        let mut ahead = 0;
        let mut fired = 0;
        while let Some(timer) = self.timers.peek() {
            if timer.deadline > now || fired == TIMERS_PER_STEP {
                break;
            }
            fired += 1;
            let timer = self.timers.pop().expect("peeked");
            if !timer_is_live(&self.guests, &timer) {
                continue;
            }
            let g = self.guest(timer.guest);
            let was_ready = g.in_ready;
            let t = &mut g.threads[timer.thread];
            if matches!(t.state, State::Parked { .. } | State::Futex { .. }) {
                t.unparked = false;
            }
            self.make_runnable(timer.guest, timer.thread, false);
            if !was_ready {
                let woken = self.ready.pop_back();
                debug_assert_eq!(woken, Some(timer.guest));
                self.ready.insert(ahead, timer.guest);
                ahead += 1;
            }
        }
    }

    // ---- the hub functions (see wit/hub.wit) ----

    /// Starts a green thread as `spawn` says; `caller` is the spawner.
    pub fn spawn(
        &mut self,
        guest: usize,
        caller: usize,
        spawn: Spawn,
        payload: P,
        now: impl FnOnce() -> Instant,
    ) -> ThreadId {
        let spawner = spawn.local.then(|| self.guest(guest).threads[caller].id);
        self.start_thread(guest, spawner, spawn, payload, now)
    }

    /// Starts a green thread for the host (a call of a guest function): no
    /// green thread spawned it. Its task is 0 until the guest names one
    /// ([`Scheduler::set_task`]).
    pub fn spawn_for_host(&mut self, guest: usize, payload: P) -> ThreadId {
        let spawn = Spawn {
            task: 0,
            delay: Duration::ZERO,
            local: false,
        };
        self.start_thread(guest, None, spawn, payload, Instant::now)
    }

    /// Starts a green thread for the guest's `std::thread` (see
    /// [`TaskCall::StdThread`]), queued as `spawn` queues; `arg` is
    /// wasi-libc's start argument.
    pub fn spawn_std_thread(&mut self, guest: usize, arg: u32, payload: P) -> ThreadId {
        let spawn = Spawn {
            task: arg,
            delay: Duration::ZERO,
            local: false,
        };
        let id = self.start_thread(guest, None, spawn, payload, Instant::now);
        let g = self.guest(guest);
        let key = g.key_of(id).expect("just started");
        g.threads[key].std_thread = true;
        id
    }

    /// True if the green thread is a `std::thread` of the guest.
    pub fn is_std_thread(&self, guest: usize, thread: usize) -> bool {
        self.guest_ref(guest).threads[thread].std_thread
    }

    /// The id the next green thread of the guest will get.
    pub fn next_id(&self, guest: usize) -> ThreadId {
        self.guest_ref(guest).next_id
    }

    /// Sets the task a green thread's ending is handed (see
    /// [`Scheduler::spawn_for_host`]).
    pub fn set_task(&mut self, guest: usize, thread: usize, task: u32) {
        self.guest(guest).threads[thread].task = task;
    }

    fn start_thread(
        &mut self,
        guest: usize,
        spawner: Option<ThreadId>,
        spawn: Spawn,
        payload: P,
        now: impl FnOnce() -> Instant,
    ) -> ThreadId {
        let Spawn { task, delay, .. } = spawn;
        let g = self.guest(guest);
        let state = if delay.is_zero() {
            State::Queued
        } else {
            State::Delayed
        };
        let key = insert(g, task, state, payload);
        if g.threads.len() <= self.guarantee {
            self.reserved -= 1;
        }
        let g = self.guest(guest);
        g.threads[key].spawner = spawner;
        let id = g.threads[key].id;
        // Room for a timer each, made here: growing the heap when thousands
        // of green threads sleep at once would stall the hub. (The run queue
        // and the id map grow without a pause: see `RunQueue`, `ThreadIds`.)
        if delay.is_zero() {
            self.enqueue(guest, key, false);
        } else {
            self.add_timer(guest, key, now, delay);
        }
        self.alive += 1;
        self.timers.reserve_total(self.alive);
        id
    }

    /// The guest's main green thread returned and the guest lives on (a
    /// plugin, whose green threads are the host's calls): main goes, and no
    /// later green thread counts as main.
    pub fn main_returned(&mut self, guest: usize) -> P {
        let main = self.guest(guest).main;
        let payload = self.remove(guest, main);
        self.guest(guest).main = usize::MAX;
        payload
    }

    /// Suspends the caller for `duration`; zero queues it behind every
    /// green thread already runnable.
    pub fn sleep(
        &mut self,
        guest: usize,
        thread: usize,
        duration: Duration,
        now: impl FnOnce() -> Instant,
    ) {
        if duration.is_zero() {
            self.make_runnable(guest, thread, false);
            return;
        }
        self.guest(guest).threads[thread].state = State::Sleeping;
        self.add_timer(guest, thread, now, duration);
    }

    pub fn current(&self, guest: usize, thread: usize) -> ThreadId {
        self.guest_ref(guest).threads[thread].id
    }

    /// Kills `target` (with `only_unstarted`: only if it has not started).
    /// The caller yields when it kills (it is queued behind the target),
    /// unless it is itself unwinding from a kill: it never waits again.
    pub fn kill(
        &mut self,
        guest: usize,
        caller: usize,
        target: ThreadId,
        error: u32,
        only_unstarted: bool,
    ) -> Kill {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return Kill::Done(KillStatus::NotAlive);
        };
        let is_main = key == g.main;
        let caller_yields = g.threads[caller].unwinding.is_none();
        let t = &mut g.threads[key];
        if t.ending.is_some() || t.unwinding.is_some() || t.std_thread {
            return Kill::Done(KillStatus::NotAlive);
        }
        if only_unstarted && (t.started || is_main) {
            return Kill::Done(KillStatus::AlreadyStarted);
        }
        if is_main {
            // Main killed, by itself too: the guest ends (as a program
            // whose main thread raised GreenletExit), and with it everything
            // its green threads held.
            return Kill::Main;
        }
        if key == caller {
            t.unwinding = Some(Unwinding {
                error,
                calls_left: UNWIND_CALLS,
                spinning: false,
            });
            return Kill::Caller;
        }
        let kill = self.kill_target(guest, key, error);
        if caller_yields {
            self.make_runnable(guest, caller, false);
        }
        kill
    }

    /// Kills the started or unstarted green thread `key` (not main, not
    /// ending): unwinding if it has started (a paused one reports the kill
    /// from its next blocking call), hard if it has not, or if it waits for
    /// an async host function's future (which cannot report it). It runs
    /// next (a queued target keeps its place, which is ahead of the caller).
    fn kill_target(&mut self, guest: usize, key: usize, error: u32) -> Kill {
        let t = &mut self.guest(guest).threads[key];
        let unwinds = t.started && t.state != State::Future;
        let kill = if unwinds {
            t.unwinding = Some(Unwinding {
                error,
                calls_left: UNWIND_CALLS,
                spinning: t.paused,
            });
            Kill::Unwind
        } else {
            t.ending = Some((Ending::Killed, error));
            Kill::Target(key)
        };
        self.make_runnable(guest, key, true);
        kill
    }

    /// True if `target` has started its task or has ended (main has always
    /// started); false while it waits to start, or if it never was.
    pub fn started(&self, guest: usize, target: ThreadId) -> bool {
        let g = self.guest_ref(guest);
        match g.key_of(target) {
            Some(key) => key == g.main || g.threads[key].started,
            None => target != 0 && target < g.next_id,
        }
    }

    /// True once the green thread has been killed and is unwinding: its
    /// waits report the kill.
    pub fn is_unwinding(&self, guest: usize, thread: usize) -> bool {
        self.guest_ref(guest).threads[thread].unwinding.is_some()
    }

    /// Called by every hub function that would wait, before it records the
    /// wait: `Ok(true)` if the caller is unwinding from a kill, so the call
    /// must answer at once (reporting the kill) instead of waiting.
    ///
    /// # Errors
    /// [`KeptBlocking`] once an unwinding caller has made more than
    /// [`UNWIND_CALLS`] such calls: the hub ends it hard.
    pub fn unwinding_call(&mut self, guest: usize, thread: usize) -> Result<bool, KeptBlocking> {
        match &mut self.guest(guest).threads[thread].unwinding {
            None => Ok(false),
            Some(Unwinding { calls_left: 0, .. }) => Err(KeptBlocking),
            Some(u) => {
                u.calls_left -= 1;
                u.spinning = false;
                Ok(true)
            }
        }
    }

    /// Kills `target` for the host (no green thread asks): as `kill`, but
    /// only the target is queued.
    pub fn kill_by_host(&mut self, guest: usize, target: ThreadId) -> Kill {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return Kill::Done(KillStatus::NotAlive);
        };
        if key == g.main {
            return Kill::Main;
        }
        let t = &g.threads[key];
        if t.ending.is_some() || t.unwinding.is_some() || t.std_thread {
            return Kill::Done(KillStatus::NotAlive);
        }
        self.kill_target(guest, key, 0)
    }

    /// Starts the caller waiting for `target` to end; `Some(status)` if it
    /// need not wait.
    pub fn join(
        &mut self,
        guest: usize,
        caller: usize,
        target: ThreadId,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> Option<JoinStatus> {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return Some(JoinStatus::Ended);
        };
        if key == caller {
            return Some(JoinStatus::IsSelf);
        }
        if timeout == Some(Duration::ZERO) {
            return Some(JoinStatus::TimedOut);
        }
        let joiner = Waiter::of(caller, &g.threads[caller]);
        let mut joiners = std::mem::take(&mut g.threads[key].joiners);
        joiners.push(joiner);
        if worth_pruning(joiners.len()) {
            joiners.retain(|w| w.is_current(&g.threads));
        }
        g.threads[key].joiners = joiners;
        g.threads[caller].state = State::Joining {
            target,
            timed: timeout.is_some(),
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, caller, now, timeout);
        }
        None
    }

    /// What a `join` that waited finds when it resumes (a caller killed
    /// meanwhile finds `timed-out`, and asks whether it was killed).
    pub fn join_result(&self, guest: usize, caller: usize, target: ThreadId) -> JoinStatus {
        let g = self.guest_ref(guest);
        match g.key_of(target) {
            Some(_) => JoinStatus::TimedOut,
            None if g.threads[caller].unwinding.is_some() => JoinStatus::TimedOut,
            None => JoinStatus::Ended,
        }
    }

    /// Adds a link to `target`; its id, or 0 if the target has ended.
    pub fn link(&mut self, guest: usize, target: ThreadId, callback: u32) -> u64 {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return 0;
        };
        let id = g.next_link;
        g.next_link += 1;
        g.links += 1;
        g.threads[key].links.insert(id, callback);
        id
    }

    /// Removes a pending link; its callback, or 0 if there is none.
    pub fn unlink(&mut self, guest: usize, target: ThreadId, link: u64) -> u32 {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return 0;
        };
        match g.threads[key].links.remove(&link) {
            Some(callback) => {
                g.links -= 1;
                callback
            }
            None => 0,
        }
    }

    /// The caller's next link in link order, or 0.
    pub fn next_link(&mut self, guest: usize, thread: usize) -> u32 {
        let g = self.guest(guest);
        match g.threads[thread].links.pop_first() {
            Some((_, callback)) => {
                g.links -= 1;
                callback
            }
            None => 0,
        }
    }

    /// Parks the caller; `Some(result)` if it need not wait.
    pub fn park(
        &mut self,
        guest: usize,
        thread: usize,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> Option<bool> {
        let t = &mut self.guest(guest).threads[thread];
        if t.permit {
            t.permit = false;
            return Some(true);
        }
        if timeout == Some(Duration::ZERO) {
            return Some(false);
        }
        t.unparked = false;
        t.state = State::Parked {
            timed: timeout.is_some(),
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, thread, now, timeout);
        }
        None
    }

    /// True if the caller's last park ended by `unpark` (and it has not been
    /// killed: a killed thread's park reports false, and the thread asks
    /// whether it was killed).
    pub fn park_result(&self, guest: usize, thread: usize) -> bool {
        let t = &self.guest_ref(guest).threads[thread];
        t.unparked && t.unwinding.is_none()
    }

    /// Wakes `target` if it is parked, else keeps a permit for its next park.
    /// False if it has ended or is ending (its wait never returns).
    pub fn unpark(&mut self, guest: usize, target: ThreadId) -> bool {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return false;
        };
        let t = &mut g.threads[key];
        if matches!(t.state, State::Parked { .. }) {
            t.unparked = true;
            self.make_runnable(guest, key, false);
            return true;
        }
        if t.ending.is_some() || t.unwinding.is_some() {
            return false;
        }
        t.permit = true;
        true
    }

    /// Starts the caller waiting on the futex at `address` (its value was
    /// what the caller expected); `Some(2)` ("timed out") if it need not.
    pub fn futex_wait(
        &mut self,
        guest: usize,
        thread: usize,
        address: u64,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> Option<u32> {
        if timeout == Some(Duration::ZERO) {
            return Some(FUTEX_TIMED_OUT);
        }
        let g = self.guest(guest);
        let queue = g.futexes.entry(address).or_default();
        queue
            .waiters
            .push_back(Waiter::of(thread, &g.threads[thread]));
        queue.current += 1;
        if worth_pruning(queue.waiters.len()) {
            let threads = &g.threads;
            queue.waiters.retain(|w| w.is_current(threads));
        }
        let t = &mut g.threads[thread];
        t.unparked = false;
        t.state = State::Futex {
            address,
            timed: timeout.is_some(),
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, thread, now, timeout);
        }
        None
    }

    /// What a futex wait that waited returns: woken (0) or timed out (2).
    pub fn futex_result(&self, guest: usize, thread: usize) -> u32 {
        if self.guest_ref(guest).threads[thread].unparked {
            FUTEX_WOKEN
        } else {
            FUTEX_TIMED_OUT
        }
    }

    /// Wakes up to `count` green threads waiting on the futex at `address`,
    /// first come first served; how many it woke.
    pub fn futex_notify(&mut self, guest: usize, address: u64, count: u32) -> u32 {
        let mut woken = 0;
        while woken < count {
            let g = self.guest(guest);
            // While the queue is in the map, a current waiter is in it.
            let Some(queue) = g.futexes.get_mut(&address) else {
                break;
            };
            let waiter = queue.waiters.pop_front().expect("a current waiter");
            if !waiter.is_current(&g.threads) {
                continue;
            }
            g.threads[waiter.key].unparked = true;
            self.make_runnable(guest, waiter.key, false);
            woken += 1;
        }
        woken
    }

    /// Starts the caller waiting for host descriptor `fd` to be readable (or
    /// writable), or until `timeout` has passed; the waiter for the hub's
    /// poller to hand back.
    pub fn io_wait(
        &mut self,
        guest: usize,
        thread: usize,
        fd: i32,
        write: bool,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> IoWaiter {
        let g = self.guest(guest);
        g.io += 1;
        let t = &mut g.threads[thread];
        t.state = State::Io {
            fd,
            write,
            timed: timeout.is_some(),
        };
        let waiter = IoWaiter {
            guest,
            thread,
            id: t.id,
            token: t.wait_token,
        };
        if let Some(timeout) = timeout {
            self.add_timer(guest, thread, now, timeout);
        }
        waiter
    }

    /// The waiter that the green thread's next wait will have: a future's
    /// waker is made before the future is polled, and so before the wait.
    pub fn next_waiter(&self, guest: usize, thread: usize) -> IoWaiter {
        let t = &self.guest_ref(guest).threads[thread];
        IoWaiter {
            guest,
            thread,
            id: t.id,
            token: t.wait_token,
        }
    }

    /// Starts the caller waiting for an async host function's future (its
    /// waker carries [`Scheduler::next_waiter`]).
    pub fn future_wait(&mut self, guest: usize, thread: usize) {
        let g = self.guest(guest);
        g.io += 1;
        g.threads[thread].state = State::Future;
    }

    /// True if a green thread of any guest waits for something outside the
    /// hub (which may wake it at any time).
    pub fn waits_outside(&self) -> bool {
        self.guests.iter().flatten().any(|g| g.io > 0)
    }

    /// The caller did not wait after all (its descriptor could not be
    /// polled): it goes on running.
    pub fn io_wait_abandoned(&mut self, guest: usize, thread: usize) {
        self.stop_waiting(guest, thread);
        self.guest(guest).threads[thread].state = State::Running;
    }

    /// True while the waiter's green thread is still in that wait.
    pub fn io_waiter_is_live(&self, waiter: &IoWaiter) -> bool {
        self.guests
            .get(waiter.guest)
            .and_then(Option::as_ref)
            .and_then(|g| g.threads.get(waiter.thread))
            .is_some_and(|t| {
                t.id == waiter.id
                    && t.wait_token == waiter.token
                    && matches!(t.state, State::Io { .. } | State::Future)
            })
    }

    /// The descriptor the waiter waits on is ready: queues its green thread
    /// if it still waits, and says whether it did.
    pub fn io_ready(&mut self, waiter: IoWaiter) -> bool {
        let live = self.io_waiter_is_live(&waiter);
        if live {
            self.make_runnable(waiter.guest, waiter.thread, false);
        }
        live
    }

    /// Checks the invariants in the module docs (tests only: it walks
    /// everything).
    #[cfg(test)]
    pub fn debug_check(&self) {
        let mut alive = 0;
        for (key, g) in self.guests.iter().enumerate() {
            let Some(g) = g else { continue };
            alive += g.threads.len();
            assert_eq!(
                g.in_ready,
                !g.run_queue.is_empty(),
                "guest {key} round robin"
            );
            assert_eq!(
                self.ready.iter().filter(|&&r| r == key).count(),
                usize::from(g.in_ready)
            );
            for (k, t) in g.threads.iter() {
                let queued = g.run_queue.iter().filter(|&q| q == k).count();
                assert_eq!(queued, usize::from(t.state == State::Queued), "thread {k}");
                assert_eq!(g.keys.get(t.id), Some(k));
            }
            let timed = g
                .threads
                .iter()
                .filter(|(_, t)| t.state.has_timer())
                .count();
            assert_eq!(g.timed, timed);
            let io = g
                .threads
                .iter()
                .filter(|(_, t)| matches!(t.state, State::Io { .. } | State::Future))
                .count();
            assert_eq!(g.io, io);
            let links: usize = g.threads.iter().map(|(_, t)| t.links.len()).sum();
            assert_eq!(g.links, links);
            for (address, queue) in &g.futexes {
                let current = queue
                    .waiters
                    .iter()
                    .filter(|w| w.is_current(&g.threads))
                    .count();
                assert_eq!(queue.current, current, "futex {address:#x}");
                assert!(current > 0, "futex {address:#x} has no current waiter");
            }
            let started = g.threads.iter().filter(|(_, t)| t.started).count();
            assert_eq!(g.started, started);
        }
        assert_eq!(self.alive, alive);
        let reserved: usize = self
            .guests
            .iter()
            .flatten()
            .map(|g| self.guarantee.saturating_sub(g.threads.len()))
            .sum();
        assert_eq!(self.reserved, reserved);
    }
}

/// Inserts a new green thread record with the guest's next id.
fn insert<P>(g: &mut Guest<P>, task: u32, state: State, payload: P) -> usize {
    let id = g.next_id;
    g.next_id += 1;
    let key = g.threads.insert(Thread {
        id,
        state,
        task,
        ending: None,
        started: false,
        unwinding: None,
        paused: false,
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
    key
}

/// True if the timer's green thread is still in the wait that set it.
fn timer_is_live<P>(guests: &[Option<Guest<P>>], timer: &Timer) -> bool {
    guests
        .get(timer.guest)
        .and_then(Option::as_ref)
        .and_then(|g| g.threads.get(timer.thread))
        .is_some_and(|t| t.id == timer.id && t.wait_token == timer.token && t.state.has_timer())
}

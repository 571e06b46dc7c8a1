//! The hub: a single-threaded scheduler of green threads, for any number of
//! guests at once.
//!
//! Each green thread is one wasmtime `Store` + instance (a [`Worker`], reused
//! from a green thread that ended before it when one is spare) running one
//! `call_async` future; the future suspends (its fiber parks) whenever the
//! green thread calls a blocking hub function, and the hub polls it again when
//! the green thread is due. Guests take turns one green thread switch at a
//! time (a round robin of guests, each with a FIFO run queue), so no guest
//! starves another; timers are kept in one heap ordered by (deadline, sequence).
//! Nothing on the hot path grows a list: room is made when green threads are
//! spawned, since a reallocation there stalled every thread for milliseconds.

use std::cell::RefCell;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use wasmtime::error::Context as _;
use wasmtime::{format_err, Result};
use wasmtime::{InstancePre, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::guest::{CapturedOutput, GuestError, GuestExit, GuestOptions};
use crate::program::{Layout, Program, FINISH_EXPORT, RUN_EXPORT};
use crate::runtime::Runtime;
use crate::shadow_stack::{ShadowStacks, Slot};
use crate::worker::{run_main, Entry, Spares, Stack, ThreadFuture, Worker};

/// How many times `Config::spare_instances` a guest may hold between two
/// idle moments of the hub; past that, the worker of an ended green thread is
/// dropped at once.
const SURPLUS_FACTOR: usize = 16;

/// How close to the next timer the hub stops dropping surplus spare workers:
/// only a real lull is used, not the gaps between close timers.
const IDLE_MARGIN: Duration = Duration::from_millis(1);

/// Gaps between timers shorter than this are spun through, not slept.
const SPIN_BELOW: Duration = Duration::from_micros(100);

/// Names a guest added to a [`Hub`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestId(usize);

/// Runs guests' green threads on the calling OS thread.
///
/// ```no_run
/// use wasmlet_host::{Config, GuestOptions, Hub, Program, Runtime};
///
/// let runtime = Runtime::new(Config::default())?;
/// let program = Program::from_file(runtime.engine(), "hello.wasm")?;
/// let mut hub = Hub::new(&runtime);
/// let a = hub.add_guest(&program, GuestOptions::default())?;
/// let b = hub.add_guest(&program, GuestOptions::default())?;
/// hub.run();
/// assert_eq!(hub.exit(a).unwrap().code, 0);
/// # let _ = b;
/// # Ok::<(), wasmtime::Error>(())
/// ```
pub struct Hub {
    runtime: Runtime,
    core: CoreRef,
}

/// How a host function reaches the hub that runs it.
///
/// wasmtime requires store data to be `Send`, but a hub and all its stores
/// stay on the OS thread that created the hub: `Hub` holds an `Rc`, so it is
/// neither `Send` nor `Sync`, and a store is only ever polled from inside
/// `Hub::run`.
#[derive(Clone)]
pub(crate) struct CoreRef(Rc<RefCell<Core>>);

// SAFETY: see the type's documentation: values of this type never leave the
// hub's thread, because everything holding one is owned by the `!Send` `Hub`.
unsafe impl Send for CoreRef {}

impl CoreRef {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// The guest's WASI context as seen from each of its green threads' stores.
pub(crate) struct WasiRef(*mut WasiP1Ctx);

// SAFETY: as for `CoreRef`, this never leaves the hub's thread.
unsafe impl Send for WasiRef {}

/// The data of each green thread's `Store`.
pub(crate) struct ThreadData {
    pub core: CoreRef,
    pub guest: usize,
    pub thread: usize,
    wasi: WasiRef,
}

impl ThreadData {
    /// The guest's one WASI context, shared by all its green threads.
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        // SAFETY: the context is boxed in the guest's record, which outlives
        // every store of the guest (stores are dropped before it). WASI
        // functions are synchronous, so two of them never run at once on the
        // hub's thread, and nothing else borrows the context meanwhile.
        unsafe { &mut *self.wasi.0 }
    }
}

/// How a green thread ended early (mirrors `ending` in `wit/hub.wit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Ending {
    Killed = 0,
    Cancelled,
    TrapUnreachable,
    TrapStackOverflow,
    TrapShadowStackOverflow,
    TrapMemoryOutOfBounds,
    TrapIntegerDivideByZero,
    TrapIntegerOverflow,
    TrapBadConversion,
    TrapIndirectCall,
    TrapOther,
}

impl Ending {
    fn of_error(error: &wasmtime::Error) -> Ending {
        match error.downcast_ref::<Trap>() {
            Some(Trap::UnreachableCodeReached) => Ending::TrapUnreachable,
            Some(Trap::StackOverflow) => Ending::TrapStackOverflow,
            Some(Trap::MemoryOutOfBounds) => Ending::TrapMemoryOutOfBounds,
            Some(Trap::IntegerDivisionByZero) => Ending::TrapIntegerDivideByZero,
            Some(Trap::IntegerOverflow) => Ending::TrapIntegerOverflow,
            Some(Trap::BadConversionToInteger) => Ending::TrapBadConversion,
            Some(Trap::IndirectCallToNull | Trap::BadSignature) => Ending::TrapIndirectCall,
            _ => Ending::TrapOther,
        }
    }
}

/// `kill-status` in `wit/hub.wit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum KillStatus {
    Killed = 0,
    AlreadyStarted,
    NotAlive,
}

/// `join-status` in `wit/hub.wit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum JoinStatus {
    Ended = 0,
    IsSelf,
    TimedOut,
}

/// What a green thread is doing, from the hub's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In its guest's run queue.
    Queued,
    /// Being polled right now.
    Running,
    /// Waiting for its timer (`sleep`).
    Sleeping,
    /// Spawned with a delay; waiting for its timer to start.
    Delayed,
    /// Waiting for the green thread with this id to end, with or without a
    /// timer.
    Joining { target: u64, timed: bool },
    /// Waiting for `unpark`, with or without a timer.
    Parked { timed: bool },
}

impl State {
    fn has_timer(self) -> bool {
        matches!(
            self,
            State::Sleeping
                | State::Delayed
                | State::Parked { timed: true }
                | State::Joining { timed: true, .. }
        )
    }
}

struct ThreadRec {
    id: u64,
    state: State,
    /// Guest pointer to its task (0 for main).
    task: u32,
    /// Set once the green thread is killed, cancelled or trapped: its next
    /// run is the guest's `wasmlet-finish`, and it can no longer be killed.
    ending: Option<(Ending, u32)>,
    /// Its `wasmlet-run` has begun (for `cancel`).
    started: bool,
    /// Set by a kill of itself: the hub ends it once it has suspended.
    self_killed: bool,
    future: Option<ThreadFuture>,
    slot: Option<Slot>,
    links: VecDeque<(u64, u32)>,
    joiners: Vec<usize>,
    /// Bumped whenever the thread stops waiting, so a stale timer is ignored.
    wait_token: u64,
    permit: bool,
    unparked: bool,
    /// For `spawn_after_local`: the spawner that must still be alive.
    spawner: Option<u64>,
}

impl ThreadRec {
    fn new(id: u64, task: u32, state: State) -> ThreadRec {
        ThreadRec {
            id,
            state,
            task,
            ending: None,
            started: false,
            self_killed: false,
            future: None,
            slot: None,
            links: VecDeque::new(),
            joiners: Vec::new(),
            wait_token: 0,
            permit: false,
            unparked: false,
            spawner: None,
        }
    }
}

/// How messages number a green thread: the generation half of its id, which
/// counts the guest's green threads from 1 (main).
fn thread_number(id: u64) -> u64 {
    id >> 32
}

/// A guest while it runs.
struct LiveGuest {
    pre: InstancePre<ThreadData>,
    layout: Arc<Layout>,
    /// Boxed so its address, shared by every store of the guest, is stable.
    wasi: Box<WasiP1Ctx>,
    stacks: ShadowStacks,
    /// Workers left by green threads that ended normally, for the next ones.
    /// Beyond `Config::spare_instances` they are dropped while the hub is
    /// idle (dropping a store takes microseconds, better not spent while
    /// threads wait).
    spare: Spares,
    threads: Slab<ThreadRec>,
    /// Key of the main green thread.
    main: usize,
    next_generation: u32,
    next_link: u64,
    run_queue: VecDeque<usize>,
    in_ready: bool,
    /// How many green threads wait on a timer: while none do and none can
    /// run, nothing can wake the guest again.
    timed: usize,
}

impl LiveGuest {
    fn key_of(&self, id: u64) -> Option<usize> {
        let key = (id & 0xffff_ffff) as usize;
        match self.threads.get(key) {
            Some(t) if t.id == id => Some(key),
            _ => None,
        }
    }

    fn new_id(&mut self, key: usize) -> u64 {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.checked_add(1).unwrap_or(1);
        ((generation as u64) << 32) | key as u64
    }

    fn name_of(&self, key: usize) -> String {
        if key == self.main {
            "main green thread".into()
        } else {
            format!("green thread #{}", thread_number(self.threads[key].id))
        }
    }
}

struct GuestRec {
    live: Option<LiveGuest>,
    exit: Option<GuestExit>,
    output: Option<CapturedOutput>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    deadline: Instant,
    seq: u64,
    guest: usize,
    thread: usize,
    token: u64,
}

/// Things to drop after the current poll, on the hub's own stack: dropping a
/// suspended green thread resumes its fiber to unwind it, which must not
/// happen from inside another green thread's fiber.
enum Grave {
    Future(#[allow(dead_code)] ThreadFuture),
    Worker(#[allow(dead_code)] Box<Worker>),
    Guest(#[allow(dead_code)] Box<LiveGuest>),
}

/// Drops green threads' futures before the guests (and WASI contexts) their
/// stores point at.
fn bury(graves: Vec<Grave>) {
    let (futures, guests): (Vec<_>, Vec<_>) = graves
        .into_iter()
        .partition(|g| matches!(g, Grave::Future(_) | Grave::Worker(_)));
    drop(futures);
    drop(guests);
}

/// The hub's state, shared with the host functions of its green threads.
pub(crate) struct Core {
    runtime: Runtime,
    me: std::rc::Weak<RefCell<Core>>,
    guests: Vec<GuestRec>,
    ready: VecDeque<usize>,
    timers: BinaryHeap<std::cmp::Reverse<Timer>>,
    timer_seq: u64,
    graveyard: Vec<Grave>,
    /// Green threads alive over all guests (for `Config::max_green_threads`).
    alive: usize,
}

impl Hub {
    /// A hub with no guests yet, scheduling on the calling OS thread.
    pub fn new(runtime: &Runtime) -> Hub {
        let core = Rc::new_cyclic(|me| {
            RefCell::new(Core {
                runtime: runtime.clone(),
                me: me.clone(),
                guests: Vec::new(),
                ready: VecDeque::new(),
                timers: BinaryHeap::new(),
                timer_seq: 0,
                graveyard: Vec::new(),
                alive: 0,
            })
        });
        Hub {
            runtime: runtime.clone(),
            core: CoreRef(core),
        }
    }

    /// Adds a guest running `program`; its main green thread (`_start`) runs
    /// once [`Hub::run`] is called.
    pub fn add_guest(&mut self, program: &Program, options: GuestOptions) -> Result<GuestId> {
        let (wasi, output) = options.build_wasi()?;
        let memory_ty = program
            .module
            .imports()
            .find_map(|i| i.ty().memory().cloned())
            .ok_or_else(|| format_err!("the program imports no memory"))?;
        let memory = wasmtime::SharedMemory::new(self.runtime.engine(), memory_ty)?;
        let mut linker = self.runtime.linker().clone();
        let mut wasi = Box::new(wasi);
        let guest_index = self.core.with(|core| core.guests.len());
        let scratch = self.scratch_store(guest_index, &mut *wasi);
        linker.define(&scratch, "env", "memory", memory.clone())?;
        drop(scratch);
        let pre = linker
            .instantiate_pre(&program.module)
            .context("the guest imports something wasmlet does not provide")?;
        let stacks = ShadowStacks::new(memory, program.layout.clone());
        let mut live = LiveGuest {
            pre,
            layout: program.layout.clone(),
            wasi,
            stacks,
            spare: Spares::default(),
            threads: Slab::new(),
            main: 0,
            next_generation: 1,
            next_link: 1,
            run_queue: VecDeque::new(),
            in_ready: false,
            timed: 0,
        };
        let main = live.threads.vacant_key();
        let id = live.new_id(main);
        live.threads.insert(ThreadRec::new(id, 0, State::Queued));
        live.main = main;
        self.core.with(|core| {
            core.guests.push(GuestRec {
                live: Some(live),
                exit: None,
                output,
            });
            core.alive += 1;
            core.enqueue(guest_index, main, false);
        });
        Ok(GuestId(guest_index))
    }

    /// Runs every guest until each has ended (its main green thread returned,
    /// it exited, trapped in main, or deadlocked). See [`Hub::exit`].
    pub fn run(&mut self) {
        // The kernel may wake a sleeping thread up to its timer slack (50 µs
        // by default) late; the hub's sleeps are its timers, so ask for 1 µs.
        // Only a hint: without it timers are just later.
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
        loop {
            let next = self.core.with(|core| {
                core.fire_due_timers();
                core.next_runnable()
            });
            match next {
                Some((guest, thread)) => self.step(guest, thread),
                None => {
                    let deadline = self.core.with(Core::next_deadline);
                    // Idle until the next timer: first drop surplus spare
                    // workers while there is time.
                    self.drop_surplus_spares(deadline);
                    match deadline {
                        Some(deadline) => wait_until(deadline),
                        None => break,
                    }
                }
            }
        }
        // Anything left is blocked with nothing to wake it.
        let graves = self.core.with(|core| {
            for guest in 0..core.guests.len() {
                if core.guests[guest].live.is_some() {
                    core.end_deadlocked(guest);
                }
            }
            std::mem::take(&mut core.graveyard)
        });
        bury(graves);
    }

    /// Drops surplus spare workers, one at a time, until `deadline` is near.
    fn drop_surplus_spares(&mut self, deadline: Option<Instant>) {
        loop {
            if deadline.is_some_and(|d| Instant::now() + IDLE_MARGIN >= d) {
                return;
            }
            let Some(worker) = self.core.with(Core::surplus_spare) else {
                return;
            };
            drop(worker);
        }
    }

    /// The functions this host defines for guests under the import module
    /// `module` (e.g. [`HUB_MODULE`](crate::HUB_MODULE)) with their core wasm
    /// types: what a contract check compares with `wit/hub.wit`.
    pub fn defined_functions(&self, module: &str) -> Vec<(String, wasmtime::FuncType)> {
        let mut store = self.scratch_store(usize::MAX, std::ptr::null_mut());
        let externs: Vec<_> = self
            .runtime
            .linker()
            .iter(&mut store)
            .filter(|(m, _, _)| *m == module)
            .map(|(_, name, item)| (name.to_string(), item))
            .collect();
        externs
            .into_iter()
            .filter_map(|(name, item)| Some((name, item.ty(&store).func()?.clone())))
            .collect()
    }

    /// A store no code runs in, for linker operations that need one.
    fn scratch_store(&self, guest: usize, wasi: *mut WasiP1Ctx) -> Store<ThreadData> {
        let data = ThreadData {
            core: self.core.clone(),
            guest,
            thread: usize::MAX,
            wasi: WasiRef(wasi),
        };
        Store::new(self.runtime.engine(), data)
    }

    /// How the guest ended, once it has.
    pub fn exit(&self, guest: GuestId) -> Option<GuestExit> {
        self.core
            .with(|core| core.guests.get(guest.0).and_then(|g| g.exit.clone()))
    }

    /// What the guest wrote to stdout and stderr, if its options captured them.
    pub fn output(&self, guest: GuestId) -> Option<(Vec<u8>, Vec<u8>)> {
        self.core.with(|core| {
            core.guests
                .get(guest.0)
                .and_then(|g| g.output.as_ref())
                .map(CapturedOutput::contents)
        })
    }

    /// Polls one green thread until it suspends or ends.
    fn step(&mut self, guest: usize, thread: usize) {
        let future = self.core.with(|core| core.take_future(guest, thread));
        let mut future = match future {
            Ok(future) => future,
            Err(error) => {
                let graves = self.core.with(|core| {
                    core.thread_ended(guest, thread, Err(error));
                    std::mem::take(&mut core.graveyard)
                });
                bury(graves);
                return;
            }
        };
        let poll = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        let graves = self.core.with(|core| {
            match poll {
                Poll::Pending => core.suspended(guest, thread, future),
                Poll::Ready((result, worker)) => {
                    core.graveyard.push(Grave::Future(future));
                    if let Some(worker) = worker {
                        core.keep_spare(guest, worker);
                    }
                    core.thread_ended(guest, thread, result);
                }
            }
            core.check_deadlock(guest);
            std::mem::take(&mut core.graveyard)
        });
        bury(graves);
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Stores first, then the WASI contexts they point at.
        let graves = self.core.with(|core| {
            for guest in 0..core.guests.len() {
                if core.guests[guest].live.is_some() {
                    core.end_guest(guest, GuestExit::code(1));
                }
            }
            std::mem::take(&mut core.graveyard)
        });
        bury(graves);
    }
}

/// Blocks the hub's thread until `deadline`. A gap shorter than
/// [`SPIN_BELOW`] is spun through: a sleep costs the process several
/// microseconds of kernel time (more in a VM, where arming a timer exits to
/// the hypervisor), and with thousands of timers due within milliseconds
/// those sleeps alone would outweigh the green threads' work.
fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    if deadline - now >= SPIN_BELOW {
        std::thread::sleep(deadline - now);
        return;
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// A future that is pending once, then ready: how a hub function suspends its
/// green thread after recording why it waits.
pub(crate) struct Suspend(bool);

impl Suspend {
    pub fn new() -> Suspend {
        Suspend(false)
    }
}

impl Future for Suspend {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

impl Core {
    fn live(&mut self, guest: usize) -> &mut LiveGuest {
        self.guests[guest]
            .live
            .as_mut()
            .expect("a guest's green threads run only while it is live")
    }

    // ---- the run queue ----

    /// Moves a waiting (or running) green thread to the run queue. One that
    /// is queued already keeps its place.
    fn make_runnable(&mut self, guest: usize, thread: usize, front: bool) {
        let live = self.live(guest);
        let t = &mut live.threads[thread];
        if t.state == State::Queued {
            return;
        }
        if t.state.has_timer() {
            live.timed -= 1;
        }
        t.state = State::Queued;
        t.wait_token += 1;
        self.enqueue(guest, thread, front);
    }

    fn enqueue(&mut self, guest: usize, thread: usize, front: bool) {
        let live = self.live(guest);
        if front {
            live.run_queue.push_front(thread);
        } else {
            live.run_queue.push_back(thread);
        }
        if !live.in_ready {
            live.in_ready = true;
            self.ready.push_back(guest);
        }
    }

    fn next_runnable(&mut self) -> Option<(usize, usize)> {
        while let Some(guest) = self.ready.pop_front() {
            let Some(live) = self.guests[guest].live.as_mut() else {
                continue;
            };
            live.in_ready = false;
            while let Some(thread) = live.run_queue.pop_front() {
                if live
                    .threads
                    .get(thread)
                    .is_some_and(|t| t.state == State::Queued)
                {
                    if !live.run_queue.is_empty() {
                        live.in_ready = true;
                        self.ready.push_back(guest);
                    }
                    return Some((guest, thread));
                }
            }
        }
        None
    }

    // ---- timers ----

    fn add_timer(&mut self, guest: usize, thread: usize, after: Duration) {
        let token = self.live(guest).threads[thread].wait_token;
        let deadline = Instant::now()
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 40));
        self.timer_seq += 1;
        self.timers.push(std::cmp::Reverse(Timer {
            deadline,
            seq: self.timer_seq,
            guest,
            thread,
            token,
        }));
    }

    /// The earliest deadline of a timer that still matters, dropping those
    /// whose thread has stopped waiting (killed, woken, or its guest ended).
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.timers.peek() {
            let timer = &top.0;
            let live = self.guests[timer.guest].live.as_ref();
            let waiting = live
                .and_then(|live| live.threads.get(timer.thread))
                .is_some_and(|t| t.wait_token == timer.token && t.state.has_timer());
            if waiting {
                return Some(timer.deadline);
            }
            self.timers.pop();
        }
        None
    }

    fn fire_due_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(top) = self.timers.peek() {
            if top.0.deadline > now {
                break;
            }
            let timer = self.timers.pop().unwrap().0;
            let Some(live) = self.guests[timer.guest].live.as_mut() else {
                continue;
            };
            let Some(t) = live.threads.get_mut(timer.thread) else {
                continue;
            };
            if t.wait_token != timer.token || !t.state.has_timer() {
                continue;
            }
            match t.state {
                State::Parked { .. } => t.unparked = false,
                State::Joining { target, .. } => {
                    if let Some(key) = live.key_of(target) {
                        live.threads[key].joiners.retain(|&j| j != timer.thread);
                    }
                }
                State::Delayed => {
                    let spawner_gone = t.spawner.is_some_and(|id| live.key_of(id).is_none());
                    if spawner_gone {
                        live.threads[timer.thread].ending = Some((Ending::Cancelled, 0));
                    }
                }
                _ => {}
            }
            self.make_runnable(timer.guest, timer.thread, false);
        }
    }

    // ---- green thread lifecycle ----

    /// The thread's future, made on its first run (or first run after it was
    /// killed or trapped).
    fn take_future(&mut self, guest: usize, thread: usize) -> Result<ThreadFuture> {
        let t = &mut self.live(guest).threads[thread];
        t.state = State::Running;
        // The common case on every switch: resume the existing call.
        if let Some(future) = t.future.take() {
            return Ok(future);
        }
        let preempt = self.runtime.config().time_slice.is_some();
        let core = self.me.upgrade().expect("the hub is alive while it runs");
        let live = self.live(guest);
        let data = |live: &mut LiveGuest| ThreadData {
            core: CoreRef(core),
            guest,
            thread,
            wasi: WasiRef(&mut *live.wasi),
        };
        if thread == live.main {
            let pre = live.pre.clone();
            return Ok(Box::pin(run_main(pre, data(live), preempt)));
        }
        let t = &mut live.threads[thread];
        let entry = if let Some((how, error)) = t.ending {
            Entry::Finish {
                task: t.task,
                how,
                error,
            }
        } else {
            t.started = true;
            Entry::Run { task: t.task }
        };
        let slot = t.slot.expect("a spawned green thread has a stack slot");
        let stack = Stack {
            top: live.stacks.stack_top(&slot),
            tls_base: slot.tls_base(),
        };
        if let Some(mut worker) = live.spare.pop() {
            worker.assign(thread);
            return Ok(Box::pin(worker.run(stack, entry)));
        }
        let (pre, data) = (live.pre.clone(), data(live));
        Ok(Box::pin(async move {
            match Worker::new(&pre, data, preempt).await {
                Ok(worker) => worker.run(stack, entry).await,
                Err(error) => (Err(error), None),
            }
        }))
    }

    /// Keeps the worker of a green thread that ended normally for the
    /// guest's next green thread.
    fn keep_spare(&mut self, guest: usize, worker: Box<Worker>) {
        let most = self
            .runtime
            .config()
            .spare_instances
            .saturating_mul(SURPLUS_FACTOR);
        match self.guests[guest].live.as_mut() {
            Some(live) if live.spare.len() < most => live.spare.push(worker),
            _ => self.graveyard.push(Grave::Worker(worker)),
        }
    }

    /// Takes one worker past its guest's `Config::spare_instances`, to be
    /// dropped.
    fn surplus_spare(&mut self) -> Option<Box<Worker>> {
        let keep = self.runtime.config().spare_instances;
        self.guests
            .iter_mut()
            .filter_map(|g| g.live.as_mut())
            .find(|live| live.spare.len() > keep)
            .and_then(|live| live.spare.pop())
    }

    fn suspended(&mut self, guest: usize, thread: usize, future: ThreadFuture) {
        let Some(live) = self.guests[guest].live.as_mut() else {
            // It ended its own guest (killed main): nothing left to resume.
            self.graveyard.push(Grave::Future(future));
            return;
        };
        let t = &mut live.threads[thread];
        let intact = t.slot.is_none_or(|slot| live.stacks.intact(&slot));
        if t.self_killed || !intact {
            t.self_killed = false;
            if !intact {
                t.ending = Some((Ending::TrapShadowStackOverflow, 0));
            }
            if t.state.has_timer() {
                live.timed -= 1;
            }
            t.state = State::Running;
            self.graveyard.push(Grave::Future(future));
            if thread == live.main {
                let exit = if intact {
                    GuestExit::failed(1, GuestError::MainKilled)
                } else {
                    GuestExit::failed(134, GuestError::Trap("its shadow stack overflowed".into()))
                };
                self.end_guest(guest, exit);
                return;
            }
            self.make_runnable(guest, thread, true);
            return;
        }
        t.future = Some(future);
        if t.state == State::Running {
            // Nothing recorded a wait: the epoch deadline paused it so other
            // guests can run. It goes to the front of its guest's queue (so it
            // resumes before any other thread of its guest) while the guest
            // waits its turn behind the other guests.
            self.make_runnable(guest, thread, true);
        }
    }

    fn thread_ended(&mut self, guest: usize, thread: usize, result: Result<()>) {
        let Some(live) = self.guests[guest].live.as_mut() else {
            return;
        };
        if thread == live.main {
            let exit = match result {
                Ok(()) => GuestExit::code(0),
                Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    Some(exit) => GuestExit::code(exit.0),
                    None => GuestExit::failed(134, GuestError::Trap(format!("{error:?}"))),
                },
            };
            self.end_guest(guest, exit);
            return;
        }
        match result {
            Ok(()) => {}
            Err(error) => {
                if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    self.end_guest(guest, GuestExit::code(exit.0));
                    return;
                }
                if error.downcast_ref::<Trap>().is_none() {
                    // Not a trap of its own code (the SDK reports those) but
                    // a hub function refusing it, e.g. memory full on spawn.
                    let why = error.root_cause();
                    tracing::warn!("{} stopped: {why}", live.name_of(thread));
                }
                let t = &mut live.threads[thread];
                if t.ending.is_none() {
                    // Run its ending (links, result) on a fresh instance.
                    t.ending = Some((Ending::of_error(&error), 0));
                    self.make_runnable(guest, thread, true);
                    return;
                }
                tracing::warn!("{} failed while ending: {error:?}", live.name_of(thread));
            }
        }
        self.remove_thread(guest, thread);
    }

    fn remove_thread(&mut self, guest: usize, thread: usize) {
        self.alive -= 1;
        let live = self.live(guest);
        let t = live.threads.remove(thread);
        if t.state.has_timer() {
            live.timed -= 1;
        }
        if let Some(slot) = t.slot {
            live.stacks.free(slot);
        }
        if let Some(future) = t.future {
            self.graveyard.push(Grave::Future(future));
        }
        for joiner in t.joiners {
            let live = self.live(guest);
            if live
                .threads
                .get(joiner)
                .is_some_and(|j| matches!(j.state, State::Joining { target, .. } if target == t.id))
            {
                self.make_runnable(guest, joiner, false);
            }
        }
    }

    fn end_guest(&mut self, guest: usize, exit: GuestExit) {
        let Some(mut live) = self.guests[guest].live.take() else {
            return;
        };
        self.alive -= live.threads.len();
        for (_, t) in live.threads.iter_mut() {
            if let Some(future) = t.future.take() {
                self.graveyard.push(Grave::Future(future));
            }
        }
        while let Some(worker) = live.spare.pop() {
            self.graveyard.push(Grave::Worker(worker));
        }
        // After its stores: the WASI context they point at.
        self.graveyard.push(Grave::Guest(Box::new(live)));
        self.guests[guest].exit = Some(exit);
    }

    /// Ends the guest if none of its green threads can ever run again.
    fn check_deadlock(&mut self, guest: usize) {
        if let Some(live) = self.guests[guest].live.as_ref() {
            // The run queue holds exactly the queued threads (make_runnable
            // never queues one twice; a thread leaves it only to run).
            if live.run_queue.is_empty() && live.timed == 0 {
                self.end_deadlocked(guest);
            }
        }
    }

    fn end_deadlocked(&mut self, guest: usize) {
        let live = self.live(guest);
        let mut report = String::new();
        for (key, t) in live.threads.iter() {
            let what = match t.state {
                State::Joining { target: id, .. } => match live.key_of(id) {
                    Some(k) => format!("waiting for {} to end", live.name_of(k)),
                    None => format!("waiting for green thread #{}", thread_number(id)),
                },
                State::Parked { .. } => {
                    "parked (waiting on an Event, Queue, Semaphore or other SDK primitive)".into()
                }
                other => format!("{other:?}"),
            };
            let _ = writeln!(report, "  {}: {what}", live.name_of(key));
        }
        self.end_guest(guest, GuestExit::failed(1, GuestError::Deadlock(report)));
    }

    // ---- the hub functions (see wit/hub.wit) ----

    pub(crate) fn spawn(
        &mut self,
        guest: usize,
        caller: usize,
        task: u32,
        stack_size: u32,
        delay: Duration,
        local: bool,
    ) -> Result<u64> {
        let config = self.runtime.config();
        let (default_stack, max) = (config.shadow_stack_size, config.max_green_threads);
        if self.alive >= max as usize {
            wasmtime::bail!(
                "too many green threads alive at once: the hub holds at most {max} \
                 (raise it with `wasmlet run --max-green-threads N` or \
                 Config::max_green_threads)"
            );
        }
        let live = self.live(guest);
        if !live.layout.can_spawn {
            wasmtime::bail!(
                "this guest cannot spawn green threads: it does not export `{RUN_EXPORT}` and \
                 `{FINISH_EXPORT}` (build it against the wasmlet guest SDK)"
            );
        }
        let stack_size = if stack_size == 0 {
            default_stack
        } else {
            stack_size
        };
        let slot = live.stacks.alloc(stack_size)?;
        let key = live.threads.vacant_key();
        let id = live.new_id(key);
        let spawner = local.then(|| live.threads[caller].id);
        let state = if delay.is_zero() {
            State::Queued
        } else {
            State::Delayed
        };
        let mut t = ThreadRec::new(id, task, state);
        t.slot = Some(slot);
        t.spawner = spawner;
        live.threads.insert(t);
        // Room for every green thread in its guest's run queue and for a
        // timer each, made here: growing them when thousands of green
        // threads wake or sleep at once stalls the hub for milliseconds
        // (the copy, and the page faults of fresh memory).
        let (queued, threads) = (live.run_queue.len(), live.threads.len());
        live.run_queue.reserve(threads.saturating_sub(queued));
        if delay.is_zero() {
            self.enqueue(guest, key, false);
        } else {
            live.timed += 1;
            self.add_timer(guest, key, delay);
        }
        self.alive += 1;
        self.timers
            .reserve(self.alive.saturating_sub(self.timers.len()));
        Ok(id)
    }

    pub(crate) fn sleep(&mut self, guest: usize, thread: usize, duration: Duration) {
        if duration.is_zero() {
            self.make_runnable(guest, thread, false);
            return;
        }
        let live = self.live(guest);
        live.threads[thread].state = State::Sleeping;
        live.timed += 1;
        self.add_timer(guest, thread, duration);
    }

    /// Writes `bytes` into the guest's memory at `at`; false if out of
    /// bounds.
    pub(crate) fn write_guest_memory(&mut self, guest: usize, at: u32, bytes: &[u8]) -> bool {
        self.live(guest).stacks.write_checked(at, bytes)
    }

    pub(crate) fn current(&mut self, guest: usize, thread: usize) -> u64 {
        self.live(guest).threads[thread].id
    }

    /// Kills `target`; the caller yields (is queued) if it did.
    pub(crate) fn kill(
        &mut self,
        guest: usize,
        caller: usize,
        target: u64,
        error: u32,
        only_unstarted: bool,
    ) -> KillStatus {
        let live = self.live(guest);
        let Some(key) = live.key_of(target) else {
            return KillStatus::NotAlive;
        };
        let t = &mut live.threads[key];
        if t.ending.is_some() {
            return KillStatus::NotAlive;
        }
        if only_unstarted && (t.started || key == live.main) {
            return KillStatus::AlreadyStarted;
        }
        if key == caller {
            // It cannot be dropped while it runs: the hub ends it once it
            // has suspended.
            if key != live.main {
                t.ending = Some((Ending::Killed, error));
            }
            t.self_killed = true;
            return KillStatus::Killed;
        }
        if key == live.main {
            self.end_guest(guest, GuestExit::failed(1, GuestError::MainKilled));
            return KillStatus::Killed;
        }
        t.ending = Some((Ending::Killed, error));
        if let Some(future) = t.future.take() {
            self.graveyard.push(Grave::Future(future));
        }
        // A queued target keeps its place, which is ahead of the caller.
        self.make_runnable(guest, key, true);
        self.make_runnable(guest, caller, false);
        KillStatus::Killed
    }

    /// Starts the caller waiting for `target` to end; `Some(status)` if it
    /// need not wait.
    pub(crate) fn join(
        &mut self,
        guest: usize,
        caller: usize,
        target: u64,
        timeout: Option<Duration>,
    ) -> Option<JoinStatus> {
        let live = self.live(guest);
        let Some(key) = live.key_of(target) else {
            return Some(JoinStatus::Ended);
        };
        if key == caller {
            return Some(JoinStatus::IsSelf);
        }
        if timeout == Some(Duration::ZERO) {
            return Some(JoinStatus::TimedOut);
        }
        live.threads[key].joiners.push(caller);
        live.threads[caller].state = State::Joining {
            target,
            timed: timeout.is_some(),
        };
        if let Some(timeout) = timeout {
            live.timed += 1;
            self.add_timer(guest, caller, timeout);
        }
        None
    }

    /// What a `join` that waited found when it resumed.
    pub(crate) fn join_result(&mut self, guest: usize, target: u64) -> JoinStatus {
        match self.live(guest).key_of(target) {
            Some(_) => JoinStatus::TimedOut,
            None => JoinStatus::Ended,
        }
    }

    pub(crate) fn link(&mut self, guest: usize, target: u64, callback: u32) -> u64 {
        let live = self.live(guest);
        let Some(key) = live.key_of(target) else {
            return 0;
        };
        let id = live.next_link;
        live.next_link += 1;
        live.threads[key].links.push_back((id, callback));
        id
    }

    pub(crate) fn unlink(&mut self, guest: usize, target: u64, link: u64) -> u32 {
        let live = self.live(guest);
        let Some(key) = live.key_of(target) else {
            return 0;
        };
        let links = &mut live.threads[key].links;
        match links.iter().position(|(id, _)| *id == link) {
            Some(at) => links.remove(at).map_or(0, |(_, cb)| cb),
            None => 0,
        }
    }

    pub(crate) fn next_link(&mut self, guest: usize, thread: usize) -> u32 {
        self.live(guest).threads[thread]
            .links
            .pop_front()
            .map_or(0, |(_, cb)| cb)
    }

    /// Parks the caller; `Some(result)` if it need not wait.
    pub(crate) fn park(
        &mut self,
        guest: usize,
        thread: usize,
        timeout: Option<Duration>,
    ) -> Option<bool> {
        let live = self.live(guest);
        let t = &mut live.threads[thread];
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
            live.timed += 1;
            self.add_timer(guest, thread, timeout);
        }
        None
    }

    pub(crate) fn park_result(&mut self, guest: usize, thread: usize) -> bool {
        self.live(guest).threads[thread].unparked
    }

    pub(crate) fn unpark(&mut self, guest: usize, target: u64) -> bool {
        let live = self.live(guest);
        let Some(key) = live.key_of(target) else {
            return false;
        };
        let t = &mut live.threads[key];
        if matches!(t.state, State::Parked { .. }) {
            t.unparked = true;
            self.make_runnable(guest, key, false);
            return true;
        }
        if t.ending.is_some() {
            // Killed or trapped: the park it was in never returns, so the
            // waker must take back whatever it handed over.
            return false;
        }
        t.permit = true;
        true
    }
}

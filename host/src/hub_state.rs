//! The hub's state, shared by the run loop ([`Hub`](crate::Hub)) and the
//! host functions its green threads call: the [`Scheduler`] with each green
//! thread's call and stack, each guest's wasm side, and what is to be dropped
//! once the current green thread is off its fiber.
//!
//! Host functions reach it through [`with`]: `Hub::run` enters its state for
//! its whole duration (a thread-local pointer), and host functions run only
//! inside it, on the hub's thread.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use wasmtime::{format_err, Result, StoreContextMut, UpdateDeadline};

use crate::abi::{Ending, JoinStatus, KillStatus, SpawnRefusal, ThreadId};
use crate::call::{CallError, CallRecord, CallSlot, PendingCall};
use crate::config::Config;
use crate::control::Control;
use crate::descriptor_budget::{DescriptorBudget, DescriptorShare};
use crate::guest::GuestId;
use crate::guest::{
    CapturedOutput, GuestError, GuestExit, GuestUsage, HOST_BYTES_PER_GREEN_THREAD,
    HOST_BYTES_PER_LINK, HOST_BYTES_PER_UNSTARTED_THREAD,
};
use crate::lifecycle::{new_call, CallEnd, LiveGuest, ThreadSlot};
use crate::net_policy::NetPolicy;
use crate::net_sockets::{NetError, Sockets};
use crate::poller::{Interest, Poller};
use crate::program::{FINISH_EXPORT, RUN_EXPORT};
use crate::scheduler::{
    Entry, IoWaiter, Kill, Scheduler, Spawn, Suspension, TaskCall, FUTEX_NOT_EQUAL, FUTEX_WOKEN,
    UNWIND_CALLS,
};
use crate::stdio::HostStdio;
use crate::store_data::ThreadData;
use crate::worker::{Preempt, ThreadFuture, Worker, STD_THREAD_START};

/// How many times `Config::spare_instances` a guest may hold between two
/// idle moments of the hub; past that, the worker of an ended green thread is
/// dropped at once.
const SURPLUS_FACTOR: usize = 16;

/// One guest of a hub: its wasm side while it runs, then how it ended.
pub(crate) struct GuestRecord {
    pub live: Option<LiveGuest>,
    pub exit: Option<GuestExit>,
    pub output: Option<CapturedOutput>,
    /// Green threads the hub stopped (a refused spawn, say) since the first,
    /// which was logged: a spawn bomb must not flood the log.
    pub unlogged_refusals: u64,
    /// Whether the first refusal was logged.
    pub refusal_logged: bool,
    /// `GuestOptions::max_green_threads`.
    pub max_green_threads: Option<u32>,
    /// `GuestOptions::max_memory`, in whole pages' bytes.
    pub memory_limit: Option<u64>,
    /// Which of its descriptors 0-2 are the host's own streams.
    pub host_stdio: HostStdio,
    /// `GuestOptions::max_host_memory`.
    pub max_host_memory: u64,
    /// Its part of the process's descriptors (capped at
    /// `GuestOptions::max_descriptors`), and the descriptors it opened itself
    /// that are open.
    pub descriptors: DescriptorShare,
    pub opened: rustc_hash::FxHashSet<u32>,
    /// CPU time charged to it, in `crate::cpu_clock` cycles, and
    /// `GuestOptions::max_cpu_time`.
    pub cpu_cycles: u64,
    pub max_cpu_time: Option<Duration>,
    /// Bytes of its green threads' fiber stacks charged to its host memory
    /// (see `crate::fiber_stack`).
    pub stack_bytes: u64,
    /// `GuestOptions::max_output` (when its output is captured).
    pub max_output: usize,
    /// Why its latest `try-spawn` that returned 0 refused.
    pub last_refusal: SpawnRefusal,
    /// A plugin: it lives on when its main returns, for the host's calls.
    pub plugin: bool,
    /// What it may reach on the network.
    pub net: NetPolicy,
    /// Whose its name lookups are, on the process's resolver threads.
    pub lookup_owner: crate::resolver::Owner,
    /// Its open sockets.
    pub sockets: Sockets,
}

impl GuestRecord {
    /// CPU time charged to it.
    pub fn cpu_time(&self) -> Duration {
        crate::cpu_clock::to_duration(self.cpu_cycles)
    }

    /// Sockets, files and directories it opened itself and holds.
    fn held_descriptors(&self) -> usize {
        self.opened.len() + self.sockets.len()
    }

    /// A record for a guest that starts with `live`; its limits as
    /// `options` say.
    pub fn new(
        live: LiveGuest,
        output: Option<CapturedOutput>,
        options: &crate::GuestOptions,
    ) -> GuestRecord {
        GuestRecord {
            live: Some(live),
            exit: None,
            output,
            unlogged_refusals: 0,
            refusal_logged: false,
            max_green_threads: options.max_green_threads,
            memory_limit: options
                .max_memory
                .map(|bytes| bytes / (64 * 1024) * (64 * 1024)),
            host_stdio: HostStdio::new(options.inherit_stdin, !options.capture_output),
            max_host_memory: options.max_host_memory,
            descriptors: DescriptorBudget::process().share(options.max_descriptors as usize),
            opened: Default::default(),
            cpu_cycles: 0,
            stack_bytes: 0,
            max_cpu_time: options.max_cpu_time,
            max_output: options.max_output,
            last_refusal: SpawnRefusal::HubFull,
            plugin: false,
            net: NetPolicy::new(options.net_listen.clone(), options.net_connect.clone()),
            lookup_owner: crate::resolver::new_owner(),
            sockets: Sockets::default(),
        }
    }
}

/// Things to drop after the current poll, outside every fiber (see [`bury`]):
/// dropping a suspended green thread resumes its fiber to unwind it, which
/// must not happen from inside another green thread's fiber.
pub(crate) enum Grave {
    Call(ThreadFuture),
    Worker(Box<Worker>),
    Guest(Box<LiveGuest>),
}

/// Drops green threads' calls and workers, and ended guests' memories, on
/// another thread (the reaper), outside any fiber. The other guests' timers
/// would wait for all of it on the hub: giving back a store and instance
/// (dozens of allocations, and its fiber stack's pages past the pool's
/// resident share) costs about 5 µs, which a storm of kills would pay one
/// by one; a suspended call must first be resumed to unwind, which costs
/// about as much again (a guest ended with 100,000 green threads asleep held
/// the hub for over a second); a memory of hundreds of MiB takes the kernel
/// milliseconds.
pub(crate) fn bury(graves: Vec<Grave>) {
    for grave in graves {
        match grave {
            Grave::Call(call) => drop_elsewhere(Box::new(call)),
            Grave::Worker(worker) => drop_elsewhere(worker),
            Grave::Guest(live) => {
                let memory = live.stacks.memory().clone();
                drop(live);
                drop_elsewhere(Box::new(memory));
            }
        }
    }
}

/// Drops `corpse` on a thread of its own (the reaper, started at the first
/// use); on this thread if that thread cannot be had.
///
/// Sound for a worker or a call, whose store holds its guest's `WasiPtr`
/// (`store_data`): dropping a store never reads its data's pointer, and
/// unwinding a suspended call runs no guest code and no host function (the
/// host function it is suspended in is dropped, and the trap that follows
/// unwinds the wasm frames), so the guest's WASI context may be gone by
/// then; the guest's memory lives on while a store holds it.
fn drop_elsewhere(corpse: Box<dyn Send>) {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::OnceLock;
    static REAPER: OnceLock<Option<Sender<Box<dyn Send>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (send, receive) = channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("wasmlet-reaper".into())
            .spawn(move || receive.into_iter().for_each(drop))
            .ok()
            .map(|_| send)
    });
    SENT_TO_REAPER.set(true);
    if let Some(reaper) = reaper {
        // The reaper never ends; were it gone, the corpse comes back in the
        // error and is dropped here.
        drop(reaper.send(corpse));
    }
}

thread_local! {
    /// This thread sent the reaper something since it last waited for it.
    static SENT_TO_REAPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Waits until the reaper has dropped everything this thread sent it (the
/// reaper drops in order, so a marker sent last marks the end): what
/// `Hub::run` does before it returns, so that an embedder sees every
/// future of its host functions that a guest's end abandoned dropped by
/// then.
pub(crate) fn await_reaper() {
    struct Marker(std::sync::mpsc::SyncSender<()>);
    impl Drop for Marker {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    if !SENT_TO_REAPER.replace(false) {
        return;
    }
    let (send, receive) = std::sync::mpsc::sync_channel(1);
    drop_elsewhere(Box::new(Marker(send)));
    SENT_TO_REAPER.set(false);
    let _ = receive.recv();
}

/// The state of one hub.
pub(crate) struct HubState {
    pub config: Config,
    pub sched: Scheduler<ThreadSlot>,
    pub guests: Vec<GuestRecord>,
    pub graveyard: Vec<Grave>,
    /// Guests' time limits: (when, guest, the limit as given), earliest
    /// first.
    pub time_limits: BinaryHeap<Reverse<(Instant, usize, Duration)>>,
    /// Green threads waiting for host descriptors; made at the first wait.
    pub poller: Option<Poller<IoWaiter>>,
    /// Where handles' commands arrive (to wake the poller for them).
    pub control: std::sync::Arc<Control>,
    /// Calls of guest functions by the host, by guest and green thread id.
    pub calls: rustc_hash::FxHashMap<(usize, ThreadId), CallRecord>,
    /// The runtime's count of epoch ticks, the tick the current step began
    /// at, and the ticks in a time slice (see `crate::preemption`).
    ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    step_tick: u64,
    slice_ticks: u64,
}

thread_local! {
    /// The state of the hub whose `run` is on this thread's stack.
    static ENTERED: Cell<*const RefCell<HubState>> = const { Cell::new(std::ptr::null()) };
}

/// Makes `state` the one host functions on this thread reach, until the
/// guard is dropped.
pub(crate) fn enter(state: &RefCell<HubState>) -> Entered<'_> {
    let previous = ENTERED.with(|e| e.replace(state));
    Entered {
        previous,
        _state: state,
    }
}

/// Undoes [`enter`] when dropped.
pub(crate) struct Entered<'a> {
    previous: *const RefCell<HubState>,
    _state: &'a RefCell<HubState>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        ENTERED.with(|e| e.set(self.previous));
    }
}

/// Runs `f` on the state of the hub that is running on this thread, for a
/// green thread of `guest`.
///
/// # Errors
/// If no hub is running here, its state is already borrowed, or the guest
/// has ended (none of which a green thread calling a host function meets;
/// the error traps the caller rather than panic in the host).
pub(crate) fn with<R>(guest: usize, f: impl FnOnce(&mut HubState) -> R) -> Result<R> {
    let state = ENTERED.with(Cell::get);
    if state.is_null() {
        return Err(format_err!("a hub function was called outside Hub::run"));
    }
    // SAFETY: `enter` stored a reference that its guard outlives, and the
    // guard resets the pointer before the reference ends.
    let state = unsafe { &*state };
    let mut state = state
        .try_borrow_mut()
        .map_err(|_| format_err!("a hub function was called while the hub was busy"))?;
    if !state.sched.is_live(guest) {
        return Err(format_err!(
            "a hub function was called by a guest that has ended"
        ));
    }
    Ok(f(&mut state))
}

/// What a running store does at each epoch tick (see `crate::preemption`):
/// pause, so that other guests run, once its slice is up or another guest's
/// timer is due; else go on to the next tick.
///
/// # Errors
/// Never: a hub it cannot reach (its guest ended) pauses it.
fn at_tick(store: StoreContextMut<'_, ThreadData>) -> Result<UpdateDeadline> {
    let guest = store.data().guest;
    let pause = with(guest, |state| state.should_pause(guest)).unwrap_or(true);
    Ok(if pause {
        UpdateDeadline::Yield(1)
    } else {
        UpdateDeadline::Continue(1)
    })
}

impl HubState {
    /// Whether the green thread of `guest` now running is to be paused at
    /// this tick (see `crate::preemption`).
    fn should_pause(&self, guest: usize) -> bool {
        let ticks_run = self.ticks.load(std::sync::atomic::Ordering::Relaxed) - self.step_tick;
        let due = self.sched.foreign_timer_due(guest, Instant::now());
        crate::preemption::pause(ticks_run, self.slice_ticks, due)
    }

    /// A step begins at the runtime's tick `tick`: the running green thread's
    /// slice is counted from there.
    pub fn step_begins(&mut self, tick: u64) {
        self.step_tick = tick;
    }

    pub fn new(
        config: Config,
        control: std::sync::Arc<Control>,
        ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> HubState {
        HubState {
            sched: Scheduler::with_bound(config.max_green_threads as usize),
            slice_ticks: config
                .time_slice
                .map_or(u64::MAX, crate::preemption::ticks_per_slice),
            ticks,
            step_tick: 0,
            config,
            guests: Vec::new(),
            graveyard: Vec::new(),
            time_limits: BinaryHeap::new(),
            poller: None,
            control,
            calls: Default::default(),
        }
    }

    /// Starts the green thread waiting for host descriptor `fd` to be ready
    /// for `interest`. False if it need not wait: the descriptor cannot be
    /// polled (a regular file is always ready).
    ///
    /// # Errors
    /// If the hub's poller cannot be made or fails (out of descriptors):
    /// the caller reports an I/O error.
    pub fn io_wait(
        &mut self,
        guest: usize,
        thread: usize,
        fd: std::os::fd::BorrowedFd<'_>,
        interest: Interest,
        timeout: Option<Duration>,
    ) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        if self.poller.is_none() {
            let poller = Poller::new()?;
            self.control.wake_poller_too(poller.notifier());
            self.poller = Some(poller);
        }
        let poller = self.poller.as_mut().expect("made above");
        let write = interest == Interest::Write;
        let waiter =
            self.sched
                .io_wait(guest, thread, fd.as_raw_fd(), write, timeout, Instant::now);
        let sched = &self.sched;
        match poller.wait_for(fd, interest, waiter, |w| sched.io_waiter_is_live(w)) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.sched.io_wait_abandoned(guest, thread);
                match e.raw_os_error() {
                    Some(libc::EPERM) => Ok(false),
                    _ => Err(e),
                }
            }
        }
    }

    /// Wakes the green threads whose host descriptors became ready, waiting
    /// for one up to `timeout` (None: until one is, or a handle calls).
    pub fn poll_io(&mut self, timeout: Option<Duration>) {
        let Some(poller) = self.poller.as_mut() else {
            return;
        };
        let sched = &mut self.sched;
        if let Err(e) = poller.poll(timeout, |waiter| sched.io_ready(waiter)) {
            tracing::error!("the hub's poller failed: {e}");
        }
    }

    /// Every live guest of the hub: what it uses, and each green thread
    /// with what it does or waits for (the deadlock report's format).
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut report = String::new();
        let live = self.sched.live_guests();
        let _ = writeln!(
            report,
            "hub: {} live guests, {} green threads, {} calls in flight",
            live.len(),
            self.sched.alive(),
            self.calls.len()
        );
        for guest in live {
            let Some(usage) = self.usage(guest) else {
                continue;
            };
            let kind = if self.guests[guest].plugin {
                "plugin"
            } else {
                "program"
            };
            let calls = self.calls.keys().filter(|k| k.0 == guest).count();
            let _ = writeln!(
                report,
                "guest {guest} ({kind}): {} green threads, {calls} calls in flight, cpu {:.3} s, \
                 linear memory {} KiB, host memory {} KiB, {} files open",
                usage.green_threads,
                usage.cpu_time.as_secs_f64(),
                usage.memory >> 10,
                usage.host_memory >> 10,
                usage.descriptors
            );
            report.push_str(&self.sched.report(guest, |id| {
                let call = self.calls.get(&(guest, id))?;
                Some(format!("call of `{}`", call.name))
            }));
        }
        report
    }

    /// True while a plugin guest lives (it may be called at any time).
    pub fn plugin_alive(&self) -> bool {
        self.guests
            .iter()
            .enumerate()
            .any(|(key, g)| g.plugin && self.sched.is_live(key))
    }

    /// True while a green thread waits for a host descriptor. With
    /// `prune`, waiters that have left (killed, or their guest ended) are
    /// dropped first, so that the hub does not wait for nobody.
    pub fn io_waiting(&mut self, prune: bool) -> bool {
        let Some(poller) = self.poller.as_mut() else {
            return false;
        };
        if prune {
            let sched = &self.sched;
            if let Err(e) = poller.prune(|w| sched.io_waiter_is_live(w)) {
                tracing::error!("the hub's poller failed: {e}");
            }
        }
        poller.is_waiting()
    }

    fn live(&mut self, guest: usize) -> &mut LiveGuest {
        self.guests[guest]
            .live
            .as_mut()
            .expect("a guest's green threads run only while it is live")
    }

    /// The green thread's call: its suspended one, or a new one for its
    /// next entry.
    ///
    /// # Errors
    /// A green thread's first run fails (and it ends, its ending queued) if
    /// it would pass its guest's host memory limit, or if the guest's
    /// memory has no room for its shadow stack.
    pub fn take_call(&mut self, guest: usize, thread: usize) -> Result<ThreadFuture> {
        let entry = self.sched.start(guest, thread);
        let slot = self.sched.payload_mut(guest, thread);
        if let Some(call) = slot.future.take() {
            return Ok(call);
        }
        let needs_stack = slot.stack.is_none()
            && matches!(
                entry,
                Entry::Task(TaskCall::Run { .. } | TaskCall::Finish { .. })
            );
        let size = slot.stack_size;
        if needs_stack {
            // Its first run: only now does it take a store, an instance, a
            // fiber stack and a shadow stack (so a million spawned at once
            // cost a million records, not a million stacks).
            if matches!(entry, Entry::Task(TaskCall::Run { .. })) {
                self.check_start(guest)?;
            }
            let stack = self.new_thread_stack(guest, size)?;
            self.sched.payload_mut(guest, thread).stack = Some(stack);
        }
        let stack = self.sched.payload_mut(guest, thread).stack;
        let preempt = self.config.time_slice.map(|_| at_tick as Preempt);
        let (call, fiber) = new_call(self.live(guest), guest, thread, entry, stack, preempt)?;
        self.sched.payload_mut(guest, thread).fiber = fiber;
        Ok(call)
    }

    /// A step of the green thread ran `cycles` (see `crate::cpu_clock`);
    /// `handed_out` is the fiber stack its store took in it, if it took one.
    pub fn stepped(&mut self, guest: usize, thread: usize, handed_out: Option<(usize, usize)>) {
        if handed_out.is_none() {
            return;
        }
        if let Some(slot) = self.sched.payload_if_live(guest, thread) {
            slot.fiber.stepped(handed_out);
        }
    }

    /// Charges the guest `now` bytes for a green thread's fiber stack where
    /// it was charged `before`; ends it if that passes its host memory
    /// limit.
    fn charge_stack(&mut self, guest: usize, before: u64, now: u64) {
        let record = &mut self.guests[guest];
        record.stack_bytes = record
            .stack_bytes
            .saturating_sub(before)
            .saturating_add(now);
        let (most, stacks) = (record.max_host_memory, record.stack_bytes);
        if now > before && self.sched.is_live(guest) && self.host_memory(guest) > most {
            let what = format!(
                "host memory limit of {} MiB (its green threads' native stacks hold {} KiB past \
                 the first {} KiB of each)",
                most >> 20,
                stacks >> 10,
                crate::fiber_stack::ALLOWANCE >> 10,
            );
            self.end_guest(
                guest,
                GuestExit::failed(137, GuestError::LimitExceeded(what)),
            );
        }
    }

    /// A green thread's call is dropped (and its store with it): its fiber
    /// stack's charge ends.
    fn drop_call(&mut self, guest: usize, thread: usize) {
        let slot = self.sched.payload_mut(guest, thread);
        let charged = std::mem::take(&mut slot.fiber).charged();
        if let Some(call) = slot.future.take() {
            self.graveyard.push(Grave::Call(call));
        }
        self.charge_stack(guest, charged, 0);
    }

    /// Whether a green thread of `guest` that has just started (and is
    /// already counted as started) keeps it within its host memory limit.
    fn check_start(&self, guest: usize) -> Result<()> {
        let most = self.guests[guest].max_host_memory;
        if self.host_memory(guest) > most {
            wasmtime::bail!(
                "could not start: this guest's host memory limit of {} MiB is reached ({} green \
                 threads running, {} more spawned and waiting to start; raise it with \
                 `wasmlet run --max-host-memory MIB` or GuestOptions::max_host_memory)",
                most >> 20,
                self.sched.started_in(guest),
                self.sched.alive_in(guest) - self.sched.started_in(guest),
            );
        }
        Ok(())
    }

    /// The green thread's call returned Pending.
    pub fn suspended(&mut self, guest: usize, thread: usize, call: ThreadFuture) {
        if !self.sched.is_live(guest) {
            // It ended its own guest (killed main, exit): nothing to resume.
            self.graveyard.push(Grave::Call(call));
            return;
        }
        match self.sched.suspended(guest, thread, Instant::now) {
            Suspension::Keep => {
                let slot = self.sched.payload_mut(guest, thread);
                slot.future = Some(call);
                let before = slot.fiber.charged();
                let now = slot.fiber.suspended();
                self.charge_stack(guest, before, now);
            }
            Suspension::Drop => {
                self.sched.payload_mut(guest, thread).future = Some(call);
                self.drop_call(guest, thread);
            }
        }
    }

    /// The green thread's call returned.
    pub fn call_ended(&mut self, guest: usize, thread: usize, result: Result<()>) {
        let Some(live) = self.guests[guest].live.as_ref() else {
            return;
        };
        let end = CallEnd::of(result, live.layout.overflow_func);
        if self.sched.is_main(guest, thread)
            && self.guests[guest].plugin
            && matches!(end, CallEnd::Returned)
        {
            // A plugin's main has set it up; its calls come from the host.
            let slot = self.sched.main_returned(guest);
            self.bury_slot(guest, slot);
            return;
        }
        if self.sched.is_std_thread(guest, thread) {
            if let CallEnd::Failed { error, .. } = &end {
                // As a trap in any thread of a wasi-threads program (a Rust
                // panic aborts the process there too): the guest ends.
                let name = self.sched.name_of(guest, thread);
                let exit = GuestExit::failed(
                    134,
                    GuestError::StdThreadTrap(format!(
                        "{name}, a std::thread, trapped (which ends every thread of the \
                         guest, as in any wasi-threads program): {error:?}"
                    )),
                );
                self.end_guest(guest, exit);
                return;
            }
        }
        if self.sched.is_main(guest, thread) {
            let exit = match end {
                CallEnd::Returned => GuestExit::code(0),
                CallEnd::Exit(code) => GuestExit::code(code),
                CallEnd::Failed { .. } if self.at_output_limit(guest) => {
                    let limit = self.guests[guest].max_output;
                    let what = format!("captured output limit of {} MiB per stream", limit >> 20);
                    GuestExit::failed(137, GuestError::LimitExceeded(what))
                }
                CallEnd::Failed { .. } if self.at_memory_limit(guest) => {
                    let limit = self.guests[guest].memory_limit.unwrap_or(0);
                    let what = format!("linear memory limit of {} MiB", limit >> 20);
                    GuestExit::failed(137, GuestError::LimitExceeded(what))
                }
                CallEnd::Failed { how, error, .. } => {
                    let what = if how == Ending::TrapShadowStackOverflow {
                        "shadow stack overflow (the main green thread's stack is the module's \
                         own: link the guest with a larger `-z stack-size`): "
                    } else {
                        ""
                    };
                    GuestExit::failed(134, GuestError::Trap(format!("{what}{error:?}")))
                }
            };
            self.end_guest(guest, exit);
            return;
        }
        let failure = match end {
            CallEnd::Returned => None,
            CallEnd::Exit(code) => {
                self.end_guest(guest, GuestExit::code(code));
                return;
            }
            CallEnd::Failed { .. } if self.guests[guest].plugin && self.at_memory_limit(guest) => {
                // A plugin whose memory is full stays full (a failed green
                // thread's allocations are never freed): it ends, and its
                // host can start it afresh.
                let limit = self.guests[guest].memory_limit.unwrap_or(0);
                let what = format!("linear memory limit of {} MiB", limit >> 20);
                self.end_guest(
                    guest,
                    GuestExit::failed(137, GuestError::LimitExceeded(what)),
                );
                return;
            }
            CallEnd::Failed { how, trap, error } => {
                let name = self.sched.name_of(guest, thread);
                if !trap {
                    // Not a trap of its own code (the SDK reports those) but
                    // a hub function refusing it, e.g. memory full on spawn:
                    // logged once per guest, the rest counted.
                    let record = &mut self.guests[guest];
                    if record.refusal_logged {
                        record.unlogged_refusals += 1;
                    } else {
                        record.refusal_logged = true;
                        tracing::warn!("{name} stopped: {}", error.root_cause());
                    }
                }
                Some((how, name, error))
            }
        };
        let ending = failure.as_ref().map(|(how, ..)| *how);
        let id = self.sched.current(guest, thread);
        if let (Some((_, _, error)), Some(call)) = (&failure, self.calls.get_mut(&(guest, id))) {
            call.trap.get_or_insert_with(|| format!("{error:?}"));
        }
        match self.sched.ended(guest, thread, ending) {
            None => {}
            Some(slot) => {
                if let Some((_, name, error)) = failure {
                    tracing::warn!("{name} failed while ending: {error:?}");
                }
                self.bury_slot(guest, slot);
                self.call_done(guest, id);
            }
        }
    }

    /// The green thread `id` of `guest` is gone: if it ran a call, its
    /// result goes to the caller.
    fn call_done(&mut self, guest: usize, id: ThreadId) {
        if let Some(call) = self.calls.remove(&(guest, id)) {
            let slot = call.slot.clone();
            slot.finish(call.result());
            // After the result: whoever gets the room sees the call ended.
            self.control.release_call(GuestId(guest));
        }
    }

    /// Starts a call of the plugin `guest`'s function `name` with `input`,
    /// as a new green thread; the caller's handle.
    ///
    /// # Errors
    /// If the guest is not a live plugin, has as many calls in flight as it
    /// may ([`CallError::Busy`]), or cannot start a green thread.
    pub fn start_call(
        &mut self,
        guest: usize,
        name: String,
        input: Vec<u8>,
    ) -> Result<PendingCall, CallError> {
        if !self.sched.is_live(guest) || !self.guests.get(guest).is_some_and(|g| g.plugin) {
            let exit = self.guests.get(guest).and_then(|g| g.exit.clone());
            return Err(CallError::GuestEnded(exit));
        }
        self.control.reserve_call(GuestId(guest), false)?;
        let slot = std::sync::Arc::new(CallSlot::default());
        let pending = PendingCall {
            slot: slot.clone(),
            hub: self.control.clone(),
        };
        self.start_call_into(guest, name, input, slot)?;
        Ok(pending)
    }

    /// [`HubState::start_call`] with the caller's slot, its room in flight
    /// already reserved (given back if the call cannot start).
    pub fn start_call_into(
        &mut self,
        guest: usize,
        name: String,
        input: Vec<u8>,
        slot: std::sync::Arc<CallSlot>,
    ) -> Result<(), CallError> {
        if !self.sched.is_live(guest) || !self.guests.get(guest).is_some_and(|g| g.plugin) {
            self.control.release_call(GuestId(guest));
            let exit = self.guests.get(guest).and_then(|g| g.exit.clone());
            return Err(CallError::GuestEnded(exit));
        }
        let stack = self
            .check_spawnable(guest, 0)
            .map_err(|(_, why)| why)
            .and_then(|()| {
                self.new_thread_stack(guest, 0)
                    .map_err(|e| format!("{e:#}"))
            });
        let stack = match stack {
            Ok(stack) => stack,
            Err(why) => {
                self.control.release_call(GuestId(guest));
                return Err(CallError::Refused(why));
            }
        };
        let payload = ThreadSlot {
            stack: Some(stack),
            ..ThreadSlot::default()
        };
        let id = self.sched.spawn_for_host(guest, payload);
        self.calls.insert(
            (guest, id),
            CallRecord {
                name,
                input: Some(input),
                outcome: None,
                trap: None,
                slot,
            },
        );
        Ok(())
    }

    /// Kills the green threads of calls their callers cancelled.
    pub fn cancel_calls(&mut self) {
        let cancelled: Vec<(usize, ThreadId)> = self
            .calls
            .iter()
            .filter(|(_, call)| call.slot.is_cancelled())
            .map(|(&key, _)| key)
            .collect();
        for (guest, id) in cancelled {
            if !self.sched.is_live(guest) {
                continue;
            }
            if let Kill::Target(key) = self.sched.kill_by_host(guest, id) {
                self.drop_call(guest, key);
            }
        }
    }

    fn bury_slot(&mut self, guest: usize, slot: ThreadSlot) {
        if let Some(call) = slot.future {
            self.graveyard.push(Grave::Call(call));
        }
        self.charge_stack(guest, slot.fiber.charged(), 0);
        if let (Some(stack), Some(live)) = (slot.stack, self.guests[guest].live.as_mut()) {
            live.stacks.free(stack);
        }
    }

    /// Whether the guest's memory has grown near its `max_memory`, so that
    /// a failure of its main green thread (an allocation refused, which
    /// aborts) is taken for the limit's doing. "Near" is within an eighth of
    /// the limit (at least 2 MiB): the request that failed may have been
    /// that large.
    fn at_memory_limit(&self, guest: usize) -> bool {
        let record = &self.guests[guest];
        match (record.memory_limit, record.live.as_ref()) {
            (Some(limit), Some(live)) => {
                live.stacks.memory_size() + (limit / 8).max(2 << 20) > limit
            }
            _ => false,
        }
    }

    /// Whether a captured stream of the guest is full (a write past it
    /// traps the writer).
    fn at_output_limit(&self, guest: usize) -> bool {
        let record = &self.guests[guest];
        record
            .output
            .as_ref()
            .is_some_and(|o| o.full(record.max_output))
    }

    /// Host memory charged to a live guest (see
    /// `GuestOptions::max_host_memory`).
    pub fn host_memory(&self, guest: usize) -> u64 {
        let started = self.sched.started_in(guest) as u64;
        let unstarted = self.sched.alive_in(guest) as u64 - started;
        let links = self.sched.links_in(guest) as u64;
        started * HOST_BYTES_PER_GREEN_THREAD
            + unstarted * HOST_BYTES_PER_UNSTARTED_THREAD
            + links * HOST_BYTES_PER_LINK
            + self.guests[guest].stack_bytes
    }

    /// What a live guest uses now; None once it has ended (or for a key
    /// that is no guest's).
    pub fn usage(&self, guest: usize) -> Option<GuestUsage> {
        let record = self.guests.get(guest)?;
        let live = record.live.as_ref()?;
        Some(GuestUsage {
            green_threads: self.sched.alive_in(guest),
            memory: live.stacks.memory_size(),
            host_memory: self.host_memory(guest),
            spare_instances: live.spare.len(),
            descriptors: record.held_descriptors() as u32,
            cpu_time: record.cpu_time(),
        })
    }

    /// Charges a step's `cycles` (see `crate::cpu_clock`) to the guest's CPU
    /// time, and ends it if that passes its limit.
    pub fn charge_cpu(&mut self, guest: usize, cycles: u64) {
        let record = &mut self.guests[guest];
        record.cpu_cycles = record.cpu_cycles.saturating_add(cycles);
        if let Some(limit) = record.max_cpu_time {
            if record.cpu_time() > limit && self.sched.is_live(guest) {
                let what = format!("CPU time limit of {:.3} s", limit.as_secs_f64());
                self.end_guest(
                    guest,
                    GuestExit::failed(137, GuestError::LimitExceeded(what)),
                );
            }
        }
    }

    /// Ends the guest if none of its green threads can ever run again (a
    /// plugin's can: the host may call it).
    pub fn check_deadlock(&mut self, guest: usize) {
        if self.guests[guest].plugin {
            return;
        }
        if let Some(report) = self.sched.deadlock(guest) {
            self.end_guest(guest, GuestExit::failed(1, GuestError::Deadlock(report)));
        }
    }

    /// Ends a live guest as deadlocked, whatever its state.
    pub fn end_blocked(&mut self, guest: usize) {
        let report = self.sched.blocked_report(guest);
        self.end_guest(guest, GuestExit::failed(1, GuestError::Deadlock(report)));
    }

    pub fn end_guest(&mut self, guest: usize, exit: GuestExit) {
        for slot in self.sched.end_guest(guest) {
            if let Some(call) = slot.future {
                self.graveyard.push(Grave::Call(call));
            }
        }
        if let Some(mut live) = self.guests[guest].live.take() {
            while let Some(worker) = live.spare.pop() {
                self.graveyard.push(Grave::Worker(worker));
            }
            // After its stores: the WASI context they point at.
            self.graveyard.push(Grave::Guest(Box::new(live)));
        }
        // Its sockets close: each leaves the poller first.
        let sockets = std::mem::take(&mut self.guests[guest].sockets);
        for fd in sockets.raw_fds() {
            self.forget_descriptor(fd);
        }
        drop(sockets);
        let record = &mut self.guests[guest];
        // Its files close with its WASI context, on the reaper: given back
        // now, as its sockets are.
        record.opened.clear();
        record.descriptors.release();
        if record.unlogged_refusals > 0 {
            tracing::warn!(
                "{} more green threads of this guest were stopped the same way",
                record.unlogged_refusals
            );
            record.unlogged_refusals = 0;
        }
        let cpu_time = record.cpu_time();
        let exit = record
            .exit
            .get_or_insert(GuestExit { cpu_time, ..exit })
            .clone();
        let ended: Vec<_> = self
            .calls
            .keys()
            .filter(|k| k.0 == guest)
            .copied()
            .collect();
        for key in ended {
            if let Some(call) = self.calls.remove(&key) {
                call.slot
                    .finish(Err(CallError::GuestEnded(Some(exit.clone()))));
            }
        }
        self.control.guest_ended(GuestId(guest));
    }

    /// Ends every guest whose time limit has passed at `now`; the next time
    /// limit still to come.
    pub fn enforce_time_limits(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((when, guest, limit))) = self.time_limits.peek().copied() {
            if when > now {
                return Some(when);
            }
            self.time_limits.pop();
            if self.sched.is_live(guest) {
                let what = format!("time limit of {:.3} s", limit.as_secs_f64());
                self.end_guest(
                    guest,
                    GuestExit::failed(137, GuestError::LimitExceeded(what)),
                );
            }
        }
        None
    }

    /// Keeps the worker of a green thread that ended normally for the
    /// guest's next green thread.
    pub fn keep_spare(&mut self, guest: usize, thread: usize, mut worker: Box<Worker>) {
        if let Some(slot) = self.sched.payload_if_live(guest, thread) {
            let mut fiber = std::mem::take(&mut slot.fiber);
            let charged = fiber.charged();
            fiber.finished();
            worker.watch = fiber.into_watch();
            if charged > 0 {
                self.charge_stack(guest, charged, 0);
            }
        }
        let most = self.config.spare_instances.saturating_mul(SURPLUS_FACTOR);
        match self.guests[guest].live.as_mut() {
            Some(live) if live.layout.reuse_workers && live.spare.len() < most => {
                live.spare.push(worker)
            }
            _ => self.graveyard.push(Grave::Worker(worker)),
        }
    }

    /// Takes one worker past its guest's `Config::spare_instances`, to be
    /// dropped.
    pub fn surplus_spare(&mut self) -> Option<Box<Worker>> {
        let keep = self.config.spare_instances;
        self.guests
            .iter_mut()
            .filter_map(|g| g.live.as_mut())
            .find(|live| live.spare.len() > keep)
            .and_then(|live| live.spare.pop())
    }

    // ---- the hub functions (see wit/hub.wit) ----

    /// Starts a green thread; why not, if it cannot.
    pub fn spawn(
        &mut self,
        guest: usize,
        caller: usize,
        task: u32,
        stack_size: u32,
        delay: Duration,
        local: bool,
    ) -> Result<ThreadId, (SpawnRefusal, String)> {
        self.admit_green_thread(guest)?;
        self.check_spawnable(guest, stack_size)?;
        let slot = ThreadSlot {
            stack_size,
            ..ThreadSlot::default()
        };
        let spawn = Spawn { task, delay, local };
        Ok(self.sched.spawn(guest, caller, spawn, slot, Instant::now))
    }

    /// Starts a green thread for the guest's `std::thread` (wasi-threads'
    /// `thread-spawn`): it runs `wasi_thread_start(its id, arg)` on the stack
    /// and TLS the guest's `pthread_create` allocated, under the same limits
    /// as `spawn`.
    ///
    /// # Errors
    /// As `spawn`'s refusals; or the guest has no `wasi_thread_start`, or
    /// the id would not fit wasi-threads' thread ids.
    pub fn spawn_std_thread(
        &mut self,
        guest: usize,
        arg: u32,
    ) -> Result<ThreadId, (SpawnRefusal, String)> {
        self.admit_green_thread(guest)?;
        let live = self.live(guest);
        if live.pre.module().get_export(STD_THREAD_START).is_none() {
            return Err((
                SpawnRefusal::Unsupported,
                format!("the guest does not export `{STD_THREAD_START}`"),
            ));
        }
        // wasi-threads' ids are positive and below 2^29.
        if self.sched.next_id(guest) > 0x1FFF_FFFF {
            return Err((
                SpawnRefusal::GuestFull,
                "the guest has used up wasi-threads' thread ids".into(),
            ));
        }
        let slot = ThreadSlot::default();
        Ok(self.sched.spawn_std_thread(guest, arg, slot))
    }

    /// Whether `guest` may have one more green thread: the hub's, the
    /// guest's and the host-memory limits.
    fn admit_green_thread(&self, guest: usize) -> Result<(), (SpawnRefusal, String)> {
        let max = self.config.max_green_threads;
        if !self.sched.has_room(guest, max as usize) {
            return Err((
                SpawnRefusal::HubFull,
                format!(
                    "too many green threads alive at once: the hub holds at most {max}, less \
                     what it keeps for each other guest (raise it with \
                     `wasmlet run --max-green-threads N` or Config::max_green_threads)"
                ),
            ));
        }
        let record = &self.guests[guest];
        if let Some(most) = record.max_green_threads {
            if self.sched.alive_in(guest) >= most as usize {
                return Err((
                    SpawnRefusal::GuestFull,
                    format!(
                        "too many green threads alive at once in this guest: it may have at \
                         most {most} (its GuestOptions::max_green_threads)"
                    ),
                ));
            }
        }
        let most = record.max_host_memory;
        // Refused unless it could start now: a spawn is turned down while
        // the guest's running green threads fill its limit, yet thousands
        // may wait to start, each charged a record's worth.
        if self.host_memory(guest) + HOST_BYTES_PER_GREEN_THREAD > most {
            return Err((
                SpawnRefusal::HostMemory,
                format!(
                    "another green thread would pass this guest's host memory limit of {} MiB \
                     ({} green threads running, {} waiting to start, and {} links; raise it \
                     with `wasmlet run --max-host-memory MIB` or \
                     GuestOptions::max_host_memory)",
                    most >> 20,
                    self.sched.started_in(guest),
                    self.sched.alive_in(guest) - self.sched.started_in(guest),
                    self.sched.links_in(guest)
                ),
            ));
        }
        Ok(())
    }

    /// Whether `guest` can run a green thread with a shadow stack of
    /// `stack_size` (0: the default): it has the SDK's entry points, and its
    /// memory has room for one more such stack now. The stack is carved
    /// when the thread starts.
    fn check_spawnable(
        &mut self,
        guest: usize,
        stack_size: u32,
    ) -> Result<(), (SpawnRefusal, String)> {
        let size = self.stack_size_or_default(stack_size);
        let live = self.live(guest);
        if !live.layout.can_spawn {
            return Err((
                SpawnRefusal::Unsupported,
                format!(
                    "this guest cannot spawn green threads: it does not export `{RUN_EXPORT}` \
                     and `{FINISH_EXPORT}` (build it against the wasmlet guest SDK)"
                ),
            ));
        }
        live.stacks
            .check_room(size)
            .map_err(|e| (SpawnRefusal::LinearMemory, format!("{e:#}")))
    }

    /// `stack_size`, or the configured default for 0.
    fn stack_size_or_default(&self, stack_size: u32) -> u32 {
        match stack_size {
            0 => self.config.shadow_stack_size,
            size => size,
        }
    }

    /// A stack slot for a green thread of `guest` (`stack_size` 0: the
    /// default), one that `check_spawnable` admitted.
    ///
    /// # Errors
    /// If its memory has no room for the slot.
    fn new_thread_stack(
        &mut self,
        guest: usize,
        stack_size: u32,
    ) -> Result<crate::shadow_stack::Slot> {
        let size = self.stack_size_or_default(stack_size);
        self.live(guest).stacks.alloc(size)
    }

    /// Adds a link (see `Scheduler::link`).
    ///
    /// # Errors
    /// If the link would pass the guest's host memory limit: the guest is
    /// ended, saying so.
    pub fn link(&mut self, guest: usize, target: ThreadId, callback: u32) -> Result<u64> {
        let most = self.guests[guest].max_host_memory;
        if self.host_memory(guest) + HOST_BYTES_PER_LINK > most {
            let what = format!(
                "host memory limit of {} MiB ({} links pending)",
                most >> 20,
                self.sched.links_in(guest)
            );
            self.end_guest(
                guest,
                GuestExit::failed(137, GuestError::LimitExceeded(what.clone())),
            );
            wasmtime::bail!("the guest exceeded its {what}");
        }
        Ok(self.sched.link(guest, target, callback))
    }

    /// True if the guest may open another descriptor: it holds fewer than
    /// its `max_descriptors`, and its neighbours' guarantees leave it room
    /// (see [`crate::descriptor_budget`]).
    pub fn may_open(&mut self, guest: usize) -> bool {
        let record = &mut self.guests[guest];
        let held = record.held_descriptors();
        record.descriptors.may_open(held).is_ok()
    }

    /// The guest opened or closed a descriptor: the process's count
    /// follows.
    pub fn descriptors_changed(&mut self, guest: usize) {
        let record = &mut self.guests[guest];
        let held = record.held_descriptors();
        record.descriptors.update(held);
    }

    /// Closes a socket of the guest: it leaves the poller first, and green
    /// threads waiting on it are woken (their call then finds it closed).
    ///
    /// # Errors
    /// `bad-handle` if the guest has no such socket.
    pub fn close_socket(&mut self, guest: usize, handle: u32) -> Result<(), NetError> {
        let socket = self.guests[guest].sockets.remove(handle)?;
        self.forget_descriptor(socket.raw_fd());
        drop(socket);
        self.descriptors_changed(guest);
        Ok(())
    }

    /// A descriptor about to be closed leaves the poller; its waiters wake.
    fn forget_descriptor(&mut self, fd: std::os::fd::RawFd) {
        let Some(poller) = self.poller.as_mut() else {
            return;
        };
        match poller.forget(fd) {
            Ok(waiters) => waiters.into_iter().for_each(|w| {
                self.sched.io_ready(w);
            }),
            Err(e) => tracing::error!("the hub's poller failed: {e}"),
        }
    }

    pub fn sleep(&mut self, guest: usize, thread: usize, duration: Duration) {
        self.sched.sleep(guest, thread, duration, Instant::now);
    }

    /// Called by every hub function that would wait, before it waits:
    /// true if the caller is unwinding from a kill (see the scheduler's
    /// rules), so the call must answer at once, reporting the kill.
    ///
    /// # Errors
    /// Once the caller has made more blocking calls after its kill than it
    /// may: it ignores the kill, and the error ends it hard.
    pub fn unwinding_call(&mut self, guest: usize, thread: usize) -> Result<bool> {
        self.sched.unwinding_call(guest, thread).map_err(|_| {
            wasmtime::format_err!(
                "{} was killed and went on making blocking calls ({UNWIND_CALLS} after the \
                 kill): ended",
                self.sched.name_of(guest, thread)
            )
        })
    }

    /// `sleep` for a hub function: false (and no wait) if the caller is
    /// unwinding from a kill.
    ///
    /// # Errors
    /// As [`HubState::unwinding_call`].
    pub fn sleep_unless_killed(
        &mut self,
        guest: usize,
        thread: usize,
        duration: Duration,
    ) -> Result<bool> {
        if self.unwinding_call(guest, thread)? {
            return Ok(false);
        }
        self.sleep(guest, thread, duration);
        Ok(true)
    }

    /// Writes `bytes` into the guest's memory at `at`; false if out of
    /// bounds.
    pub fn write_guest_memory(&mut self, guest: usize, at: u32, bytes: &[u8]) -> bool {
        self.live(guest).stacks.write_checked(at, bytes)
    }

    /// Reads `len` bytes of the guest's memory at `at`; None if out of
    /// bounds.
    pub fn read_guest_memory(&mut self, guest: usize, at: u32, len: usize) -> Option<Vec<u8>> {
        self.live(guest).stacks.read_checked(at, len)
    }

    pub fn kill(
        &mut self,
        guest: usize,
        caller: usize,
        target: ThreadId,
        error: u32,
        only_unstarted: bool,
    ) -> Result<(KillStatus, bool)> {
        // A caller unwinding from a kill does not wait for its target
        // either.
        let mut caller_yields = !self.unwinding_call(guest, caller)?;
        let status = match self
            .sched
            .kill(guest, caller, target, error, only_unstarted)
        {
            Kill::Done(status) => status,
            Kill::Caller => {
                caller_yields = false;
                KillStatus::Killed
            }
            Kill::Unwind => KillStatus::Killed,
            Kill::Target(key) => {
                self.drop_call(guest, key);
                KillStatus::Killed
            }
            Kill::Main => {
                self.end_guest(guest, GuestExit::failed(1, GuestError::MainKilled));
                KillStatus::Killed
            }
        };
        Ok((status, caller_yields))
    }

    /// `join`: `Some(status)` if the caller need not wait (a caller
    /// unwinding from a kill never waits: `timed-out`).
    ///
    /// # Errors
    /// As [`HubState::unwinding_call`].
    pub fn join(
        &mut self,
        guest: usize,
        caller: usize,
        target: ThreadId,
        timeout: Option<Duration>,
    ) -> Result<Option<JoinStatus>> {
        if self.unwinding_call(guest, caller)? {
            return Ok(Some(JoinStatus::TimedOut));
        }
        Ok(self
            .sched
            .join(guest, caller, target, timeout, Instant::now))
    }

    /// A futex wait (what `memory.atomic.wait32/64` becomes): `Some(result)`
    /// if the caller need not wait.
    ///
    /// A caller unwinding from a kill never waits: it is woken at once (a
    /// spurious wake-up, which std's loops check for).
    ///
    /// # Errors
    /// The trap the instruction would raise: an unaligned or out-of-bounds
    /// address; or as [`HubState::unwinding_call`].
    pub fn futex_wait(
        &mut self,
        guest: usize,
        thread: usize,
        address: u64,
        expected: u64,
        width: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<u32>> {
        if self.live(guest).stacks.load_atomic(address, width)? != expected {
            return Ok(Some(FUTEX_NOT_EQUAL));
        }
        if self.unwinding_call(guest, thread)? {
            return Ok(Some(FUTEX_WOKEN));
        }
        Ok(self
            .sched
            .futex_wait(guest, thread, address, timeout, Instant::now))
    }

    /// Wakes up to `count` futex waiters on `address`.
    ///
    /// # Errors
    /// The trap `memory.atomic.notify` would raise.
    pub fn futex_notify(
        &mut self,
        guest: usize,
        address: u64,
        count: u32,
    ) -> Result<u32, wasmtime::Trap> {
        self.live(guest).stacks.check_atomic(address, 4)?;
        Ok(self.sched.futex_notify(guest, address, count))
    }

    /// `park`: `Some(result)` if the caller need not wait (a caller
    /// unwinding from a kill never waits: `false`).
    ///
    /// # Errors
    /// As [`HubState::unwinding_call`].
    pub fn park(
        &mut self,
        guest: usize,
        thread: usize,
        timeout: Option<Duration>,
    ) -> Result<Option<bool>> {
        if self.unwinding_call(guest, thread)? {
            return Ok(Some(false));
        }
        Ok(self.sched.park(guest, thread, timeout, Instant::now))
    }
}

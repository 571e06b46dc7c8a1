//! Embedder control from other OS threads: a [`HubHandle`] queues commands
//! that the hub's run loop carries out between two green-thread steps.
//!
//! A guest that spins is paused by preemption at least every time slice, so a
//! command reaches the run loop within one slice; an idle hub sleeps in
//! `park_timeout` or in its poller, both of which the handle interrupts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crate::call::{CallError, CallReply, CancelListener, PendingCall};
use crate::guest::program::Program;
use crate::guest::{GuestId, GuestOptions, GuestUsage};
use crate::scheduler::GuestKey;
use crate::scheduler::IoWaiter;

/// What another thread asked the hub to do.
pub(crate) enum Command {
    /// End the guest, with this reason.
    Kill { guest: GuestId, reason: String },
    /// Send the guest's usage back.
    Usage {
        guest: GuestId,
        reply: std::sync::mpsc::Sender<Option<GuestUsage>>,
    },
    /// Start a call (its room in flight already reserved).
    Call {
        guest: GuestId,
        function: String,
        input: Vec<u8>,
        reply: Arc<CallReply>,
    },
    /// End every guest and return from `serve`.
    Shutdown,
    /// Send the hub's report back.
    Report {
        reply: std::sync::mpsc::Sender<String>,
    },
    /// Add a guest (a plugin, if `plugin`) and send its id back.
    Add {
        program: Program,
        options: Box<GuestOptions>,
        plugin: bool,
        reply: std::sync::mpsc::Sender<wasmtime::Result<GuestId>>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Kill { guest, reason } => write!(f, "Kill({guest:?}, {reason:?})"),
            Command::Usage { guest, .. } => write!(f, "Usage({guest:?})"),
            Command::Call {
                guest, function, ..
            } => write!(f, "Call({guest:?}, {function:?})"),
            Command::Add { plugin, .. } => write!(f, "Add(plugin: {plugin})"),
            Command::Shutdown => write!(f, "Shutdown"),
            Command::Report { .. } => write!(f, "Report"),
        }
    }
}

/// A plugin's calls in flight and the most it may have.
#[derive(Debug)]
struct Flight {
    now: usize,
    most: usize,
}

/// The commands waiting for a hub, shared with its handles.
#[derive(Debug)]
pub(crate) struct Control {
    /// Set when `commands` may hold something: the run loop's check is one
    /// relaxed load.
    pending: AtomicBool,
    /// Set with any of the flags here: the run loop's only check on a step
    /// with nothing for it (one relaxed load).
    attention: AtomicBool,
    commands: Mutex<Vec<Command>>,
    /// The hub's thread, woken when a command comes in.
    hub_thread: Thread,
    /// The hub's poller, once it has one: the hub may be waiting in it.
    poller: OnceLock<Arc<polling::Poller>>,
    /// Set when a caller cancelled a call: the hub looks for it.
    cancels: AtomicBool,
    /// Green threads whose async host function's future woke them, and a
    /// flag that some did (the run loop's check is one relaxed load).
    woken: Mutex<Vec<IoWaiter>>,
    any_woken: AtomicBool,
    /// Each live plugin's calls in flight, by guest key: the hub counts
    /// their ends, handles wait here for room.
    flights: Mutex<rustc_hash::FxHashMap<GuestKey, Flight>>,
    room: std::sync::Condvar,
}

impl Control {
    pub(crate) fn new() -> Arc<Control> {
        Arc::new(Control {
            pending: AtomicBool::new(false),
            attention: AtomicBool::new(false),
            commands: Mutex::new(Vec::new()),
            hub_thread: std::thread::current(),
            poller: OnceLock::new(),
            cancels: AtomicBool::new(false),
            woken: Mutex::new(Vec::new()),
            any_woken: AtomicBool::new(false),
            flights: Mutex::new(Default::default()),
            room: std::sync::Condvar::new(),
        })
    }

    /// A future woke: its green thread is to run again (from any thread).
    pub(crate) fn wake_green_thread(&self, waiter: IoWaiter) {
        self.woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waiter);
        self.any_woken.store(true, Ordering::Release);
        self.wake();
    }

    /// The green threads woken since the last call (none, cheaply, most of
    /// the time).
    pub(crate) fn take_woken(&self) -> Vec<IoWaiter> {
        if !self.any_woken.load(Ordering::Relaxed) || !self.any_woken.swap(false, Ordering::Acquire)
        {
            return Vec::new();
        }
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True (once) if a call was cancelled since the last time.
    pub(crate) fn take_cancels(&self) -> bool {
        self.cancels.load(Ordering::Relaxed) && self.cancels.swap(false, Ordering::Acquire)
    }

    /// `guest` is a plugin that may have `most` calls in flight.
    pub(crate) fn plugin_added(&self, guest: GuestId, most: usize) {
        self.lock_flights().insert(guest.0, Flight { now: 0, most });
    }

    /// `guest` has ended: no more calls (whoever waits for room learns so).
    pub(crate) fn guest_ended(&self, guest: GuestId) {
        if self.lock_flights().remove(&guest.0).is_some() {
            self.room.notify_all();
        }
    }

    /// Reserves room for one more call of `guest`, waiting for it if `wait`.
    ///
    /// # Errors
    /// [`CallError::Busy`] (not waiting), or [`CallError::GuestEnded`] if
    /// the guest is no live plugin.
    pub(crate) fn reserve_call(&self, guest: GuestId, wait: bool) -> Result<(), CallError> {
        let mut flights = self.lock_flights();
        loop {
            let Some(flight) = flights.get_mut(&guest.0) else {
                return Err(CallError::GuestEnded(None));
            };
            if flight.now < flight.most {
                flight.now += 1;
                return Ok(());
            }
            if !wait {
                return Err(CallError::Busy);
            }
            flights = self.room.wait(flights).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A call of `guest` ended (or never started): room for another.
    pub(crate) fn release_call(&self, guest: GuestId) {
        if let Some(flight) = self.lock_flights().get_mut(&guest.0) {
            flight.now = flight.now.saturating_sub(1);
            self.room.notify_one();
        }
    }

    fn lock_flights(&self) -> std::sync::MutexGuard<'_, rustc_hash::FxHashMap<GuestKey, Flight>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the hub's thread, wherever it waits, to look at what came.
    fn wake(&self) {
        self.attention.store(true, Ordering::Release);
        self.hub_thread.unpark();
        if let Some(poller) = self.poller.get() {
            // Only fails if the poller is gone with its hub.
            let _ = poller.notify();
        }
    }

    /// Makes commands wake `poller` too (the hub waits in it while green
    /// threads wait for host descriptors).
    pub(crate) fn wake_poller_too(&self, poller: Arc<polling::Poller>) {
        let _ = self.poller.set(poller);
    }

    /// Watches for attention (see [`Control::take_attention`]) for up to
    /// `most`; true if it came. Leaves it set for `take_attention`.
    pub(crate) fn spin_for_attention(&self, most: Duration) -> bool {
        let until = std::time::Instant::now() + most;
        loop {
            // Checks the clock every few dozen loads: a clock read costs
            // more than a load.
            for _ in 0..32 {
                if self.attention.load(Ordering::Acquire) {
                    return true;
                }
                std::hint::spin_loop();
            }
            if std::time::Instant::now() >= until {
                return false;
            }
        }
    }

    /// True (once) if a command, a wake or a cancel came since the last
    /// time: only then is the rest worth looking at.
    pub(crate) fn take_attention(&self) -> bool {
        self.attention.load(Ordering::Relaxed) && self.attention.swap(false, Ordering::Acquire)
    }

    /// The commands sent since the last call (none, cheaply, most of the
    /// time).
    pub(crate) fn take(&self) -> Vec<Command> {
        // A plain load first: an atomic swap on every step of the run loop
        // would cost more than the rest of the check.
        if !self.pending.load(Ordering::Relaxed) || !self.pending.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut *self.commands.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn send(&self, command: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
        self.pending.store(true, Ordering::Release);
        self.wake();
    }
}

impl CancelListener for Control {
    /// A caller cancelled a call: the hub kills its green thread at its
    /// next turn.
    fn call_cancelled(&self) {
        self.cancels.store(true, Ordering::Release);
        self.wake();
    }
}

/// A handle through which any thread can control a [`Hub`](crate::Hub):
/// `Send + Sync`, cheap to clone.
///
/// ```no_run
/// use wasmlet_host::{Config, GuestOptions, Hub, Program, Runtime};
///
/// let runtime = Runtime::new(Config::default())?;
/// let program = Program::from_file(runtime.engine(), "plugin.wasm")?;
/// let mut hub = Hub::new(&runtime);
/// let guest = hub.add_guest(&program, GuestOptions::default())?;
/// let handle = hub.handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(5));
///     handle.kill_guest(guest, "took longer than 5 s");
/// });
/// hub.run();
/// # Ok::<(), wasmtime::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct HubHandle {
    control: Arc<Control>,
}

impl HubHandle {
    pub(crate) fn new(control: Arc<Control>) -> HubHandle {
        HubHandle { control }
    }

    /// Ends `guest` (see [`Hub::kill_guest`](crate::Hub::kill_guest)) as
    /// soon as the hub's run loop gets the command: within one time slice
    /// even while the guest spins. Killing a guest that has ended does
    /// nothing.
    pub fn kill_guest(&self, guest: GuestId, reason: impl Into<String>) {
        self.control.send(Command::Kill {
            guest,
            reason: reason.into(),
        });
    }

    /// What `guest` uses now (see [`Hub::usage`](crate::Hub::usage)), as
    /// the hub's run loop reports it: within one time slice while
    /// [`Hub::run`](crate::Hub::run) runs. None if the guest has ended, or
    /// if no answer came within `timeout` (the hub is not running).
    pub fn usage(&self, guest: GuestId, timeout: std::time::Duration) -> Option<GuestUsage> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.control.send(Command::Usage { guest, reply });
        answer.recv_timeout(timeout).ok().flatten()
    }

    /// The hub's report (see [`Hub::report`](crate::Hub::report)), as its
    /// run loop gives it: within one time slice while it runs. None if no
    /// answer came within `timeout` (the hub is not running).
    pub fn report(&self, timeout: std::time::Duration) -> Option<String> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.control.send(Command::Report { reply });
        answer.recv_timeout(timeout).ok()
    }

    /// Ends every guest of the hub (as [`HubHandle::kill_guest`] would, with
    /// reason "the hub shut down") and makes [`Hub::serve`](crate::Hub::serve)
    /// return.
    pub fn shutdown(&self) {
        self.control.send(Command::Shutdown);
    }

    /// Calls the plugin `guest`'s function `function` with `input` (see
    /// [`Hub::call`](crate::Hub::call)), from any thread. Waits while the
    /// plugin has `max_calls_in_flight` calls in flight (backpressure);
    /// [`HubHandle::try_call`] fails fast instead. The result comes through
    /// the [`PendingCall`]: wait on it, or `.await` it (from a tokio task,
    /// say, without blocking its worker). From async code, prefer
    /// [`HubHandle::try_call`] (or this in `spawn_blocking`): waiting for
    /// room blocks the calling thread.
    ///
    /// ```no_run
    /// # fn demo(handle: wasmlet_host::HubHandle, plugin: wasmlet_host::GuestId) -> Result<(), wasmlet_host::CallError> {
    /// let call = handle.call(plugin, "upper", b"hi".to_vec())?;
    /// let output = call.wait(std::time::Duration::from_secs(5))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`CallError::GuestEnded`] if the guest is no live plugin.
    pub fn call(
        &self,
        guest: GuestId,
        function: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<PendingCall, CallError> {
        self.control.reserve_call(guest, true)?;
        Ok(self.send_call(guest, function, input.into()))
    }

    /// [`HubHandle::call`], but failing with [`CallError::Busy`] at once
    /// when the plugin has as many calls in flight as it may.
    ///
    /// # Errors
    /// [`CallError::Busy`], or [`CallError::GuestEnded`] if the guest is no
    /// live plugin.
    pub fn try_call(
        &self,
        guest: GuestId,
        function: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<PendingCall, CallError> {
        self.control.reserve_call(guest, false)?;
        Ok(self.send_call(guest, function, input.into()))
    }

    fn send_call(&self, guest: GuestId, function: &str, input: Vec<u8>) -> PendingCall {
        let reply = Arc::new(CallReply::default());
        self.control.send(Command::Call {
            guest,
            function: function.to_string(),
            input,
            reply: reply.clone(),
        });
        PendingCall {
            reply,
            hub: self.control.clone(),
        }
    }

    /// Adds a guest to the hub while it runs (see
    /// [`Hub::add_guest`](crate::Hub::add_guest)), waiting up to `timeout`
    /// for the hub's run loop to do it.
    ///
    /// # Errors
    /// As `Hub::add_guest`, or if the hub did not answer within `timeout`
    /// (it is not running).
    pub fn add_guest(
        &self,
        program: &Program,
        options: GuestOptions,
        timeout: std::time::Duration,
    ) -> wasmtime::Result<GuestId> {
        self.add(program, options, false, timeout)
    }

    /// Adds a plugin to the hub while it runs (see
    /// [`Hub::add_plugin`](crate::Hub::add_plugin)); as
    /// [`HubHandle::add_guest`].
    ///
    /// # Errors
    /// As [`HubHandle::add_guest`].
    pub fn add_plugin(
        &self,
        program: &Program,
        options: GuestOptions,
        timeout: std::time::Duration,
    ) -> wasmtime::Result<GuestId> {
        self.add(program, options, true, timeout)
    }

    fn add(
        &self,
        program: &Program,
        options: GuestOptions,
        plugin: bool,
        timeout: std::time::Duration,
    ) -> wasmtime::Result<GuestId> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.control.send(Command::Add {
            program: program.clone(),
            options: Box::new(options),
            plugin,
            reply,
        });
        answer.recv_timeout(timeout).map_err(|_| {
            wasmtime::format_err!("the hub did not answer within {timeout:?}: is it running?")
        })?
    }
}

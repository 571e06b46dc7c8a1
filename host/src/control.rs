//! Embedder control from other OS threads: a [`HubHandle`] queues commands
//! that the hub's run loop carries out between two green-thread steps.
//!
//! A guest that spins is paused by preemption at least every time slice, so a
//! command reaches the run loop within one slice; an idle hub sleeps in
//! `park_timeout` or in its poller, both of which the handle interrupts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use crate::guest::{GuestId, GuestUsage};
use crate::scheduler::IoWaiter;

/// What another thread asked the hub to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// End the guest, with this reason.
    Kill { guest: GuestId, reason: String },
    /// Send the guest's usage back.
    Usage {
        guest: GuestId,
        reply: std::sync::mpsc::Sender<Option<GuestUsage>>,
    },
}

/// The commands waiting for a hub, shared with its handles.
#[derive(Debug)]
pub(crate) struct Control {
    /// Set when `commands` may hold something: the run loop's check is one
    /// relaxed load.
    pending: AtomicBool,
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
    /// Calls that ended, counted: a handle waiting for room in a guest's
    /// calls in flight waits for this to change.
    finished: Mutex<u64>,
    room: std::sync::Condvar,
}

impl Control {
    pub(crate) fn new() -> Arc<Control> {
        Arc::new(Control {
            pending: AtomicBool::new(false),
            commands: Mutex::new(Vec::new()),
            hub_thread: std::thread::current(),
            poller: OnceLock::new(),
            cancels: AtomicBool::new(false),
            woken: Mutex::new(Vec::new()),
            any_woken: AtomicBool::new(false),
            finished: Mutex::new(0),
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

    /// A caller cancelled a call: the hub kills its green thread at its
    /// next turn.
    pub(crate) fn call_cancelled(&self) {
        self.cancels.store(true, Ordering::Release);
        self.wake();
    }

    /// True (once) if a call was cancelled since the last time.
    pub(crate) fn take_cancels(&self) -> bool {
        self.cancels.load(Ordering::Relaxed) && self.cancels.swap(false, Ordering::Acquire)
    }

    /// A call of `guest` ended (or all of them did): room for another.
    pub(crate) fn call_finished(&self, _guest: GuestId) {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.room.notify_all();
    }

    /// Wakes the hub's thread, wherever it waits.
    fn wake(&self) {
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
}

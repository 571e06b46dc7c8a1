//! The hub: runs guests' green threads on the calling OS thread.
//!
//! This module is the embedding API and the run loop. The scheduling rules
//! (run queues, the guests' round robin, timers, joins, links, parks,
//! deadlock) are in [`scheduler`](crate::scheduler), free of wasmtime; what a
//! green thread's call is and how it ends is in
//! [`lifecycle`](crate::execution::lifecycle); the state host functions share with the
//! run loop is [`hub_state`].
//!
//! Each green thread is one wasmtime `Store` + instance (a worker, reused
//! from a green thread that ended before it when one is spare) running one
//! `call_async` future; the future suspends (its fiber parks) whenever the
//! green thread calls a blocking hub function, and the hub polls it again
//! when the green thread is due. Nothing on the hot path grows a list: room
//! is made when green threads are spawned, since a reallocation there stalled
//! every thread for milliseconds.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::error::Context as _;
use wasmtime::{format_err, Result};
use wasmtime::{Linker, Store};

use crate::call::{CallError, PendingCall};
use crate::control::{Command, Control, HubHandle};
use crate::execution::fiber_stack;
use crate::execution::lifecycle::LiveGuest;
use crate::execution::{Compact, Execution, Fibers};
use crate::guest::cpu_clock;
use crate::guest::program::Program;
use crate::guest::shadow_stack::ShadowStacks;
use crate::guest::store_data::{ThreadData, WasiBox};
use crate::guest::{GuestError, GuestExit, GuestId, GuestOptions, GuestUsage, Threads};
use crate::hub_state::{self, bury, HubState};
use crate::runtime::Runtime;
use crate::scheduler::{GuestKey, ThreadKey};

mod run_loop;
use run_loop::Until;

/// Runs guests' green threads on the calling OS thread.
///
/// A hub and its green threads stay on the thread that made it: `Hub` is
/// neither `Send` nor `Sync`.
///
/// ```compile_fail
/// fn needs_send<T: Send>() {}
/// needs_send::<wasmlet_host::Hub>();
/// ```
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
    /// Commands from [`HubHandle`]s on other threads.
    control: Arc<Control>,
    /// Shared with the host functions while `run` is on the stack (see
    /// `hub_state::scoped`); the `Rc` keeps `Hub` on its thread.
    state: Rc<RefCell<HubState>>,
    /// The runtime's count of epoch ticks: a running green thread's time
    /// slice is counted in them.
    ticks: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with no guests yet, scheduling on the calling OS thread.
    pub fn new(runtime: &Runtime) -> Hub {
        let control = Control::new();
        let state = HubState::new(runtime.config().clone(), control.clone(), runtime.ticks());
        Hub {
            runtime: runtime.clone(),
            control,
            state: Rc::new(RefCell::new(state)),
            ticks: runtime.ticks(),
        }
    }

    /// Runs `f` on the hub's state, then buries what it left to drop
    /// (outside the borrow, and outside every fiber: host functions reach
    /// the state through `hub_state::with`, never through `Hub`). Burial is
    /// never forgotten: every change of the state goes through here.
    fn with<R>(&self, f: impl FnOnce(&mut HubState) -> R) -> R {
        let (result, graves) = {
            let mut state = self.state.borrow_mut();
            let result = f(&mut state);
            (result, state.take_graves())
        };
        if !graves.is_empty() {
            bury(graves);
        }
        result
    }

    /// Adds a guest running `program`; its main green thread (`_start`) runs
    /// once [`Hub::run`] is called.
    ///
    /// # Errors
    /// If the guest's WASI context cannot be built (a directory to preopen
    /// is missing), or the program imports something wasmlet does not
    /// provide, or its TLS options do not fit together
    /// ([`TlsOptions::check`](crate::tls::TlsOptions::check)).
    pub fn add_guest(&mut self, program: &Program, options: GuestOptions) -> Result<GuestId> {
        options.tls.check()?;
        let (wasi, output) = options.build_wasi()?;
        let time_limit = options.time_limit;
        let wasi = WasiBox::new(wasi);
        let memory_ty = program
            .module
            .imports()
            .find_map(|i| i.ty().memory().cloned())
            .ok_or_else(|| format_err!("the program imports no memory"))?;
        let memory_ty = limit_memory(memory_ty, options.max_memory)?;
        let memory = wasmtime::SharedMemory::new(self.runtime.engine(), memory_ty)?;
        let mut linker = self.runtime.linker().clone();
        let scratch = Store::new(
            self.runtime.engine(),
            ThreadData::new(GuestKey(usize::MAX), ThreadKey(usize::MAX), wasi.ptr()),
        );
        linker.define(&scratch, "env", "memory", memory.clone())?;
        drop(scratch);
        let fibers = |linker: Linker<ThreadData>| -> Result<Box<dyn Execution>> {
            let pre = linker
                .instantiate_pre(&program.module)
                .context("the guest imports something wasmlet does not provide")?;
            Ok(Box::new(Fibers::new(pre, program.layout.reuse_workers)))
        };
        let exec = match options.threads.chosen() {
            Threads::Compact => match program.compact_module(crate::host_functions::may_wait) {
                Ok(module) => Box::new(Compact::new(module, linker, memory.clone())),
                Err(error) if options.threads == Threads::Auto => {
                    tracing::debug!("the guest runs with fibers: {error}");
                    fibers(linker)?
                }
                Err(error) => return Err(error),
            },
            _ => fibers(linker)?,
        };
        let live = LiveGuest {
            exec,
            layout: program.layout.clone(),
            stacks: ShadowStacks::new(memory, program.layout.clone()),
            wasi,
        };
        let guest = self.with(|state| state.add_guest(live, output, options, time_limit));
        Ok(GuestId(guest))
    }

    /// Runs every guest until each has ended (its main green thread returned,
    /// it exited, trapped in main, or deadlocked). See [`Hub::exit`]. A
    /// plugin ([`Hub::add_plugin`]) ends only when killed, so while one
    /// lives, `run` serves the calls and commands that handles send it.
    ///
    /// What ended green threads leave behind (their stores and instances,
    /// and the futures of host functions they were suspended in) is dropped
    /// on a thread of its own while the hub goes on; by the time `run` (or
    /// [`Hub::serve`], or dropping the hub) returns, all of it has been.
    pub fn run(&mut self) {
        self.drive(Until::AllEnded);
        crate::execution::reaper::await_reaper();
    }

    /// Serves: runs guests and carries out handles' commands (calls, new
    /// guests and plugins) until a handle calls
    /// [`HubHandle::shutdown`], then ends every guest left. For a hub on a
    /// thread of its own that other threads feed, as in a [`HubPool`](crate::HubPool).
    pub fn serve(&mut self) {
        self.drive(Until::Shutdown);
        crate::execution::reaper::await_reaper();
    }

    /// Runs the guests until nothing is left to do now: no green thread is
    /// runnable (some may wait for timers, I/O or calls to come). Returns at
    /// once if there is nothing to do; for a host that drives the hub from
    /// its own loop.
    ///
    /// ```no_run
    /// # let runtime = wasmlet_host::Runtime::new(Default::default())?;
    /// # let program = wasmlet_host::Program::from_file(runtime.engine(), "plugin.wasm")?;
    /// let mut hub = wasmlet_host::Hub::new(&runtime);
    /// let plugin = hub.add_plugin(&program, Default::default())?;
    /// let call = hub.call(plugin, "upper", b"abc".to_vec())?;
    /// while call.try_result().is_none() {
    ///     hub.run_until_idle();
    ///     // ... the host's own work, or a wait for the next timer ...
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_until_idle(&mut self) {
        self.drive(Until::Idle);
    }

    /// Runs the guests until `deadline`, waiting for their timers, I/O and
    /// handles' commands in between. Returns early once every guest has
    /// ended.
    pub fn run_until(&mut self, deadline: Instant) {
        self.drive(Until::Deadline(deadline));
    }

    /// One turn, never waiting: carries out handles' commands, fires due
    /// timers, takes ready I/O, and runs one green thread until it yields.
    /// False if there was no green thread to run.
    pub fn turn(&mut self) -> bool {
        self.drive(Until::OneStep)
    }

    /// Adds a plugin: a guest whose functions the host calls
    /// ([`Hub::call`], [`HubHandle::call`]). Its `main` runs first, as a
    /// program's would (to set the plugin up); when it returns, the guest
    /// lives on, each call a green thread of its own, until it is killed
    /// ([`Hub::kill_guest`]) or fails as a whole (its `exit`, say).
    ///
    /// # Errors
    /// As [`Hub::add_guest`].
    pub fn add_plugin(&mut self, program: &Program, options: GuestOptions) -> Result<GuestId> {
        let most = options.max_calls_in_flight;
        let guest = self.add_guest(program, options)?;
        self.with(|state| state.make_plugin(guest.0));
        self.control.plugin_added(guest, most);
        Ok(guest)
    }

    /// Calls the plugin `guest`'s function `function` with `input`: a new
    /// green thread of the guest runs it once the hub runs. Wait for the
    /// result by driving the hub ([`Hub::run_until_idle`] and the like).
    ///
    /// # Errors
    /// [`CallError::GuestEnded`] if the guest is not a live plugin,
    /// [`CallError::Busy`] if it has `max_calls_in_flight` calls already,
    /// [`CallError::Refused`] if a limit keeps the call's green thread from
    /// starting.
    pub fn call(
        &mut self,
        guest: GuestId,
        function: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<PendingCall, CallError> {
        self.with(|state| state.start_call(guest.0, function.to_string(), input.into()))
    }

    /// Ends `guest` at once: its green threads are dropped where they are
    /// suspended (no links run), and [`Hub::exit`] reports
    /// [`GuestError::Killed`] with `reason` and
    /// exit code 137. Killing a guest that has ended does nothing. From
    /// another thread, use a [`HubHandle`].
    pub fn kill_guest(&mut self, guest: GuestId, reason: impl Into<String>) {
        let reason = reason.into();
        self.with(|state| state.kill_guest(guest.0, reason));
    }

    /// A `Send + Sync` handle through which other threads can control this
    /// hub while it runs.
    pub fn handle(&self) -> HubHandle {
        HubHandle::new(self.control.clone())
    }

    /// The functions this host defines for guests under the import module
    /// `module` (e.g. [`HUB_MODULE`](crate::HUB_MODULE)) with their core wasm
    /// types: what a contract check compares with `wit/hub.wit`.
    pub fn defined_functions(&self, module: &str) -> Vec<(String, wasmtime::FuncType)> {
        let wasi = WasiBox::new(wasmtime_wasi::WasiCtxBuilder::new().build_p1());
        let data = ThreadData::new(GuestKey(usize::MAX), ThreadKey(usize::MAX), wasi.ptr());
        let mut store = Store::new(self.runtime.engine(), data);
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

    /// How the guest ended, once it has.
    pub fn exit(&self, guest: GuestId) -> Option<GuestExit> {
        self.with(|state| state.exit_of(guest.0))
    }

    /// What a live guest uses now; None once it has ended.
    ///
    /// ```no_run
    /// # let runtime = wasmlet_host::Runtime::new(wasmlet_host::Config::default())?;
    /// # let program = wasmlet_host::Program::from_file(runtime.engine(), "plugin.wasm")?;
    /// let mut hub = wasmlet_host::Hub::new(&runtime);
    /// let guest = hub.add_guest(&program, Default::default())?;
    /// let usage = hub.usage(guest).unwrap();
    /// assert_eq!(usage.green_threads, 1); // main, not started yet
    /// # Ok::<(), wasmtime::Error>(())
    /// ```
    pub fn usage(&self, guest: GuestId) -> Option<GuestUsage> {
        self.with(|state| state.usage(guest.0))
    }

    /// Takes what an ended guest wrote to stdout and stderr (if its options
    /// captured them), freeing it: all a hub keeps of an ended guest
    /// besides its [`GuestExit`]. None while the guest runs.
    pub fn take_output(&mut self, guest: GuestId) -> Option<(Vec<u8>, Vec<u8>)> {
        self.with(|state| state.output_of(guest.0, true))
    }

    /// What the hub is doing: for every live guest, what it uses (green
    /// threads, calls in flight, CPU time, memory, open files) and each of
    /// its green threads with what it does or waits for, in the deadlock
    /// report's format (Go prints its goroutines so on SIGQUIT; the
    /// `wasmlet` CLI prints this on SIGQUIT).
    ///
    /// ```text
    /// hub: 1 live guests, 2 green threads, 1 calls in flight
    /// guest 0 (plugin): 2 green threads, 1 calls in flight, cpu 0.010 s, linear memory 1152 KiB, host memory 64 KiB, 0 files open
    ///   green thread #2 (call of `slow`): sleeping
    ///   green thread #3: waiting on a std lock, condition variable or other futex (memory.atomic.wait at 0x1234)
    /// ```
    pub fn report(&self) -> String {
        self.with(|state| state.report())
    }

    /// What the guest wrote to stdout and stderr, if its options captured them.
    pub fn output(&self, guest: GuestId) -> Option<(Vec<u8>, Vec<u8>)> {
        self.with(|state| state.output_of(guest.0, false))
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Stores first, then the WASI contexts they point at.
        self.with(|state| state.end_all(|| GuestExit::code(1)));
        crate::execution::reaper::await_reaper();
    }
}

/// The guest's memory type with its maximum lowered to `max_bytes`.
///
/// # Errors
/// If the module needs more memory to start than the limit allows.
fn limit_memory(ty: wasmtime::MemoryType, max_bytes: Option<u64>) -> Result<wasmtime::MemoryType> {
    const PAGE: u64 = 64 * 1024;
    let Some(max_bytes) = max_bytes else {
        return Ok(ty);
    };
    let limit = max_bytes / PAGE;
    if limit < ty.minimum() {
        wasmtime::bail!(
            "the program needs {} MiB of memory to start, more than its limit of {} MiB \
             (GuestOptions::max_memory)",
            (ty.minimum() * PAGE) >> 20,
            max_bytes >> 20
        );
    }
    let maximum = ty.maximum().map_or(limit, |m| m.min(limit));
    let (minimum, maximum) = (u32::try_from(ty.minimum())?, u32::try_from(maximum)?);
    Ok(wasmtime::MemoryType::shared(minimum, maximum))
}

//! All cores: a pool of hubs, one per OS thread, behind one handle that
//! places guests on the least loaded hub and routes calls to their hub.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Result;

use crate::call::{CallError, PendingCall};
use crate::control::HubHandle;
use crate::guest::program::Program;
use crate::guest::{GuestId, GuestOptions, GuestUsage};
use crate::hub::Hub;
use crate::runtime::Runtime;

/// A guest of a [`HubPool`]: which hub it is on, and its id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGuest {
    /// The hub's index in the pool.
    pub hub: usize,
    /// The guest's id on that hub.
    pub guest: GuestId,
}

/// N hubs, each serving on a thread of its own ([`Hub::serve`]).
///
/// ```no_run
/// # let runtime = wasmlet_host::Runtime::new(Default::default())?;
/// # let program = wasmlet_host::Program::from_file(runtime.engine(), "plugin.wasm")?;
/// let pool = wasmlet_host::HubPool::new(&runtime, 0)?; // a hub per core
/// let handle = pool.handle();
/// let plugin = handle.add_plugin(&program, Default::default())?;
/// let output = handle.call(plugin, "upper", b"hi".to_vec())?.wait(std::time::Duration::from_secs(5))?;
/// pool.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HubPool {
    handle: PoolHandle,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HubPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubPool")
            .field("hubs", &self.threads.len())
            .finish_non_exhaustive()
    }
}

/// How long a pool handle waits for a hub to add a guest.
const ADD_TIMEOUT: Duration = Duration::from_secs(60);

impl HubPool {
    /// Starts `hubs` hubs on threads of their own (0: one per core, as
    /// `std::thread::available_parallelism` says).
    ///
    /// # Errors
    /// If a thread cannot be started.
    pub fn new(runtime: &Runtime, hubs: usize) -> Result<HubPool> {
        let hubs = match hubs {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut handles = Vec::with_capacity(hubs);
        let mut threads = Vec::with_capacity(hubs);
        for index in 0..hubs {
            let runtime = runtime.clone();
            let (send, receive) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("wasmlet-hub-{index}"))
                .spawn(move || {
                    let mut hub = Hub::new(&runtime);
                    if send.send(hub.handle()).is_ok() {
                        hub.serve();
                    }
                })?;
            handles.push(
                receive
                    .recv()
                    .map_err(|_| wasmtime::format_err!("hub thread {index} ended at its start"))?,
            );
            threads.push(thread);
        }
        let load = (0..hubs).map(|_| AtomicUsize::new(0)).collect();
        Ok(HubPool {
            handle: PoolHandle {
                inner: Arc::new(Inner {
                    hubs: handles,
                    load,
                }),
            },
            threads,
        })
    }

    /// A `Send + Sync` handle to the whole pool.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// How many hubs the pool runs.
    pub fn len(&self) -> usize {
        self.handle.inner.hubs.len()
    }

    /// True if the pool has no hub (never: `new` starts at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every guest on every hub and stops the hubs' threads.
    pub fn shutdown(self) {
        for hub in &self.handle.inner.hubs {
            hub.shutdown();
        }
        for thread in self.threads {
            // A hub thread that panicked has nothing left to stop.
            let _ = thread.join();
        }
    }
}

struct Inner {
    hubs: Vec<HubHandle>,
    /// Guests placed on each hub (and not killed through the pool).
    load: Vec<AtomicUsize>,
}

/// A handle to a [`HubPool`]: `Send + Sync`, cheap to clone.
#[derive(Clone)]
pub struct PoolHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle").finish_non_exhaustive()
    }
}

impl PoolHandle {
    /// Adds a plugin on the least loaded hub (the one with the fewest
    /// guests placed).
    ///
    /// # Errors
    /// As [`Hub::add_plugin`].
    pub fn add_plugin(&self, program: &Program, options: GuestOptions) -> Result<PoolGuest> {
        self.add(program, options, true)
    }

    /// Adds a program guest on the least loaded hub.
    ///
    /// # Errors
    /// As [`Hub::add_guest`].
    pub fn add_guest(&self, program: &Program, options: GuestOptions) -> Result<PoolGuest> {
        self.add(program, options, false)
    }

    fn add(&self, program: &Program, options: GuestOptions, plugin: bool) -> Result<PoolGuest> {
        let inner = &self.inner;
        let hub = (0..inner.hubs.len())
            .min_by_key(|&i| inner.load[i].load(Ordering::Relaxed))
            .expect("a pool has at least one hub");
        inner.load[hub].fetch_add(1, Ordering::Relaxed);
        let handle = &inner.hubs[hub];
        let added = if plugin {
            handle.add_plugin(program, options, ADD_TIMEOUT)
        } else {
            handle.add_guest(program, options, ADD_TIMEOUT)
        };
        match added {
            Ok(guest) => Ok(PoolGuest { hub, guest }),
            Err(error) => {
                inner.load[hub].fetch_sub(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// Calls a plugin on its hub (see [`HubHandle::call`]).
    ///
    /// # Errors
    /// As [`HubHandle::call`].
    pub fn call(
        &self,
        guest: PoolGuest,
        function: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<PendingCall, CallError> {
        self.hub(guest)?.call(guest.guest, function, input)
    }

    /// [`PoolHandle::call`], failing fast when the plugin is full (see
    /// [`HubHandle::try_call`]).
    ///
    /// # Errors
    /// As [`HubHandle::try_call`].
    pub fn try_call(
        &self,
        guest: PoolGuest,
        function: &str,
        input: impl Into<Vec<u8>>,
    ) -> Result<PendingCall, CallError> {
        self.hub(guest)?.try_call(guest.guest, function, input)
    }

    /// Ends a guest (see [`HubHandle::kill_guest`]).
    pub fn kill_guest(&self, guest: PoolGuest, reason: impl Into<String>) {
        if let Ok(hub) = self.hub(guest) {
            hub.kill_guest(guest.guest, reason);
            let load = &self.inner.load[guest.hub];
            let _ = load.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// What a guest uses (see [`HubHandle::usage`]).
    pub fn usage(&self, guest: PoolGuest, timeout: Duration) -> Option<GuestUsage> {
        self.hub(guest).ok()?.usage(guest.guest, timeout)
    }

    /// The handle of the hub at `index`, for what the pool does not route.
    pub fn hub_handle(&self, index: usize) -> Option<&HubHandle> {
        self.inner.hubs.get(index)
    }

    fn hub(&self, guest: PoolGuest) -> Result<&HubHandle, CallError> {
        self.inner
            .hubs
            .get(guest.hub)
            .ok_or(CallError::GuestEnded(None))
    }
}

//! The runtime: one wasmtime `Engine` configured for green threads, and the
//! `Linker` that gives guests the hub and WASI. Shared by every hub (one per
//! OS thread) that runs its programs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::error::Context;
use wasmtime::Result;
use wasmtime::{Engine, InstanceAllocationStrategy, Linker};

use crate::config::Config;
use crate::execution::fiber_stack::FiberStacks;
use crate::guest::store_data::ThreadData;
use crate::host_functions::guest_memory::GuestMemory;

/// The smallest fiber stack a runtime accepts.
const MIN_FIBER_STACK: usize = 256 * 1024;

/// The least of each fiber stack kept for host functions (WASI's among
/// them) below the deepest wasm frame.
const HOST_STACK_RESERVE: usize = 128 * 1024;

/// The engine, linker and settings that hubs share. Cheap to clone.
///
/// ```no_run
/// let runtime = wasmlet_host::Runtime::new(wasmlet_host::Config::default())?;
/// # Ok::<(), wasmtime::Error>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<ThreadData>,
    config: Config,
    stop_ticker: Arc<AtomicBool>,
    /// Epoch ticks the ticker has counted: the clock time slices are
    /// counted on.
    ticks: Arc<AtomicU64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Defines host functions for a runtime's guests before it is built (see
/// [`Runtime::builder`]).
type Definition = Box<dyn FnOnce(&mut Linker<ThreadData>) -> Result<()>>;

/// A [`Runtime`] with host functions of the embedder's own: guests import
/// them by the module and name given here.
///
/// ```no_run
/// use wasmlet_host::{Config, GuestMemory, Runtime, ThreadData};
/// use wasmtime::Caller;
///
/// let runtime = Runtime::builder(Config::default())
///     // A plain function: runs on the hub's thread, to completion.
///     .func("app", "add", |a: i32, b: i32| a + b)
///     // One that reads the guest's memory (bounds-checked).
///     .func("app", "log", |caller: Caller<'_, ThreadData>, at: u32, len: u32| {
///         let text = GuestMemory::of(&caller).read(at, len)?;
///         println!("{}", String::from_utf8_lossy(&text));
///         Ok(())
///     })
///     // An async one: only the calling green thread waits for the future,
///     // which any runtime may drive (a tokio task answering over a channel).
///     .func_async("app", "fetch", |_memory: GuestMemory, (id,): (i64,)| async move {
///         Ok(id * 2)
///     })
///     .build()?;
/// # Ok::<(), wasmtime::Error>(())
/// ```
pub struct RuntimeBuilder {
    config: Config,
    definitions: Vec<Definition>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("config", &self.config)
            .field("definitions", &self.definitions.len())
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Adds a plain host function `module::name`: any closure wasmtime's
    /// `Linker::func_wrap` takes, optionally with a first
    /// `Caller<'_, ThreadData>` parameter (for [`GuestMemory::of`]). It runs
    /// on the hub's thread, so it should not block: make it async if it
    /// waits.
    pub fn func<Params, Results>(
        mut self,
        module: &str,
        name: &str,
        func: impl wasmtime::IntoFunc<ThreadData, Params, Results>,
    ) -> Self {
        let (module, name) = (module.to_string(), name.to_string());
        self.definitions.push(Box::new(move |linker| {
            linker
                .func_wrap(&module, &name, func)
                .map(|_| ())
                .with_context(|| defined_twice(&module, &name))
        }));
        self
    }

    /// Adds an async host function `module::name`: `func` gets the guest's
    /// memory (bounds-checked, usable until it returns) and the wasm
    /// arguments, and returns a future. The calling green thread waits for
    /// it, alone: the hub polls it with a waker that wakes that green thread
    /// from whatever thread completes it. A killed green thread's future is
    /// dropped. (`R: Default`: in the compact model the import returns a
    /// value, never seen by the guest, while the caller's frames are saved.)
    pub fn func_async<Params, R, F, Fut>(mut self, module: &str, name: &str, func: F) -> Self
    where
        Params: wasmtime::WasmTyList + Send + 'static,
        R: wasmtime::WasmRet + Default + Send + 'static,
        F: Fn(GuestMemory, Params) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<R>> + Send + 'static,
    {
        let (module, name) = (module.to_string(), name.to_string());
        self.definitions.push(Box::new(move |linker| {
            crate::host_functions::host_call::define_async(linker, &module, &name, func)
                .with_context(|| defined_twice(&module, &name))
        }));
        self
    }

    /// Builds the runtime with these host functions.
    ///
    /// # Errors
    /// As [`Runtime::new`]; or if a host function's name is taken
    /// (wasmlet's own, WASI's, or defined twice).
    pub fn build(self) -> Result<Runtime> {
        Runtime::with_definitions(self.config, self.definitions)
    }
}

fn defined_twice(module: &str, name: &str) -> String {
    format!(
        "defining host function {module}::{name}: the name is taken (by wasmlet's hub or \
         WASI, or defined twice)"
    )
}

impl Runtime {
    /// Builds the engine (fiber stacks sized by `config`) and the linker.
    ///
    /// # Errors
    /// If `config` is out of range, or wasmtime cannot be configured.
    pub fn new(config: Config) -> Result<Runtime> {
        Runtime::with_definitions(config, Vec::new())
    }

    /// A runtime with host functions of the embedder's (see
    /// [`RuntimeBuilder`]).
    pub fn builder(config: Config) -> RuntimeBuilder {
        RuntimeBuilder {
            config,
            definitions: Vec::new(),
        }
    }

    fn with_definitions(config: Config, definitions: Vec<Definition>) -> Result<Runtime> {
        wasmtime::ensure!(
            config.fiber_stack_size >= MIN_FIBER_STACK,
            "fiber_stack_size must be at least {} KiB (it is {} bytes)",
            MIN_FIBER_STACK / 1024,
            config.fiber_stack_size
        );
        let page = rustix::param::page_size();
        let fiber_stack_size = config.fiber_stack_size.div_ceil(page) * page;
        // What wasm may use of a fiber stack is bounded by wasmtime's check;
        // the rest is left to the host functions wasm calls, whose depth
        // does not depend on the guest (a guard page below each stack stops
        // one that overruns it: see `fiber_stack`).
        let host_reserve = (fiber_stack_size / 4).max(HOST_STACK_RESERVE);
        wasmtime::ensure!(
            config.max_green_threads > 0,
            "max_green_threads must be at least 1"
        );
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_threads(true)
            .shared_memory(true)
            .async_stack_size(fiber_stack_size)
            .max_wasm_stack(fiber_stack_size - host_reserve)
            .epoch_interruption(config.time_slice.is_some());
        // Instances are made on demand (a few small allocations each, and
        // workers keep theirs for the next green thread); fiber stacks come
        // from our own pool, which is not bounded by the kernel's mapping
        // limit (see `fiber_stack`).
        wasm.allocation_strategy(InstanceAllocationStrategy::OnDemand)
            .with_host_stack(Arc::new(FiberStacks::new(fiber_stack_size)));
        let engine = Engine::new(&wasm).context("configuring wasmtime")?;
        let mut linker = Linker::new(&engine);
        crate::host_functions::add_to_linker(&mut linker)?;
        for define in definitions {
            define(&mut linker)?;
        }
        crate::guest::cpu_clock::start();
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        if let Some(slice) = config.time_slice {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let ticks = ticks.clone();
            std::thread::Builder::new()
                .name("wasmlet-epoch".into())
                .spawn(move || {
                    // Ticks finer than a slice: see `crate::execution::preemption`.
                    let tick = crate::execution::preemption::tick(slice);
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        ticks.fetch_add(1, Ordering::Relaxed);
                        engine.increment_epoch();
                        crate::guest::cpu_clock::settle();
                    }
                })
                .context("starting the preemption ticker")?;
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                stop_ticker,
                ticks,
            }),
        })
    }

    /// The wasmtime engine, e.g. to load a [`Program`](crate::Program).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The settings this runtime was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Epoch ticks counted so far (stays 0 without preemption): a hub
    /// pauses a green thread once a slice's worth has passed while it runs.
    pub(crate) fn ticks(&self) -> Arc<AtomicU64> {
        self.inner.ticks.clone()
    }

    pub(crate) fn linker(&self) -> &Linker<ThreadData> {
        &self.inner.linker
    }
}

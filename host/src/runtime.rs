//! The runtime: one wasmtime `Engine` configured for green threads, and the
//! `Linker` that gives guests the hub and WASI. Shared by every hub (one per
//! OS thread) that runs its programs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::error::Context;
use wasmtime::Result;
use wasmtime::{Engine, InstanceAllocationStrategy, Linker};

use crate::config::Config;
use crate::fiber_stack::FiberStacks;
use crate::store_data::ThreadData;

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

struct Inner {
    engine: Engine,
    linker: Linker<ThreadData>,
    config: Config,
    stop_ticker: Arc<AtomicBool>,
    /// Time slices the ticker has counted: the clock CPU time is sampled on.
    ticks: Arc<AtomicU64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine (fiber stacks sized by `config`) and the linker.
    pub fn new(config: Config) -> Result<Runtime> {
        wasmtime::ensure!(
            config.fiber_stack_size >= MIN_FIBER_STACK,
            "fiber_stack_size must be at least {} KiB (it is {} bytes)",
            MIN_FIBER_STACK / 1024,
            config.fiber_stack_size
        );
        let page = rustix::param::page_size();
        let fiber_stack_size = config.fiber_stack_size.div_ceil(page) * page;
        // Fiber stacks have no guard page (see `fiber_stack`): what wasm may
        // use is bounded by wasmtime's check, and the rest is left to the
        // host functions wasm calls, whose depth does not depend on the
        // guest.
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
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, ThreadData::wasi)?;
        crate::wasi_overrides::add_to_linker(&mut linker)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        if let Some(slice) = config.time_slice {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let ticks = ticks.clone();
            std::thread::Builder::new()
                .name("wasmlet-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(slice);
                        ticks.fetch_add(1, Ordering::Relaxed);
                        engine.increment_epoch();
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

    /// Time slices counted so far (stays 0 without preemption): a hub
    /// charges a guest one slice for each that passes while it runs.
    pub(crate) fn ticks(&self) -> Arc<AtomicU64> {
        self.inner.ticks.clone()
    }

    pub(crate) fn linker(&self) -> &Linker<ThreadData> {
        &self.inner.linker
    }
}

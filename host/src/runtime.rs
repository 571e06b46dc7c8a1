//! The runtime: one wasmtime `Engine` configured for green threads, and the
//! `Linker` that gives guests the hub and WASI. Shared by every hub (one per
//! OS thread) that runs its programs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wasmtime::error::Context;
use wasmtime::Result;
use wasmtime::{Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

use crate::config::Config;
use crate::hub::ThreadData;

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
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine (pooled instances and fiber stacks sized by
    /// `config`) and the linker.
    pub fn new(config: Config) -> Result<Runtime> {
        wasmtime::ensure!(
            config.fiber_stack_size >= 64 * 1024,
            "fiber_stack_size must be at least 64 KiB"
        );
        wasmtime::ensure!(
            config.max_green_threads > 0,
            "max_green_threads must be at least 1"
        );
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_threads(true)
            .shared_memory(true)
            .async_stack_size(config.fiber_stack_size)
            .max_wasm_stack(config.fiber_stack_size * 3 / 4)
            .epoch_interruption(config.time_slice.is_some());
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(config.max_green_threads)
            .total_stacks(config.max_green_threads)
            .total_tables(config.max_green_threads)
            // Guests' memories are shared memories, made outside the pool.
            .total_memories(0)
            .total_component_instances(0);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).context("configuring wasmtime")?;
        let mut linker = Linker::new(&engine);
        crate::host_functions::add_to_linker(&mut linker)?;
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, ThreadData::wasi)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        if let Some(slice) = config.time_slice {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("wasmlet-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(slice);
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

    pub(crate) fn linker(&self) -> &Linker<ThreadData> {
        &self.inner.linker
    }
}

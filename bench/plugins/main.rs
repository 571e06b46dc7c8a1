//! The plugin benchmark: calls into plugins, side by side with what a plugin
//! host would use instead, on the same plugin logic.
//!
//! Two workloads, each a closed loop of 1,000 callers (1,000 calls in
//! flight): `trivial` (the plugin returns its input) and `wait 1 ms` (the
//! plugin first waits 1 ms in a host function). Each figure is calls per
//! second and the p50/p99 latency from a call's submission to its result.
//!
//! Systems:
//! - wasmlet, a pool of 1 hub and of 2 hubs (one per core): each call a
//!   green thread of a plugin; the host function is async (a tokio timer),
//!   so waiting calls overlap.
//! - wasmtime, a fresh instance per call (Spin's model: async, pooling
//!   allocator): 1,000 tokio tasks, each instantiating for every call.
//! - wasmtime, one reused instance per core, one call at a time on each
//!   (Extism's model: `Plugin::call` runs one call per instance, and its
//!   host functions are synchronous, so the 1 ms wait blocks the thread).
//!
//! Extism itself is not built here (a second wasmtime line in the build);
//! its model is measured with wasmtime directly, on the same engine.
//!
//! ```text
//! cargo build --release --manifest-path examples/Cargo.toml --target wasm32-wasip1-threads
//! cargo run --release --example plugin-bench [-- --quick] [-- DIR-OF-WASM]
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmlet_host::{Config, GuestOptions, HubPool, Program, Runtime, Threads};

/// Calls in flight at once.
const IN_FLIGHT: usize = 1000;

/// One figure: a system on a workload.
struct Figure {
    system: String,
    workload: &'static str,
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Trivial,
    Wait,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Trivial => "trivial",
            Workload::Wait => "wait 1 ms",
        }
    }

    fn function(self) -> &'static str {
        match self {
            Workload::Trivial => "echo",
            Workload::Wait => "wait",
        }
    }
}

const INPUT: &[u8] = b"a plugin call's input";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/target/wasm32-wasip1-threads/release")
        });
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let mut figures = Vec::new();
    for workload in [Workload::Trivial, Workload::Wait] {
        let calls = match (workload, quick) {
            (_, true) => 2_000,
            (Workload::Trivial, false) => 50_000,
            (Workload::Wait, false) => 20_000,
        };
        for hubs in [1, 2] {
            figures.push(wasmlet(
                &tokio,
                &dir,
                hubs,
                Threads::Fibers,
                workload,
                calls,
            )?);
        }
        figures.push(wasmlet(&tokio, &dir, 1, Threads::Compact, workload, calls)?);
        figures.push(instance_per_call(&tokio, workload, calls)?);
        figures.push(reused_instances(
            workload,
            calls.min(if quick { 400 } else { 4_000 }),
        )?);
    }
    println!("plugin calls, {IN_FLIGHT} in flight (calls/s; latency from submission to result)");
    println!(
        "{:<10} {:<36} {:>10} {:>10} {:>10}",
        "workload", "system", "calls/s", "p50 ms", "p99 ms"
    );
    for f in &figures {
        println!(
            "{:<10} {:<36} {:>10.0} {:>10.3} {:>10.3}",
            f.workload, f.system, f.calls_per_s, f.p50_ms, f.p99_ms
        );
    }
    Ok(())
}

/// Runs `calls` calls through `call`, `IN_FLIGHT` at a time on tokio; the
/// figure.
fn closed_loop<F, Fut>(
    tokio: &tokio::runtime::Runtime,
    system: String,
    workload: Workload,
    calls: usize,
    call: F,
) -> Figure
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(calls));
    let start = Instant::now();
    let latencies = tokio.block_on(async {
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (call, left) = (call.clone(), left.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while left
                        .fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |n| n.checked_sub(1),
                        )
                        .is_ok()
                    {
                        let submitted = Instant::now();
                        call().await;
                        mine.push(submitted.elapsed());
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("a caller task panicked"));
        }
        all
    });
    figure(system, workload, start.elapsed(), latencies)
}

fn figure(
    system: String,
    workload: Workload,
    wall: Duration,
    mut latencies: Vec<Duration>,
) -> Figure {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    Figure {
        system,
        workload: workload.name(),
        calls_per_s: latencies.len() as f64 / wall.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// wasmlet: a pool of `hubs` hubs, two plugin instances per hub, in the
/// execution model `threads`.
fn wasmlet(
    tokio: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    hubs: usize,
    threads: Threads,
    workload: Workload,
    calls: usize,
) -> Result<Figure, Box<dyn std::error::Error>> {
    let timers = tokio.handle().clone();
    let runtime = Runtime::builder(Config::default())
        .func_async("bench", "sleep_ms", move |_memory, (ms,): (i32,)| {
            let sleep = timers.spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
            });
            async move {
                sleep.await.map_err(wasmtime::Error::msg)?;
                Ok(0i32)
            }
        })
        .build()?;
    let program = Program::from_file(runtime.engine(), dir.join("benchplugin.wasm"))?;
    let pool = HubPool::new(&runtime, hubs)?;
    let handle = pool.handle();
    let plugins: Vec<_> = (0..2 * hubs)
        .map(|_| {
            let options = GuestOptions {
                threads,
                ..Default::default()
            };
            handle.add_plugin(&program, options)
        })
        .collect::<Result<_, _>>()?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let function = workload.function();
    let figure = closed_loop(
        tokio,
        format!(
            "wasmlet, {hubs} hub{}{}",
            if hubs > 1 { "s" } else { "" },
            if threads == Threads::Compact {
                ", compact"
            } else {
                ""
            }
        ),
        workload,
        calls,
        move || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let call = handle.call(plugins[i % plugins.len()], function, INPUT);
            async move {
                let output = call.expect("submitted").await.expect("the call succeeds");
                assert_eq!(output, INPUT);
            }
        },
    );
    pool.shutdown();
    Ok(figure)
}

/// The same plugin logic as a plain core module: the input is at address 0,
/// `echo(len)` and `wait(len)` leave the output there and return its length;
/// `wait` first calls `bench::sleep_ms(1)`.
fn baseline_module() -> Vec<u8> {
    use wasm_encoder::*;
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import("bench", "sleep_ms", EntityType::Function(0));
    module.section(&imports);
    let mut functions = FunctionSection::new();
    functions.function(0);
    functions.function(0);
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("echo", ExportKind::Func, 1);
    exports.export("wait", ExportKind::Func, 2);
    exports.export("memory", ExportKind::Memory, 0);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut echo = Function::new([]);
    echo.instruction(&Instruction::LocalGet(0))
        .instruction(&Instruction::End);
    code.function(&echo);
    let mut wait = Function::new([]);
    wait.instruction(&Instruction::I32Const(1))
        .instruction(&Instruction::Call(0))
        .instruction(&Instruction::Drop)
        .instruction(&Instruction::LocalGet(0))
        .instruction(&Instruction::End);
    code.function(&wait);
    module.section(&code);
    module.finish()
}

/// One call on `instance`: input in, output out.
async fn call_baseline<T: Send>(
    store: &mut wasmtime::Store<T>,
    instance: &wasmtime::Instance,
    function: &str,
) -> wasmtime::Result<()> {
    let memory = instance
        .get_memory(&mut *store, "memory")
        .expect("exported");
    memory.write(&mut *store, 0, INPUT)?;
    let run = instance.get_typed_func::<i32, i32>(&mut *store, function)?;
    let len = run.call_async(&mut *store, INPUT.len() as i32).await?;
    let mut output = vec![0; len as usize];
    memory.read(&*store, 0, &mut output)?;
    assert_eq!(output, INPUT);
    Ok(())
}

/// wasmtime, async, a fresh instance (pooling allocator) for every call.
fn instance_per_call(
    tokio: &tokio::runtime::Runtime,
    workload: Workload,
    calls: usize,
) -> Result<Figure, Box<dyn std::error::Error>> {
    let mut config = wasmtime::Config::new();
    let mut pooling = wasmtime::PoolingAllocationConfig::default();
    pooling.total_core_instances(2 * IN_FLIGHT as u32);
    pooling.total_memories(2 * IN_FLIGHT as u32);
    // As many fiber stacks: a finished call's comes back only when its store
    // is dropped, and with the default (1,000, exactly IN_FLIGHT) a new call
    // could find none ("maximum concurrent limit of 1000 for fibers").
    pooling.total_stacks(2 * IN_FLIGHT as u32);
    pooling.max_memory_size(1 << 20);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
    let engine = wasmtime::Engine::new(&config)?;
    let module = wasmtime::Module::new(&engine, baseline_module())?;
    let mut linker = wasmtime::Linker::<()>::new(&engine);
    linker.func_wrap_async("bench", "sleep_ms", |_, (ms,): (i32,)| {
        Box::new(async move {
            tokio::time::sleep(Duration::from_millis(ms as u64)).await;
            Ok(0i32)
        })
    })?;
    let pre = Arc::new(linker.instantiate_pre(&module)?);
    let function = workload.function();
    Ok(closed_loop(
        tokio,
        "wasmtime, instance per call (Spin)".into(),
        workload,
        calls,
        move || {
            let (engine, pre) = (engine.clone(), pre.clone());
            async move {
                let mut store = wasmtime::Store::new(&engine, ());
                let instance = pre
                    .instantiate_async(&mut store)
                    .await
                    .expect("instantiated");
                call_baseline(&mut store, &instance, function)
                    .await
                    .expect("the call succeeds");
            }
        },
    ))
}

/// wasmtime, one instance per core, reused, one call at a time each, with
/// a synchronous host function (Extism's model): `calls` calls, with
/// `IN_FLIGHT` waiting in a queue.
fn reused_instances(
    workload: Workload,
    calls: usize,
) -> Result<Figure, Box<dyn std::error::Error>> {
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, baseline_module())?;
    let mut linker = wasmtime::Linker::<()>::new(&engine);
    linker.func_wrap("bench", "sleep_ms", |ms: i32| {
        std::thread::sleep(Duration::from_millis(ms as u64));
        0i32
    })?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every call is submitted at the start; at most IN_FLIGHT are waiting
    // at once: the queue is refilled as calls end.
    let queue: Arc<Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
    let submitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refill = |queue: &Mutex<std::collections::VecDeque<Instant>>| {
        let mut q = queue.lock().unwrap();
        while q.len() < IN_FLIGHT
            && submitted
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| (n < calls).then_some(n + 1),
                )
                .is_ok()
        {
            q.push_back(Instant::now());
        }
    };
    refill(&queue);
    let start = Instant::now();
    let function = workload.function();
    let latencies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores)
            .map(|_| {
                let (engine, module, linker, queue) = (&engine, &module, &linker, &queue);
                let refill = &refill;
                scope.spawn(move || {
                    let mut store = wasmtime::Store::new(engine, ());
                    let instance = linker
                        .instantiate(&mut store, module)
                        .expect("instantiated");
                    let memory = instance.get_memory(&mut store, "memory").expect("exported");
                    let run = instance
                        .get_typed_func::<i32, i32>(&mut store, function)
                        .expect("exported");
                    let mut mine = Vec::new();
                    loop {
                        let Some(at) = queue.lock().unwrap().pop_front() else {
                            break;
                        };
                        memory.write(&mut store, 0, INPUT).expect("in bounds");
                        let len = run
                            .call(&mut store, INPUT.len() as i32)
                            .expect("the call succeeds");
                        let mut output = vec![0; len as usize];
                        memory.read(&store, 0, &mut output).expect("in bounds");
                        assert_eq!(output, INPUT);
                        mine.push(at.elapsed());
                        refill(queue);
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker panicked"))
            .collect::<Vec<_>>()
    });
    Ok(figure(
        format!("wasmtime, {cores} reused instances (Extism)"),
        workload,
        start.elapsed(),
        latencies,
    ))
}

//! Host functions the embedder defines: plain and async, the async ones'
//! futures completed from another runtime's threads (issue 10).

use crate::support::{finished, guest, options};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmlet_host::{Config, GuestMemory, Hub, Program, Runtime, ThreadData};
use wasmtime::Caller;

#[test]
fn plain_and_async_host_functions_serve_green_threads_and_only_the_caller_waits() {
    // Another runtime answers the async calls over channels, as a tokio
    // service would.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let spawner = tokio.handle().clone();
    let dropped = Arc::new(AtomicUsize::new(0));
    let dropped_in_fn = dropped.clone();
    let runtime = Runtime::builder(Config::default())
        .func("app", "add", |a: i32, b: i32| a + b)
        .func(
            "app",
            "reverse",
            |caller: Caller<'_, ThreadData>, input: u32, len: u32, output: u32| {
                let memory = GuestMemory::of(&caller);
                let mut bytes = memory.read(input, len)?;
                bytes.reverse();
                memory.write(output, &bytes)?;
                Ok(0i32)
            },
        )
        .func("app", "leak", |caller: Caller<'_, ThreadData>| {
            // A memory handle kept past its host function, used from another
            // thread: an error, not a crash.
            let memory = GuestMemory::of(&caller);
            let error = std::thread::spawn(move || memory.read(0, 4).unwrap_err().to_string())
                .join()
                .unwrap();
            i32::from(error.contains("outside Hub::run"))
        })
        .func_async("app", "double_later", move |_memory, (n,): (i64,)| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            spawner.spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(n * 2);
            });
            // Counts the futures dropped unfinished (a killed waiter's).
            let guard = DropCounter(dropped_in_fn.clone(), true);
            async move {
                let answer = rx.await.map_err(wasmtime::Error::msg)?;
                let mut guard = guard;
                guard.1 = false;
                Ok(answer)
            }
        })
        .build()
        .unwrap();
    let program = Program::from_file(runtime.engine(), guest("host_calls")).unwrap();
    let mut hub = Hub::new(&runtime);
    let g = hub.add_guest(&program, options(&[])).unwrap();
    hub.run();
    let r = finished(&hub, g);
    assert_eq!(r.code, 0, "{:?} {}", r.error, r.stderr);
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        [
            "add: 42",
            "reverse: desserts",
            "memory used elsewhere is refused: true",
            "answers: [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]",
            "overlapped: true",
            "the neighbour ticked meanwhile: true",
            "killed while waiting: true",
        ]
    );
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        1,
        "the killed waiter's future"
    );
    // Dropped off the hub (by the reaper): dropping a suspended call
    // unwinds its fiber, which a storm of kills or an ended guest with
    // thousands of them would otherwise make the other guests wait for.
    assert_eq!(
        DROPPED_ON.lock().unwrap().as_slice(),
        [Some("wasmlet-reaper".to_string())],
        "the thread the killed waiter's future was dropped on"
    );
}

/// The threads [`DropCounter`]s counted on were dropped on, by name.
static DROPPED_ON: std::sync::Mutex<Vec<Option<String>>> = std::sync::Mutex::new(Vec::new());

struct DropCounter(Arc<AtomicUsize>, bool);

impl Drop for DropCounter {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_add(1, Ordering::Relaxed);
            let name = std::thread::current().name().map(String::from);
            DROPPED_ON.lock().unwrap().push(name);
        }
    }
}

#[test]
fn a_host_function_cannot_take_a_name_that_is_already_defined() {
    let error = Runtime::builder(Config::default())
        .func(wasmlet_host::HUB_MODULE, "spawn", |a: i32| a)
        .build()
        .expect_err("refused");
    assert!(
        format!("{error:#}").contains("the name is taken"),
        "{error:#}"
    );
}

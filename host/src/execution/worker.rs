//! Workers: a wasmtime `Store` with one instance of a guest's module in it,
//! which runs green threads of that guest one after another.
//!
//! Creating a store and instantiating the module is most of what a spawn
//! would cost (a dozen allocations, the instance's tables filled in, the
//! memory first touched; then as many frees). A green thread that ends
//! normally leaves its instance in the state every fresh instance starts in,
//! apart from the stack pointer, the TLS base and the stack check's limit and
//! span, which each green thread's entry (`wasmlet:run-on` /
//! `wasmlet:finish-on`, see `rewrite`) sets for its own slot anyway; so the
//! hub keeps the worker and hands it to the guest's next green thread.

use std::sync::Arc;

use wasmtime::error::Context as _;
use wasmtime::{Instance, InstancePre, Result, Store, TypedFunc, Val, WasmParams, WasmResults};

use super::{CallOutcome, Leftover, Preempt, StackBounds};
use crate::execution::stack_charge::StackWatch;
use crate::guest::rewrite::{
    FINISH_ON_EXPORT, RED_ZONE, RUN_ON_EXPORT, STACK_LIMIT_EXPORT, STACK_SPAN_EXPORT,
};
use crate::guest::store_data::ThreadData;
use crate::scheduler::{TaskCall, ThreadKey};

impl StackBounds {
    /// The stack check's `(limit, span)` for this stack (see `rewrite`).
    pub(crate) fn check(&self) -> (u32, u32) {
        let limit = self.bottom.saturating_add(RED_ZONE).min(self.top);
        (limit, self.top - limit)
    }
}

/// The entry point of a `std::thread` in every guest built with wasi-libc's
/// threads (wasi-threads' `wasi_thread_start(tid, start_arg)`).
pub(crate) const STD_THREAD_START: &str = "wasi_thread_start";

/// `wasmlet:run-on`'s parameters: task, sp, tls, limit, span.
type RunArgs = (u32, u32, u32, u32, u32);

/// `wasmlet:finish-on`'s parameters: task, how, error, then as `run-on`.
type FinishArgs = (u32, u32, u32, u32, u32, u32, u32);

/// A store and instance of one guest, with the exports a green thread needs
/// looked up once.
pub(crate) struct Worker {
    /// The next worker down in a [`Spares`] stack.
    below: Option<Box<Worker>>,
    /// How deep its store's fiber stack has been (see `crate::execution::stack_charge`):
    /// held here while it is a spare, by its green thread's record while it
    /// runs one.
    pub(crate) watch: Option<Arc<StackWatch>>,
    store: Store<ThreadData>,
    /// For the exports only a `std::thread` needs, looked up when one runs.
    instance: Instance,
    /// `wasmlet:run-on(task, sp, tls, limit, span)` (see `rewrite`). None in
    /// a program built without the SDK, whose green threads are all
    /// `std::thread`s.
    run: Option<TypedFunc<RunArgs, ()>>,
    /// `wasmlet:finish-on(task, how, error, sp, tls, limit, span)`; None
    /// as `run`.
    finish: Option<TypedFunc<FinishArgs, ()>>,
}

impl Worker {
    /// A fresh worker for the green thread `data` names.
    pub(crate) async fn new(
        pre: &InstancePre<ThreadData>,
        data: ThreadData,
        preempt: Option<Preempt>,
        watch: Arc<StackWatch>,
    ) -> Result<Box<Worker>> {
        let mut store = Store::new(pre.module().engine(), data);
        watch.watch(&mut store);
        // Before instantiation, so that a start function that never returns
        // is paused like any other code.
        preemptible(&mut store, preempt);
        let instance = pre.instantiate_async(&mut store).await?;
        let run = entry(&instance, &mut store, RUN_ON_EXPORT)?;
        let finish = entry(&instance, &mut store, FINISH_ON_EXPORT)?;
        Ok(Box::new(Worker {
            below: None,
            watch: None,
            store,
            instance,
            run,
            finish,
        }))
    }

    /// Makes the worker run green thread `thread` (a key of the same guest).
    pub(crate) fn assign(&mut self, thread: ThreadKey) {
        self.store.data_mut().thread = thread;
        // A fresh time slice: the last thread may have used up its own.
        self.store.set_epoch_deadline(1);
    }

    /// Runs `entry` on `stack`; the worker comes back if the
    /// call returned normally.
    pub(crate) async fn run(
        mut self: Box<Self>,
        stack: StackBounds,
        entry: TaskCall,
    ) -> CallOutcome {
        let result = self.call(stack, entry).await;
        match result {
            Ok(()) => (Ok(()), Some(self as Leftover)),
            // A trap may have left the instance anywhere: drop it.
            Err(error) => (Err(error), None),
        }
    }

    async fn call(&mut self, stack: StackBounds, entry: TaskCall) -> Result<()> {
        let (limit, span) = stack.check();
        let (sp, tls) = (stack.top, stack.tls_base);
        let store = &mut self.store;
        match entry {
            TaskCall::Run { task } => {
                let args = (task, sp, tls, limit, span);
                let run = self.run.as_ref().context(NO_SDK)?;
                run.call_async(store, args).await
            }
            TaskCall::Finish { task, how, error } => {
                let args = (task, how as u32, error, sp, tls, limit, span);
                let finish = self.finish.as_ref().context(NO_SDK)?;
                finish.call_async(store, args).await
            }
            TaskCall::StdThread { tid, arg } => {
                // wasi-libc's `wasi_thread_start` moves the stack pointer to
                // the stack its `pthread_create` allocated, whose bounds the
                // hub does not know: the stack check lets it be. (An
                // overflow stays within the guest's own memory.)
                let instance = self.instance;
                for (name, value) in [(STACK_LIMIT_EXPORT, 0), (STACK_SPAN_EXPORT, -1)] {
                    if let Some(global) = instance.get_global(&mut *store, name) {
                        global.set(&mut *store, Val::I32(value))?;
                    }
                }
                let start = instance
                    .get_typed_func::<(i32, i32), ()>(&mut *store, STD_THREAD_START)
                    .context("a std::thread needs the guest's `wasi_thread_start` export")?;
                start.call_async(store, (tid as i32, arg as i32)).await
            }
        }
    }
}

/// Why a green thread of the SDK's cannot run in a program without it (the
/// hub refuses such spawns before: only a bug gets here).
pub(crate) const NO_SDK: &str =
    "the guest was built without the wasmlet SDK: it has no `wasmlet-run`";

/// The typed export `name` if the loader added it (see `rewrite`): a program
/// built without the SDK has none.
///
/// # Errors
/// If it is there with another type.
pub(crate) fn entry<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut Store<ThreadData>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>> {
    if instance.get_export(&mut *store, name).is_none() {
        return Ok(None);
    }
    instance.get_typed_func(&mut *store, name).map(Some)
}

/// Makes `store` call `preempt` at the next epoch tick (and, through what it
/// returns, at every tick after).
pub(crate) fn preemptible(store: &mut Store<ThreadData>, preempt: Option<Preempt>) {
    if let Some(preempt) = preempt {
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(preempt);
    }
}

/// The main green thread's life: its own store and instance, `_start`, on
/// the module's own shadow stack, `stack` (checked if the loader added the
/// stack check). Its store is never reused: main's end is the guest's.
pub(crate) async fn run_main(
    pre: InstancePre<ThreadData>,
    data: ThreadData,
    preempt: Option<Preempt>,
    stack: StackBounds,
    watch: Arc<StackWatch>,
) -> CallOutcome {
    let result = async {
        let mut store = Store::new(pre.module().engine(), data);
        watch.watch(&mut store);
        preemptible(&mut store, preempt);
        let instance = pre.instantiate_async(&mut store).await?;
        let limit = instance.get_global(&mut store, STACK_LIMIT_EXPORT);
        let span = instance.get_global(&mut store, STACK_SPAN_EXPORT);
        if let (Some(limit), Some(span)) = (limit, span) {
            let (low, size) = stack.check();
            limit.set(&mut store, Val::I32(low as i32))?;
            span.set(&mut store, Val::I32(size as i32))?;
        }
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    };
    (result.await, None)
}

/// A guest's spare workers: a stack linked through the workers themselves,
/// so keeping one never allocates or moves memory (growing an array of
/// thousands on the hot path cost milliseconds in page faults and TLB
/// shootdowns).
#[derive(Default)]
pub(crate) struct Spares {
    top: Option<Box<Worker>>,
    len: usize,
}

impl Spares {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, mut worker: Box<Worker>) {
        worker.below = self.top.take();
        self.top = Some(worker);
        self.len += 1;
    }

    /// The most recently kept worker.
    pub(crate) fn pop(&mut self) -> Option<Box<Worker>> {
        let mut worker = self.top.take()?;
        self.top = worker.below.take();
        self.len -= 1;
        Some(worker)
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        // One at a time: dropping the chain as is would recurse once per
        // worker.
        while self.pop().is_some() {}
    }
}

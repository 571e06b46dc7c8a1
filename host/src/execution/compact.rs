//! The compact model: all of a guest's green threads in one wasmtime
//! `Store` and one `Instance`, each green thread a saved stack in guest
//! memory instead of a store of its own.
//!
//! The module is the loader's output after Binaryen's Asyncify
//! (`guest::asyncify`). A green thread runs as one wasmtime call of its
//! entry (`_start`, `wasmlet:run-on`, `wasmlet:finish-on` or
//! `wasi_thread_start`) on the guest's store. When it waits, the import it
//! waits in unwinds its wasm frames (`guest::unwind`: saved in its own
//! shadow stack) and the call returns; the store is free for the
//! guest's next green thread. When the hub runs it again, the model sets
//! its globals back, tells Asyncify where its frames are, and calls the
//! same entry: the frames are rewound into the import, which finishes.
//!
//! ```text
//!   hub polls ──► take the store ──► call entry ──┬─ returned: thread ends
//!      ▲                                          └─ unwound: keep Saved,
//!      └──────── woken: rewind Saved ◄──── Pending ◄── give the store back
//! ```
//!
//! Preemption and embedders' async host functions still pause a call on
//! its wasmtime fiber; the hub then runs no other green thread of the guest
//! until it resumes (its rule for every model), so at most one call holds
//! the store. What a waiting green thread costs: its shadow stack's touched
//! pages and the [`Saved`] record, no store, no instance, no fiber.

use std::sync::{Arc, Mutex};

use wasmtime::error::Context as _;
use wasmtime::{
    AsContextMut, Global, GlobalType, Instance, Linker, Module, Mutability, Result, SharedMemory,
    Store, TypedFunc, Val, ValType,
};

use super::worker::{entry, preemptible, NO_SDK, STD_THREAD_START};
use super::{Execution, Leftover, Preempt, StackBounds, ThreadFuture};
use crate::execution::stack_charge::StackUse;
use crate::guest::asyncify::SCRATCH_EXPORT;
use crate::guest::rewrite::{
    FINISH_ON_EXPORT, RUN_ON_EXPORT, STACK_LIMIT_EXPORT, STACK_POINTER_EXPORT, STACK_SPAN_EXPORT,
    TLS_BASE_EXPORT,
};
use crate::guest::store_data::ThreadData;
use crate::guest::unwind::{
    self, Globals, Saved, Unwinder, DATA_GLOBAL, GLOBALS_MODULE, STATE_GLOBAL,
};
use crate::scheduler::{Entry, TaskCall, ThreadKey};

/// A guest's green threads in one instance (see the module docs).
pub(crate) struct Compact {
    /// The guest's module (transformed), linker (with its memory) and
    /// memory, for the instance main's call makes.
    module: Module,
    linker: Linker<ThreadData>,
    memory: SharedMemory,
    /// The guest's store and instance while no call holds them.
    idle: Arc<Mutex<Idle>>,
}

/// The guest's store and instance, or which green thread's call holds them.
#[derive(Default)]
struct Idle {
    guest: Option<Box<Guest>>,
    holder: Option<ThreadKey>,
}

impl Compact {
    /// The model for a guest of the transformed `module`, linked by
    /// `linker` (which defines its `memory`).
    pub(crate) fn new(module: Module, linker: Linker<ThreadData>, memory: SharedMemory) -> Compact {
        Compact {
            module,
            linker,
            memory,
            idle: Arc::new(Mutex::new(Idle::default())),
        }
    }
}

/// `wasmlet:run-on`'s parameters: task, sp, tls, limit, span.
type RunArgs = (u32, u32, u32, u32, u32);
/// `wasmlet:finish-on`'s parameters: task, how, error, then as `run-on`.
type FinishArgs = (u32, u32, u32, u32, u32, u32, u32);

/// The guest's one store and instance, with its entries looked up once.
struct Guest {
    store: Store<ThreadData>,
    instance: Instance,
    run: Option<TypedFunc<RunArgs, ()>>,
    finish: Option<TypedFunc<FinishArgs, ()>>,
}

/// What a green thread's call runs.
#[derive(Clone, Copy)]
enum Call {
    Main,
    Task(TaskCall, StackBounds),
}

impl Execution for Compact {
    fn call(
        &mut self,
        data: ThreadData,
        entry: Entry,
        stack: StackBounds,
        preempt: Option<Preempt>,
    ) -> (ThreadFuture, StackUse) {
        let idle = self.idle.clone();
        let thread = data.thread;
        let call = match entry {
            Entry::Main => {
                let (module, linker, memory) = (
                    self.module.clone(),
                    self.linker.clone(),
                    self.memory.clone(),
                );
                Box::pin(async move {
                    match instantiate(&module, &linker, memory, data, preempt, stack).await {
                        Ok(guest) => {
                            idle.lock().expect("not poisoned").guest = Some(guest);
                            run(idle, thread, Call::Main).await
                        }
                        Err(error) => (Err(error), None),
                    }
                }) as ThreadFuture
            }
            Entry::Task(task) => Box::pin(run(idle, thread, Call::Task(task, stack))),
        };
        // The call's fiber is the guest's one, lent for the time the call
        // runs: nothing of it stays with a waiting green thread.
        (call, StackUse::default())
    }

    fn returned(&mut self, leftover: Leftover, _: StackUse, _: usize) -> Option<Leftover> {
        // Calls of this model leave nothing.
        Some(leftover)
    }

    fn surplus(&mut self, _: usize) -> Option<Leftover> {
        None
    }

    fn kept(&self) -> usize {
        0
    }

    fn exports(&self, name: &str) -> bool {
        self.module.get_export(name).is_some()
    }

    fn drops_call_in_place(&self, thread: ThreadKey) -> bool {
        // A call paused in wasm holds the guest's one store, and the guest's
        // next call needs it back now (see `Lent`). A waiting thread's call
        // holds only its saved frames and its import's waiting part (maybe
        // an embedder's future, whose drop may be slow): off the hub.
        self.idle.lock().expect("not poisoned").holder == Some(thread)
    }

    fn host_bytes_per_thread(&self) -> u64 {
        crate::guest::HOST_BYTES_PER_COMPACT_THREAD
    }

    fn std_thread_room(&self) -> u32 {
        // Where its frames are saved when it waits: the hub does not know
        // the bounds of the stack wasi-libc gave it.
        unwind::STD_THREAD_UNWIND
    }
}

/// The guest's store and instance, with Asyncify's globals made and
/// linked, and main's stack check set.
async fn instantiate(
    module: &Module,
    linker: &Linker<ThreadData>,
    memory: SharedMemory,
    data: ThreadData,
    preempt: Option<Preempt>,
    stack: StackBounds,
) -> Result<Box<Guest>> {
    let mut store = Store::new(module.engine(), data);
    preemptible(&mut store, preempt);
    let mut linker = linker.clone();
    let mut state_global = || {
        let ty = GlobalType::new(ValType::I32, Mutability::Var);
        Global::new(&mut store, ty, Val::I32(0))
    };
    // The data pointer stays 0: the start of the scratch memory (`unwind`).
    let (state, data_ptr) = (state_global()?, state_global()?);
    linker.define(&store, GLOBALS_MODULE, STATE_GLOBAL, state)?;
    linker.define(&store, GLOBALS_MODULE, DATA_GLOBAL, data_ptr)?;
    let instance = linker.instantiate_async(&mut store, module).await?;
    let mut own = |name: &str| {
        instance.get_global(&mut store, name).with_context(|| {
            format!("the compact model needs the loader's `{name}` (the guest's stack pointer and TLS base)")
        })
    };
    let own = [
        own(STACK_POINTER_EXPORT)?,
        own(TLS_BASE_EXPORT)?,
        own(STACK_LIMIT_EXPORT)?,
        own(STACK_SPAN_EXPORT)?,
    ];
    let (limit, span) = stack.check();
    own[2].set(&mut store, Val::I32(limit as i32))?;
    own[3].set(&mut store, Val::I32(span as i32))?;
    let scratch = instance
        .get_memory(&mut store, SCRATCH_EXPORT)
        .with_context(|| format!("the transformed module exports no `{SCRATCH_EXPORT}`"))?;
    store.data_mut().unwinder = Some(Box::new(Unwinder::new(
        Globals { state, own },
        memory,
        scratch,
    )));
    let run = entry(&instance, &mut store, RUN_ON_EXPORT)?;
    let finish = entry(&instance, &mut store, FINISH_ON_EXPORT)?;
    Ok(Box::new(Guest {
        store,
        instance,
        run,
        finish,
    }))
}

/// A green thread's life in the compact model: its entry called, and called
/// again to rewind it each time it unwound to wait.
async fn run(
    idle: Arc<Mutex<Idle>>,
    thread: ThreadKey,
    call: Call,
) -> (Result<()>, Option<Leftover>) {
    let mut saved: Option<Saved> = None;
    loop {
        let Some(mut lent) = Lent::take(&idle, thread) else {
            // The hub runs one call of a guest at a time, and a call gives
            // the store back even when it is dropped: only a bug gets here.
            return (
                Err(wasmtime::format_err!(
                    "the guest's instance is held by another call"
                )),
                None,
            );
        };
        let guest = lent.guest();
        guest.store.data_mut().thread = thread;
        let room = match call {
            Call::Task(TaskCall::StdThread { .. }, stack) => Some((stack.bottom, stack.top)),
            _ => None,
        };
        unwind::set_room(guest.store.as_context_mut(), room);
        // A fresh time slice.
        guest.store.set_epoch_deadline(1);
        let result = guest.enter(call, saved.take()).await;
        let ended = match result {
            Ok(()) => match unwind::finish_unwind(guest.store.as_context_mut()) {
                Ok(Some(left)) => {
                    saved = Some(left);
                    None
                }
                Ok(None) => Some(Ok(())),
                Err(error) => Some(Err(error)),
            },
            Err(error) => Some(Err(unwind::explain_trap(
                guest.store.as_context_mut(),
                error,
            ))),
        };
        drop(lent);
        match ended {
            Some(result) => return (result, None),
            // Waiting: the import recorded why; the hub polls again once
            // the thread is woken.
            None => super::Suspend::default().await,
        }
    }
}

/// The guest's store and instance, lent to one call: given back when the
/// call is done with them, or when the call is dropped halfway (a green
/// thread paused in wasm and ended by the hub: wasmtime unwinds its fiber
/// first, so the store is whole), with Asyncify back to normal.
struct Lent<'a> {
    idle: &'a Mutex<Idle>,
    guest: Option<Box<Guest>>,
}

impl<'a> Lent<'a> {
    fn take(idle: &'a Mutex<Idle>, thread: ThreadKey) -> Option<Lent<'a>> {
        let mut slot = idle.lock().expect("not poisoned");
        let guest = slot.guest.take()?;
        slot.holder = Some(thread);
        Some(Lent {
            idle,
            guest: Some(guest),
        })
    }

    fn guest(&mut self) -> &mut Guest {
        self.guest.as_mut().expect("lent until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(mut guest) = self.guest.take() {
            if !unwind::is_normal(guest.store.as_context_mut()) {
                unwind::reset(guest.store.as_context_mut());
            }
            let mut slot = self.idle.lock().expect("not poisoned");
            slot.guest = Some(guest);
            slot.holder = None;
        }
    }
}

impl Guest {
    /// Calls the green thread's entry: from its beginning, or, with its
    /// `saved` frames, to rewind them.
    async fn enter(&mut self, call: Call, saved: Option<Saved>) -> Result<()> {
        let rewinding = saved.is_some();
        if let Some(saved) = saved {
            unwind::start_rewind(self.store.as_context_mut(), saved)?;
        }
        let store = &mut self.store;
        match call {
            Call::Main => {
                let start = self
                    .instance
                    .get_typed_func::<(), ()>(&mut *store, "_start")?;
                start.call_async(store, ()).await
            }
            Call::Task(task, stack) => {
                let (limit, span) = stack.check();
                let (sp, tls) = (stack.top, stack.tls_base);
                match task {
                    TaskCall::Run { task } => {
                        let run = self.run.as_ref().context(NO_SDK)?;
                        run.call_async(store, (task, sp, tls, limit, span)).await
                    }
                    TaskCall::Finish { task, how, error } => {
                        let finish = self.finish.as_ref().context(NO_SDK)?;
                        let args = (task, how as u32, error, sp, tls, limit, span);
                        finish.call_async(store, args).await
                    }
                    TaskCall::StdThread { tid, arg } => {
                        if !rewinding {
                            // As on a fiber: wasi-libc placed its stack.
                            let instance = self.instance;
                            for (name, value) in [(STACK_LIMIT_EXPORT, 0), (STACK_SPAN_EXPORT, -1)]
                            {
                                if let Some(global) = instance.get_global(&mut *store, name) {
                                    global.set(&mut *store, Val::I32(value))?;
                                }
                            }
                        }
                        let start = self
                            .instance
                            .get_typed_func::<(i32, i32), ()>(&mut *store, STD_THREAD_START)
                            .context(
                                "a std::thread needs the guest's `wasi_thread_start` export",
                            )?;
                        start.call_async(store, (tid as i32, arg as i32)).await
                    }
                }
            }
        }
    }
}

//! The fibers model: each green thread its own wasmtime `Store` + `Instance`
//! of the guest's module (a [`Worker`]), importing the guest's shared
//! memory, its call running on its own wasmtime fiber.
//!
//! A green thread that returns normally hands its worker back; the next
//! green thread of the guest reuses it, so most spawns instantiate nothing
//! (see `worker`). What it costs: about 14 KB of wasmtime state per
//! green thread that has started (see `docs/design.md`).

use wasmtime::InstancePre;

use super::worker::{run_main, Spares, Worker};
use super::{Execution, Leftover, Preempt, StackBounds, ThreadFuture};
use crate::execution::stack_charge::{StackUse, StackWatch};
use crate::guest::store_data::ThreadData;
use crate::scheduler::Entry;

/// A guest's green threads as stores of their own (see the module docs).
pub(crate) struct Fibers {
    /// The guest's module, linked to its memory and the host functions.
    pre: InstancePre<ThreadData>,
    /// Whether a worker may run another green thread (see
    /// `Layout::reuse_workers`).
    reuse: bool,
    /// Workers left by green threads that returned, for the next ones.
    spare: Spares,
}

impl Fibers {
    /// The model for a guest whose module `pre` is; `reuse` as
    /// `Layout::reuse_workers`.
    pub(crate) fn new(pre: InstancePre<ThreadData>, reuse: bool) -> Fibers {
        Fibers {
            pre,
            reuse,
            spare: Spares::default(),
        }
    }
}

impl Execution for Fibers {
    fn call(
        &mut self,
        data: ThreadData,
        entry: Entry,
        stack: StackBounds,
        preempt: Option<Preempt>,
    ) -> (ThreadFuture, StackUse) {
        let call = match entry {
            Entry::Main => {
                let watch = StackWatch::new();
                let main = run_main(self.pre.clone(), data, preempt, stack, watch.clone());
                return (Box::pin(main), StackUse::of(watch));
            }
            Entry::Task(call) => call,
        };
        if self.reuse {
            if let Some(mut worker) = self.spare.pop() {
                worker.assign(data.thread);
                let fiber = worker.watch.take().map(StackUse::of).unwrap_or_default();
                return (Box::pin(worker.run(stack, call)), fiber);
            }
        }
        let pre = self.pre.clone();
        let watch = StackWatch::new();
        let fiber = StackUse::of(watch.clone());
        let call = Box::pin(async move {
            match Worker::new(&pre, data, preempt, watch).await {
                Ok(worker) => worker.run(stack, call).await,
                Err(error) => (Err(error), None),
            }
        });
        (call, fiber)
    }

    fn returned(
        &mut self,
        leftover: Leftover,
        fiber: StackUse,
        keep_at_most: usize,
    ) -> Option<Leftover> {
        let mut worker = match leftover.downcast::<Worker>() {
            Ok(worker) => worker,
            // Not one of ours (only this model's calls come back here, so
            // never): dropped off the hub all the same.
            Err(other) => return Some(other),
        };
        worker.watch = fiber.into_watch();
        if self.reuse && self.spare.len() < keep_at_most {
            self.spare.push(worker);
            None
        } else {
            Some(worker)
        }
    }

    fn surplus(&mut self, keep: usize) -> Option<Leftover> {
        if self.spare.len() > keep {
            self.spare.pop().map(|worker| worker as Leftover)
        } else {
            None
        }
    }

    fn kept(&self) -> usize {
        self.spare.len()
    }

    fn exports(&self, name: &str) -> bool {
        self.pre.module().get_export(name).is_some()
    }
}

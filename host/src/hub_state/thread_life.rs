//! A green thread's call: its start, its suspensions and its end (what its end
//! means for its guest), and the workers it leaves.

use super::*;

impl HubState {
    /// The green thread's call: its suspended one, or a new one for its
    /// next entry.
    ///
    /// # Errors
    /// A green thread's first run fails (and it ends, its ending queued) if
    /// it would pass its guest's host memory limit, or if the guest's
    /// memory has no room for its shadow stack.
    pub fn take_call(&mut self, guest: GuestKey, thread: ThreadKey) -> Result<ThreadFuture> {
        let entry = self.sched.start(guest, thread);
        let payload = self.sched.payload_mut(guest, thread);
        if let Some(call) = payload.future.take() {
            return Ok(call);
        }
        let std_room = self.live(guest).exec.std_thread_room();
        let payload = self.sched.payload_mut(guest, thread);
        let needs_stack = payload.stack.is_none()
            && match entry {
                Entry::Task(TaskCall::Run { .. } | TaskCall::Finish { .. }) => true,
                Entry::Task(TaskCall::StdThread { .. }) => std_room > 0,
                Entry::Main => false,
            };
        let size = match entry {
            Entry::Task(TaskCall::StdThread { .. }) => std_room,
            _ => payload.stack_size,
        };
        if needs_stack {
            // Its first run: only now does it take a store, an instance, a
            // fiber stack and a shadow stack (so a million spawned at once
            // cost a million records, not a million stacks).
            if matches!(entry, Entry::Task(TaskCall::Run { .. })) {
                self.check_start(guest)?;
            }
            let stack = self.new_thread_stack(guest, size)?;
            self.sched.payload_mut(guest, thread).stack = Some(stack);
        }
        let stack = self.sched.payload_mut(guest, thread).stack;
        let preempt = self.config.time_slice.map(|_| at_tick as Preempt);
        let (call, fiber) = new_call(self.live(guest), guest, thread, entry, stack, preempt)?;
        self.sched.payload_mut(guest, thread).fiber = fiber;
        Ok(call)
    }

    /// A step of the green thread ran `cycles` (see `crate::guest::cpu_clock`);
    /// `handed_out` is the fiber stack its store took in it, if it took one.
    pub fn stepped(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        handed_out: Option<(usize, usize)>,
    ) {
        if handed_out.is_none() {
            return;
        }
        if let Some(payload) = self.sched.payload_if_live(guest, thread) {
            payload.fiber.stepped(handed_out);
        }
    }

    /// Charges the guest `now` bytes for a green thread's fiber stack where
    /// it was charged `before`; ends it if that passes its host memory
    /// limit.
    pub(super) fn charge_stack(&mut self, guest: GuestKey, before: u64, now: u64) {
        let record = &mut self.guests[guest];
        record.stack_bytes = record
            .stack_bytes
            .saturating_sub(before)
            .saturating_add(now);
        let (most, stacks) = (record.options.max_host_memory, record.stack_bytes);
        if now > before && self.sched.is_live(guest) && self.host_memory(guest) > most {
            let what = format!(
                "host memory limit of {} MiB (its green threads' native stacks hold {} KiB past \
                 the first {} KiB of each)",
                most >> 20,
                stacks >> 10,
                crate::execution::fiber_stack::ALLOWANCE >> 10,
            );
            self.end_guest(
                guest,
                GuestExit::failed(137, GuestError::LimitExceeded(what)),
            );
        }
    }

    /// A green thread's call is dropped (and its store with it): its fiber
    /// stack's charge ends.
    pub(super) fn drop_call(&mut self, guest: GuestKey, thread: ThreadKey) {
        let payload = self.sched.payload_mut(guest, thread);
        let charged = std::mem::take(&mut payload.fiber).charged();
        if let Some(call) = payload.future.take() {
            self.bury_call(guest, thread, call);
        }
        self.charge_stack(guest, charged, 0);
    }

    /// Drops a green thread's call whose guest lives on: off the hub if it
    /// holds a store of its own (dropping one is slow), at once if its
    /// model asks (it may hold the guest's one store, which the guest's
    /// next call needs).
    fn bury_call(&mut self, guest: GuestKey, thread: ThreadKey, call: ThreadFuture) {
        let in_place = self.guests[guest]
            .live
            .as_ref()
            .is_some_and(|live| live.exec.drops_call_in_place(thread));
        if in_place {
            drop(call);
        } else {
            self.graveyard.push(Grave::Call(call));
        }
    }

    /// Whether a green thread of `guest` that has just started (and is
    /// already counted as started) keeps it within its host memory limit.
    pub(super) fn check_start(&self, guest: GuestKey) -> Result<()> {
        let most = self.guests[guest].options.max_host_memory;
        if self.host_memory(guest) > most {
            wasmtime::bail!(
                "could not start: this guest's host memory limit of {} MiB is reached ({} green \
                 threads running, {} more spawned and waiting to start; raise it with \
                 `wasmlet run --max-host-memory MIB` or GuestOptions::max_host_memory)",
                most >> 20,
                self.sched.started_in(guest),
                self.sched.alive_in(guest) - self.sched.started_in(guest),
            );
        }
        Ok(())
    }

    /// The green thread's call returned Pending.
    pub fn suspended(&mut self, guest: GuestKey, thread: ThreadKey, call: ThreadFuture) {
        if !self.sched.is_live(guest) {
            // It ended its own guest (killed main, exit): nothing to resume.
            self.graveyard.push(Grave::Call(call));
            return;
        }
        match self.sched.suspended(guest, thread, Instant::now) {
            Suspension::Keep => {
                let payload = self.sched.payload_mut(guest, thread);
                payload.future = Some(call);
                let before = payload.fiber.charged();
                let now = payload.fiber.suspended();
                // Almost every suspension leaves the charge as it was.
                if now != before {
                    self.charge_stack(guest, before, now);
                }
            }
            Suspension::Drop => {
                self.sched.payload_mut(guest, thread).future = Some(call);
                self.drop_call(guest, thread);
            }
        }
    }

    /// The green thread's call returned.
    pub fn call_ended(&mut self, guest: GuestKey, thread: ThreadKey, result: Result<()>) {
        let Some(live) = self.guests[guest].live.as_ref() else {
            return;
        };
        let end = CallEnd::of(result, live.layout.overflow_func);
        let record = &self.guests[guest];
        let mut facts = Facts {
            main: self.sched.is_main(guest, thread),
            std_thread: self.sched.is_std_thread(guest, thread),
            plugin: record.plugin,
            ..Facts::default()
        };
        if matches!(end, CallEnd::Failed { .. }) {
            // Only a failure needs these (and a name costs an allocation).
            facts.output_full = self
                .at_output_limit(guest)
                .then_some(record.options.max_output);
            facts.memory_full = self
                .at_memory_limit(guest)
                .then(|| record.memory_limit().unwrap_or(0));
            facts.name = self.sched.name_of(guest, thread);
        }
        let failure = match crate::execution::ending::judge(end, &facts) {
            Verdict::PluginReady => {
                let payload = self.sched.main_returned(guest);
                self.bury_payload(guest, thread, payload);
                return;
            }
            Verdict::GuestEnds(exit) => {
                self.end_guest(guest, exit);
                return;
            }
            Verdict::ThreadEnds { failure: None } => None,
            Verdict::ThreadEnds {
                failure: Some((how, trap, error)),
            } => {
                if !trap {
                    // Not a trap of its own code (the SDK reports those) but
                    // a hub function refusing it, e.g. memory full on spawn:
                    // logged once per guest, the rest counted.
                    let record = &mut self.guests[guest];
                    if record.refusal_logged {
                        record.unlogged_refusals += 1;
                    } else {
                        record.refusal_logged = true;
                        tracing::warn!("{} stopped: {}", facts.name, error.root_cause());
                    }
                }
                Some((how, facts.name, error))
            }
        };
        let ending = failure.as_ref().map(|(how, ..)| *how);
        let id = self.sched.current(guest, thread);
        if let (Some((_, _, error)), Some(call)) = (&failure, self.calls.get_mut(&(guest, id))) {
            call.trap.get_or_insert_with(|| format!("{error:?}"));
        }
        match self.sched.ended(guest, thread, ending) {
            None => {}
            Some(payload) => {
                if let Some((_, name, error)) = failure {
                    tracing::warn!("{name} failed while ending: {error:?}");
                }
                self.bury_payload(guest, thread, payload);
                self.call_done(guest, id);
            }
        }
    }

    /// The green thread `id` of `guest` is gone: if it ran a call, its
    /// result goes to the caller.
    pub(super) fn call_done(&mut self, guest: GuestKey, id: ThreadId) {
        if let Some(call) = self.calls.remove(&(guest, id)) {
            let payload = call.reply.clone();
            payload.finish(call.result());
            // After the result: whoever gets the room sees the call ended.
            self.control.release_call(GuestId(guest));
        }
    }

    pub(super) fn bury_payload(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        payload: ThreadPayload,
    ) {
        if let Some(call) = payload.future {
            self.bury_call(guest, thread, call);
        }
        self.charge_stack(guest, payload.fiber.charged(), 0);
        if let (Some(stack), Some(live)) = (payload.stack, self.guests[guest].live.as_mut()) {
            live.stacks.free(stack);
        }
    }

    /// Whether the guest's memory has grown near its `max_memory`, so that
    /// a failure of its main green thread (an allocation refused, which
    /// aborts) is taken for the limit's doing. "Near" is within an eighth of
    /// the limit (at least 2 MiB): the request that failed may have been
    /// that large.
    pub(super) fn at_memory_limit(&self, guest: GuestKey) -> bool {
        let record = &self.guests[guest];
        match (record.memory_limit(), record.live.as_ref()) {
            (Some(limit), Some(live)) => {
                live.stacks.memory_size() + (limit / 8).max(2 << 20) > limit
            }
            _ => false,
        }
    }

    /// Whether a captured stream of the guest is full (a write past it
    /// traps the writer).
    pub(super) fn at_output_limit(&self, guest: GuestKey) -> bool {
        let record = &self.guests[guest];
        record
            .output
            .as_ref()
            .is_some_and(|o| o.full(record.options.max_output))
    }

    /// Hands what the call of a green thread that returned normally ran on
    /// back to its guest's execution model, for the guest's next green
    /// threads (see `crate::execution`).
    pub fn returned(&mut self, guest: GuestKey, thread: ThreadKey, leftover: Leftover) {
        let mut fiber = StackUse::default();
        if let Some(payload) = self.sched.payload_if_live(guest, thread) {
            fiber = std::mem::take(&mut payload.fiber);
            let charged = fiber.charged();
            fiber.finished();
            if charged > 0 {
                self.charge_stack(guest, charged, 0);
            }
        }
        let most = self.config.spare_instances.saturating_mul(SURPLUS_FACTOR);
        let unkept = match self.guests[guest].live.as_mut() {
            Some(live) => live.exec.returned(leftover, fiber, most),
            None => Some(leftover),
        };
        if let Some(leftover) = unkept {
            self.graveyard.push(Grave::Leftover(leftover));
        }
    }

    /// Takes one kept leftover (a spare store and instance) past its guest's
    /// `Config::spare_instances`, to be dropped.
    pub fn surplus_spare(&mut self) -> Option<Leftover> {
        let keep = self.config.spare_instances;
        self.guests
            .iter_mut()
            .filter_map(|g| g.live.as_mut())
            .find_map(|live| live.exec.surplus(keep))
    }
}

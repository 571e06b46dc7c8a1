//! Spawning green threads and std threads, within the hub's and the guest's
//! limits; links.

use super::*;

impl HubState {
    // ---- the hub functions (see wit/hub.wit) ----

    /// Starts a green thread; why not, if it cannot.
    pub fn spawn(
        &mut self,
        guest: GuestKey,
        caller: ThreadKey,
        task: u32,
        stack_size: u32,
        delay: Duration,
        local: bool,
    ) -> Result<ThreadId, (SpawnRefusal, String)> {
        self.admit_green_thread(guest)?;
        self.check_spawnable(guest, stack_size)?;
        let payload = ThreadPayload {
            stack_size,
            ..ThreadPayload::default()
        };
        let spawn = Spawn { task, delay, local };
        Ok(self
            .sched
            .spawn(guest, caller, spawn, payload, Instant::now))
    }

    /// Starts a green thread for the guest's `std::thread` (wasi-threads'
    /// `thread-spawn`): it runs `wasi_thread_start(its id, arg)` on the stack
    /// and TLS the guest's `pthread_create` allocated, under the same limits
    /// as `spawn`.
    ///
    /// # Errors
    /// As `spawn`'s refusals; or the guest has no `wasi_thread_start`, or
    /// the id would not fit wasi-threads' thread ids.
    pub fn spawn_std_thread(
        &mut self,
        guest: GuestKey,
        arg: u32,
    ) -> Result<ThreadId, (SpawnRefusal, String)> {
        self.admit_green_thread(guest)?;
        let live = self.live(guest);
        if !live.exec.exports(STD_THREAD_START) {
            return Err((
                SpawnRefusal::Unsupported,
                format!("the guest does not export `{STD_THREAD_START}`"),
            ));
        }
        // wasi-threads' ids are positive and below 2^29.
        if self.sched.next_id(guest) > 0x1FFF_FFFF {
            return Err((
                SpawnRefusal::GuestFull,
                "the guest has used up wasi-threads' thread ids".into(),
            ));
        }
        let payload = ThreadPayload::default();
        Ok(self.sched.spawn_std_thread(guest, arg, payload))
    }

    /// Whether `guest` may have one more green thread: the hub's, the
    /// guest's and the host-memory limits.
    pub(super) fn admit_green_thread(&self, guest: GuestKey) -> Result<(), (SpawnRefusal, String)> {
        let max = self.config.max_green_threads;
        if !self.sched.has_room(guest, max as usize) {
            return Err((
                SpawnRefusal::HubFull,
                format!(
                    "too many green threads alive at once: the hub holds at most {max}, less \
                     what it keeps for each other guest (raise it with \
                     `wasmlet run --max-green-threads N` or Config::max_green_threads)"
                ),
            ));
        }
        let record = &self.guests[guest];
        if let Some(most) = record.options.max_green_threads {
            if self.sched.alive_in(guest) >= most as usize {
                return Err((
                    SpawnRefusal::GuestFull,
                    format!(
                        "too many green threads alive at once in this guest: it may have at \
                         most {most} (its GuestOptions::max_green_threads)"
                    ),
                ));
            }
        }
        let most = record.options.max_host_memory;
        // Refused unless it could start now: a spawn is turned down while
        // the guest's running green threads fill its limit, yet thousands
        // may wait to start, each charged a record's worth.
        if self.host_memory(guest) + self.host_bytes_per_thread(guest) > most {
            return Err((
                SpawnRefusal::HostMemory,
                format!(
                    "another green thread would pass this guest's host memory limit of {} MiB \
                     ({} green threads running, {} waiting to start, and {} links; raise it \
                     with `wasmlet run --max-host-memory MIB` or \
                     GuestOptions::max_host_memory)",
                    most >> 20,
                    self.sched.started_in(guest),
                    self.sched.alive_in(guest) - self.sched.started_in(guest),
                    self.sched.links_in(guest)
                ),
            ));
        }
        Ok(())
    }

    /// Whether `guest` can run a green thread with a shadow stack of
    /// `stack_size` (0: the default): it has the SDK's entry points, and its
    /// memory has room for one more such stack now. The stack is carved
    /// when the thread starts.
    pub(super) fn check_spawnable(
        &mut self,
        guest: GuestKey,
        stack_size: u32,
    ) -> Result<(), (SpawnRefusal, String)> {
        let size = self.stack_size_or_default(stack_size);
        let live = self.live(guest);
        if !live.layout.can_spawn {
            return Err((
                SpawnRefusal::Unsupported,
                format!(
                    "this guest cannot spawn green threads: it does not export `{RUN_EXPORT}` \
                     and `{FINISH_EXPORT}` (build it against the wasmlet guest SDK)"
                ),
            ));
        }
        live.stacks
            .check_room(size)
            .map_err(|e| (SpawnRefusal::LinearMemory, format!("{e:#}")))
    }

    /// `stack_size`, or the configured default for 0.
    pub(super) fn stack_size_or_default(&self, stack_size: u32) -> u32 {
        match stack_size {
            0 => self.config.shadow_stack_size,
            size => size,
        }
    }

    /// A stack slot for a green thread of `guest` (`stack_size` 0: the
    /// default), one that `check_spawnable` admitted.
    ///
    /// # Errors
    /// If its memory has no room for the slot.
    pub(super) fn new_thread_stack(
        &mut self,
        guest: GuestKey,
        stack_size: u32,
    ) -> Result<crate::guest::shadow_stack::StackSlot> {
        let size = self.stack_size_or_default(stack_size);
        self.live(guest).stacks.alloc(size)
    }

    /// Adds a link (see `Scheduler::link`).
    ///
    /// # Errors
    /// If the link would pass the guest's host memory limit: the guest is
    /// ended, saying so.
    pub fn link(&mut self, guest: GuestKey, target: ThreadId, callback: u32) -> Result<u64> {
        let most = self.guests[guest].options.max_host_memory;
        if self.host_memory(guest) + HOST_BYTES_PER_LINK > most {
            let what = format!(
                "host memory limit of {} MiB ({} links pending)",
                most >> 20,
                self.sched.links_in(guest)
            );
            self.end_guest(
                guest,
                GuestExit::failed(137, GuestError::LimitExceeded(what.clone())),
            );
            wasmtime::bail!("the guest exceeded its {what}");
        }
        Ok(self.sched.link(guest, target, callback))
    }
}

//! What each guest is charged (host memory, CPU time), its limits, and how a
//! guest ends.

use super::*;

impl HubState {
    /// Host memory charged to a live guest (see
    /// `GuestOptions::max_host_memory`).
    pub fn host_memory(&self, guest: GuestKey) -> u64 {
        let started = self.sched.started_in(guest) as u64;
        let unstarted = self.sched.alive_in(guest) as u64 - started;
        let links = self.sched.links_in(guest) as u64;
        started * self.host_bytes_per_thread(guest)
            + unstarted * HOST_BYTES_PER_UNSTARTED_THREAD
            + links * HOST_BYTES_PER_LINK
            + self.guests[guest].stack_bytes
            + self.guests[guest].sockets.tls_sessions() as u64 * HOST_BYTES_PER_TLS_SESSION
    }

    /// Whether the guest may hold another TLS session within its host
    /// memory limit.
    pub fn may_add_tls_session(&self, guest: GuestKey) -> bool {
        self.host_memory(guest) + HOST_BYTES_PER_TLS_SESSION
            <= self.guests[guest].options.max_host_memory
    }

    /// Host memory a started green thread of `guest` is charged: its
    /// model's figure.
    pub(super) fn host_bytes_per_thread(&self, guest: GuestKey) -> u64 {
        self.guests[guest]
            .live
            .as_ref()
            .map_or(HOST_BYTES_PER_GREEN_THREAD, |live| {
                live.exec.host_bytes_per_thread()
            })
    }

    /// What a live guest uses now; None once it has ended (or for a key
    /// that is no guest's).
    pub fn usage(&self, guest: GuestKey) -> Option<GuestUsage> {
        let record = self.guests.get(guest.0)?;
        let live = record.live.as_ref()?;
        Some(GuestUsage {
            green_threads: self.sched.alive_in(guest),
            memory: live.stacks.memory_size(),
            host_memory: self.host_memory(guest),
            spare_instances: live.exec.kept(),
            descriptors: record.held_descriptors() as u32,
            cpu_time: record.cpu_time(),
        })
    }

    /// Charges a step's `cycles` (see `crate::guest::cpu_clock`) to the guest's CPU
    /// time, and ends it if that passes its limit.
    pub fn charge_cpu(&mut self, guest: GuestKey, cycles: u64) {
        let record = &mut self.guests[guest];
        record.cpu_cycles = record.cpu_cycles.saturating_add(cycles);
        if let Some(limit) = record.options.max_cpu_time {
            if record.cpu_time() > limit && self.sched.is_live(guest) {
                let what = format!("CPU time limit of {:.3} s", limit.as_secs_f64());
                self.end_guest(
                    guest,
                    GuestExit::failed(137, GuestError::LimitExceeded(what)),
                );
            }
        }
    }

    /// Ends the guest if none of its green threads can ever run again (a
    /// plugin's can: the host may call it).
    pub fn check_deadlock(&mut self, guest: GuestKey) {
        if self.guests[guest].plugin {
            return;
        }
        if let Some(report) = self.sched.deadlock(guest) {
            self.end_guest(guest, GuestExit::failed(1, GuestError::Deadlock(report)));
        }
    }

    /// Ends a live guest as deadlocked, whatever its state.
    pub fn end_blocked(&mut self, guest: GuestKey) {
        let report = self.sched.blocked_report(guest);
        self.end_guest(guest, GuestExit::failed(1, GuestError::Deadlock(report)));
    }

    pub fn end_guest(&mut self, guest: GuestKey, exit: GuestExit) {
        for payload in self.sched.end_guest(guest) {
            if let Some(call) = payload.future {
                self.graveyard.push(Grave::Call(call));
            }
        }
        if let Some(live) = self.guests[guest].live.take() {
            // After its calls: the kept stores, then the WASI context they
            // point at (see `LiveGuest`).
            self.graveyard.push(Grave::Guest(Box::new(live)));
        }
        // Its sockets close: each leaves the poller first.
        let sockets = std::mem::take(&mut self.guests[guest].sockets);
        for fd in sockets.raw_fds() {
            self.forget_descriptor(fd);
        }
        drop(sockets);
        let record = &mut self.guests[guest];
        // Its files close with its WASI context, on the reaper: given back
        // now, as its sockets are.
        record.opened.clear();
        record.descriptors.release();
        if record.unlogged_refusals > 0 {
            tracing::warn!(
                "{} more green threads of this guest were stopped the same way",
                record.unlogged_refusals
            );
            record.unlogged_refusals = 0;
        }
        let cpu_time = record.cpu_time();
        let exit = record
            .exit
            .get_or_insert(GuestExit { cpu_time, ..exit })
            .clone();
        // Closed to calls before its calls are answered: a caller that
        // hears `GuestEnded` and calls again must be refused at once (and
        // start a fresh instance, as `wasmlet serve` does), not have its
        // call taken and then answered `GuestEnded` too.
        self.control.guest_ended(GuestId(guest));
        let ended: Vec<_> = self
            .calls
            .keys()
            .filter(|k| k.0 == guest)
            .copied()
            .collect();
        for key in ended {
            if let Some(call) = self.calls.remove(&key) {
                call.reply
                    .finish(Err(CallError::GuestEnded(Some(exit.clone()))));
            }
        }
    }

    /// Ends every guest whose time limit has passed; the next time limit
    /// still to come.
    pub fn enforce_time_limits(&mut self) -> Option<Instant> {
        if self.time_limits.is_empty() {
            return None;
        }
        let now = Instant::now();
        while let Some(Reverse((when, guest, limit))) = self.time_limits.peek().copied() {
            if when > now {
                return Some(when);
            }
            self.time_limits.pop();
            if self.sched.is_live(guest) {
                let what = format!("time limit of {:.3} s", limit.as_secs_f64());
                self.end_guest(
                    guest,
                    GuestExit::failed(137, GuestError::LimitExceeded(what)),
                );
            }
        }
        None
    }
}

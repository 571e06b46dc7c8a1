//! The host's calls of plugin functions: each starts a green thread of the
//! plugin, and can be cancelled.

use super::*;

impl HubState {
    /// Starts a call of the plugin `guest`'s function `name` with `input`,
    /// as a new green thread; the caller's handle.
    ///
    /// # Errors
    /// If the guest is not a live plugin, has as many calls in flight as it
    /// may ([`CallError::Busy`]), or cannot start a green thread.
    pub fn start_call(
        &mut self,
        guest: GuestKey,
        name: String,
        input: Vec<u8>,
    ) -> Result<PendingCall, CallError> {
        if !self.sched.is_live(guest) || !self.guests.get(guest.0).is_some_and(|g| g.plugin) {
            let exit = self.guests.get(guest.0).and_then(|g| g.exit.clone());
            return Err(CallError::GuestEnded(exit));
        }
        self.control.reserve_call(GuestId(guest), false)?;
        let reply = std::sync::Arc::new(CallReply::default());
        let pending = PendingCall {
            reply: reply.clone(),
            hub: self.control.clone(),
        };
        self.start_call_into(guest, name, input, reply)?;
        Ok(pending)
    }

    /// [`HubState::start_call`] with the caller's reply cell, its room in flight
    /// already reserved (given back if the call cannot start).
    pub fn start_call_into(
        &mut self,
        guest: GuestKey,
        name: String,
        input: Vec<u8>,
        reply: std::sync::Arc<CallReply>,
    ) -> Result<(), CallError> {
        if !self.sched.is_live(guest) || !self.guests.get(guest.0).is_some_and(|g| g.plugin) {
            self.control.release_call(GuestId(guest));
            let exit = self.guests.get(guest.0).and_then(|g| g.exit.clone());
            return Err(CallError::GuestEnded(exit));
        }
        let stack = self
            .check_spawnable(guest, 0)
            .map_err(|(_, why)| why)
            .and_then(|()| {
                self.new_thread_stack(guest, 0)
                    .map_err(|e| format!("{e:#}"))
            });
        let stack = match stack {
            Ok(stack) => stack,
            Err(why) => {
                self.control.release_call(GuestId(guest));
                return Err(CallError::Refused(why));
            }
        };
        let payload = ThreadPayload {
            stack: Some(stack),
            ..ThreadPayload::default()
        };
        let id = self.sched.spawn_for_host(guest, payload);
        self.calls.insert(
            (guest, id),
            CallRecord {
                name,
                input: Some(input),
                outcome: None,
                trap: None,
                reply,
            },
        );
        Ok(())
    }

    /// Kills the green threads of calls their callers cancelled.
    pub fn cancel_calls(&mut self) {
        let cancelled: Vec<(GuestKey, ThreadId)> = self
            .calls
            .iter()
            .filter(|(_, call)| call.reply.is_cancelled())
            .map(|(&key, _)| key)
            .collect();
        for (guest, id) in cancelled {
            if !self.sched.is_live(guest) {
                continue;
            }
            if let Kill::Target(key) = self.sched.kill_by_host(guest, id) {
                self.drop_call(guest, key);
            }
        }
    }

    /// Runs `f` on the call the green thread runs for the host (its name,
    /// input and outcome).
    ///
    /// # Errors
    /// If the green thread runs no host call (the guest asked for one that
    /// is not its own: its green thread traps), or as `f`.
    pub fn with_own_call<R>(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        f: impl FnOnce(&mut HubState, &mut CallRecord) -> Result<R>,
    ) -> Result<R> {
        let id = self.sched.current(guest, thread);
        let mut call = self.calls.remove(&(guest, id)).ok_or_else(|| {
            wasmtime::format_err!("only a green thread the host started for a call may ask for it")
        })?;
        let result = f(self, &mut call);
        self.calls.insert((guest, id), call);
        result
    }

    /// The task a host call's green thread runs (given at `call-begin`),
    /// which its ending hands back to the guest.
    pub fn set_task(&mut self, guest: GuestKey, thread: ThreadKey, task: u32) {
        self.sched.set_task(guest, thread, task);
    }
}

//! The hub waits host functions ask for: sleep, join, park, futexes, kill; and
//! guest memory.

use super::*;

impl HubState {
    pub fn sleep(&mut self, guest: GuestKey, thread: ThreadKey, duration: Duration) {
        self.sched.sleep(guest, thread, duration, Instant::now);
    }

    /// Called by every hub function that would wait, before it waits:
    /// true if the caller is unwinding from a kill (see the scheduler's
    /// rules), so the call must answer at once, reporting the kill.
    ///
    /// # Errors
    /// Once the caller has made more blocking calls after its kill than it
    /// may: it ignores the kill, and the error ends it hard.
    pub fn unwinding_call(&mut self, guest: GuestKey, thread: ThreadKey) -> Result<bool> {
        self.sched.unwinding_call(guest, thread).map_err(|_| {
            wasmtime::format_err!(
                "{} was killed and went on making blocking calls ({UNWIND_CALLS} after the \
                 kill): ended",
                self.sched.name_of(guest, thread)
            )
        })
    }

    /// `sleep` for a hub function: false (and no wait) if the caller is
    /// unwinding from a kill.
    ///
    /// # Errors
    /// As [`HubState::unwinding_call`].
    pub fn sleep_unless_killed(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        duration: Duration,
    ) -> Result<bool> {
        if self.unwinding_call(guest, thread)? {
            return Ok(false);
        }
        self.sleep(guest, thread, duration);
        Ok(true)
    }

    /// Writes `bytes` into the guest's memory at `at`; false if out of
    /// bounds.
    pub fn write_guest_memory(&mut self, guest: GuestKey, at: u32, bytes: &[u8]) -> bool {
        self.live(guest).stacks.write_checked(at, bytes)
    }

    /// Reads `len` bytes of the guest's memory at `at`; None if out of
    /// bounds.
    pub fn read_guest_memory(&mut self, guest: GuestKey, at: u32, len: usize) -> Option<Vec<u8>> {
        self.live(guest).stacks.read_checked(at, len)
    }

    pub fn kill(
        &mut self,
        guest: GuestKey,
        caller: ThreadKey,
        target: ThreadId,
        error: u32,
        only_unstarted: bool,
    ) -> Result<(KillStatus, bool)> {
        // A caller unwinding from a kill does not wait for its target
        // either.
        let mut caller_yields = !self.unwinding_call(guest, caller)?;
        let status = match self
            .sched
            .kill(guest, caller, target, error, only_unstarted)
        {
            Kill::Done(status) => status,
            Kill::Caller => {
                caller_yields = false;
                KillStatus::Killed
            }
            Kill::Unwind => KillStatus::Killed,
            Kill::Target(key) => {
                self.drop_call(guest, key);
                KillStatus::Killed
            }
            Kill::Main => {
                self.end_guest(guest, GuestExit::failed(1, GuestError::MainKilled));
                KillStatus::Killed
            }
        };
        Ok((status, caller_yields))
    }

    /// `join`: `Some(status)` if the caller need not wait (a caller
    /// unwinding from a kill never waits: `timed-out`).
    ///
    /// # Errors
    /// As [`HubState::unwinding_call`].
    pub fn join(
        &mut self,
        guest: GuestKey,
        caller: ThreadKey,
        target: ThreadId,
        timeout: Option<Duration>,
    ) -> Result<Option<JoinStatus>> {
        if self.unwinding_call(guest, caller)? {
            return Ok(Some(JoinStatus::TimedOut));
        }
        Ok(self
            .sched
            .join(guest, caller, target, timeout, Instant::now))
    }

    /// A futex wait (what `memory.atomic.wait32/64` becomes): `Some(result)`
    /// if the caller need not wait.
    ///
    /// A caller unwinding from a kill never waits: it is woken at once (a
    /// spurious wake-up, which std's loops check for).
    ///
    /// # Errors
    /// The trap the instruction would raise: an unaligned or out-of-bounds
    /// address; or as [`HubState::unwinding_call`].
    pub fn futex_wait(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        address: u64,
        expected: u64,
        width: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<u32>> {
        if self.live(guest).stacks.load_atomic(address, width)? != expected {
            return Ok(Some(FUTEX_NOT_EQUAL));
        }
        if self.unwinding_call(guest, thread)? {
            return Ok(Some(FUTEX_WOKEN));
        }
        Ok(self
            .sched
            .futex_wait(guest, thread, address, timeout, Instant::now))
    }

    /// Wakes up to `count` futex waiters on `address`.
    ///
    /// # Errors
    /// The trap `memory.atomic.notify` would raise.
    pub fn futex_notify(
        &mut self,
        guest: GuestKey,
        address: u64,
        count: u32,
    ) -> Result<u32, wasmtime::Trap> {
        self.live(guest).stacks.check_atomic(address, 4)?;
        Ok(self.sched.futex_notify(guest, address, count))
    }

    /// `park`: `Some(result)` if the caller need not wait (a caller
    /// unwinding from a kill never waits: `false`).
    ///
    /// # Errors
    /// As [`HubState::unwinding_call`].
    pub fn park(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        timeout: Option<Duration>,
    ) -> Result<Option<bool>> {
        if self.unwinding_call(guest, thread)? {
            return Ok(Some(false));
        }
        Ok(self.sched.park(guest, thread, timeout, Instant::now))
    }
}

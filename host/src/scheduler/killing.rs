//! Kill: of another green thread, of the caller itself, of main, by the host;
//! and the unwinding that follows.

use super::*;

impl<P> Scheduler<P> {
    pub fn current(&self, guest: GuestKey, thread: ThreadKey) -> ThreadId {
        self.guest_ref(guest).threads[thread].id
    }

    /// Kills `target` (with `only_unstarted`: only if it has not started).
    /// The caller yields when it kills (it is queued behind the target),
    /// unless it is itself unwinding from a kill: it never waits again.
    pub fn kill(
        &mut self,
        guest: GuestKey,
        caller: ThreadKey,
        target: ThreadId,
        error: u32,
        only_unstarted: bool,
    ) -> Kill {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return Kill::Done(KillStatus::NotAlive);
        };
        let is_main = key == g.main;
        let caller_yields = !g.threads[caller].life.is_unwinding();
        let t = &mut g.threads[key];
        if !t.life.killable() || t.std_thread {
            return Kill::Done(KillStatus::NotAlive);
        }
        if only_unstarted && (t.life.started() || is_main) {
            return Kill::Done(KillStatus::AlreadyStarted);
        }
        if is_main {
            // Main killed, by itself too: the guest ends (as a program
            // whose main thread raised GreenletExit), and with it everything
            // its green threads held.
            return Kill::Main;
        }
        if key == caller {
            t.life = Life::Unwinding(Unwinding {
                error,
                calls_left: UNWIND_CALLS,
                spinning: false,
            });
            return Kill::Caller;
        }
        let kill = self.kill_target(guest, key, error);
        if caller_yields {
            self.make_runnable(guest, caller, false);
        }
        kill
    }

    /// Kills the started or unstarted green thread `key` (not main, not
    /// ending): unwinding if it has started (a paused one reports the kill
    /// from its next blocking call), hard if it has not, or if it waits for
    /// an async host function's future (which cannot report it). It runs
    /// next (a queued target keeps its place, which is ahead of the caller).
    pub(super) fn kill_target(&mut self, guest: GuestKey, key: ThreadKey, error: u32) -> Kill {
        let t = &mut self.guest(guest).threads[key];
        let kill = match t.life {
            Life::Running { paused } if t.state != State::Future => {
                t.life = Life::Unwinding(Unwinding {
                    error,
                    calls_left: UNWIND_CALLS,
                    spinning: paused,
                });
                Kill::Unwind
            }
            _ => {
                t.life.end(Ending::Killed, error);
                Kill::Target(key)
            }
        };
        self.make_runnable(guest, key, true);
        kill
    }

    /// True if `target` has started its task or has ended (main has always
    /// started); false while it waits to start, or if it never was.
    pub fn started(&self, guest: GuestKey, target: ThreadId) -> bool {
        let g = self.guest_ref(guest);
        match g.key_of(target) {
            Some(key) => key == g.main || g.threads[key].life.started(),
            None => target != 0 && target < g.next_id,
        }
    }

    /// True once the green thread has been killed and is unwinding: its
    /// waits report the kill.
    pub fn is_unwinding(&self, guest: GuestKey, thread: ThreadKey) -> bool {
        self.guest_ref(guest).threads[thread].life.is_unwinding()
    }

    /// Called by every hub function that would wait, before it records the
    /// wait: `Ok(true)` if the caller is unwinding from a kill, so the call
    /// must answer at once (reporting the kill) instead of waiting.
    ///
    /// # Errors
    /// [`KeptBlocking`] once an unwinding caller has made more than
    /// [`UNWIND_CALLS`] such calls: the hub ends it hard.
    pub fn unwinding_call(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
    ) -> Result<bool, KeptBlocking> {
        match self.guest(guest).threads[thread].life.unwinding() {
            None => Ok(false),
            Some(Unwinding { calls_left: 0, .. }) => Err(KeptBlocking),
            Some(u) => {
                u.calls_left -= 1;
                u.spinning = false;
                Ok(true)
            }
        }
    }

    /// Kills `target` for the host (no green thread asks): as `kill`, but
    /// only the target is queued.
    pub fn kill_by_host(&mut self, guest: GuestKey, target: ThreadId) -> Kill {
        let g = self.guest(guest);
        let Some(key) = g.key_of(target) else {
            return Kill::Done(KillStatus::NotAlive);
        };
        if key == g.main {
            return Kill::Main;
        }
        let t = &g.threads[key];
        if !t.life.killable() || t.std_thread {
            return Kill::Done(KillStatus::NotAlive);
        }
        self.kill_target(guest, key, 0)
    }
}

//! What host functions ask of the hub's state without changing it much: a
//! green thread's id, whether it started or is unwinding, the result a wait
//! left, a guest's sockets and policy. Host functions ask here; they never
//! reach into the scheduler or the guest records themselves.

use super::*;

impl HubState {
    /// The calling green thread's id (the hub's `current`).
    pub fn current(&self, guest: GuestKey, thread: ThreadKey) -> ThreadId {
        self.sched.current(guest, thread)
    }

    /// How messages name the green thread.
    pub fn thread_name(&self, guest: GuestKey, thread: ThreadKey) -> String {
        self.sched.name_of(guest, thread)
    }

    /// Whether `target` has started its task or has ended (`started`).
    pub fn started(&self, guest: GuestKey, target: ThreadId) -> bool {
        self.sched.started(guest, target)
    }

    /// Whether the green thread was killed and is returning through its
    /// frames: its waits report the kill.
    pub fn is_unwinding(&self, guest: GuestKey, thread: ThreadKey) -> bool {
        self.sched.is_unwinding(guest, thread)
    }

    /// How the caller's `join` of `target` ended (after its wait).
    pub fn join_result(&self, guest: GuestKey, thread: ThreadKey, target: ThreadId) -> JoinStatus {
        self.sched.join_result(guest, thread, target)
    }

    /// Whether the caller's last park ended by an unpark (not its timer).
    pub fn park_result(&self, guest: GuestKey, thread: ThreadKey) -> bool {
        self.sched.park_result(guest, thread)
    }

    /// How the caller's last futex wait ended: woken, timed out, or not
    /// waited (the value differed).
    pub fn futex_result(&self, guest: GuestKey, thread: ThreadKey) -> u32 {
        self.sched.futex_result(guest, thread)
    }

    /// Unparks `target` (or leaves it a permit); true if it was parked.
    pub fn unpark(&mut self, guest: GuestKey, target: ThreadId) -> bool {
        self.sched.unpark(guest, target)
    }

    /// Removes link `link` of `target`: its callback if it was pending, else
    /// 0.
    pub fn unlink(&mut self, guest: GuestKey, target: ThreadId, link: u64) -> u32 {
        self.sched.unlink(guest, target, link)
    }

    /// The ending green thread's next link to run (its callback), or 0.
    pub fn next_link(&mut self, guest: GuestKey, thread: ThreadKey) -> u32 {
        self.sched.next_link(guest, thread)
    }

    /// Why the guest's latest `try-spawn` that returned 0 refused.
    pub fn last_refusal(&self, guest: GuestKey) -> SpawnRefusal {
        self.guests[guest].last_refusal
    }

    /// Records why a `try-spawn` of the guest was refused.
    pub fn note_refusal(&mut self, guest: GuestKey, refusal: SpawnRefusal) {
        self.guests[guest].last_refusal = refusal;
    }

    /// The most bytes the guest's host call may return (its
    /// `GuestOptions::max_output`).
    pub fn max_output(&self, guest: GuestKey) -> usize {
        self.guests[guest].options.max_output
    }

    /// The guest's sockets.
    pub fn sockets(&mut self, guest: GuestKey) -> &mut Sockets {
        &mut self.guests[guest].sockets
    }

    /// What the guest may reach on the network.
    pub fn net_policy(&mut self, guest: GuestKey) -> &mut NetPolicy {
        &mut self.guests[guest].net
    }

    /// The TLS the host terminates for the guest.
    pub fn tls_options(&self, guest: GuestKey) -> &crate::io::tls::TlsOptions {
        &self.guests[guest].options.tls
    }

    /// Whose the guest's name lookups are, on the resolver threads.
    pub fn lookup_owner(&self, guest: GuestKey) -> crate::io::resolver::Owner {
        self.guests[guest].lookup_owner
    }

    /// The host descriptor behind the guest's `fd`, if it is one of the
    /// host's own streams.
    pub fn host_stream(&self, guest: GuestKey, fd: u32) -> Option<std::os::fd::RawFd> {
        self.guests[guest].host_stdio.host_fd(fd)
    }

    /// Who wakes the green thread when what it waits for outside the hub
    /// (an embedder's future) is ready: its current wait.
    pub fn next_waiter(&self, guest: GuestKey, thread: ThreadKey) -> IoWaiter {
        self.sched.next_waiter(guest, thread)
    }

    /// The green thread waits for an embedder's future (woken through a
    /// waker made of [`HubState::next_waiter`] and [`HubState::control`]).
    pub fn wait_for_future(&mut self, guest: GuestKey, thread: ThreadKey) {
        self.sched.future_wait(guest, thread);
    }

    /// Where handles' commands, and wakes from other threads, arrive.
    pub fn control(&self) -> std::sync::Arc<Control> {
        self.control.clone()
    }
}

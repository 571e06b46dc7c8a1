//! Spawning: green threads, the host's calls, std threads, and a plugin's main
//! returning.

use super::*;

impl<P> Scheduler<P> {
    // ---- the hub functions (see wit/hub.wit) ----

    /// Starts a green thread as `spawn` says; `caller` is the spawner.
    pub fn spawn(
        &mut self,
        guest: GuestKey,
        caller: ThreadKey,
        spawn: Spawn,
        payload: P,
        now: impl FnOnce() -> Instant,
    ) -> ThreadId {
        let spawner = spawn.local.then(|| self.guest(guest).threads[caller].id);
        self.start_thread(guest, spawner, spawn, payload, now)
    }

    /// Starts a green thread for the host (a call of a guest function): no
    /// green thread spawned it. Its task is 0 until the guest names one
    /// ([`Scheduler::set_task`]).
    pub fn spawn_for_host(&mut self, guest: GuestKey, payload: P) -> ThreadId {
        let spawn = Spawn {
            task: 0,
            delay: Duration::ZERO,
            local: false,
        };
        self.start_thread(guest, None, spawn, payload, Instant::now)
    }

    /// Starts a green thread for the guest's `std::thread` (see
    /// [`TaskCall::StdThread`]), queued as `spawn` queues; `arg` is
    /// wasi-libc's start argument.
    pub fn spawn_std_thread(&mut self, guest: GuestKey, arg: u32, payload: P) -> ThreadId {
        let spawn = Spawn {
            task: arg,
            delay: Duration::ZERO,
            local: false,
        };
        let id = self.start_thread(guest, None, spawn, payload, Instant::now);
        let g = self.guest(guest);
        let key = g.key_of(id).expect("just started");
        g.threads[key].std_thread = true;
        id
    }

    /// True if the green thread is a `std::thread` of the guest.
    pub fn is_std_thread(&self, guest: GuestKey, thread: ThreadKey) -> bool {
        self.guest_ref(guest).threads[thread].std_thread
    }

    /// The id the next green thread of the guest will get.
    pub fn next_id(&self, guest: GuestKey) -> ThreadId {
        self.guest_ref(guest).next_id
    }

    /// Sets the task a green thread's ending is handed (see
    /// [`Scheduler::spawn_for_host`]).
    pub fn set_task(&mut self, guest: GuestKey, thread: ThreadKey, task: u32) {
        self.guest(guest).threads[thread].task = task;
    }

    pub(super) fn start_thread(
        &mut self,
        guest: GuestKey,
        spawner: Option<ThreadId>,
        spawn: Spawn,
        payload: P,
        now: impl FnOnce() -> Instant,
    ) -> ThreadId {
        let Spawn { task, delay, .. } = spawn;
        let g = self.guest(guest);
        let state = if delay.is_zero() {
            State::Queued
        } else {
            State::Delayed
        };
        let key = insert(g, task, state, payload);
        if g.threads.len() <= self.guarantee {
            self.reserved -= 1;
        }
        let g = self.guest(guest);
        g.threads[key].spawner = spawner;
        let id = g.threads[key].id;
        // Room for a timer each, made here: growing the heap when thousands
        // of green threads sleep at once would stall the hub. (The run queue
        // and the id map grow without a pause: see `RunQueue`, `ThreadIds`.)
        if delay.is_zero() {
            self.enqueue(guest, key, false);
        } else {
            self.add_timer(guest, key, now, delay);
        }
        self.alive += 1;
        self.timers.reserve_total(self.alive);
        id
    }

    /// The guest's main green thread returned and the guest lives on (a
    /// plugin, whose green threads are the host's calls): main goes, and no
    /// later green thread counts as main.
    pub fn main_returned(&mut self, guest: GuestKey) -> P {
        let main = self.guest(guest).main;
        let payload = self.remove(guest, main);
        self.guest(guest).main = ThreadKey(usize::MAX);
        payload
    }
}

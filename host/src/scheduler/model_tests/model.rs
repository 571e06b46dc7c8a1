//! The model: eventlet's semantics, plainly, without wasm or keys.

use std::collections::VecDeque;

use super::*;

/// eventlet's semantics, plainly.
#[derive(Default)]
pub(super) struct Model {
    /// Every green thread ever spawned; index = id - 1.
    threads: Vec<M>,
    queue: VecDeque<ThreadId>,
    /// (deadline, order set, thread): exactly the pending waits' timers.
    timers: Vec<(u64, u64, ThreadId)>,
    seq: u64,
    /// (order joined, joiner, target).
    joins: Vec<(u64, ThreadId, ThreadId)>,
    next_link: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MState {
    Queued,
    Running,
    Sleeping,
    Delayed,
    Joining,
    Parked,
    Dead,
}

struct M {
    state: MState,
    ending: Option<Ending>,
    started: bool,
    /// Killed while it ran: how many more blocking calls it may make.
    unwinding: Option<u32>,
    links: Vec<(u64, u32)>,
    permit: bool,
    unparked: bool,
    spawner: Option<ThreadId>,
}

impl Model {
    pub(super) fn new() -> Model {
        let mut m = Model {
            next_link: 1,
            ..Model::default()
        };
        m.add(MState::Queued, None);
        m.queue.push_back(1);
        m
    }
    fn add(&mut self, state: MState, spawner: Option<ThreadId>) -> ThreadId {
        self.threads.push(M {
            state,
            ending: None,
            started: false,
            unwinding: None,
            links: Vec::new(),
            permit: false,
            unparked: false,
            spawner,
        });
        self.threads.len() as ThreadId
    }
    fn t(&mut self, id: ThreadId) -> &mut M {
        &mut self.threads[id as usize - 1]
    }
    fn alive(&self, id: ThreadId) -> bool {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.threads.get(i))
            .is_some_and(|t| t.state != MState::Dead)
    }
    fn timer(&mut self, id: ThreadId, now: u64, ticks: u64) {
        self.seq += 1;
        self.timers.push((now + ticks, self.seq, id));
    }
    fn stop_waiting(&mut self, id: ThreadId) {
        self.timers.retain(|t| t.2 != id);
        self.joins.retain(|j| j.1 != id);
    }
    fn wake(&mut self, id: ThreadId, front: bool) {
        if self.t(id).state == MState::Queued {
            return;
        }
        self.stop_waiting(id);
        self.t(id).state = MState::Queued;
        if front {
            self.queue.push_front(id);
        } else {
            self.queue.push_back(id);
        }
    }
}

impl Sched for Model {
    fn next(&mut self, now: u64) -> Option<(ThreadId, Entry)> {
        self.timers.sort();
        while let Some(&(deadline, _, id)) = self.timers.first() {
            if deadline > now {
                break;
            }
            if self.t(id).state == MState::Parked {
                self.t(id).unparked = false;
            }
            self.wake(id, false);
        }
        let id = self.queue.pop_front()?;
        let spawner_gone = self.t(id).spawner.is_some_and(|s| !self.alive(s));
        let t = self.t(id);
        t.state = MState::Running;
        if id == 1 {
            return Some((id, Entry::Main));
        }
        if !t.started && t.ending.is_none() && spawner_gone {
            t.ending = Some(Ending::Cancelled);
        }
        let entry = match t.ending {
            Some(how) => TaskCall::Finish {
                task: 9,
                how,
                error: 0,
            },
            None => {
                t.started = true;
                TaskCall::Run { task: 9 }
            }
        };
        Some((id, Entry::Task(entry)))
    }
    fn spawn(&mut self, caller: ThreadId, delay: u64, local: bool, now: u64) -> ThreadId {
        let state = if delay == 0 {
            MState::Queued
        } else {
            MState::Delayed
        };
        let id = self.add(state, local.then_some(caller));
        if delay == 0 {
            self.queue.push_back(id);
        } else {
            self.timer(id, now, delay);
        }
        id
    }
    fn sleep(&mut self, t: ThreadId, ticks: u64, now: u64) {
        if ticks == 0 {
            self.wake(t, false);
        } else {
            self.t(t).state = MState::Sleeping;
            self.timer(t, now, ticks);
        }
    }
    fn kill(&mut self, caller: ThreadId, target: ThreadId, cancel: bool) -> Kill {
        if !self.alive(target)
            || self.t(target).ending.is_some()
            || self.t(target).unwinding.is_some()
        {
            return Kill::Done(KillStatus::NotAlive);
        }
        if cancel && (self.t(target).started || target == 1) {
            return Kill::Done(KillStatus::AlreadyStarted);
        }
        if target == 1 {
            return Kill::Main;
        }
        if target == caller {
            // eventlet raises GreenletExit in place: it goes on, unwinding.
            self.t(target).unwinding = Some(UNWIND_CALLS);
            return Kill::Caller;
        }
        // A started thread (the model never preempts) unwinds; one that has
        // not started never runs.
        let kill = if self.t(target).started {
            self.t(target).unwinding = Some(UNWIND_CALLS);
            Kill::Unwind
        } else {
            self.t(target).ending = Some(Ending::Killed);
            Kill::Target(ThreadKey(0))
        };
        self.wake(target, true);
        if self.t(caller).unwinding.is_none() {
            self.wake(caller, false);
        }
        kill
    }
    fn suspended(&mut self, _: ThreadId) -> Suspension {
        // The model never preempts, so no runaway is ever dropped.
        Suspension::Keep
    }
    fn join(
        &mut self,
        caller: ThreadId,
        target: ThreadId,
        timeout: Option<u64>,
        now: u64,
    ) -> Option<JoinStatus> {
        if !self.alive(target) {
            return Some(JoinStatus::Ended);
        }
        if target == caller {
            return Some(JoinStatus::IsSelf);
        }
        if timeout == Some(0) {
            return Some(JoinStatus::TimedOut);
        }
        self.seq += 1;
        self.joins.push((self.seq, caller, target));
        self.t(caller).state = MState::Joining;
        if let Some(ticks) = timeout {
            self.timer(caller, now, ticks);
        }
        None
    }
    fn join_result(&mut self, caller: ThreadId, target: ThreadId) -> JoinStatus {
        if self.alive(target) || self.t(caller).unwinding.is_some() {
            JoinStatus::TimedOut
        } else {
            JoinStatus::Ended
        }
    }
    fn link(&mut self, target: ThreadId, cb: u32) -> u64 {
        if !self.alive(target) {
            return 0;
        }
        let id = self.next_link;
        self.next_link += 1;
        self.t(target).links.push((id, cb));
        id
    }
    fn unlink(&mut self, target: ThreadId, link: u64) -> u32 {
        if !self.alive(target) {
            return 0;
        }
        let links = &mut self.t(target).links;
        match links.iter().position(|l| l.0 == link) {
            Some(at) => links.remove(at).1,
            None => 0,
        }
    }
    fn next_link(&mut self, t: ThreadId) -> u32 {
        let links = &mut self.t(t).links;
        if links.is_empty() {
            0
        } else {
            links.remove(0).1
        }
    }
    fn park(&mut self, t: ThreadId, timeout: Option<u64>, now: u64) -> Option<bool> {
        if std::mem::take(&mut self.t(t).permit) {
            return Some(true);
        }
        if timeout == Some(0) {
            return Some(false);
        }
        self.t(t).unparked = false;
        self.t(t).state = MState::Parked;
        if let Some(ticks) = timeout {
            self.timer(t, now, ticks);
        }
        None
    }
    fn park_result(&mut self, t: ThreadId) -> bool {
        self.t(t).unparked && self.t(t).unwinding.is_none()
    }
    fn unpark(&mut self, target: ThreadId) -> bool {
        if !self.alive(target) {
            return false;
        }
        if self.t(target).state == MState::Parked {
            self.t(target).unparked = true;
            self.wake(target, false);
            return true;
        }
        if self.t(target).ending.is_some() || self.t(target).unwinding.is_some() {
            return false;
        }
        self.t(target).permit = true;
        true
    }
    fn ended(&mut self, t: ThreadId) -> bool {
        if self.t(t).unwinding.is_some() && self.t(t).ending.is_none() {
            self.t(t).ending = Some(Ending::Killed);
            self.wake(t, true);
            return false;
        }
        self.stop_waiting(t);
        self.t(t).state = MState::Dead;
        let mut joiners: Vec<_> = self.joins.iter().filter(|j| j.2 == t).copied().collect();
        joiners.sort();
        for (_, joiner, _) in joiners {
            self.wake(joiner, false);
        }
        true
    }
    fn trapped(&mut self, t: ThreadId) {
        // A thread that fails while it unwinds ends as killed.
        let how = if self.t(t).unwinding.is_some() {
            Ending::Killed
        } else {
            Ending::TrapOther
        };
        self.t(t).ending = Some(how);
        self.wake(t, true);
    }
    fn unwinding_call(&mut self, t: ThreadId) -> Result<bool, KeptBlocking> {
        match &mut self.t(t).unwinding {
            None => Ok(false),
            Some(0) => Err(KeptBlocking),
            Some(left) => {
                *left -= 1;
                Ok(true)
            }
        }
    }
    fn killed(&mut self, t: ThreadId) -> bool {
        self.t(t).unwinding.is_some()
    }
    fn deadlocked(&mut self) -> bool {
        self.queue.is_empty() && self.timers.is_empty()
    }
    fn next_deadline(&mut self) -> Option<u64> {
        self.timers.iter().map(|t| t.0).min()
    }
}

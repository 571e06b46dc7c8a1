//! A property test: random programs of green threads (spawn, sleep, kill,
//! cancel, join, link, unlink, park, unpark, return, trap, with timers expiring as
//! time jumps, and killed threads unwinding through their next calls) run against the [`Scheduler`] and against [`Model`], a small
//! executable model of eventlet's semantics written for clarity, not speed
//! (threads by id in a list, eager timer removal, linear scans). The same
//! observable events must come out in the same order: which green thread
//! runs and with what entry, what each hub call returns, links in order,
//! deadlock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

mod model;
use model::Model;

/// The one guest of the property test.
const G: GuestKey = GuestKey(0);

/// One step of a green thread's program, taken each time it runs.
#[derive(Clone, Debug)]
enum Op {
    Return,
    Trap,
    Sleep(u64),
    Spawn { delay: u64, local: bool },
    Kill { target: usize, cancel: bool },
    Join { target: usize, timeout: Option<u64> },
    Link { target: usize },
    Unlink { link: usize },
    Park { timeout: Option<u64> },
    Unpark { target: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let ticks = 0u64..4;
    let timeout = proptest::option::of(0u64..4);
    prop_oneof![
        1 => Just(Op::Return),
        1 => Just(Op::Trap),
        2 => ticks.clone().prop_map(Op::Sleep),
        3 => (ticks, any::<bool>()).prop_map(|(delay, local)| Op::Spawn { delay, local }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(target, cancel)| Op::Kill { target, cancel }),
        2 => (any::<usize>(), timeout.clone()).prop_map(|(target, timeout)| Op::Join { target, timeout }),
        1 => any::<usize>().prop_map(|target| Op::Link { target }),
        1 => any::<usize>().prop_map(|link| Op::Unlink { link }),
        2 => timeout.prop_map(|timeout| Op::Park { timeout }),
        2 => any::<usize>().prop_map(|target| Op::Unpark { target }),
    ]
}

/// What both implementations offer, by thread id; time in ticks (ms).
trait Sched {
    fn next(&mut self, now: u64) -> Option<(ThreadId, Entry)>;
    fn spawn(&mut self, caller: ThreadId, delay: u64, local: bool, now: u64) -> ThreadId;
    fn sleep(&mut self, t: ThreadId, ticks: u64, now: u64);
    fn kill(&mut self, caller: ThreadId, target: ThreadId, cancel: bool) -> Kill;
    fn suspended(&mut self, t: ThreadId) -> Suspension;
    fn join(
        &mut self,
        caller: ThreadId,
        target: ThreadId,
        timeout: Option<u64>,
        now: u64,
    ) -> Option<JoinStatus>;
    fn join_result(&mut self, caller: ThreadId, target: ThreadId) -> JoinStatus;
    fn link(&mut self, target: ThreadId, cb: u32) -> u64;
    fn unlink(&mut self, target: ThreadId, link: u64) -> u32;
    fn next_link(&mut self, t: ThreadId) -> u32;
    fn park(&mut self, t: ThreadId, timeout: Option<u64>, now: u64) -> Option<bool>;
    fn park_result(&mut self, t: ThreadId) -> bool;
    fn unpark(&mut self, target: ThreadId) -> bool;
    /// The thread's call returned: false if its ending runs next (it was
    /// killed and unwound).
    fn ended(&mut self, t: ThreadId) -> bool;
    /// The thread's call trapped: its ending runs next.
    fn trapped(&mut self, t: ThreadId);
    /// A call that would wait: `Ok(true)` if the thread is unwinding from a
    /// kill and the call answers at once.
    fn unwinding_call(&mut self, t: ThreadId) -> Result<bool, KeptBlocking>;
    fn killed(&mut self, t: ThreadId) -> bool;
    fn deadlocked(&mut self) -> bool;
    fn next_deadline(&mut self) -> Option<u64>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Runs(ThreadId, Entry),
    Spawned(ThreadId),
    Kill(Kill),
    Join(Option<JoinStatus>),
    JoinResult(JoinStatus),
    Linked(bool),
    Unlinked(u32),
    LinkRuns(ThreadId, u32),
    Park(Option<bool>),
    ParkResult(bool),
    Unpark(bool),
    GuestEnds,
    Deadlock,
    /// A thread resumed from a wait, killed or not.
    Resumed(ThreadId, bool),
    /// A call of an unwinding thread answered at once.
    AnsweredKilled(ThreadId),
    /// An unwinding thread made one blocking call too many.
    KeptBlocking(ThreadId),
    /// A thread's call returned; false if its ending runs next.
    Ended(ThreadId, bool),
}

enum Pending {
    Yield,
    Sleep,
    Join(ThreadId),
    Park,
}

/// Runs `program` (the ops each green thread takes, one per run, in the
/// order threads run) and returns the events.
fn drive(s: &mut dyn Sched, program: &[Op]) -> Vec<Event> {
    let mut log = Vec::new();
    let mut ops = program.iter().cloned();
    let mut pending: HashMap<ThreadId, Pending> = HashMap::new();
    let mut ids: Vec<ThreadId> = vec![1];
    let mut links: Vec<(ThreadId, u64)> = Vec::new();
    let mut now = 0;
    let mut next_cb = 1;
    for _ in 0..400 {
        let Some((id, entry)) = s.next(now) else {
            if s.deadlocked() {
                log.push(Event::Deadlock);
                break;
            }
            match s.next_deadline() {
                Some(deadline) => {
                    now = now.max(deadline);
                    continue;
                }
                None => break,
            }
        };
        log.push(Event::Runs(id, entry));
        let finish = |s: &mut dyn Sched, log: &mut Vec<Event>| loop {
            let cb = s.next_link(id);
            log.push(Event::LinkRuns(id, cb));
            if cb == 0 {
                let gone = s.ended(id);
                log.push(Event::Ended(id, gone));
                break;
            }
        };
        if let Entry::Task(TaskCall::Finish { .. }) = entry {
            pending.remove(&id);
            finish(s, &mut log);
            continue;
        }
        if let Some(wait) = pending.remove(&id) {
            log.push(Event::Resumed(id, s.killed(id)));
            match wait {
                Pending::Join(target) => log.push(Event::JoinResult(s.join_result(id, target))),
                Pending::Park => log.push(Event::ParkResult(s.park_result(id))),
                Pending::Yield | Pending::Sleep => {}
            }
        }
        let pick = |ids: &[ThreadId], i: usize| ids[i % ids.len()];
        // A call that would wait: an unwinding thread's answers at once
        // (the thread goes on to its next op), or ends it hard.
        enum Call {
            Waits,
            Answered,
            Ended,
        }
        let would_wait = |s: &mut dyn Sched, log: &mut Vec<Event>| match s.unwinding_call(id) {
            Ok(false) => Call::Waits,
            Ok(true) => {
                log.push(Event::AnsweredKilled(id));
                Call::Answered
            }
            Err(KeptBlocking) => {
                log.push(Event::KeptBlocking(id));
                s.trapped(id);
                Call::Ended
            }
        };
        let mut guest_ends = false;
        let suspends = loop {
            let op = ops.next().unwrap_or(Op::Return);
            // The yield that follows an op that does not wait itself.
            let yield_now = |s: &mut dyn Sched, log: &mut Vec<Event>| match would_wait(s, log) {
                Call::Waits => {
                    s.sleep(id, 0, now);
                    Some(Some(Pending::Yield))
                }
                Call::Answered => None,
                Call::Ended => Some(None),
            };
            let step: Option<Option<Pending>> = match op {
                Op::Return => {
                    if id == 1 {
                        guest_ends = true;
                        Some(None)
                    } else if s.killed(id) {
                        // The SDK leaves the ending to the hub.
                        let gone = s.ended(id);
                        log.push(Event::Ended(id, gone));
                        Some(None)
                    } else {
                        finish(s, &mut log);
                        Some(None)
                    }
                }
                Op::Trap => {
                    if id == 1 {
                        guest_ends = true;
                    } else {
                        s.trapped(id);
                    }
                    Some(None)
                }
                Op::Sleep(ticks) => match would_wait(s, &mut log) {
                    Call::Waits => {
                        s.sleep(id, ticks, now);
                        Some(Some(Pending::Sleep))
                    }
                    Call::Answered => None,
                    Call::Ended => Some(None),
                },
                Op::Spawn { delay, local } => {
                    let new = s.spawn(id, delay, local, now);
                    ids.push(new);
                    log.push(Event::Spawned(new));
                    yield_now(s, &mut log)
                }
                Op::Kill { target, cancel } => {
                    let target = pick(&ids, target);
                    match would_wait(s, &mut log) {
                        Call::Ended => Some(None),
                        call => {
                            let kill = s.kill(id, target, cancel);
                            log.push(Event::Kill(kill));
                            let yields = matches!(call, Call::Waits);
                            match kill {
                                Kill::Main => {
                                    guest_ends = true;
                                    Some(None)
                                }
                                Kill::Target(_) | Kill::Unwind if yields => {
                                    if let Kill::Target(_) = kill {
                                        pending.remove(&target);
                                    }
                                    Some(Some(Pending::Yield))
                                }
                                Kill::Target(_) => {
                                    pending.remove(&target);
                                    None
                                }
                                // It killed itself: it goes on, unwinding.
                                Kill::Caller => None,
                                Kill::Unwind | Kill::Done(_) if !yields => None,
                                Kill::Unwind | Kill::Done(_) => {
                                    s.sleep(id, 0, now);
                                    Some(Some(Pending::Yield))
                                }
                            }
                        }
                    }
                }
                Op::Join { target, timeout } => {
                    let target = pick(&ids, target);
                    match would_wait(s, &mut log) {
                        Call::Waits => {
                            let now_status = s.join(id, target, timeout, now);
                            log.push(Event::Join(now_status));
                            if now_status.is_some() {
                                s.sleep(id, 0, now);
                                Some(Some(Pending::Yield))
                            } else {
                                Some(Some(Pending::Join(target)))
                            }
                        }
                        Call::Answered => None,
                        Call::Ended => Some(None),
                    }
                }
                Op::Link { target } => {
                    let target = pick(&ids, target);
                    let link = s.link(target, next_cb);
                    next_cb += 1;
                    log.push(Event::Linked(link != 0));
                    if link != 0 {
                        links.push((target, link));
                    }
                    yield_now(s, &mut log)
                }
                Op::Unlink { link } => {
                    if !links.is_empty() {
                        let (target, link) = links[link % links.len()];
                        log.push(Event::Unlinked(s.unlink(target, link)));
                    }
                    yield_now(s, &mut log)
                }
                Op::Park { timeout } => match would_wait(s, &mut log) {
                    Call::Waits => {
                        let at_once = s.park(id, timeout, now);
                        log.push(Event::Park(at_once));
                        if at_once.is_some() {
                            s.sleep(id, 0, now);
                            Some(Some(Pending::Yield))
                        } else {
                            Some(Some(Pending::Park))
                        }
                    }
                    Call::Answered => None,
                    Call::Ended => Some(None),
                },
                Op::Unpark { target } => {
                    log.push(Event::Unpark(s.unpark(pick(&ids, target))));
                    yield_now(s, &mut log)
                }
            };
            if let Some(step) = step {
                break step;
            }
        };
        if guest_ends {
            log.push(Event::GuestEnds);
            break;
        }
        let Some(suspends) = suspends else { continue };
        match s.suspended(id) {
            Suspension::Keep => {
                pending.insert(id, suspends);
            }
            Suspension::Drop => {}
        }
    }
    log
}

/// The real scheduler, addressed by id.
struct Real {
    s: Scheduler<()>,
    base: Instant,
}

impl Real {
    fn key(&self, id: ThreadId) -> ThreadKey {
        self.s.guests[0]
            .as_ref()
            .unwrap()
            .key_of(id)
            .expect("a live thread")
    }
    fn at(&self, now: u64) -> Instant {
        self.base + Duration::from_millis(now)
    }
}

impl Sched for Real {
    fn next(&mut self, now: u64) -> Option<(ThreadId, Entry)> {
        self.s.debug_check();
        self.s.fire_due_timers(self.at(now));
        let (_, key) = self.s.next_runnable()?;
        Some((self.s.current(G, key), self.s.start(G, key)))
    }
    fn spawn(&mut self, caller: ThreadId, delay: u64, local: bool, now: u64) -> ThreadId {
        let spawn = Spawn {
            task: 9,
            delay: Duration::from_millis(delay),
            local,
        };
        let (key, at) = (self.key(caller), self.at(now));
        self.s.spawn(G, key, spawn, (), move || at)
    }
    fn sleep(&mut self, t: ThreadId, ticks: u64, now: u64) {
        let (key, at) = (self.key(t), self.at(now));
        self.s
            .sleep(G, key, Duration::from_millis(ticks), move || at)
    }
    fn kill(&mut self, caller: ThreadId, target: ThreadId, cancel: bool) -> Kill {
        let key = self.key(caller);
        self.s.kill(G, key, target, 0, cancel)
    }
    fn suspended(&mut self, t: ThreadId) -> Suspension {
        let key = self.key(t);
        self.s.suspended(G, key, || self.base)
    }
    fn join(
        &mut self,
        caller: ThreadId,
        target: ThreadId,
        timeout: Option<u64>,
        now: u64,
    ) -> Option<JoinStatus> {
        let (key, at) = (self.key(caller), self.at(now));
        self.s.join(
            G,
            key,
            target,
            timeout.map(Duration::from_millis),
            move || at,
        )
    }
    fn join_result(&mut self, caller: ThreadId, target: ThreadId) -> JoinStatus {
        let key = self.key(caller);
        self.s.join_result(G, key, target)
    }
    fn link(&mut self, target: ThreadId, cb: u32) -> u64 {
        self.s.link(G, target, cb)
    }
    fn unlink(&mut self, target: ThreadId, link: u64) -> u32 {
        self.s.unlink(G, target, link)
    }
    fn next_link(&mut self, t: ThreadId) -> u32 {
        let key = self.key(t);
        self.s.next_link(G, key)
    }
    fn park(&mut self, t: ThreadId, timeout: Option<u64>, now: u64) -> Option<bool> {
        let (key, at) = (self.key(t), self.at(now));
        self.s
            .park(G, key, timeout.map(Duration::from_millis), move || at)
    }
    fn park_result(&mut self, t: ThreadId) -> bool {
        let key = self.key(t);
        self.s.park_result(G, key)
    }
    fn unpark(&mut self, target: ThreadId) -> bool {
        self.s.unpark(G, target)
    }
    fn ended(&mut self, t: ThreadId) -> bool {
        let key = self.key(t);
        self.s.ended(G, key, None).is_some()
    }
    fn trapped(&mut self, t: ThreadId) {
        let key = self.key(t);
        assert!(self.s.ended(G, key, Some(Ending::TrapOther)).is_none());
    }
    fn unwinding_call(&mut self, t: ThreadId) -> Result<bool, KeptBlocking> {
        let key = self.key(t);
        self.s.unwinding_call(G, key)
    }
    fn killed(&mut self, t: ThreadId) -> bool {
        let key = self.key(t);
        self.s.is_unwinding(G, key)
    }
    fn deadlocked(&mut self) -> bool {
        self.s.deadlock(G).is_some()
    }
    fn next_deadline(&mut self) -> Option<u64> {
        let deadline = self.s.next_deadline()?;
        Some((deadline - self.base).as_millis() as u64)
    }
}

/// `Kill::Target` carries a key, which the model has no notion of.
fn comparable(mut log: Vec<Event>) -> Vec<Event> {
    for event in &mut log {
        if let Event::Kill(Kill::Target(key)) = event {
            *key = ThreadKey(0);
        }
    }
    log
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_scheduler_behaves_like_the_model(program in proptest::collection::vec(op(), 0..120)) {
        let mut real = Real { s: Scheduler::default(), base: Instant::now() };
        real.s.add_guest(());
        let mut model = Model::new();
        let real_log = comparable(drive(&mut real, &program));
        let model_log = drive(&mut model, &program);
        prop_assert_eq!(real_log, model_log);
    }
}

//! eventlet's `hub.schedule_call_global` / `schedule_call_local`: a function
//! called once a delay has passed, without a green thread of its own.
//!
//! A pending [`spawn_after`](crate::spawn_after) is a whole green thread
//! (its instance, stack and slot under the thread limit) for all the time it
//! waits. A scheduled call is an entry in one guest-wide table, ordered by
//! deadline; one green thread, the *runner*, sleeps until the earliest
//! deadline and makes the calls that are due, one after another, on its own
//! stack. The runner exists only while calls are pending, and a runner that
//! ends early (a call panicked, or it was killed) hands the rest to a new
//! one.
//!
//! As in eventlet, where these functions run in the hub, a call should not
//! block: while it waits, the calls due after it wait too.
//!
//! One consequence of running on a green thread rather than in the hub: a
//! `Queue::get_nowait` in a call does not take a blocked putter's item,
//! where eventlet's (called from its hub) does. Call
//! `get_timeout(Duration::ZERO)` there instead: it takes that item without
//! waiting.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::abi::wasmlet::runtime::hub;
use crate::greenthread::{getcurrent, spawn_n, Thread};
use crate::timeout::nanos;

/// When a call is due, and its place among calls due at the same instant.
type Key = (Instant, u64);

struct Call {
    f: Box<dyn FnOnce()>,
    /// `schedule_call_local`: the green thread that must still be alive.
    owner: Option<Thread>,
}

#[derive(Default)]
struct Table {
    calls: BTreeMap<Key, Call>,
    next_seq: u64,
    /// The green thread making the calls, while there is one.
    runner: Option<Thread>,
    /// The deadline the runner sleeps until (None: it is not asleep).
    runner_wakes: Option<Instant>,
}

/// The guest's one table of scheduled calls.
///
/// A `static` rather than a thread-local: thread-locals are per green
/// thread, and the calls are the guest's.
struct GuestWide(RefCell<Option<Table>>);

// SAFETY: a guest's green threads all run on one OS thread of the host, one
// at a time, switching only inside hub calls; no borrow of the table spans
// a hub call that yields (every borrow below ends before the runner parks,
// spawns or makes a call), so two borrows never overlap.
unsafe impl Sync for GuestWide {}

static TABLE: GuestWide = GuestWide(RefCell::new(None));

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    f(TABLE.0.borrow_mut().get_or_insert_with(Table::default))
}

/// A call scheduled by [`schedule_call_global`] or [`schedule_call_local`]:
/// its handle, through which it can be cancelled before it is made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ScheduledCall {
    key: Key,
}

impl fmt::Debug for ScheduledCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduledCall")
            .field("pending", &self.pending())
            .finish()
    }
}

impl ScheduledCall {
    /// Cancels the call; true if it was still pending (so it will never be
    /// made).
    pub fn cancel(&self) -> bool {
        let removed = with_table(|t| t.calls.remove(&self.key));
        // Dropped outside the borrow: its captures' `Drop` may schedule.
        removed.is_some()
    }

    /// True until the call is made or cancelled.
    pub fn pending(&self) -> bool {
        with_table(|t| t.calls.contains_key(&self.key))
    }
}

/// Calls `f` once `delay` has passed, whether or not the caller is alive
/// then: eventlet's `hub.schedule_call_global`. No green thread is spawned
/// for it; it costs an entry in a table. `f` runs on the guest's call
/// runner, and should not block (see the module docs).
///
/// ```no_run
/// use std::time::Duration;
///
/// let reminder = wasmlet::schedule_call_global(Duration::from_millis(10), || {
///     println!("10 ms later");
/// });
/// assert!(reminder.pending());
/// ```
pub fn schedule_call_global(delay: Duration, f: impl FnOnce() + 'static) -> ScheduledCall {
    schedule(delay, Box::new(f), None)
}

/// [`schedule_call_global`], but the call is not made if the calling green
/// thread has ended by then: eventlet's `hub.schedule_call_local`.
pub fn schedule_call_local(delay: Duration, f: impl FnOnce() + 'static) -> ScheduledCall {
    schedule(delay, Box::new(f), Some(getcurrent()))
}

fn schedule(delay: Duration, f: Box<dyn FnOnce()>, owner: Option<Thread>) -> ScheduledCall {
    let now = Instant::now();
    let due = now.checked_add(delay).unwrap_or(now + FAR_FUTURE);
    let (key, wake, start) = with_table(|t| {
        let key = (due, t.next_seq);
        t.next_seq += 1;
        t.calls.insert(key, Call { f, owner });
        match t.runner {
            None => (key, None, true),
            // Asleep past this deadline: woken to sleep less.
            Some(runner) if t.runner_wakes.is_some_and(|w| due < w) => (key, Some(runner), false),
            Some(_) => (key, None, false),
        }
    });
    if start {
        start_runner();
    }
    if let Some(runner) = wake {
        hub::unpark(runner.id());
    }
    ScheduledCall { key }
}

/// About 30,000 years: a deadline that never comes.
const FAR_FUTURE: Duration = Duration::from_secs(1 << 40);

fn start_runner() {
    let runner = spawn_n(run_calls);
    with_table(|t| t.runner = Some(runner));
    // However the runner ends, the calls left get a new one.
    runner.link(|me| {
        let left = with_table(|t| {
            if t.runner != Some(me) {
                return false;
            }
            t.runner = None;
            t.runner_wakes = None;
            !t.calls.is_empty()
        });
        if left {
            start_runner();
        }
    });
}

/// The runner: makes each call when it is due; ends when none is left.
fn run_calls() {
    loop {
        let now = Instant::now();
        let next = with_table(|t| {
            let Some((&key, _)) = t.calls.first_key_value() else {
                t.runner = None;
                t.runner_wakes = None;
                return None;
            };
            if key.0 <= now {
                t.runner_wakes = None;
                return Some(Ok(t.calls.remove(&key).expect("just seen")));
            }
            t.runner_wakes = Some(key.0);
            Some(Err(key.0))
        });
        match next {
            None => return,
            Some(Ok(call)) => {
                if call.owner.is_none_or(|owner| !owner.dead()) {
                    (call.f)();
                }
            }
            Some(Err(due)) => {
                let unparked = hub::park(nanos(due.saturating_duration_since(now)));
                if !unparked && hub::killed() {
                    // Its link hands the calls left to a new runner.
                    return;
                }
            }
        }
    }
}

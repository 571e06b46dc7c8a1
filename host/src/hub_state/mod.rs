//! The hub's state, shared by the run loop ([`Hub`](crate::Hub)) and the
//! host functions its green threads call: the [`Scheduler`] with each green
//! thread's call and stack, each guest's wasm side, and what is to be dropped
//! once the current green thread is off its fiber.
//!
//! Host functions reach it through [`with`]: `Hub::run` enters its state for
//! its whole duration (a thread-local pointer), and host functions run only
//! inside it, on the hub's thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use wasmtime::{Result, StoreContextMut, UpdateDeadline};

use crate::abi::{JoinStatus, KillStatus, SpawnRefusal, ThreadId};
use crate::call::{CallError, CallRecord, CallReply, PendingCall};
use crate::config::Config;
use crate::control::Control;
use crate::execution::ending::{Facts, Verdict};
use crate::execution::lifecycle::{new_call, CallEnd, LiveGuest, ThreadPayload};
use crate::execution::stack_charge::StackUse;
use crate::execution::{Leftover, Preempt, ThreadFuture, STD_THREAD_START};
use crate::guest::program::{FINISH_EXPORT, RUN_EXPORT};
use crate::guest::store_data::ThreadData;
use crate::guest::GuestId;
use crate::guest::{
    CapturedOutput, GuestError, GuestExit, GuestUsage, HOST_BYTES_PER_GREEN_THREAD,
    HOST_BYTES_PER_LINK, HOST_BYTES_PER_TLS_SESSION, HOST_BYTES_PER_UNSTARTED_THREAD,
};
use crate::io::descriptor_budget::{DescriptorBudget, DescriptorShare};
use crate::io::net_policy::NetPolicy;
use crate::io::net_sockets::{NetError, Sockets};
use crate::io::poller::{Interest, Poller};
use crate::io::stdio::HostStdio;
use crate::scheduler::{
    Entry, GuestKey, IoWaiter, Kill, Scheduler, Spawn, Suspension, TaskCall, ThreadKey,
    FUTEX_NOT_EQUAL, FUTEX_WOKEN, UNWIND_CALLS,
};

mod answers;
mod calls;
mod context;
mod descriptors;
mod guest_record;
mod limits;
mod spawning;
mod thread_life;
mod turns;
mod waits;

pub(crate) use crate::execution::reaper::{bury, Grave};
pub(crate) use context::{scoped, with};
pub(crate) use guest_record::GuestRecord;

/// How many times `Config::spare_instances` a guest may hold between two
/// idle moments of the hub; past that, the worker of an ended green thread is
/// dropped at once.
const SURPLUS_FACTOR: usize = 16;

/// The state of one hub. Its fields are its own: host functions and the
/// hub's run loop ask through methods, by job (the files of this module).
pub(crate) struct HubState {
    config: Config,
    sched: Scheduler<ThreadPayload>,
    guests: Vec<GuestRecord>,
    /// What to drop once the current green thread is off its fiber (see
    /// `crate::execution::reaper`); the hub takes it after each change.
    graveyard: Vec<Grave>,
    /// Guests' time limits: (when, guest, the limit as given), earliest
    /// first.
    time_limits: BinaryHeap<Reverse<(Instant, GuestKey, Duration)>>,
    /// Green threads waiting for host descriptors; made at the first wait.
    poller: Option<Poller<IoWaiter>>,
    /// Where handles' commands arrive (to wake the poller for them).
    control: std::sync::Arc<Control>,
    /// Calls of guest functions by the host, by guest and green thread id.
    calls: rustc_hash::FxHashMap<(GuestKey, ThreadId), CallRecord>,
    /// The runtime's count of epoch ticks, the tick the current step began
    /// at, and the ticks in a time slice (see `crate::execution::preemption`).
    ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    step_tick: u64,
    slice_ticks: u64,
}

/// What a running store does at each epoch tick (see `crate::execution::preemption`):
/// pause, so that other guests run, once its slice is up or another guest's
/// timer is due; else go on to the next tick.
///
/// # Errors
/// Never: a hub it cannot reach (its guest ended) pauses it.
fn at_tick(store: StoreContextMut<'_, ThreadData>) -> Result<UpdateDeadline> {
    let guest = store.data().guest;
    let pause = with(guest, |state| state.should_pause(guest)).unwrap_or(true);
    Ok(if pause {
        UpdateDeadline::Yield(1)
    } else {
        UpdateDeadline::Continue(1)
    })
}

impl HubState {
    /// What was left to drop since the last call.
    pub fn take_graves(&mut self) -> Vec<Grave> {
        std::mem::take(&mut self.graveyard)
    }

    /// Whether the green thread of `guest` now running is to be paused at
    /// this tick (see `crate::execution::preemption`).
    fn should_pause(&self, guest: GuestKey) -> bool {
        let ticks_run = self.ticks.load(std::sync::atomic::Ordering::Relaxed) - self.step_tick;
        let due = self.sched.foreign_timer_due(guest, Instant::now());
        crate::execution::preemption::pause(ticks_run, self.slice_ticks, due)
    }

    /// A step begins at the runtime's tick `tick`: the running green thread's
    /// slice is counted from there.
    pub fn step_begins(&mut self, tick: u64) {
        self.step_tick = tick;
    }

    pub fn new(
        config: Config,
        control: std::sync::Arc<Control>,
        ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> HubState {
        HubState {
            sched: Scheduler::with_bound(config.max_green_threads as usize),
            slice_ticks: config
                .time_slice
                .map_or(u64::MAX, crate::execution::preemption::ticks_per_slice),
            ticks,
            step_tick: 0,
            config,
            guests: Vec::new(),
            graveyard: Vec::new(),
            time_limits: BinaryHeap::new(),
            poller: None,
            control,
            calls: Default::default(),
        }
    }

    pub(super) fn live(&mut self, guest: GuestKey) -> &mut LiveGuest {
        self.guests[guest]
            .live
            .as_mut()
            .expect("a guest's green threads run only while it is live")
    }
}

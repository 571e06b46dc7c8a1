//! The run loop: obey the handles, fire due timers, step the next green
//! thread, check the poller, and sleep until the next timer when idle.

use super::*;

/// How close to the next timer the hub stops dropping surplus spare workers:
/// only a real lull is used, not the gaps between close timers.
const IDLE_MARGIN: Duration = Duration::from_millis(1);

/// Gaps between timers shorter than this are spun through, not slept.
const SPIN_BELOW: Duration = Duration::from_micros(100);

/// Before it parks with nothing to do, the hub watches this long for a
/// command (a call, a wake from a future) from another thread: one that
/// comes meanwhile is taken at once, without the wake-up of a parked
/// thread, which costs tens of microseconds where the idle CPU halts (a
/// VM's vCPU exits to the hypervisor). The price: an idle hub burns this
/// much CPU each time it goes idle.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// While green threads are runnable and others wait for host descriptors,
/// the poller is asked (without waiting) at least this often.
const IO_CHECK_EVERY: Duration = Duration::from_micros(500);

impl Hub {
    /// The run loop, until `until`; whether it ran a green thread.
    pub(super) fn drive(&mut self, until: Until) -> bool {
        // The kernel may wake a sleeping thread up to its timer slack (50 µs
        // by default) late; the hub's sleeps are its timers, so ask for 1 µs.
        // Only a hint: without it timers are just later.
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
        let state = self.state.clone();
        hub_state::scoped(&state, || self.drive_in_context(until))
    }

    /// [`Hub::drive`], with the hub's state reachable by host functions.
    pub(super) fn drive_in_context(&mut self, until: Until) -> bool {
        let mut next_io_check = Instant::now();
        let mut stepped = false;
        loop {
            if self.obey_handles() {
                self.with(|state| {
                    state.end_all(|| {
                        let why = GuestError::Killed("the hub shut down".into());
                        GuestExit::failed(137, why)
                    })
                });
                if until == Until::Shutdown {
                    return stepped;
                }
            }
            let next_limit = self.with(HubState::enforce_time_limits);
            let next = self.with(HubState::next_to_run);
            match next {
                Some((guest, thread)) => {
                    self.step(guest, thread);
                    stepped = true;
                    self.with(|state| {
                        if state.io_waiting(false) {
                            let now = Instant::now();
                            if now >= next_io_check {
                                state.poll_io(Some(Duration::ZERO));
                                next_io_check = now + IO_CHECK_EVERY;
                            }
                        }
                    });
                    match until {
                        Until::OneStep => return true,
                        Until::Deadline(d) if Instant::now() >= d => return true,
                        _ => {}
                    }
                }
                None => {
                    if matches!(until, Until::Idle | Until::OneStep) {
                        // Ready I/O is work to do now.
                        if self.with(|state| state.io_waiting(true)) {
                            self.with(|state| state.poll_io(Some(Duration::ZERO)));
                            if self.with(|state| state.has_runnable()) {
                                continue;
                            }
                        }
                        return stepped;
                    }
                    let timer = self.with(|state| state.next_deadline());
                    // A time limit wakes the hub only while its guest waits
                    // on a timer; a guest waiting on nothing has deadlocked.
                    let mut deadline = match (timer, next_limit) {
                        (Some(t), Some(l)) => Some(t.min(l)),
                        (t, _) => t,
                    };
                    if let Until::Deadline(d) = until {
                        let ended = self.with(|state| state.all_ended());
                        if ended || Instant::now() >= d {
                            return stepped;
                        }
                        deadline = Some(deadline.map_or(d, |t| t.min(d)));
                    }
                    // Idle until the next timer: first drop surplus spare
                    // workers while there is time.
                    self.drop_surplus_spares(deadline);
                    if self.with(|state| state.io_waiting(true)) {
                        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                        self.with(|state| state.poll_io(timeout));
                        next_io_check = Instant::now() + IO_CHECK_EVERY;
                        continue;
                    }
                    let idle_for = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if idle_for.is_none_or(|gap| gap >= SPIN_BELOW)
                        && self.control.spin_for_attention(SPIN_BEFORE_PARK)
                    {
                        continue;
                    }
                    match deadline {
                        Some(deadline) => wait_until(deadline),
                        // Plugins live on: wait for the handles' calls; and
                        // a future may wake its green thread from anywhere.
                        None if until == Until::Shutdown
                            || self.with(|state| state.may_be_woken_from_outside()) =>
                        {
                            std::thread::park()
                        }
                        None => break,
                    }
                }
            }
        }
        // Anything left is blocked with nothing to wake it.
        self.with(HubState::end_all_blocked);
        stepped
    }

    /// Carries out what handles on other threads asked for; true if one
    /// asked the hub to shut down.
    pub(super) fn obey_handles(&mut self) -> bool {
        if !self.control.take_attention() {
            return false;
        }
        let mut shutdown = false;
        let woken = self.control.take_woken();
        if !woken.is_empty() {
            self.with(|state| {
                woken.into_iter().for_each(|w| state.woken(w));
            });
        }
        if self.control.take_cancels() {
            self.with(|state| {
                state.cancel_calls();
            });
        }
        for command in self.control.take() {
            match command {
                Command::Kill { guest, reason } => self.kill_guest(guest, reason),
                Command::Usage { guest, reply } => {
                    // The asker may have given up waiting.
                    let _ = reply.send(self.usage(guest));
                }
                Command::Call {
                    guest,
                    function,
                    input,
                    reply,
                } => {
                    let started = self.with(|state| {
                        state.start_call_into(guest.0, function, input, reply.clone())
                    });
                    if let Err(error) = started {
                        reply.finish(Err(error));
                    }
                }
                Command::Add {
                    program,
                    options,
                    plugin,
                    reply,
                } => {
                    let added = if plugin {
                        self.add_plugin(&program, *options)
                    } else {
                        self.add_guest(&program, *options)
                    };
                    let _ = reply.send(added);
                }
                Command::Shutdown => shutdown = true,
                Command::Report { reply } => {
                    let _ = reply.send(self.report());
                }
            }
        }
        shutdown
    }

    /// Drops surplus spare workers, one at a time, until `deadline` is near.
    pub(super) fn drop_surplus_spares(&mut self, deadline: Option<Instant>) {
        loop {
            if deadline.is_some_and(|d| Instant::now() + IDLE_MARGIN >= d) {
                return;
            }
            let Some(worker) = self.with(HubState::surplus_spare) else {
                return;
            };
            drop(worker);
        }
    }

    /// Polls one green thread until it suspends or ends.
    pub(super) fn step(&mut self, guest: GuestKey, thread: ThreadKey) {
        let before = self.ticks.load(std::sync::atomic::Ordering::Relaxed);
        let call = self.with(|state| {
            state.step_begins(before);
            state.take_call(guest, thread)
        });
        let mut call = match call {
            Ok(call) => call,
            Err(error) => {
                self.with(|state| {
                    state.call_ended(guest, thread, Err(error));
                });
                return;
            }
        };
        // The guest is charged for the step (see `crate::guest::cpu_clock`), and
        // for the fiber stack its store runs on (`crate::execution::stack_charge`).
        fiber_stack::take_handed_out();
        let began = cpu_clock::cycles();
        let poll = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        let spent = cpu_clock::between(began, cpu_clock::cycles());
        let handed_out = fiber_stack::take_handed_out();
        let mut call = Some(call);
        self.with(|state| {
            state.stepped(guest, thread, handed_out);
            match poll {
                Poll::Pending => {
                    if let Some(call) = call.take() {
                        state.suspended(guest, thread, call);
                    }
                }
                Poll::Ready((result, leftover)) => {
                    if let Some(leftover) = leftover {
                        state.returned(guest, thread, leftover);
                    }
                    state.call_ended(guest, thread, result);
                }
            }
            state.check_deadlock(guest);
            state.charge_cpu(guest, spent);
        });
        // A call that returned unwinds nothing: dropped here, at once.
        drop(call);
    }
}

/// How long [`Hub::drive`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Until {
    /// Every guest has ended (`run`).
    AllEnded,
    /// A handle asked the hub to shut down (`serve`).
    Shutdown,
    /// No green thread is runnable now.
    Idle,
    /// This time has come, or every guest has ended.
    Deadline(Instant),
    /// One green thread has run (or none could).
    OneStep,
}

/// Blocks the hub's thread until `deadline`. A gap shorter than
/// [`SPIN_BELOW`] is spun through: a sleep costs the process several
/// microseconds of kernel time (more in a VM, where arming a timer exits to
/// the hypervisor), and with thousands of timers due within milliseconds
/// those sleeps alone would outweigh the green threads' work.
fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    if deadline - now >= SPIN_BELOW {
        // A handle's command unparks the hub early (see `control`).
        std::thread::park_timeout(deadline - now);
        return;
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

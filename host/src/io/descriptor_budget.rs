//! The process's descriptors, shared between the guests that run in it.
//!
//! eventlet and Go let a server hold as many descriptors as the process
//! may (Go raises `RLIMIT_NOFILE`'s soft limit to its hard limit when it
//! starts), and a server written for them expects to. wasmlet does the same
//! for every guest together ([`DescriptorBudget::process`] raises the limit
//! once), but one guest must not take them all from its neighbours. So:
//!
//! - every guest is *guaranteed* [`GUARANTEED`] descriptors (fewer if its
//!   own cap is lower): while it holds fewer, an open is never refused for
//!   another guest's sake;
//! - past its guarantee a guest takes from the *free room*: the process's
//!   limit, less what the host keeps for itself ([`host_reserve`]), less
//!   what every guest holds, less every guest's unused guarantee (at most
//!   half the room all told: a thousand plugins' guarantees would otherwise
//!   leave no guest more than its own 256);
//! - and never past its own cap (`GuestOptions::max_descriptors`).
//!
//! A guest that opens and holds thousands of sockets thus gets what the
//! machine allows while it is alone, and a neighbour started after it can
//! still open its guaranteed 256. Counts are per process (all runtimes and
//! hubs share one budget), kept under a mutex: opens are system calls
//! anyway, and this adds one uncontended lock to each.
//!
//! The count of what a guest holds is the hub's (its sockets and the files
//! it opened); the hub reports it after every change
//! ([`DescriptorShare::update`]).

use std::sync::{Arc, Mutex, OnceLock};

/// Descriptors each guest may always open, whatever its neighbours hold
/// (fewer if its own cap is lower): the old fixed per-guest default.
pub const GUARANTEED: usize = 256;

/// The process-wide counts.
#[derive(Debug)]
struct Counts {
    /// What guests may hold together: the process's limit less the host's
    /// reserve.
    room: usize,
    /// What all guests hold.
    held: usize,
    /// The sum over live guests of the part of their guarantee they do not
    /// hold: kept free for them.
    unused_guarantees: usize,
}

/// The descriptors the guests of this process may hold together.
#[derive(Debug)]
pub struct DescriptorBudget {
    counts: Mutex<Counts>,
}

/// Why a guest may not open another descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It holds as many as its own cap allows (`max_descriptors`).
    OwnCap,
    /// Past its guarantee, and the free room is gone: the rest is held or
    /// guaranteed to other guests, or kept for the host.
    NoRoom,
}

/// What the host keeps of a process limit of `limit` for itself (its
/// poller, its standard streams, the embedder's files): an eighth, between
/// 64 and 1,024.
pub fn host_reserve(limit: usize) -> usize {
    (limit / 8).clamp(64, 1024)
}

impl DescriptorBudget {
    /// The process's budget, made on first use: `RLIMIT_NOFILE`'s soft limit
    /// is raised to its hard limit (as Go does at start), and the guests may
    /// hold that, less [`host_reserve`].
    pub fn process() -> &'static Arc<DescriptorBudget> {
        static BUDGET: OnceLock<Arc<DescriptorBudget>> = OnceLock::new();
        BUDGET.get_or_init(|| {
            let limit = raise_descriptor_limit();
            DescriptorBudget::with_room(limit.saturating_sub(host_reserve(limit)))
        })
    }

    /// A budget of `room` descriptors for all guests together.
    pub fn with_room(room: usize) -> Arc<DescriptorBudget> {
        Arc::new(DescriptorBudget {
            counts: Mutex::new(Counts {
                room,
                held: 0,
                unused_guarantees: 0,
            }),
        })
    }

    /// What all guests may hold together.
    #[cfg(test)]
    pub fn room(&self) -> usize {
        self.lock().room
    }

    /// A new guest's share, capped at `cap` descriptors of its own: its
    /// guarantee is set aside at once.
    pub fn share(self: &Arc<Self>, cap: usize) -> DescriptorShare {
        let guaranteed = cap.min(GUARANTEED);
        self.lock().unused_guarantees += guaranteed;
        DescriptorShare {
            budget: self.clone(),
            cap,
            guaranteed,
            counted: 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts are plain numbers, consistent after every update: a
        // panic elsewhere while the lock was held leaves nothing half done.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One guest's part of a [`DescriptorBudget`]. Dropping it gives back all
/// it held and its guarantee.
#[derive(Debug)]
pub struct DescriptorShare {
    budget: Arc<DescriptorBudget>,
    cap: usize,
    guaranteed: usize,
    /// What it held at its last update.
    counted: usize,
}

impl DescriptorShare {
    /// Whether the guest, which holds `held` descriptors now, may open
    /// one more.
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn may_open(&mut self, held: usize) -> Result<(), Refusal> {
        if held >= self.cap {
            return Err(Refusal::OwnCap);
        }
        if held < self.guaranteed {
            return Ok(());
        }
        let mut counts = self.budget.lock();
        account(&mut counts, self.guaranteed, &mut self.counted, held);
        let set_aside = counts.unused_guarantees.min(counts.room / 2);
        if counts.held + set_aside < counts.room {
            Ok(())
        } else {
            Err(Refusal::NoRoom)
        }
    }

    /// The guest has ended: what it held and its guarantee go back to the
    /// others at once (its record, and this share, live on for its exit's
    /// sake).
    pub fn release(&mut self) {
        let mut counts = self.budget.lock();
        account(&mut counts, self.guaranteed, &mut self.counted, 0);
        counts.unused_guarantees -= self.guaranteed;
        self.guaranteed = 0;
        self.cap = 0;
    }

    /// The guest holds `held` descriptors now (after an open or a close).
    pub fn update(&mut self, held: usize) {
        let mut counts = self.budget.lock();
        account(&mut counts, self.guaranteed, &mut self.counted, held);
    }
}

/// Moves a share that held `counted` (of a guarantee of `guaranteed`) to
/// `held`, in the process's counts.
fn account(counts: &mut Counts, guaranteed: usize, counted: &mut usize, held: usize) {
    let unused_before = guaranteed.saturating_sub(*counted);
    let unused_now = guaranteed.saturating_sub(held);
    counts.held = counts.held - *counted + held;
    counts.unused_guarantees = counts.unused_guarantees - unused_before + unused_now;
    *counted = held;
}

impl Drop for DescriptorShare {
    fn drop(&mut self) {
        self.release();
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit now in force (1,024 if it cannot be read).
fn raise_descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: a valid rlimit, read only by the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_alone_takes_the_free_room_past_its_guarantee() {
        let budget = DescriptorBudget::with_room(1000);
        let mut alone = budget.share(usize::MAX);
        for held in 0..1000 {
            assert_eq!(alone.may_open(held), Ok(()), "at {held}");
            alone.update(held + 1);
        }
        assert_eq!(alone.may_open(1000), Err(Refusal::NoRoom));
    }

    #[test]
    fn a_greedy_guest_leaves_a_neighbour_its_guarantee() {
        let budget = DescriptorBudget::with_room(1000);
        let mut greedy = budget.share(usize::MAX);
        let mut neighbour = budget.share(usize::MAX);
        let mut held = 0;
        while greedy.may_open(held).is_ok() {
            held += 1;
            greedy.update(held);
        }
        assert_eq!(held, 1000 - GUARANTEED, "the neighbour's guarantee is kept");
        for n in 0..GUARANTEED {
            assert_eq!(neighbour.may_open(n), Ok(()));
            neighbour.update(n + 1);
        }
        assert_eq!(neighbour.may_open(GUARANTEED), Err(Refusal::NoRoom));
        // The greedy one closes some: the room is anyone's again.
        greedy.update(held - 10);
        assert_eq!(neighbour.may_open(GUARANTEED), Ok(()));
    }

    #[test]
    fn a_guest_never_passes_its_own_cap() {
        let budget = DescriptorBudget::with_room(1000);
        let mut capped = budget.share(3);
        assert_eq!(capped.may_open(2), Ok(()));
        assert_eq!(capped.may_open(3), Err(Refusal::OwnCap));
        // Its guarantee is no more than its cap.
        let mut other = budget.share(usize::MAX);
        let mut held = 0;
        while other.may_open(held).is_ok() {
            held += 1;
            other.update(held);
        }
        assert_eq!(held, 1000 - 3);
    }

    #[test]
    fn an_ended_guest_gives_back_what_it_held_and_its_guarantee() {
        let budget = DescriptorBudget::with_room(1000);
        let mut first = budget.share(usize::MAX);
        first.update(700);
        let second = budget.share(usize::MAX);
        first.release();
        assert_eq!(first.may_open(0), Err(Refusal::OwnCap), "it opens no more");
        {
            let counts = budget.lock();
            assert_eq!((counts.held, counts.unused_guarantees), (0, GUARANTEED));
        }
        drop((first, second));
        let counts = budget.lock();
        assert_eq!((counts.held, counts.unused_guarantees), (0, 0));
    }

    #[test]
    fn the_process_budget_leaves_the_host_its_reserve() {
        let room = DescriptorBudget::process().room();
        assert!(room >= 64, "{room}");
        assert_eq!(host_reserve(20_000), 1024);
        assert_eq!(host_reserve(256), 64);
    }

    #[test]
    fn guarantees_set_aside_at_most_half_the_room() {
        let budget = DescriptorBudget::with_room(1000);
        let idle: Vec<_> = (0..100).map(|_| budget.share(usize::MAX)).collect();
        let mut busy = budget.share(usize::MAX);
        let mut held = 0;
        while busy.may_open(held).is_ok() {
            held += 1;
            busy.update(held);
        }
        assert_eq!(held, 500, "100 idle guests' guarantees set aside half");
        drop(idle);
    }
}

//! What a green thread's native (fiber) stack costs its guest: the stack
//! pages it may have touched, charged to its host memory.
//!
//! Deep recursion touches fiber-stack pages, and they stay resident after it
//! returns: 2,000 green threads each recursing 5,000 calls deep held about
//! 550 MiB under a 64 MiB host memory limit. The flat charge per green
//! thread covers its stack's top [`ALLOWANCE`]; below that, the hub must
//! know how deep each stack has been, without a cost on every switch (a
//! system call there, or timing each thread, costs 10-20% of a switch).
//!
//! So each stack carries a *marker*: one guard page (`MADV_GUARD_INSTALL`,
//! which splits no mapping) a little below the part of the stack its
//! thread may touch without being charged more. A thread that recurses past
//! it faults; the store's signal handler ([`StackWatch::on_signal`]) moves
//! the marker [`RUNG`] further down (below the faulting address and below
//! the stack pointer, so never into a live frame) and records that the
//! stack may now be touched down to there. The hub reads that floor when
//! the thread suspends and charges the guest for it:
//!
//! ```text
//!   top ┌──────────────┐
//!       │ ALLOWANCE    │  covered by HOST_BYTES_PER_GREEN_THREAD
//!       ├──────────────┤
//!       │ charged      │  may have been touched: charged
//!       ├──────────────┤ ◄── floor
//!       │▓▓ marker ▓▓▓▓│  a guard page: touching it moves it a RUNG down
//!       │              │  untouched (not resident)
//!  base └──────────────┘
//! ```
//!
//! A thread that went deep and returned holds dead pages: once they are at
//! least [`TRIM_WORTH`], its next suspension hands them back
//! (`MADV_DONTNEED`) and moves the marker back up to just below its live
//! stack (read from the suspended fiber's saved stack pointer), and its
//! charge drops. A thread that ends leaves its stack with only its top
//! [`ALLOWANCE`] resident and the marker back under it.
//!
//! Costs: nothing on a switch or a spawn; about 5 µs for each [`RUNG`] a
//! thread recurses into (against 1.4-1.9 µs for each of the 16 pages it
//! faults in there). Bounds: a thread's charge covers what it may have
//! touched, rounded up to a [`RUNG`]; the thread running on a hub is charged
//! when it suspends. Only on x86-64 Linux with `MADV_GUARD_INSTALL` (6.13+);
//! elsewhere no marker is set and stacks are not charged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use wasmtime::Store;

use crate::execution::fiber_stack::{trim, MADV_GUARD_INSTALL, MADV_GUARD_REMOVE};
use crate::guest::store_data::ThreadData;

pub(crate) use crate::execution::fiber_stack::ALLOWANCE;

/// How far the marker moves down at each fault.
pub(crate) const RUNG: usize = 64 * 1024;

/// Dead stack worth handing back at a suspension.
pub(crate) const TRIM_WORTH: usize = 256 * 1024;

/// Set once the kernel refused a marker: no stack is watched from then on.
static NO_MARKERS: AtomicBool = AtomicBool::new(false);

/// Where a store's fiber stack is, and how deep its fiber may have touched
/// it. Shared by the hub (which reads it while the fiber is suspended) and
/// the store's signal handler (which moves the marker while it runs): both
/// on the hub's thread, one at a time.
#[derive(Default, Debug)]
pub(crate) struct StackWatch {
    /// The stack, once the store has one (0 before).
    base: AtomicUsize,
    top: AtomicUsize,
    /// The marker's page, or 0 for none.
    marker: AtomicUsize,
    /// The lowest address the fiber may have touched: its charge runs from
    /// here to the top.
    floor: AtomicUsize,
}

fn page() -> usize {
    rustix::param::page_size()
}

impl StackWatch {
    /// A watch for a store whose stack is not known yet.
    pub(crate) fn new() -> Arc<StackWatch> {
        Arc::new(StackWatch::default())
    }

    /// Sets `store`'s signal handler: the fault of a thread that reaches the
    /// marker moves it down.
    pub(crate) fn watch(self: &Arc<Self>, store: &mut Store<ThreadData>) {
        #[cfg(target_arch = "x86_64")]
        {
            use wasmtime::unix::StoreExt as _;
            let watch = self.clone();
            // SAFETY: the handler is async-signal-safe: it reads and writes
            // atomics and makes `madvise` system calls, nothing else.
            unsafe {
                store.set_signal_handler(move |signum, info, context| {
                    watch.on_signal(signum, info, context)
                })
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = store;
    }

    /// Bytes charged: what the fiber may have touched below the top
    /// [`ALLOWANCE`].
    pub(crate) fn charge(&self) -> u64 {
        let (top, floor) = (self.top.load(Relaxed), self.floor.load(Relaxed));
        if top == 0 {
            return 0;
        }
        (top - floor).saturating_sub(ALLOWANCE) as u64
    }

    fn known(&self) -> bool {
        self.top.load(Relaxed) != 0
    }

    /// The fiber touched the marker (a `SIGSEGV` at it while this store
    /// runs): moves it a [`RUNG`] below both the fault and the stack pointer,
    /// and says the signal was handled (the access is retried). Any other
    /// signal is not ours.
    #[cfg(target_arch = "x86_64")]
    fn on_signal(
        &self,
        signum: libc::c_int,
        info: *const libc::siginfo_t,
        context: *const libc::c_void,
    ) -> bool {
        let marker = self.marker.load(Relaxed);
        if signum != libc::SIGSEGV || marker == 0 || info.is_null() || context.is_null() {
            return false;
        }
        // SAFETY: the kernel hands a SIGSEGV handler a valid siginfo and
        // ucontext (wasmtime passes them on unchanged).
        let (address, sp) = unsafe {
            let context = &*(context as *const libc::ucontext_t);
            (
                (*info).si_addr() as usize,
                context.uc_mcontext.gregs[libc::REG_RSP as usize] as usize,
            )
        };
        let page = page();
        if address < marker || address >= marker + page {
            return false;
        }
        // SAFETY: the marker page is ours (a page of this store's stack);
        // removing its guard makes it ordinary memory.
        unsafe { libc::madvise(marker as *mut libc::c_void, page, MADV_GUARD_REMOVE) };
        let below = address.min(sp);
        let below = below - below % page;
        self.set_marker(below.saturating_sub(RUNG));
        true
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn on_signal(
        &self,
        _signum: libc::c_int,
        _info: *const libc::siginfo_t,
        _context: *const libc::c_void,
    ) -> bool {
        false
    }

    /// Puts the marker at page `at` (dead memory: below every live byte of
    /// the stack), or none if `at` is off the stack or the kernel cannot;
    /// the floor follows it.
    fn set_marker(&self, at: usize) {
        let base = self.base.load(Relaxed);
        let page = page();
        let installed = at >= base && at + page <= self.top.load(Relaxed) && {
            // SAFETY: `at` is a page of this store's stack below its live
            // part: discarding it and making it fault loses nothing.
            unsafe {
                libc::madvise(at as *mut libc::c_void, page, libc::MADV_DONTNEED);
                libc::madvise(at as *mut libc::c_void, page, MADV_GUARD_INSTALL) == 0
            }
        };
        if !installed && at >= base {
            NO_MARKERS.store(true, Relaxed);
        }
        if installed {
            self.marker.store(at, Relaxed);
            self.floor.store(at + page, Relaxed);
        } else {
            // No marker: the whole stack may be touched.
            self.marker.store(0, Relaxed);
            self.floor.store(base, Relaxed);
        }
    }

    /// Everything below `live` (an address in the stack: the lowest live
    /// byte, or the top for a finished fiber) is dead: hands it back, except
    /// the top [`ALLOWANCE`], and puts the marker just below what is kept.
    fn reset(&self, live: usize) {
        let (base, top, page) = (self.base.load(Relaxed), self.top.load(Relaxed), page());
        let keep = live.min(top - ALLOWANCE.min(top - base));
        let keep = keep - keep % page;
        let marker = self.marker.swap(0, Relaxed);
        if marker != 0 {
            // SAFETY: a page of this store's stack: it becomes ordinary.
            unsafe { libc::madvise(marker as *mut libc::c_void, page, MADV_GUARD_REMOVE) };
        }
        trim(base, keep);
        self.set_marker(keep.saturating_sub(page));
    }

    /// The stack pointer of the suspended fiber on this stack.
    ///
    /// wasmtime's fiber switch (wasmtime-internal-fiber 48, `x86_64.rs`)
    /// pushes the callee-saved registers and stores the stack pointer in the
    /// word 16 bytes below the top of the stack it leaves; everything from
    /// there up is live. None if the word does not point into the stack.
    fn suspended_sp(&self) -> Option<usize> {
        let (base, top) = (self.base.load(Relaxed), self.top.load(Relaxed));
        if top == 0 {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: the word lies in the top page of this store's stack
            // (the fiber switch writes it), mapped while the store lives;
            // its fiber is suspended, so nothing writes it now.
            let sp = unsafe { ((top - 16) as *const usize).read() };
            (base < sp && sp < top).then_some(sp)
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
}

/// What the hub keeps of a green thread's stack: its store's watch and what
/// its guest is charged for it.
#[derive(Default, Debug)]
pub(crate) struct StackUse {
    watch: Option<Arc<StackWatch>>,
    charged: u64,
}

impl StackUse {
    /// The use of a store's stack by a green thread that starts on it.
    pub(crate) fn of(watch: Arc<StackWatch>) -> StackUse {
        StackUse {
            watch: Some(watch),
            charged: 0,
        }
    }

    /// Its store's watch, to keep with the store while it is a spare.
    pub(crate) fn into_watch(self) -> Option<Arc<StackWatch>> {
        self.watch
    }

    /// Bytes charged for it now.
    pub(crate) fn charged(&self) -> u64 {
        self.charged
    }

    /// A step of its thread ended; `handed_out` is the stack its store took
    /// in it, if it took one: the thread ran on it unwatched, so it is
    /// treated as touched throughout until [`StackUse::suspended`] or
    /// [`StackUse::finished`] resets it.
    pub(crate) fn stepped(&mut self, handed_out: Option<(usize, usize)>) {
        let (Some(watch), Some((base, top))) = (&self.watch, handed_out) else {
            return;
        };
        if !watch.known() && !NO_MARKERS.load(Relaxed) {
            watch.base.store(base, Relaxed);
            watch.top.store(top, Relaxed);
            watch.floor.store(base, Relaxed);
        }
    }

    /// Its thread suspended: returns its new charge (handing back dead
    /// stack first if there is [`TRIM_WORTH`] of it, or if the stack was
    /// never watched).
    pub(crate) fn suspended(&mut self) -> u64 {
        let Some(watch) = &self.watch else {
            return self.charged;
        };
        let unwatched =
            watch.known() && watch.marker.load(Relaxed) == 0 && !NO_MARKERS.load(Relaxed);
        if unwatched || watch.charge() >= TRIM_WORTH as u64 {
            if let Some(sp) = watch.suspended_sp() {
                let floor = watch.floor.load(Relaxed);
                if unwatched || sp.saturating_sub(floor) >= TRIM_WORTH {
                    watch.reset(sp);
                }
            }
        }
        self.charged = watch.charge();
        self.charged
    }

    /// Its thread's call returned and its store is kept for another: the
    /// whole stack is dead; it keeps its top [`ALLOWANCE`]. Its charge ends.
    pub(crate) fn finished(&mut self) {
        if let Some(watch) = &self.watch {
            let unwatched = watch.marker.load(Relaxed) == 0 && !NO_MARKERS.load(Relaxed);
            if watch.known() && (watch.charge() > 0 || unwatched) {
                watch.reset(watch.top.load(Relaxed));
            }
        }
        self.charged = 0;
    }
}

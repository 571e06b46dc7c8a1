//! The native stacks green threads run on (wasmtime's fiber stacks), carved
//! out of large mappings and reused.
//!
//! wasmtime's own stacks each get an `mmap` and a guard page, and every guard
//! page splits a mapping in two: Linux allows 65,530 mappings per process
//! (`vm.max_map_count`), so those stacks run out near 32,000 green threads.
//! These stacks come 256 to a mapping, so 100,000 green threads need a few
//! hundred mappings. Only the pages a green thread touches take memory.
//!
//! Below every stack is a guard page, installed with `MADV_GUARD_INSTALL`
//! (Linux 6.13+), which makes the page fault on access without splitting the
//! mapping:
//!
//! ```text
//!   one mapping of 256 × (page + size)
//!   ┌───────┬──────────────────────┬───────┬──────────────────────┬─────
//!   │ guard │ stack 0   ◄── grows  │ guard │ stack 1   ◄── grows  │ ...
//!   └───────┴──────────────────────┴───────┴──────────────────────┴─────
//!           ▲ range().start        ▲ top()
//! ```
//!
//! wasm code never reaches it: wasmtime's limit on wasm stack use
//! (`max_wasm_stack`) traps deep recursion first, and the rest of the stack,
//! a quarter and at least 128 KiB (see `Runtime::new`), is for the host
//! functions the green thread calls. The guard is for a host function that
//! overruns that reserve: it faults instead of writing into the neighbouring
//! fiber's saved state. On a kernel without `MADV_GUARD_INSTALL` the stacks
//! have no guard (a warning says so once).
//!
//! A stack given back keeps only its top [`ALLOWANCE`] resident (warm for its
//! next fiber): what deep recursion left below is handed back, and any depth
//! marker `crate::execution::stack_charge` installed is removed.

use std::cell::Cell;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use rustix::mm::{madvise, mmap_anonymous, Advice, MapFlags, ProtFlags};
use std::sync::Once;
use wasmtime::{Result, StackCreator, StackMemory};

/// Stacks per mapping.
const STACKS_PER_CHUNK: usize = 256;

/// Freed stacks beyond this many have their pages handed back to the kernel
/// (after a burst of green threads, memory returns to what steady use needs).
const KEEP_RESIDENT: usize = 16 * 1024;

/// Bytes at the top of each stack that the flat per-green-thread charge
/// (`HOST_BYTES_PER_GREEN_THREAD`) covers, and that stay resident for the
/// stack's next thread.
pub(crate) const ALLOWANCE: usize = 16 * 1024;

thread_local! {
    /// `(base, top)` of the last stack handed out on this thread: the hub
    /// takes it after each step, to learn which stack a new store got.
    static HANDED_OUT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// The fiber stacks of a runtime: a [`StackCreator`] for wasmtime.
pub(crate) struct FiberStacks(Arc<Pool>);

struct Pool {
    size: usize,
    /// The page size: each stack's guard.
    page: usize,
    free: Mutex<Free>,
}

struct Free {
    /// Bases of free stacks whose pages may be resident, most recent last.
    warm: Vec<usize>,
    /// Bases of free stacks whose pages were handed back.
    cold: Vec<usize>,
    /// Every mapping made, unmapped when the pool goes.
    chunks: Vec<usize>,
}

impl FiberStacks {
    /// Stacks of `size` bytes (a multiple of the page size).
    pub(crate) fn new(size: usize) -> FiberStacks {
        FiberStacks(Arc::new(Pool {
            size,
            page: rustix::param::page_size(),
            free: Mutex::new(Free {
                // Full size at once (its pages are touched only as it
                // fills): growing it while thousands of green threads end
                // would stall the hub.
                warm: Vec::with_capacity(KEEP_RESIDENT),
                cold: Vec::new(),
                chunks: Vec::new(),
            }),
        }))
    }
}

impl Pool {
    /// Bytes from one stack's guard to the next's.
    fn stride(&self) -> usize {
        self.page + self.size
    }

    /// Hands out the base (lowest address, above its guard) of a free stack.
    fn take(&self) -> Result<usize> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(base) = free.warm.pop().or_else(|| free.cold.pop()) {
            return Ok(base);
        }
        // SAFETY: a fresh anonymous private mapping, aliasing nothing.
        let chunk = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                self.stride() * STACKS_PER_CHUNK,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| {
            wasmtime::format_err!(
                "no memory for {STACKS_PER_CHUNK} more green-thread stacks of {} KiB: {e}",
                self.size / 1024
            )
        })? as usize;
        free.chunks.push(chunk);
        for i in 0..STACKS_PER_CHUNK {
            install_guard(chunk + i * self.stride(), self.page);
        }
        // Handed out lowest first.
        let base = |i: usize| chunk + i * self.stride() + self.page;
        free.cold.extend((1..STACKS_PER_CHUNK).rev().map(base));
        Ok(base(0))
    }

    fn give_back(&self, base: usize) {
        // Its top stays warm for the next fiber; what lies below it may have
        // been touched by deep recursion nobody is charged for any more, and
        // may hold a depth marker its next store would not expect.
        trim(base, base + self.size - ALLOWANCE.min(self.size));
        remove_guards(base, base + self.size);
        {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if free.warm.len() < KEEP_RESIDENT {
                free.warm.push(base);
                return;
            }
        }
        // Outside the lock: handing pages back takes microseconds, and the
        // hub may be waiting to take a stack while the reaper thread gives
        // back those of dead green threads.
        // SAFETY: the stack is no longer used by any fiber; its pages may go
        // (its guard stays: guard markers survive MADV_DONTNEED). A failure
        // only leaves them resident.
        let _ = unsafe { madvise(base as *mut _, self.size, Advice::LinuxDontNeed) };
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.cold.push(base);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let length = self.stride() * STACKS_PER_CHUNK;
        let free = self.free.get_mut().unwrap_or_else(|e| e.into_inner());
        for &chunk in &free.chunks {
            // SAFETY: every stack holds the pool alive (`FiberStack::pool`),
            // so none is in use now: the mapping is ours alone to unmap.
            let _ = unsafe { rustix::mm::munmap(chunk as *mut _, length) };
        }
    }
}

// SAFETY: each stack handed out is a distinct, page-aligned, readable and
// writable range of `size` bytes that no one else uses until it is dropped.
unsafe impl StackCreator for FiberStacks {
    fn new_stack(&self, size: usize, _zeroed: bool) -> Result<Box<dyn StackMemory>> {
        let pool = &self.0;
        wasmtime::ensure!(
            size == pool.size,
            "asked for a fiber stack of {size} bytes; this runtime's are {}",
            pool.size
        );
        let base = pool.take()?;
        HANDED_OUT.with(|h| h.set(Some((base, base + size))));
        Ok(Box::new(FiberStack {
            base: NonNull::new(base as *mut u8).expect("mappings are never at 0"),
            size,
            pool: pool.clone(),
        }))
    }
}

struct FiberStack {
    base: NonNull<u8>,
    size: usize,
    pool: Arc<Pool>,
}

// SAFETY: the stack is plain memory, used by one fiber at a time.
unsafe impl Send for FiberStack {}
// SAFETY: as above.
unsafe impl Sync for FiberStack {}

// SAFETY: `top` and `range` describe the stack handed out by `new_stack`.
unsafe impl StackMemory for FiberStack {
    fn top(&self) -> *mut u8 {
        // SAFETY: one past the end of the stack's range.
        unsafe { self.base.as_ptr().add(self.size) }
    }

    fn range(&self) -> Range<usize> {
        let base = self.base.as_ptr() as usize;
        base..base + self.size
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let page = self.pool.page;
        // SAFETY: the guard page is the page below the stack, in the same
        // mapping (see `Pool::take`).
        let start = unsafe { self.base.as_ptr().sub(page) };
        start..self.base.as_ptr()
    }
}

/// `MADV_GUARD_INSTALL` (Linux 6.13+; not yet in the libc crate).
pub(crate) const MADV_GUARD_INSTALL: libc::c_int = 102;
/// `MADV_GUARD_REMOVE`.
pub(crate) const MADV_GUARD_REMOVE: libc::c_int = 103;

/// Removes every guard page in `[from, to)` (whole pages).
fn remove_guards(from: usize, to: usize) {
    // SAFETY: part of a stack of ours that no fiber uses; removing a guard
    // only makes a page ordinary memory again.
    unsafe { libc::madvise(from as *mut libc::c_void, to - from, MADV_GUARD_REMOVE) };
}

/// Makes the page at `at` fault on any access, without splitting its mapping.
fn install_guard(at: usize, page: usize) {
    // SAFETY: `at` is a page of a private anonymous mapping of ours that no
    // stack uses: making it fault affects nothing else.
    let failed = unsafe { libc::madvise(at as *mut libc::c_void, page, MADV_GUARD_INSTALL) } != 0;
    if failed {
        static WARN: Once = Once::new();
        WARN.call_once(|| {
            tracing::warn!(
                "this kernel cannot install guard pages without splitting mappings \
                 (MADV_GUARD_INSTALL needs Linux 6.13); green threads' fiber stacks have none"
            )
        });
    }
}

/// `(base, top)` of the stack handed out on this thread since the last
/// call, if one was: the hub asks after each step, to learn which stack a
/// new store took.
pub(crate) fn take_handed_out() -> Option<(usize, usize)> {
    HANDED_OUT.with(Cell::take)
}

/// Hands the whole pages of `[from, to)` back to the kernel (they read as
/// zeros when next touched).
pub(crate) fn trim(from: usize, to: usize) {
    let page = rustix::param::page_size();
    let (from, to) = (from.next_multiple_of(page), to - to % page);
    if from < to {
        // SAFETY: callers pass part of a stack of ours that no fiber uses:
        // a stack given back, the part below a suspended fiber's stack
        // pointer, or a stack whose fiber has finished. A failure only
        // leaves the pages resident.
        let _ = unsafe { madvise(from as *mut _, to - from, Advice::LinuxDontNeed) };
    }
}

impl Drop for FiberStack {
    fn drop(&mut self) {
        self.pool.give_back(self.base.as_ptr() as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 256 * 1024;

    /// Writes just below a stack from a child process (this test, run again
    /// with a variable set): the guard must kill it with SIGSEGV.
    #[test]
    fn the_page_below_each_stack_faults() {
        if std::env::var_os("WASMLET_GUARD_PROBE").is_some() {
            let stacks = FiberStacks::new(SIZE);
            let stacks: Vec<_> = (0..3)
                .map(|_| stacks.new_stack(SIZE, false).unwrap())
                .collect();
            let stack = &stacks[1];
            let usable = stack.range().start as *mut u8;
            // SAFETY: the lowest byte of the stack: ours to write.
            unsafe { usable.write_volatile(1) };
            // SAFETY: deliberately the byte below it, in its guard page: the
            // process must die here.
            unsafe { usable.sub(1).write_volatile(1) };
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                // This test's own path, wherever the module moves.
                &format!(
                    "{}::the_page_below_each_stack_faults",
                    module_path!().split_once("::").unwrap().1
                ),
            ])
            .env("WASMLET_GUARD_PROBE", "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSEGV),
            "writing into the guard page did not fault: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Run in a child process of its own (this test again, alone): in this
    /// one, another test's thread may map something at the freed address
    /// between the drop and the check.
    #[test]
    fn a_dropped_pool_unmaps_its_stacks() {
        if std::env::var_os("WASMLET_UNMAP_PROBE").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    &format!(
                        "{}::a_dropped_pool_unmaps_its_stacks",
                        module_path!().split_once("::").unwrap().1
                    ),
                ])
                .env("WASMLET_UNMAP_PROBE", "1")
                .output()
                .unwrap();
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let stacks = FiberStacks::new(SIZE);
        let stack = stacks.new_stack(SIZE, false).unwrap();
        let base = stack.range().start;
        let mapped = |at: usize| {
            let mut resident = [0u8; 1];
            // SAFETY: `mincore` only reports on the page (ENOMEM if it is
            // not mapped); it touches nothing.
            unsafe { libc::mincore(at as *mut libc::c_void, 1, resident.as_mut_ptr()) == 0 }
        };
        assert!(mapped(base));
        drop(stacks);
        assert!(mapped(base), "a stack handed out keeps its pool");
        drop(stack);
        assert!(!mapped(base), "the last stack's return unmapped the pool");
    }

    #[test]
    fn stacks_of_one_mapping_do_not_overlap_and_keep_their_size() {
        let stacks = FiberStacks::new(SIZE);
        let taken: Vec<_> = (0..10)
            .map(|_| stacks.new_stack(SIZE, false).unwrap())
            .collect();
        for pair in taken.windows(2) {
            let (a, b) = (pair[0].range(), pair[1].range());
            assert_eq!(a.len(), SIZE);
            assert!(a.end <= b.start || b.end <= a.start);
            assert_eq!(b.start - a.start, SIZE + rustix::param::page_size());
        }
    }
}

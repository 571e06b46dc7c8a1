//! The native stacks green threads run on (wasmtime's fiber stacks), carved
//! out of large mappings and reused.
//!
//! wasmtime's own stacks each get an `mmap` and a guard page, and every guard
//! page splits a mapping in two: Linux allows 65,530 mappings per process
//! (`vm.max_map_count`), so those stacks run out near 32,000 green threads.
//! These stacks come 256 to a mapping, without guard pages, so 100,000 green
//! threads need a few hundred mappings. Only the pages a green thread touches
//! take memory.
//!
//! Without a guard page, what stops a green thread from running off its
//! stack is wasmtime's own limit on wasm stack use (`max_wasm_stack`): wasm
//! code that recurses too deep traps with a stack overflow before it gets
//! there. The rest of the stack, a quarter and at least 128 KiB (see
//! `Runtime::new`), is for the host functions the green thread calls, whose
//! depth does not depend on the guest.

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use rustix::mm::{madvise, mmap_anonymous, Advice, MapFlags, ProtFlags};
use wasmtime::{Result, StackCreator, StackMemory};

/// Stacks per mapping.
const STACKS_PER_CHUNK: usize = 256;

/// Freed stacks beyond this many have their pages handed back to the kernel
/// (after a burst of green threads, memory returns to what steady use needs).
const KEEP_RESIDENT: usize = 16 * 1024;

/// The fiber stacks of a runtime: a [`StackCreator`] for wasmtime.
pub(crate) struct FiberStacks(Arc<Pool>);

struct Pool {
    size: usize,
    free: Mutex<Free>,
}

struct Free {
    /// Bases of free stacks whose pages may be resident, most recent last.
    warm: Vec<usize>,
    /// Bases of free stacks whose pages were handed back.
    cold: Vec<usize>,
}

impl FiberStacks {
    /// Stacks of `size` bytes (a multiple of the page size).
    pub(crate) fn new(size: usize) -> FiberStacks {
        FiberStacks(Arc::new(Pool {
            size,
            free: Mutex::new(Free {
                // Full size at once (its pages are touched only as it
                // fills): growing it while thousands of green threads end
                // would stall the hub.
                warm: Vec::with_capacity(KEEP_RESIDENT),
                cold: Vec::new(),
            }),
        }))
    }
}

impl Pool {
    fn take(&self) -> Result<usize> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(base) = free.warm.pop().or_else(|| free.cold.pop()) {
            return Ok(base);
        }
        // SAFETY: a fresh anonymous private mapping, aliasing nothing.
        let chunk = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                self.size * STACKS_PER_CHUNK,
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
        // Handed out lowest first.
        free.cold
            .extend((1..STACKS_PER_CHUNK).rev().map(|i| chunk + i * self.size));
        Ok(chunk)
    }

    fn give_back(&self, base: usize) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.warm.len() < KEEP_RESIDENT {
            free.warm.push(base);
            return;
        }
        // SAFETY: the stack is no longer used by any fiber; its pages may go.
        // A failure only leaves them resident.
        let _ = unsafe { madvise(base as *mut _, self.size, Advice::LinuxDontNeed) };
        free.cold.push(base);
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
        std::ptr::null_mut()..std::ptr::null_mut()
    }
}

impl Drop for FiberStack {
    fn drop(&mut self) {
        self.pool.give_back(self.base.as_ptr() as usize);
    }
}

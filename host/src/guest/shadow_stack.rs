//! Shadow stacks and TLS blocks of green threads, carved out of the guest's
//! shared memory.
//!
//! The hub grows the guest's memory itself for these slots, so the guest's
//! allocator never hands them out (wasi-libc's malloc copes with a
//! `memory.grow` it did not make by starting a new segment). A slot is the
//! green thread's shadow stack with its TLS block at the top, carved from
//! the size asked for (as glibc carves a pthread's TLS from its stack):
//!
//! ```text
//!   base                                              base + size
//!   ┌─────────────────────────────────────────┬──────────┐
//!   │ shadow stack (grows down) ◄──────────── │ TLS block │
//!   └─────────────────────────────────────────┴──────────┘
//!   ▲ bottom (the stack check's limit)        ▲ top: initial stack pointer
//! ```
//!
//! So a green thread that has run a little touches one contiguous stretch
//! at its slot's top, and a slot of a page-multiple size (the 32 KiB
//! default) keeps that stretch in one page. The loader's stack check
//! (`rewrite`) traps a frame that would go past the stack's bottom before
//! it writes anything. A slot freed by an ended green thread is reused by
//! the next one of the same size.
//!
//! As the holder of the guest's memory, it also gives host functions their
//! bounds-checked access to it (`read_checked`, `write_checked`, and the
//! atomic loads of futex waits).

use rustc_hash::FxHashMap;

use wasmtime::SharedMemory;
use wasmtime::{bail, format_err, Result};

const WASM_PAGE: u64 = 64 * 1024;
/// Slots and TLS blocks are aligned to this; it covers any Rust
/// `#[repr(align)]` a thread-local is likely to use.
const ALIGN: u32 = 128;
/// Memory is grown at least this much at a time, so that small slots do not
/// each cost a `grow`.
const MIN_GROW_PAGES: u64 = 16;
/// Largest shadow stack a guest may ask for.
pub(crate) const MAX_STACK_SIZE: u32 = 256 * 1024 * 1024;

/// One green thread's TLS block and shadow stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackSlot {
    base: u32,
    size: u32,
    /// Where the TLS block starts (the stack's top).
    tls: u32,
}

impl StackSlot {
    /// Where the TLS block starts (the thread's `__tls_base`).
    pub fn tls_base(&self) -> u32 {
        self.tls
    }
}

/// The slots of one guest.
pub(crate) struct ShadowStacks {
    memory: SharedMemory,
    layout: std::sync::Arc<crate::guest::program::Layout>,
    /// TLS block size rounded up to [`ALIGN`].
    tls_size: u32,
    /// Free slots by size (sizes are few and small: no need for SipHash).
    free: FxHashMap<u32, FreeList>,
    /// The unused rest of the memory the hub last grew.
    next: u64,
    end: u64,
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// The free slots of one size.
#[derive(Default)]
struct FreeList {
    bases: Vec<u32>,
    /// Slots of this size ever carved: the most `bases` can hold.
    carved: usize,
}

/// Whether a green thread may ask for a shadow stack of `stack_size` bytes.
///
/// # Errors
/// If it is larger than [`MAX_STACK_SIZE`].
fn check_stack_size(stack_size: u32) -> Result<()> {
    if stack_size > MAX_STACK_SIZE {
        bail!("shadow stack of {stack_size} bytes asked for; the most is {MAX_STACK_SIZE}");
    }
    Ok(())
}

impl ShadowStacks {
    pub fn new(
        memory: SharedMemory,
        layout: std::sync::Arc<crate::guest::program::Layout>,
    ) -> Self {
        let tls_size = round_up(layout.tls_image.len() as u64, ALIGN as u64) as u32;
        ShadowStacks {
            memory,
            layout,
            tls_size,
            free: FxHashMap::default(),
            next: 0,
            end: 0,
        }
    }

    /// A slot with a shadow stack of at least `stack_size` bytes and its TLS
    /// block initialised.
    pub fn alloc(&mut self, stack_size: u32) -> Result<StackSlot> {
        check_stack_size(stack_size)?;
        let size = self.slot_size(stack_size);
        let size32 = size as u32;
        let base = match self.free.get_mut(&size32).and_then(|l| l.bases.pop()) {
            Some(base) => base,
            None => {
                let base = self.carve(size)?;
                // Room in the free list for every slot of this size, made
                // while carving: growing the list as green threads end,
                // thousands at a time, put milliseconds of page faults on
                // the hub's path.
                let list = self.free.entry(size32).or_default();
                list.carved += 1;
                list.bases.reserve(list.carved - list.bases.len());
                base
            }
        };
        let slot = StackSlot {
            base,
            size: size32,
            tls: base + size32 - self.tls_size,
        };
        self.write(slot.tls, &self.layout.tls_image);
        Ok(slot)
    }

    /// The bytes of a slot for a `stack_size`-byte stack: that size, TLS
    /// block included, rounded up to [`ALIGN`], with room for the TLS block
    /// and at least [`ALIGN`] bytes of stack however small the size asked.
    fn slot_size(&self, stack_size: u32) -> u64 {
        let least = self.tls_size as u64 + ALIGN as u64;
        round_up((stack_size as u64).max(least), ALIGN as u64)
    }

    /// Whether a slot for a `stack_size`-byte stack could be had now: a
    /// freed one of its size, room left in what the hub last grew, or room
    /// for the memory to grow (below its maximum and below 4 GiB). A spawn
    /// is refused without it, as `alloc` would fail when the thread starts
    /// (`alloc` may still fail then, if others took the room meanwhile).
    ///
    /// # Errors
    /// As `alloc`'s: the size is too large, or the memory is full.
    pub fn check_room(&self, stack_size: u32) -> Result<()> {
        check_stack_size(stack_size)?;
        let size = self.slot_size(stack_size);
        if self
            .free
            .get(&(size as u32))
            .is_some_and(|l| !l.bases.is_empty())
        {
            return Ok(());
        }
        if self.next + size <= self.end {
            return Ok(());
        }
        let data_size = self.memory.data_size() as u64;
        let most = self
            .memory
            .ty()
            .maximum()
            .map_or(1 << 32, |pages| pages * WASM_PAGE);
        if data_size + round_up(size, WASM_PAGE) <= most && data_size + size < 1 << 32 {
            return Ok(());
        }
        Err(self.full(size))
    }

    /// The error of a memory with no room for a slot of `size` bytes.
    fn full(&self, size: u64) -> wasmtime::Error {
        format_err!(
            "the guest's memory is full ({} MiB, its maximum): no room for another green \
             thread's {} KiB shadow stack; spawn with a smaller Builder::stack_size, or link the \
             guest with a larger --max-memory",
            self.memory.data_size() >> 20,
            size >> 10
        )
    }

    /// The guest memory's size in bytes.
    pub fn memory_size(&self) -> u64 {
        self.memory.data_size() as u64
    }

    /// The stack pointer a green thread on `slot` starts with: just under
    /// its TLS block.
    pub fn stack_top(&self, slot: &StackSlot) -> u32 {
        slot.tls
    }

    /// The lowest address the shadow stack on `slot` may use.
    pub fn stack_bottom(&self, slot: &StackSlot) -> u32 {
        slot.base
    }

    pub fn free(&mut self, slot: StackSlot) {
        self.free
            .entry(slot.size)
            .or_default()
            .bases
            .push(slot.base);
    }

    fn carve(&mut self, size: u64) -> Result<u32> {
        if self.next + size > self.end {
            let pages = (size.div_ceil(WASM_PAGE)).max(MIN_GROW_PAGES);
            let old = match self.memory.grow(pages) {
                Ok(old) => old,
                // Near the maximum a smaller step may still fit.
                Err(_) => self
                    .memory
                    .grow(size.div_ceil(WASM_PAGE))
                    .map_err(|_| self.full(size))?,
            };
            let new_pages = self.memory.data_size() as u64 / WASM_PAGE;
            self.next = old * WASM_PAGE;
            self.end = new_pages * WASM_PAGE;
        }
        let base = self.next;
        // A slot must end below 4 GiB: its top is a 32-bit stack pointer.
        if base + size >= 1 << 32 {
            bail!(
                "the guest's memory is full (4 GiB): no room for another green thread's {} KiB \
                 shadow stack; spawn with a smaller Builder::stack_size",
                size >> 10
            );
        }
        self.next += size;
        Ok(base as u32)
    }

    /// Writes `bytes` at guest address `at` for a host function; false (and
    /// nothing written) if that is outside the guest's memory.
    pub fn write_checked(&self, at: u32, bytes: &[u8]) -> bool {
        let end = at as usize + bytes.len();
        if end > self.memory.data().len() {
            return false;
        }
        self.write(at, bytes);
        true
    }

    /// Copies `len` bytes at guest address `at` for a host function; None if
    /// that is outside the guest's memory.
    pub fn read_checked(&self, at: u32, len: usize) -> Option<Vec<u8>> {
        let end = (at as usize).checked_add(len)?;
        let cells = self.memory.data().get(at as usize..end)?;
        let mut out = vec![0u8; len];
        // SAFETY: in bounds (the slice above); no guest code runs while the
        // hub's thread is here.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::cell::UnsafeCell::raw_get(cells.as_ptr()).cast_const(),
                out.as_mut_ptr(),
                len,
            )
        };
        Some(out)
    }

    /// Checks an atomic access of `width` bytes (4 or 8) at `at` as wasm
    /// does: the trap it would raise, if any.
    pub fn check_atomic(&self, at: u64, width: u64) -> Result<(), wasmtime::Trap> {
        if !at.is_multiple_of(width) {
            return Err(wasmtime::Trap::HeapMisaligned);
        }
        if at + width > self.memory.data_size() as u64 {
            return Err(wasmtime::Trap::MemoryOutOfBounds);
        }
        Ok(())
    }

    /// The `width`-byte (4 or 8) value at `at`, read atomically, for a futex
    /// wait; the trap wasm would raise if unaligned or out of bounds.
    pub fn load_atomic(&self, at: u64, width: u64) -> Result<u64, wasmtime::Trap> {
        self.check_atomic(at, width)?;
        let cell = &self.memory.data()[at as usize];
        let ptr = std::cell::UnsafeCell::raw_get(cell);
        // SAFETY: in bounds and aligned to `width` (checked above); the
        // memory is shared, so it is read atomically, as the instruction does.
        let value = unsafe {
            if width == 8 {
                (*ptr.cast::<std::sync::atomic::AtomicU64>())
                    .load(std::sync::atomic::Ordering::SeqCst)
            } else {
                (*ptr.cast::<std::sync::atomic::AtomicU32>())
                    .load(std::sync::atomic::Ordering::SeqCst) as u64
            }
        };
        Ok(value)
    }

    fn write(&self, at: u32, bytes: &[u8]) {
        let data = self.memory.data();
        let cells = &data[at as usize..at as usize + bytes.len()];
        // SAFETY: in bounds (the slice above); the hub's thread is the only
        // one touching this memory, and no guest code runs while it does.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                std::cell::UnsafeCell::raw_get(cells.as_ptr()),
                bytes.len(),
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::program::Layout;

    /// A guest memory whose last 64 KiB page is still free to grow into.
    fn nearly_full_memory() -> SharedMemory {
        let mut config = wasmtime::Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let pages = (1u64 << 32) / WASM_PAGE;
        let ty = wasmtime::MemoryType::shared((pages - 1) as u32, pages as u32);
        SharedMemory::new(&engine, ty).unwrap()
    }

    fn layout() -> std::sync::Arc<Layout> {
        std::sync::Arc::new(Layout {
            tls_image: Vec::new(),
            can_spawn: true,
            reuse_workers: true,
            overflow_func: None,
            main_stack_top: 0,
        })
    }

    #[test]
    fn a_slot_never_ends_at_4_gib_where_its_top_would_wrap_to_0() {
        let mut stacks = ShadowStacks::new(nearly_full_memory(), layout());
        let error = stacks.alloc(64 * 1024).unwrap_err().to_string();
        assert!(error.contains("memory is full"), "{error}");
        let slot = stacks.alloc(64 * 1024 - ALIGN).unwrap();
        assert_eq!(stacks.stack_top(&slot) as u64, (1 << 32) - ALIGN as u64);
    }

    #[test]
    fn a_freed_slot_is_reused_by_the_next_of_its_size() {
        let mut config = wasmtime::Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let memory = SharedMemory::new(&engine, wasmtime::MemoryType::shared(1, 1000)).unwrap();
        let mut stacks = ShadowStacks::new(memory, layout());
        let a = stacks.alloc(8192).unwrap();
        let b = stacks.alloc(8192).unwrap();
        assert_ne!(a, b);
        stacks.free(a);
        assert_eq!(stacks.alloc(8192).unwrap(), a);
        assert!(stacks.stack_bottom(&b) < stacks.stack_top(&b));
    }

    #[test]
    fn the_tls_block_is_at_the_top_of_a_slot_of_the_size_asked() {
        let mut config = wasmtime::Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let memory = SharedMemory::new(&engine, wasmtime::MemoryType::shared(1, 1000)).unwrap();
        let layout = std::sync::Arc::new(Layout {
            tls_image: vec![7; 100],
            can_spawn: true,
            reuse_workers: true,
            overflow_func: None,
            main_stack_top: 0,
        });
        let mut stacks = ShadowStacks::new(memory, layout);
        let a = stacks.alloc(32 * 1024).unwrap();
        let b = stacks.alloc(32 * 1024).unwrap();
        // Slots of the size asked, TLS included: a page-multiple size keeps
        // every slot's top on a page boundary.
        assert_eq!(b.base - a.base, 32 * 1024);
        assert_eq!((a.base + a.size) % 4096, 0);
        assert_eq!(stacks.stack_top(&a), a.tls_base());
        assert_eq!(a.tls_base(), a.base + 32 * 1024 - ALIGN);
        assert_eq!(stacks.stack_bottom(&a), a.base);
        let tls = stacks.read_checked(a.tls_base(), 100).unwrap();
        assert_eq!(tls, vec![7; 100]);
        // However small the size asked, the TLS block and some stack fit.
        let tiny = stacks.alloc(16).unwrap();
        assert!(stacks.stack_top(&tiny) - stacks.stack_bottom(&tiny) >= ALIGN);
    }
}

//! The compact model's side of Binaryen's Asyncify in a guest's one
//! instance: how a green thread's wasm frames are unwound into its own
//! shadow stack when it waits, and rewound when it runs again.
//!
//! The loader's transform (`asyncify`) makes every function that can reach
//! a waiting import able to save its locals and return at once
//! (*unwinding*), and to restore them and jump back to the call it left
//! (*rewinding*). Two mutable globals steer it; the transform imports them
//! (`asyncify-relocatable`), so the host reads and sets them directly
//! instead of calling the module's `asyncify_*` exports:
//!
//! ```text
//!   __asyncify_state   0 normal, 1 unwinding, 2 rewinding
//!   __asyncify_data    address of { current: u32, end: u32, frames ... }
//! ```
//!
//! The data's address is always 0 of the scratch memory (below), which is
//! the global's initial value: only the state is set per wait.
//!
//! Where the saved frames go. The transform puts Asyncify's data in a
//! memory of its own (`asyncify-in-secondary-memory`, 1 MiB, exported as
//! `asyncify::SCRATCH_EXPORT`): a thread unwinds into that scratch memory,
//! and the host then copies the frames (a few hundred bytes, typically)
//! into the free part of the thread's own shadow stack, just under its
//! stack pointer; a rewind copies them back. So a waiting thread touches
//! only the memory next to its live frames (the top page of its stack, with
//! its TLS block above), frames too big for the scratch memory trap out of
//! bounds there instead of overwriting anything, and frames too big for the
//! stack are refused before anything is copied:
//!
//! ```text
//!   scratch memory:  │ current │ end │ frames → ...  (one thread's, while
//!                                                     it unwinds/rewinds)
//!   its slot:
//!   lower addresses                                            higher
//!   ┌────────────────────────┬──────────────┬─────┬──────────────┬─────┐
//!   │ free                   │ saved frames │ red │ live frames  │ TLS │
//!   └────────────────────────┴──────────────┴─────┴──────────────┴─────┘
//!   ▲ limit                                       ▲ stack pointer
//! ```
//!
//! A `std::thread` has no limit the hub knows (wasi-libc placed its stack):
//! its frames go in [`STD_THREAD_UNWIND`] bytes the hub carves for it as its
//! stack slot.
//!
//! What a green thread keeps between runs ([`Saved`]): the four globals
//! each green thread has for itself (stack pointer, TLS base, the stack
//! check's limit and span) and the waiting part of the import it left (the
//! host function's pending future, see `host_call::func_wrap_green`).

use std::any::Any;

use wasmtime::{format_err, AsContextMut, Global, Memory, Result, SharedMemory, Val};

use crate::guest::rewrite::RED_ZONE;

/// Module of the two globals the transform imports.
pub(crate) const GLOBALS_MODULE: &str = "env";
/// Asyncify's state global.
pub(crate) const STATE_GLOBAL: &str = "__asyncify_state";
/// Asyncify's data-pointer global.
pub(crate) const DATA_GLOBAL: &str = "__asyncify_data";

/// Bytes the hub carves for a `std::thread`'s saved frames.
pub(crate) const STD_THREAD_UNWIND: u32 = 16 * 1024;

/// Bytes of the `{ current, end }` header at the scratch memory's start.
const HEADER: u32 = 8;
/// Bytes of the scratch memory.
const SCRATCH_BYTES: u32 = crate::guest::asyncify::SCRATCH_PAGES * 64 * 1024;

const NORMAL: i32 = 0;
const UNWINDING: i32 = 1;
const REWINDING: i32 = 2;

/// The globals the compact model reads and sets in a guest's instance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Globals {
    /// `__asyncify_state`.
    pub state: Global,
    /// Each green thread's own: stack pointer, TLS base, stack-check limit
    /// and span (the loader's exports, see `rewrite`).
    pub own: [Global; 4],
}

/// The per-guest unwinding state, in its one store's [`ThreadData`].
pub(crate) struct Unwinder {
    globals: Globals,
    memory: SharedMemory,
    /// Where Asyncify saves and restores frames (see the module docs).
    scratch: Memory,
    /// The waiting part of the import the running green thread is unwinding
    /// from, or rewinding into.
    pending: Option<Box<dyn Any + Send>>,
    /// Where the running green thread's frames go if it is a `std::thread`:
    /// the region the hub carved for it (see [`set_room`]).
    room: Option<(u32, u32)>,
    /// What Asyncify's state global holds, mirrored: reading a global
    /// through wasmtime's API costs about 50 ns (it looks up its type), and
    /// a switch would read it half a dozen times.
    state: i32,
    /// Set by [`start_unwind`] for [`finish_unwind`]: the part of guest
    /// memory the frames may go in, and the green thread's own globals,
    /// read once.
    unwinding: Option<((u32, u32), [i32; 4])>,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("globals", &self.globals)
            .finish_non_exhaustive()
    }
}

impl Unwinder {
    pub(crate) fn new(globals: Globals, memory: SharedMemory, scratch: Memory) -> Unwinder {
        Unwinder {
            globals,
            memory,
            scratch,
            pending: None,
            room: None,
            state: NORMAL,
            unwinding: None,
        }
    }
}

/// What a green thread that unwound keeps until it runs again.
pub(crate) struct Saved {
    /// Its own globals' values (see [`Globals::own`]).
    own: [i32; 4],
    /// Where its frames are kept in guest memory, and how many bytes.
    at: u32,
    len: u32,
    /// The waiting part of the import it left.
    pending: Option<Box<dyn Any + Send>>,
}

fn get(store: &mut impl AsContextMut, global: Global) -> i32 {
    global.get(store).i32().unwrap_or_default()
}

fn set(store: &mut impl AsContextMut, global: Global, value: i32) -> Result<()> {
    global.set(store, Val::I32(value))
}

/// Store data that holds an [`Unwinder`] (the compact model's store).
pub(crate) trait Unwinding: 'static {
    /// The store's unwinder.
    ///
    /// # Panics
    /// If the store is not the compact model's.
    fn unwinder(&mut self) -> &mut Unwinder;
}

fn unwinder<'a, T: Unwinding>(store: &'a mut wasmtime::StoreContextMut<'_, T>) -> &'a mut Unwinder {
    store.data_mut().unwinder()
}

/// Where the frames of the green thread about to run go when it waits:
/// `room` for a `std::thread` (the region the hub carved for it), None for
/// the others (the free part of their own shadow stack).
pub(crate) fn set_room<T: Unwinding>(
    mut store: wasmtime::StoreContextMut<'_, T>,
    room: Option<(u32, u32)>,
) {
    unwinder(&mut store).room = room;
}

/// If the calling import is being rewound into: ends the rewind and gives
/// back the waiting part it left (None if it is a fresh call).
pub(crate) fn resume<T: Unwinding>(
    mut store: wasmtime::StoreContextMut<'_, T>,
) -> Result<Option<Box<dyn Any + Send>>> {
    let unwinder = unwinder(&mut store);
    if unwinder.state != REWINDING {
        return Ok(None);
    }
    let (globals, pending) = (unwinder.globals, unwinder.pending.take());
    set_state(&mut store, globals, NORMAL)?;
    Ok(pending)
}

/// Starts unwinding the calling green thread out of its import, keeping
/// `pending` (the import's waiting part) for its rewind. The import then
/// returns any value: the caller's frames are saved, not run.
///
/// # Errors
/// Only if a global has another type (a bug of the loader's).
pub(crate) fn start_unwind<T: Unwinding>(
    mut store: wasmtime::StoreContextMut<'_, T>,
    pending: Box<dyn Any + Send>,
) -> Result<()> {
    let globals = unwinder(&mut store).globals;
    let own = globals.own.map(|g| get(&mut store, g));
    let [sp, _, limit, _] = own.map(|v| v as u32);
    let room = match unwinder(&mut store).room {
        Some(room) => room,
        None => (limit, sp.saturating_sub(RED_ZONE)),
    };
    let scratch = unwinder(&mut store).scratch;
    write_header(scratch.data_mut(&mut store), [HEADER, SCRATCH_BYTES]);
    let unwinder = unwinder(&mut store);
    unwinder.pending = Some(pending);
    unwinder.unwinding = Some((room, own));
    set_state(&mut store, globals, UNWINDING)
}

fn set_state<T: Unwinding>(
    store: &mut wasmtime::StoreContextMut<'_, T>,
    globals: Globals,
    state: i32,
) -> Result<()> {
    unwinder(store).state = state;
    set(store, globals.state, state)
}

/// After the compact model's call returned: if it returned because its
/// green thread unwound, ends the unwind, keeps the frames in the thread's
/// stack and gives back what the thread keeps until it runs again (None:
/// the call really returned).
///
/// # Errors
/// If the saved frames do not fit in the free part of the thread's stack
/// (the thread cannot wait; the error ends it and says which stack to
/// enlarge).
pub(crate) fn finish_unwind<T: Unwinding>(
    mut store: wasmtime::StoreContextMut<'_, T>,
) -> Result<Option<Saved>> {
    let unwinder = unwinder(&mut store);
    let Some(((floor, end), own)) = unwinder.unwinding.take() else {
        return Ok(None);
    };
    let (globals, pending, scratch) = (unwinder.globals, unwinder.pending.take(), unwinder.scratch);
    let memory = unwinder.memory.clone();
    set_state(&mut store, globals, NORMAL)?;
    let frames = scratch.data(&store);
    let [current, _] = read_header(frames);
    let len = current.saturating_sub(HEADER);
    // 8-aligned, like the scratch copy they are restored into.
    let at = end.saturating_sub(len) & !7;
    if at < floor || len > SCRATCH_BYTES - HEADER {
        return Err(format_err!(
            "a green thread's saved wasm frames ({len} bytes) did not fit in the free part of \
             its shadow stack ({} bytes) when it waited (compact model): give it a larger \
             stack (the SDK's `Builder::stack_size`, or `Config::shadow_stack_size` for \
             every green thread), or run the guest with fibers",
            end.saturating_sub(floor),
        ));
    }
    let frames = &frames[HEADER as usize..(HEADER + len) as usize];
    copy_to_guest(&memory, at, frames)?;
    Ok(Some(Saved {
        own,
        at,
        len,
        pending,
    }))
}

/// Prepares the store to rewind the green thread that left `saved`: its
/// globals back, its frames back in the scratch memory. The model then
/// calls the same entry the thread started with.
///
/// # Errors
/// Only if a global has another type (a bug of the loader's), or the
/// thread's frames are no longer inside guest memory (a bug of the hub's).
pub(crate) fn start_rewind<T: Unwinding>(
    mut store: wasmtime::StoreContextMut<'_, T>,
    saved: Saved,
) -> Result<()> {
    let (globals, scratch, memory) = {
        let unwinder = unwinder(&mut store);
        (unwinder.globals, unwinder.scratch, unwinder.memory.clone())
    };
    let data = scratch.data_mut(&mut store);
    let end = (HEADER + saved.len) as usize;
    copy_from_guest(&memory, saved.at, &mut data[HEADER as usize..end])?;
    write_header(data, [HEADER + saved.len, SCRATCH_BYTES]);
    for (global, value) in globals.own.into_iter().zip(saved.own) {
        set(&mut store, global, value)?;
    }
    unwinder(&mut store).pending = saved.pending;
    set_state(&mut store, globals, REWINDING)
}

/// Says what went wrong when a call trapped while its green thread was
/// unwinding: the only trap there is Asyncify's store past the end of the
/// scratch memory.
pub(crate) fn explain_trap<T: Unwinding>(
    mut store: wasmtime::StoreContextMut<'_, T>,
    error: wasmtime::Error,
) -> wasmtime::Error {
    if unwinder(&mut store).unwinding.is_none() {
        return error;
    }
    // A new error, not the trap with context: the thread did not trap in
    // its own code, the model could not keep it (reported as the hub's
    // refusals are, with this message).
    format_err!(
        "a green thread waited with more than {} KiB of wasm locals on its call stack (deep \
         recursion?): more than the compact model can save ({error}); run the guest with \
         fibers",
        (SCRATCH_BYTES - HEADER) >> 10
    )
}

/// Whether Asyncify is in its normal state (no unwind or rewind under way).
pub(crate) fn is_normal<T: Unwinding>(mut store: wasmtime::StoreContextMut<'_, T>) -> bool {
    let unwinder = unwinder(&mut store);
    unwinder.state == NORMAL && unwinder.unwinding.is_none()
}

/// Back to normal after a call that trapped, maybe halfway through an
/// unwind or a rewind.
pub(crate) fn reset<T: Unwinding>(mut store: wasmtime::StoreContextMut<'_, T>) {
    let unwinder = unwinder(&mut store);
    unwinder.pending = None;
    unwinder.unwinding = None;
    let globals = unwinder.globals;
    // A trap leaves the instance usable; the set cannot fail on an i32.
    let _ = set_state(&mut store, globals, NORMAL);
}

fn write_header(scratch: &mut [u8], words: [u32; 2]) {
    scratch[..4].copy_from_slice(&words[0].to_le_bytes());
    scratch[4..8].copy_from_slice(&words[1].to_le_bytes());
}

fn read_header(scratch: &[u8]) -> [u32; 2] {
    let word = |i: usize| u32::from_le_bytes(scratch[i..i + 4].try_into().expect("4 bytes"));
    [word(0), word(4)]
}

fn cells(memory: &SharedMemory, at: u32, len: usize) -> Result<&[std::cell::UnsafeCell<u8>]> {
    let at = at as usize;
    memory
        .data()
        .get(at..at + len)
        .ok_or_else(|| format_err!("saved frames at {at:#x} are outside the guest's memory"))
}

fn copy_to_guest(memory: &SharedMemory, at: u32, bytes: &[u8]) -> Result<()> {
    let cells = cells(memory, at, bytes.len())?;
    // SAFETY: in bounds (`cells`); only the hub's thread runs this guest's
    // code, and it is in the host here, not running wasm.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            std::cell::UnsafeCell::raw_get(cells.as_ptr()),
            bytes.len(),
        )
    };
    Ok(())
}

fn copy_from_guest(memory: &SharedMemory, at: u32, out: &mut [u8]) -> Result<()> {
    let cells = cells(memory, at, out.len())?;
    // SAFETY: as in `copy_to_guest`: in bounds, and no wasm runs meanwhile.
    unsafe {
        std::ptr::copy_nonoverlapping(
            std::cell::UnsafeCell::raw_get(cells.as_ptr()).cast_const(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    Ok(())
}

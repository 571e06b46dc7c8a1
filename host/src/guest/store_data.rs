//! What each green thread's wasmtime `Store` holds: which guest and green
//! thread it runs, and the guest's WASI context.
//!
//! Host functions reach the hub's state through `hub_state::with`, not
//! through the store, so this module depends on nothing of the hub and no
//! `Rc` has to be smuggled into a store (wasmtime requires store data to be
//! `Send`; the hub itself is not).

use std::ptr::NonNull;

use crate::scheduler::{GuestKey, ThreadKey};

use wasmtime_wasi::p1::WasiP1Ctx;

/// The data of each green thread's wasmtime `Store`: opaque to embedders,
/// whose host functions get it in their `Caller` (see
/// [`GuestMemory::of`](crate::GuestMemory::of)).
pub struct ThreadData {
    /// The guest's key in its hub.
    pub(crate) guest: GuestKey,
    /// The green thread's key in its guest (changed when a worker is handed
    /// to the guest's next green thread).
    pub(crate) thread: ThreadKey,
    wasi: WasiPtr,
    /// The compact model's unwinding state (None on a fiber: see
    /// `crate::guest::unwind`).
    pub(crate) unwinder: Option<Box<crate::guest::unwind::Unwinder>>,
}

impl std::fmt::Debug for ThreadData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadData")
            .field("guest", &self.guest)
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

impl ThreadData {
    pub(crate) fn new(guest: GuestKey, thread: ThreadKey, wasi: WasiPtr) -> ThreadData {
        ThreadData {
            guest,
            thread,
            wasi,
            unwinder: None,
        }
    }

    /// The guest's one WASI context, shared by all its green threads.
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        // SAFETY: see `WasiPtr`: the context outlives this store, and the
        // returned borrow (tied to `&mut self`) is the only one in use: WASI
        // functions are synchronous, so two never run at once on the hub's
        // thread, and the hub touches the context only to drop it.
        unsafe { self.wasi.0.as_mut() }
    }
}

/// A guest's WASI context, owned by its hub and pointed at by every store of
/// the guest.
///
/// Every pointer to the context is a copy of the one [`WasiBox::new`] made
/// from `Box::into_raw`, never a reborrow of a reference, so no store's
/// pointer invalidates another's.
pub(crate) struct WasiBox(NonNull<WasiP1Ctx>);

/// A store's copy of its guest's [`WasiBox`] pointer.
#[derive(Clone, Copy)]
pub(crate) struct WasiPtr(NonNull<WasiP1Ctx>);

// SAFETY: the pointer is dereferenced only on the hub's OS thread: a hub and
// every store it runs stay there (`Hub` is neither `Send` nor `Sync`). The
// one store that leaves is a dead worker's, dropped on the reaper thread
// (`reaper::bury`), and dropping a store never dereferences it. wasmtime
// merely requires store data to be `Send`.
unsafe impl Send for WasiPtr {}

// SAFETY: the box owns its context alone; the stores' copies of the pointer
// are used on the hub's thread while the guest lives. It moves to the reaper
// thread only in an ended guest's `LiveGuest`, sent after every call and
// worker of the guest (`reaper::bury`), and the reaper drops in the order
// sent: no store of the guest can use the context then, or after.
unsafe impl Send for WasiBox {}

/// The context itself may change threads (what the impl above relies on).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<WasiP1Ctx>();
};

impl WasiBox {
    pub(crate) fn new(wasi: WasiP1Ctx) -> WasiBox {
        WasiBox(NonNull::from(Box::leak(Box::new(wasi))))
    }

    /// A pointer for one store. The hub drops every store of the guest
    /// before the `WasiBox`.
    pub(crate) fn ptr(&self) -> WasiPtr {
        WasiPtr(self.0)
    }
}

impl Drop for WasiBox {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`; the hub drops every store
        // (and with it every `WasiPtr`) of the guest before this.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

impl crate::guest::unwind::Unwinding for ThreadData {
    fn unwinder(&mut self) -> &mut crate::guest::unwind::Unwinder {
        self.unwinder
            .as_deref_mut()
            .expect("the compact model's store has an unwinder")
    }
}

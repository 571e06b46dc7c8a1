//! How host functions reach the state of the hub running on their thread.

use std::cell::{Cell, RefCell};

use wasmtime::{format_err, Result};

use super::HubState;
use crate::scheduler::GuestKey;

thread_local! {
    /// The state of the hub whose `run` is on this thread's stack.
    static ENTERED: Cell<*const RefCell<HubState>> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with `state` as the hub that host functions on this thread
/// reach; the one before is back when `f` returns or unwinds. The pointer is
/// lent for the closure's run only (as tokio lends its context): a guard
/// could be forgotten (`mem::forget`) and leave it dangling.
pub(crate) fn scoped<R>(state: &RefCell<HubState>, f: impl FnOnce() -> R) -> R {
    /// Puts the previous pointer back, however `f` ends.
    struct Restore(*const RefCell<HubState>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENTERED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(ENTERED.with(|e| e.replace(state)));
    f()
}

/// Runs `f` on the state of the hub that is running on this thread, for a
/// green thread of `guest`.
///
/// # Errors
/// If no hub is running here, its state is already borrowed, or the guest
/// has ended (none of which a green thread calling a host function meets;
/// the error traps the caller rather than panic in the host).
pub(crate) fn with<R>(guest: GuestKey, f: impl FnOnce(&mut HubState) -> R) -> Result<R> {
    let state = ENTERED.with(Cell::get);
    if state.is_null() {
        return Err(format_err!("a hub function was called outside Hub::run"));
    }
    // SAFETY: `scoped` stored a reference that outlives the closure it runs,
    // and puts the previous pointer back before the closure's run ends.
    let state = unsafe { &*state };
    let mut state = state
        .try_borrow_mut()
        .map_err(|_| format_err!("a hub function was called while the hub was busy"))?;
    if !state.sched.is_live(guest) {
        return Err(format_err!(
            "a hub function was called by a guest that has ended"
        ));
    }
    Ok(f(&mut state))
}

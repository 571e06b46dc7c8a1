//! The calling guest's memory for the embedder's host functions: reads and
//! writes through the hub's bounds checks.

use crate::guest::store_data::ThreadData;
use crate::scheduler::GuestKey;

/// The calling guest's linear memory, as a host function sees it: every
/// read and write is bounds-checked.
#[derive(Clone, Copy, Debug)]
pub struct GuestMemory {
    guest: GuestKey,
}

impl GuestMemory {
    /// The memory of the guest whose green thread called.
    pub fn of(caller: &wasmtime::Caller<'_, ThreadData>) -> GuestMemory {
        GuestMemory {
            guest: caller.data().guest,
        }
    }

    /// `len` bytes at `at`.
    ///
    /// # Errors
    /// If they are not all inside the guest's memory, or if this is used
    /// outside a host function the guest called (the hub is not running on
    /// this thread). The error traps the calling green thread if returned.
    pub fn read(&self, at: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
        crate::hub_state::with(self.guest, |s| {
            s.read_guest_memory(self.guest, at, len as usize)
        })?
        .ok_or_else(|| {
            wasmtime::format_err!("{len} bytes at {at:#x} are outside the guest's memory")
        })
    }

    /// Writes `bytes` at `at`.
    ///
    /// # Errors
    /// As [`GuestMemory::read`].
    pub fn write(&self, at: u32, bytes: &[u8]) -> wasmtime::Result<()> {
        if crate::hub_state::with(self.guest, |s| s.write_guest_memory(self.guest, at, bytes))? {
            Ok(())
        } else {
            wasmtime::bail!(
                "{} bytes at {at:#x} are outside the guest's memory",
                bytes.len()
            )
        }
    }
}

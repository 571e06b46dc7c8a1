//! What a guest imports from the host: `hub_imports` (the hub interface of
//! `wit/hub.wit`: spawn, kill, join, sleep, park, futexes, calls),
//! `net_imports` (its `net` interface), and the WASI functions the hub
//! answers itself (`wasi_overrides`, with `wasi_poll` for `poll_oneoff`).
//! Every one of them is a [`host_call`]: it runs as the green thread that
//! called it and waits without blocking the hub. `guest_memory` is the
//! calling guest's memory as the embedder's own host functions see it.
//!
//! [`add_to_linker`] registers them all, from this one place.

pub(crate) mod guest_memory;
pub(crate) mod host_call;
pub(crate) mod hub_imports;
pub(crate) mod net_imports;
pub(crate) mod wasi_overrides;
pub(crate) mod wasi_poll;

use wasmtime::{Linker, Result};

use crate::guest::store_data::ThreadData;

/// Adds every host function a guest may import: the hub and net interfaces,
/// WASI preview 1, and the hub's own answers to the WASI calls that would
/// block (they replace wasmtime-wasi's, so they come after it).
///
/// # Errors
/// If a name is defined twice (a bug of the host's).
pub(crate) fn add_to_linker(linker: &mut Linker<ThreadData>) -> Result<()> {
    hub_imports::add_to_linker(linker)?;
    net_imports::add_to_linker(linker)?;
    wasmtime_wasi::p1::add_to_linker_sync(linker, ThreadData::wasi)?;
    wasi_overrides::add_to_linker(linker)?;
    Ok(())
}

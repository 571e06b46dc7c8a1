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

use crate::abi::HUB_MODULE;
use crate::guest::store_data::ThreadData;
use net_imports::NET_MODULE;

/// WASI preview 1's import module.
const P1: &str = "wasi_snapshot_preview1";

/// The host's own imports that may make their green thread wait: every one
/// defined with `host_call::func_wrap_green` (which refuses a name of the
/// host's modules missing here). The compact model's transform instruments
/// only the code that can reach these (and the embedder's functions).
pub(crate) const WAITING_IMPORTS: &[(&str, &str)] = &[
    (HUB_MODULE, "sleep"),
    (HUB_MODULE, "join"),
    (HUB_MODULE, "park"),
    (HUB_MODULE, "wait32"),
    (HUB_MODULE, "wait64"),
    (HUB_MODULE, "kill"),
    (HUB_MODULE, "cancel"),
    (NET_MODULE, "tcp-accept"),
    (NET_MODULE, "tcp-connect"),
    (NET_MODULE, "tls-connect"),
    (NET_MODULE, "read"),
    (NET_MODULE, "readable"),
    (NET_MODULE, "write"),
    (NET_MODULE, "udp-send-to"),
    (NET_MODULE, "udp-recv-from"),
    (NET_MODULE, "resolve"),
    (P1, "fd_read"),
    (P1, "fd_write"),
    (P1, "poll_oneoff"),
    (P1, "sched_yield"),
];

/// Whether the import `module::name` may make its green thread wait: one
/// of [`WAITING_IMPORTS`], or any function of a module the host does not
/// define (an embedder's: the host cannot tell its sync functions from its
/// async ones by name, and instrumenting one that never waits costs only
/// speed).
pub(crate) fn may_wait(module: &str, name: &str) -> bool {
    if is_hosts(module) {
        WAITING_IMPORTS.contains(&(module, name))
    } else {
        true
    }
}

/// Whether `module` is one of the host's own import modules.
pub(crate) fn is_hosts(module: &str) -> bool {
    matches!(module, HUB_MODULE | NET_MODULE | P1 | "wasi")
}

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

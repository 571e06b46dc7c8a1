//! The host's descriptors as guests use them, none of them ever blocking the
//! hub's OS thread: the readiness `poller` (epoll) and its waiters, `stdio`
//! (the host's stdin, stdout and stderr), `net_sockets` (a guest's sockets)
//! and `net_policy` (what it may reach), the `resolver` (name lookups on a
//! few shared host threads), and the `descriptor_budget` (the process's
//! descriptors shared between guests). Nothing here knows wasm.

pub(crate) mod descriptor_budget;
pub(crate) mod net_outcome;
pub mod net_policy;
pub(crate) mod net_sockets;
pub(crate) mod poller;
pub(crate) mod resolver;
pub(crate) mod stdio;
pub mod tls;

//! What hosts and clients say to each other over NATS: the one place the
//! subjects, headers and announcement fields are named.
//!
//! ```text
//!   client ── request wasmlet.call.PLUGIN ───────────► one host of the queue
//!             headers Wasmlet-Function: F                group `wasmlet.PLUGIN`
//!                     Wasmlet-Timeout-Ms: MS
//!             body    the input
//!          ◄─ reply ────────────────────────────────── body: the output, or
//!             headers Wasmlet-Host: NAME                 the error's message
//!                     [Wasmlet-Error: KIND]
//!
//!   client ── request wasmlet.status ───────────────► every host answers
//!          ◄─ HostStatus as JSON, one per host           (no queue group)
//!
//!   host ──── publish wasmlet.hosts.NAME ────────────► each second, and on
//!             HostStatus as JSON                         its way out
//! ```
//!
//! Plugin and host names are one subject token each (letters, digits, `-`,
//! `_`: the manifest checks), so a subject never has more parts than these.

use serde::{Deserialize, Serialize};

/// The value of the header `name` of a call or an answer, if it has one.
pub fn header(message: &async_nats::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_string())
}

/// The subject a plugin is called on.
pub fn call_subject(plugin: &str) -> String {
    format!("wasmlet.call.{plugin}")
}

/// The queue group of the hosts that serve a plugin: NATS gives each call
/// to one of them.
pub fn queue_group(plugin: &str) -> String {
    format!("wasmlet.{plugin}")
}

/// Every host answers a request on this subject with its [`HostStatus`].
pub const STATUS_SUBJECT: &str = "wasmlet.status";

/// The subject a host announces itself on.
pub fn announce_subject(host: &str) -> String {
    format!("wasmlet.hosts.{host}")
}

/// What every announcement matches.
pub const ANNOUNCEMENTS: &str = "wasmlet.hosts.*";

/// The JetStream object store bucket `wasmlet push` stores modules in.
pub const PLUGIN_BUCKET: &str = "wasmlet-plugins";

/// The function to call (a request header).
pub const FUNCTION_HEADER: &str = "Wasmlet-Function";
/// The caller's time left, in milliseconds (a request header): the host
/// cancels the call's green thread when it has passed.
pub const TIMEOUT_HEADER: &str = "Wasmlet-Timeout-Ms";
/// The host that answered (a reply header).
pub const HOST_HEADER: &str = "Wasmlet-Host";
/// Set on a reply that is an error: its kind, the body its message (a
/// reply header). The kinds are `ServeError::kind`'s.
pub const ERROR_HEADER: &str = "Wasmlet-Error";

/// Error kinds that mean the call did not run, so that a client may send it
/// again (to whichever host NATS picks).
pub const NOT_RUN: [&str; 3] = ["host_busy", "draining", "plugin_busy"];

/// What a host says of itself, in announcements and status answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostStatus {
    /// Its name (`[server] name`, else `HOSTNAME-PID`).
    pub host: String,
    /// Where it takes HTTP calls, health and metrics checks.
    pub http: String,
    /// The plugins it serves.
    pub plugins: Vec<String>,
    /// Calls it runs now.
    pub in_flight: usize,
    /// The most it runs at once; at that many it stops taking calls.
    pub max_in_flight: usize,
    /// Whether it takes calls from NATS now (not at its limit, not
    /// draining).
    pub taking: bool,
    /// Whether it is on its way out (SIGTERM): it takes no calls.
    pub draining: bool,
    /// Calls it has answered since it started.
    pub calls: u64,
    /// Seconds since it started.
    pub uptime_s: u64,
}

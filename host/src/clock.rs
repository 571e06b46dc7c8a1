//! The guests' clocks: WASI's `clock_time_get`, answered by the hub (and the
//! clocks `poll_oneoff`'s deadlines are read on).
//!
//! wasmtime-wasi's own `clock_time_get` looks the guest's memory export up
//! by name on every call, which made a green thread's `Instant::now()` cost
//! about a microsecond once thousands of green threads had pushed the
//! lookup's data out of the cache. The hub already holds each guest's
//! memory, so it answers the call itself (`wasi_overrides`). Its monotonic clock is also
//! the one WASI's `poll_oneoff` uses ([`MonotonicClock`], installed in every
//! guest's WASI context), so absolute deadlines there agree with it.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use wasmtime_wasi::HostMonotonicClock;

use crate::abi::errno;

/// The instant every guest's monotonic clock counts from: a day before the
/// clock was first read (any origin will do; this one makes a clock that
/// disagrees with it obvious).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

/// Nanoseconds since [`origin`].
pub(crate) fn monotonic_ns() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The monotonic clock of every guest's WASI context: the same as
/// `clock_time_get`'s.
pub(crate) struct MonotonicClock;

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        monotonic_ns()
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// WASI's `clock_time_get` for clock `id`: nanoseconds, or the errno to
/// answer with.
pub(crate) fn now(id: i32) -> Result<u64, i32> {
    match id {
        0 => Ok(realtime_ns()),
        1 => Ok(monotonic_ns()),
        // The CPU-time clocks, which WASI hosts do not offer.
        2 | 3 => Err(errno::BADF),
        _ => Err(errno::INVAL),
    }
}

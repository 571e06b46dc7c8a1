//! When a running green thread is paused so that other guests run: at the
//! end of its time slice, or as soon as another guest's timer comes due.
//!
//! wasmtime interrupts wasm at *epoch ticks*: the runtime's ticker thread
//! advances the engine's epoch every [`tick`] (1 ms, or the time slice if
//! shorter), and a running store whose deadline (always the next tick) has
//! come calls the hub back. The hub then pauses it if
//!
//! - it has run a whole time slice since its step began (10 ticks of the
//!   default 10 ms slice), or
//! - a timer of *another* guest is due: that guest's wake-up should not wait
//!   for the rest of the slice (a 1 ms timer beside a spinning guest was
//!   about 9 ms late at p50; now it waits for the next tick at most).
//!
//! and lets it go on otherwise. A callback every millisecond per running
//! store costs a few hundred nanoseconds a millisecond; the hot path (a
//! switch, a spawn) is unchanged.

use std::time::Duration;

/// The ticker's period for a time slice of `slice`: 1 ms, or the slice
/// itself if shorter.
pub fn tick(slice: Duration) -> Duration {
    slice
        .min(Duration::from_millis(1))
        .max(Duration::from_micros(1))
}

/// Ticks in one time slice of `slice` (at least 1).
pub fn ticks_per_slice(slice: Duration) -> u64 {
    let ticks = slice.as_nanos() / tick(slice).as_nanos();
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Whether a green thread that has run `ticks_run` ticks of a slice of
/// `slice_ticks` is paused now, given whether another guest's timer is due.
pub fn pause(ticks_run: u64, slice_ticks: u64, foreign_timer_due: bool) -> bool {
    ticks_run >= slice_ticks || foreign_timer_due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_is_counted_in_millisecond_ticks() {
        assert_eq!(tick(Duration::from_millis(10)), Duration::from_millis(1));
        assert_eq!(ticks_per_slice(Duration::from_millis(10)), 10);
        assert_eq!(tick(Duration::from_micros(300)), Duration::from_micros(300));
        assert_eq!(ticks_per_slice(Duration::from_micros(300)), 1);
        assert_eq!(ticks_per_slice(Duration::from_micros(1500)), 1);
    }

    #[test]
    fn a_thread_is_paused_at_its_slices_end_or_for_another_guests_timer() {
        assert!(!pause(3, 10, false), "mid-slice, nothing due: it goes on");
        assert!(pause(10, 10, false), "its slice is up");
        assert!(pause(1, 10, true), "a neighbour's timer is due");
    }
}

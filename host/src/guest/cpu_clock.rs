//! The clock a guest's CPU time is measured on: every hub step is timed, from
//! the moment the hub resumes a green thread to the moment it hands the hub
//! back.
//!
//! Measured, not sampled: a guest that computed in bursts shorter than the
//! ticker's period and slept between them was charged almost nothing while
//! its neighbour paid for it. Two reads a step must be cheap, so this clock
//! reads the CPU's time-stamp counter (`rdtsc`, about 11 ns a read on this
//! machine kind, against 30 ns for `Instant::now`) where it is invariant
//! (constant rate, in step across cores: what Linux checks before it uses it
//! as its own clock). Anywhere else it counts nanoseconds with `Instant`.
//!
//! Counter ticks ("cycles") become time at the rate measured against
//! `Instant` since [`start`]: no calibration pause at start-up, and the rate
//! only grows more exact; it is fixed once a second has passed.
//!
//! What it measures is wall time while a step runs: time the OS takes the
//! hub's thread away in mid-step is charged too, as it was to the green
//! thread that was running.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Which source [`cycles`] reads: not yet decided, the time-stamp counter,
/// or `Instant`.
static SOURCE: AtomicU8 = AtomicU8::new(UNDECIDED);
const UNDECIDED: u8 = 0;
const TSC: u8 = 1;
const INSTANT: u8 = 2;

/// When counting began, on both clocks.
static ORIGIN: OnceLock<(Instant, u64)> = OnceLock::new();

/// Nanoseconds per cycle in 32.32 fixed point, once the rate is fixed (0
/// before).
static FIXED_RATE: AtomicU64 = AtomicU64::new(0);

/// How long the rate is measured before it is fixed.
const CALIBRATION: Duration = Duration::from_secs(1);

/// Starts the clock (a runtime does, when it is built): the rate is measured
/// from here.
pub fn start() {
    origin();
}

fn origin() -> (Instant, u64) {
    *ORIGIN.get_or_init(|| {
        let counter = if source() == TSC { read_tsc() } else { 0 };
        (Instant::now(), counter)
    })
}

fn source() -> u8 {
    match SOURCE.load(Ordering::Relaxed) {
        UNDECIDED => {
            let source = if invariant_tsc() { TSC } else { INSTANT };
            SOURCE.store(source, Ordering::Relaxed);
            source
        }
        source => source,
    }
}

/// Whether the CPU says its time-stamp counter runs at a constant rate
/// whatever the power state (CPUID leaf 0x8000_0007, EDX bit 8).
#[cfg(target_arch = "x86_64")]
fn invariant_tsc() -> bool {
    use std::arch::x86_64::__cpuid;
    // `__cpuid` is safe to call on every x86-64 CPU.
    let highest = __cpuid(0x8000_0000).eax;
    highest >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn invariant_tsc() -> bool {
    false
}

fn read(source: u8) -> u64 {
    if source == TSC {
        return read_tsc();
    }
    u64::try_from(origin().0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(target_arch = "x86_64")]
fn read_tsc() -> u64 {
    // SAFETY: `rdtsc` only reads the counter; every x86-64 CPU has it.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_tsc() -> u64 {
    // Never chosen off x86-64 (`invariant_tsc` says no).
    0
}

/// The clock now, in cycles: only differences of two readings mean
/// anything ([`between`]).
#[inline]
pub fn cycles() -> u64 {
    read(source())
}

/// Cycles from `earlier` to `later` (0 if a migration between CPUs made the
/// counter seem to step back).
#[inline]
pub fn between(earlier: u64, later: u64) -> u64 {
    later.saturating_sub(earlier)
}

/// `cycles` as time.
pub fn to_duration(cycles: u64) -> Duration {
    if source() == INSTANT {
        return Duration::from_nanos(cycles);
    }
    let rate = match FIXED_RATE.load(Ordering::Relaxed) {
        0 => match measured_rate() {
            Some(rate) => rate,
            None => return Duration::ZERO,
        },
        rate => rate,
    };
    let nanos = (u128::from(cycles) * u128::from(rate)) >> 32;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Nanoseconds per cycle (32.32) since [`start`]; fixed once
/// [`CALIBRATION`] has passed. None at the very start, when no cycle has
/// passed yet.
fn measured_rate() -> Option<u64> {
    let (instant, counter) = origin();
    let elapsed = instant.elapsed();
    let cycles = between(counter, read_tsc());
    if cycles == 0 {
        return None;
    }
    let rate = (elapsed.as_nanos() << 32) / u128::from(cycles);
    let rate = u64::try_from(rate).unwrap_or(u64::MAX).max(1);
    if elapsed >= CALIBRATION {
        FIXED_RATE.store(rate, Ordering::Relaxed);
    }
    Some(rate)
}

/// Measures the rate until it is fixed, so that [`to_duration`] is cheap
/// from then on (the runtime's ticker calls this at each tick; a load once
/// the rate is fixed).
pub fn settle() {
    if source() == TSC && FIXED_RATE.load(Ordering::Relaxed) == 0 {
        let _ = measured_rate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_measure_time_as_instant_does() {
        start();
        let (began, at) = (cycles(), Instant::now());
        // A busy wait: what the clock is for is time spent computing.
        while at.elapsed() < Duration::from_millis(20) {}
        let measured = to_duration(between(began, cycles()));
        let real = at.elapsed();
        let ratio = measured.as_secs_f64() / real.as_secs_f64();
        assert!(
            (0.8..1.25).contains(&ratio),
            "measured {measured:?} for {real:?}"
        );
    }

    #[test]
    fn a_counter_that_steps_back_measures_nothing() {
        assert_eq!(between(10, 5), 0);
        assert_eq!(between(5, 10), 5);
    }
}

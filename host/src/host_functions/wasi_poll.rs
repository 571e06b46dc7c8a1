//! WASI's `poll_oneoff`, answered by the hub: clock subscriptions become a
//! hub timer that suspends only the calling green thread.
//!
//! wasmtime-wasi's own `poll_oneoff` sleeps the OS thread, so one green
//! thread in `std::thread::sleep` stalled every green thread of every guest.
//! Here the call is parsed, the earliest clock deadline becomes a green
//! sleep, and the events of every subscription due by then are written back.
//! File-descriptor subscriptions are reported ready at once (readiness may
//! be spurious in `poll`; the read or write that follows is what blocks),
//! until the hub's poller serves them.
//!
//! Layouts (WASI preview 1, little-endian):
//!
//! ```text
//! subscription (48 bytes)            event (32 bytes)
//!   0  userdata   u64                  0  userdata  u64
//!   8  tag        u8 (0 clock,         8  error     u16 (errno)
//!                     1 fd_read,      10  type      u8 (= the tag)
//!                     2 fd_write)     16  nbytes    u64 (fd events)
//!  16  clock id   u32 | fd u32        24  flags     u16
//!  24  timeout    u64 (ns)
//!  32  precision  u64
//!  40  flags      u16 (bit 0: absolute time)
//! ```

use std::time::Duration;

/// Bytes of one subscription.
pub(crate) const SUBSCRIPTION_SIZE: usize = 48;
/// Bytes of one event.
pub(crate) const EVENT_SIZE: usize = 32;

const ERRNO_INVAL: u16 = 28;
const ERRNO_NOTSUP: u16 = 58;

const TAG_CLOCK: u8 = 0;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;

/// One subscription, with its clock deadline resolved to the hub's
/// monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subscription {
    userdata: u64,
    tag: u8,
    what: What,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    /// A clock due at this monotonic instant (ns).
    Clock { deadline: u64 },
    /// Ready at once: an fd (reported ready), or an error to report.
    Now { error: u16 },
}

/// The subscriptions in `bytes` (a whole number of them). `mono_now` and
/// `real_now` are the monotonic and wall clocks, in ns, at the call.
pub(crate) fn parse(bytes: &[u8], mono_now: u64, real_now: u64) -> Vec<Subscription> {
    bytes
        .chunks_exact(SUBSCRIPTION_SIZE)
        .map(|s| {
            let u64_at = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
            let u32_at = |at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
            let userdata = u64_at(0);
            let tag = s[8];
            let what = match tag {
                TAG_CLOCK => {
                    let (id, timeout) = (u32_at(16), u64_at(24));
                    let abstime = u16::from_le_bytes([s[40], s[41]]) & SUBCLOCK_ABSTIME != 0;
                    match (id, abstime) {
                        (CLOCK_MONOTONIC | CLOCK_REALTIME, false) => What::Clock {
                            deadline: mono_now.saturating_add(timeout),
                        },
                        (CLOCK_MONOTONIC, true) => What::Clock { deadline: timeout },
                        (CLOCK_REALTIME, true) => What::Clock {
                            deadline: mono_now.saturating_add(timeout.saturating_sub(real_now)),
                        },
                        // The CPU-time clocks, which WASI hosts do not offer.
                        _ => What::Now { error: ERRNO_INVAL },
                    }
                }
                1 | 2 => What::Now { error: 0 },
                _ => What::Now {
                    error: ERRNO_NOTSUP,
                },
            };
            Subscription {
                userdata,
                tag,
                what,
            }
        })
        .collect()
}

/// How long the call waits before any subscription is due: zero if one is
/// due at once.
pub(crate) fn wait(subscriptions: &[Subscription], mono_now: u64) -> Duration {
    let earliest = subscriptions
        .iter()
        .map(|s| match s.what {
            What::Clock { deadline } => deadline.saturating_sub(mono_now),
            What::Now { .. } => 0,
        })
        .min()
        .unwrap_or(0);
    Duration::from_nanos(earliest)
}

/// The events of the subscriptions due at `mono_now`, encoded, and how many.
pub(crate) fn events(subscriptions: &[Subscription], mono_now: u64) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    let mut count = 0;
    for s in subscriptions {
        let error = match s.what {
            What::Clock { deadline } if deadline <= mono_now => 0,
            What::Clock { .. } => continue,
            What::Now { error } => error,
        };
        let mut event = [0u8; EVENT_SIZE];
        event[0..8].copy_from_slice(&s.userdata.to_le_bytes());
        event[8..10].copy_from_slice(&error.to_le_bytes());
        event[10] = s.tag;
        out.extend_from_slice(&event);
        count += 1;
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(userdata: u64, id: u32, timeout: u64, abstime: bool) -> [u8; SUBSCRIPTION_SIZE] {
        let mut s = [0u8; SUBSCRIPTION_SIZE];
        s[0..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = TAG_CLOCK;
        s[16..20].copy_from_slice(&id.to_le_bytes());
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[40] = u8::from(abstime);
        s
    }

    #[test]
    fn a_relative_sleep_waits_its_timeout_then_reports_its_clock() {
        let subs = parse(&clock(7, CLOCK_MONOTONIC, 5_000, false), 1_000, 0);
        assert_eq!(wait(&subs, 1_000), Duration::from_nanos(5_000));
        assert_eq!(events(&subs, 5_999).1, 0, "not yet due");
        let (bytes, n) = events(&subs, 6_000);
        assert_eq!(n, 1);
        assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), 7);
        assert_eq!(&bytes[8..11], &[0, 0, TAG_CLOCK]);
    }

    #[test]
    fn absolute_deadlines_count_from_their_own_clock() {
        let mut bytes = clock(1, CLOCK_MONOTONIC, 9_000, true).to_vec();
        bytes.extend(clock(2, CLOCK_REALTIME, 50_000, true));
        let subs = parse(&bytes, 1_000, 47_000);
        assert_eq!(
            wait(&subs, 1_000),
            Duration::from_nanos(3_000),
            "realtime is 3 µs away"
        );
        assert_eq!(events(&subs, 4_000).1, 1);
        assert_eq!(events(&subs, 9_000).1, 2);
    }

    #[test]
    fn fd_subscriptions_and_bad_clocks_are_due_at_once() {
        let mut fd = [0u8; SUBSCRIPTION_SIZE];
        fd[8] = 1;
        let mut bytes = fd.to_vec();
        bytes.extend(clock(3, 2, 1_000_000, false));
        bytes.extend(clock(4, CLOCK_MONOTONIC, 1_000_000, false));
        let subs = parse(&bytes, 0, 0);
        assert_eq!(wait(&subs, 0), Duration::ZERO);
        let (events, n) = events(&subs, 0);
        assert_eq!(n, 2);
        assert_eq!(u16::from_le_bytes([events[8], events[9]]), 0, "fd ready");
        assert_eq!(
            u16::from_le_bytes([events[40], events[41]]),
            ERRNO_INVAL,
            "cputime clock"
        );
    }

    #[test]
    fn a_timeout_past_the_end_of_time_saturates() {
        let subs = parse(&clock(1, CLOCK_MONOTONIC, u64::MAX, false), 5, 0);
        assert_eq!(wait(&subs, 5), Duration::from_nanos(u64::MAX - 5));
    }
}

//! The hub's answer to WASI's clock_time_get: wall time, a monotonic clock
//! shared by green threads and by WASI's poll_oneoff (relative and absolute
//! deadlines), the CPU-time clocks refused, a bad pointer refused.
use std::time::{Duration, Instant, SystemTime};

#[repr(C)]
struct SubscriptionClock {
    id: u32,
    timeout: u64,
    precision: u64,
    flags: u16,
}

#[repr(C)]
struct Subscription {
    userdata: u64,
    tag: u8,
    clock: SubscriptionClock,
}

#[repr(C)]
#[derive(Default)]
struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
    nbytes: u64,
    flags: u16,
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn clock_time_get(id: u32, precision: u64, out: *mut u64) -> u16;
    fn poll_oneoff(
        subscriptions: *const Subscription,
        events: *mut Event,
        count: usize,
        events_out: *mut usize,
    ) -> u16;
}

const MONOTONIC: u32 = 1;
const ABSTIME: u16 = 1;

fn raw_clock(id: u32) -> (u16, u64) {
    let mut now = 0;
    // SAFETY: `now` is a valid u64 to write.
    let errno = unsafe { clock_time_get(id, 1, &mut now) };
    (errno, now)
}

fn main() {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    println!("unix seconds: {unix}");

    let t0 = Instant::now();
    let later = wasmlet::spawn(|| {
        let _ = wasmlet::sleep(Duration::from_millis(5));
        Instant::now()
    })
    .wait()
    .unwrap();
    println!(
        "monotonic across green threads: {}",
        later.duration_since(t0) >= Duration::from_millis(5)
    );

    let t1 = Instant::now();
    std::thread::sleep(Duration::from_millis(3));
    println!(
        "WASI relative sleep: {}",
        t1.elapsed() >= Duration::from_millis(3)
    );

    // An absolute deadline 5 ms past clock_time_get's monotonic now fires
    // first only if poll_oneoff's clock is the same one; a relative 2 s
    // deadline stops the wait if not.
    let (_, now) = raw_clock(MONOTONIC);
    let clock = |userdata, timeout, flags| Subscription {
        userdata,
        tag: 0,
        clock: SubscriptionClock {
            id: MONOTONIC,
            timeout,
            precision: 0,
            flags,
        },
    };
    let subs = [
        clock(7, now + 5_000_000, ABSTIME),
        clock(8, 2_000_000_000, 0),
    ];
    let mut events = [Event::default(), Event::default()];
    let mut n = 0;
    let t2 = Instant::now();
    // SAFETY: two valid subscriptions, room for two events.
    let errno = unsafe { poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), 2, &mut n) };
    println!(
        "WASI absolute deadline: errno {errno}, first fired: {}, waited 5 ms: {}",
        events[0].userdata,
        t2.elapsed() >= Duration::from_millis(4)
    );

    println!("process cputime clock: errno {}", raw_clock(2).0);
    println!("thread cputime clock: errno {}", raw_clock(3).0);
    println!("unknown clock: errno {}", raw_clock(99).0);
    // SAFETY: a pointer past the end of memory: the host refuses to write.
    let errno = unsafe { clock_time_get(MONOTONIC, 1, 0xffff_fffc_usize as *mut u64) };
    println!("pointer past memory: errno {errno}");
}

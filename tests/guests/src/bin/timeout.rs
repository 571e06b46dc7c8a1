//! Timeout: bounds a blocking call; nested timeouts fire their own errors;
//! a cancelled timeout never fires; with_timeout; sleep cut short; a timeout
//! that expires while the thread runs fires at its next suspension.
use std::time::{Duration, Instant};

use wasmlet::{
    with_timeout, Event, EventError, GreenPool, GreenThreadError, Queue, Semaphore, Timeout,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn main() {
    let q: Queue<u32> = Queue::new();

    let t = Timeout::new(ms(10));
    let err = q.get().unwrap_err();
    println!(
        "get under a timeout: {err}; it was ours: {}; fired {}, pending {}",
        err.timed_out().unwrap().is(&t),
        t.fired(),
        t.pending()
    );
    drop(t);

    let cancelled = Timeout::new(ms(5));
    cancelled.cancel();
    let err = q.get_timeout(ms(30)).unwrap_err();
    println!(
        "cancelled timeout: fired {}; the call's own limit ended the get: {}",
        cancelled.fired(),
        !err.timed_out().unwrap().is(&cancelled)
    );

    {
        let outer = Timeout::new(ms(10));
        let inner = Timeout::new(ms(2000));
        let err = q.get().unwrap_err().timed_out().unwrap();
        println!(
            "outer sooner: outer fired {}, inner fired {}, inner pending {}",
            err.is(&outer),
            err.is(&inner),
            inner.pending()
        );
    }
    {
        let outer = Timeout::new(ms(40));
        let inner = Timeout::new(ms(5));
        let first = q.get().unwrap_err().timed_out().unwrap();
        let second = q.get().unwrap_err().timed_out().unwrap();
        println!(
            "inner sooner: first is inner {}, second is outer {}",
            first.is(&inner),
            second.is(&outer)
        );
    }

    let t = Timeout::new(ms(5));
    let start = Instant::now();
    let _ = wasmlet::sleep(Duration::from_secs(10));
    println!(
        "sleep cut short: {}, fired {}",
        start.elapsed() < Duration::from_secs(5),
        t.fired()
    );
    drop(t);

    let sleeper = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
    let t = Timeout::new(ms(5));
    match sleeper.wait() {
        Err(GreenThreadError::Interrupted(e)) => {
            println!(
                "wait on a green thread: {}; ours {}, target dead {}",
                GreenThreadError::Interrupted(e.clone()),
                e.is(&t),
                sleeper.dead()
            )
        }
        other => println!("wait on a green thread: {other:?}"),
    }
    sleeper.kill();
    drop(t);

    let event: Event = Event::new();
    let t = Timeout::new(ms(5));
    println!(
        "event wait: {}",
        matches!(event.wait(), Err(EventError::Interrupted(e)) if e.is(&t))
    );
    drop(t);

    let sem = Semaphore::new(0);
    let t = Timeout::new(ms(5));
    println!(
        "acquire: ours {}, balance after {}",
        sem.acquire().unwrap_err().is(&t),
        sem.balance()
    );
    drop(t);

    let pool = GreenPool::new(1);
    pool.spawn_n(|| wasmlet::sleep(ms(100))).unwrap();
    let t = Timeout::new(ms(5));
    println!(
        "spawn into a full pool: ours {}, waiting after {}",
        pool.spawn(|| ()).unwrap_err().is(&t),
        pool.waiting()
    );
    drop(t);

    let got = with_timeout(ms(5), "default", || {
        let _ = q.get();
        "value"
    });
    println!("with_timeout expiring: {got}");
    println!(
        "with_timeout in time: {}",
        with_timeout(ms(1000), "default", || "quick")
    );

    // Expires while the green thread computes: fires at its next suspension.
    let t = Timeout::new(ms(2));
    let spin = Instant::now();
    while spin.elapsed() < ms(10) {}
    println!("pending after spinning past the deadline: {}", t.pending());
    q.put(1).unwrap();
    let got = q.get();
    println!("next blocking call (an item is ready): {got:?}");
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("then the yield: fired {}", t.fired());
}

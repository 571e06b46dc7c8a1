//! The rest of eventlet's API that its users reach for, each modelled on
//! eventlet's own behaviour (its test cases where it has one): Timeout with
//! a custom error and an unstarted Timeout, interrupted sleeps,
//! CappedSemaphore, started(), cancel with an error, schedule_call_global /
//! schedule_call_local, and a GreenPile shared between green threads.
//! Run with a limit of 8 green threads: 3,000 scheduled calls need none.
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use wasmlet::{CappedSemaphore, GreenPile, GreenThreadError, Interrupted, Queue, Timeout};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn yield_now() {
    wasmlet::sleep(Duration::ZERO).expect("main is never killed");
}

fn main() {
    // Timeout(seconds, exception): the interrupted call carries the error.
    let t = Timeout::with_error(ms(5), "backend too slow");
    let err = wasmlet::sleep(ms(1000)).unwrap_err();
    println!(
        "custom error: {err}; ours {}; custom {:?}",
        err.is(&t),
        err.timed_out()
            .and_then(|t| t.custom_error())
            .map(|e| e.to_string())
    );
    drop(t);

    // An interrupted sleep says so; an uninterrupted one is Ok.
    let t = Timeout::new(ms(5));
    println!(
        "sleep under a timeout: {:?}, then {:?}",
        wasmlet::sleep(ms(1000)).map_err(|e| e.is(&t)),
        wasmlet::sleep(ms(1))
    );
    drop(t);

    // An unstarted timeout fires only once started; start() on a pending
    // one starts it over; a cancelled one can be started again.
    let t = Timeout::unstarted(ms(5));
    let slept = wasmlet::sleep(ms(10));
    println!("unstarted: pending {}, sleep {slept:?}, {t}", t.pending());
    t.start();
    let r = wasmlet::sleep(ms(1000));
    println!(
        "started: {:?}, fired {}",
        r.map_err(|e| e.is(&t)),
        t.fired()
    );
    let t = Timeout::new(ms(20));
    wasmlet::sleep(ms(15)).unwrap();
    t.start(); // 20 ms from now again
    let r = wasmlet::sleep(ms(10));
    println!("restarted: the first deadline passed quietly: {r:?}");
    t.cancel();
    t.start();
    println!(
        "restarted after cancel: pending {}, fires {}",
        t.pending(),
        wasmlet::sleep(ms(1000)).is_err_and(|e| e.is(&t))
    );
    drop(t);

    // CappedSemaphore, as eventlet's test_bounded.
    let sem = CappedSemaphore::new(2, 3);
    sem.acquire().unwrap();
    sem.acquire().unwrap();
    let gt1 = {
        let sem = sem.clone();
        wasmlet::spawn(move || sem.release())
    };
    sem.acquire().unwrap();
    println!("capped balance after three acquires: {}", sem.balance());
    sem.release().unwrap();
    sem.release().unwrap();
    sem.release().unwrap();
    let gt2 = {
        let sem = sem.clone();
        wasmlet::spawn(move || sem.acquire())
    };
    sem.release().unwrap();
    println!(
        "capped balance after four releases: {}; {:?} {:?}",
        sem.balance(),
        gt1.wait(),
        gt2.wait()
    );
    // test_bounded_with_zero_limit: a release hands its permit to an
    // acquirer directly.
    let zero = CappedSemaphore::new(0, 0);
    let gt = {
        let zero = zero.clone();
        wasmlet::spawn(move || zero.acquire())
    };
    zero.release().unwrap();
    println!("zero limit: {:?}", gt.wait());
    let full = CappedSemaphore::new(1, 1);
    println!(
        "at the limit: bounded {}, try_release {}, acquire {}, try_release {}",
        full.bounded(),
        full.try_release(),
        full.try_acquire(),
        full.try_release()
    );
    // A releaser blocked at the limit is admitted by an acquire.
    let releaser = {
        let full = full.clone();
        wasmlet::spawn(move || full.release())
    };
    yield_now();
    println!(
        "releaser waiting: balance {}; acquire {}; then {:?}, count {}",
        full.balance(),
        full.try_acquire(),
        releaser.wait(),
        full.counter()
    );

    // started(): eventlet cancels only what has not started.
    let gt = wasmlet::spawn(|| 1);
    let later = wasmlet::spawn_after(ms(50), || 2);
    let before = (gt.started(), later.started());
    yield_now();
    println!(
        "started: before {before:?}, after a yield {:?}",
        (gt.started(), later.started())
    );
    println!(
        "cancel_with on a pending thread: {}",
        later.cancel_with("not needed")
    );
    match later.wait() {
        Err(GreenThreadError::KilledWith(e)) => println!("  its wait: killed with {e}"),
        other => println!("  its wait: {other:?}"),
    }
    let running = wasmlet::spawn(|| wasmlet::sleep(ms(1)));
    yield_now();
    println!(
        "cancel_with on a started thread: {}, {:?}",
        running.cancel_with("too late"),
        running.wait()
    );

    // schedule_call_global: in deadline order, cancellable, no green
    // thread each (this guest may hold 8).
    let log: Rc<RefCell<Vec<u32>>> = Rc::default();
    let calls: Vec<_> = [30u64, 10, 20, 10]
        .iter()
        .enumerate()
        .map(|(i, &delay)| {
            let log = log.clone();
            wasmlet::schedule_call_global(ms(delay), move || log.borrow_mut().push(i as u32))
        })
        .collect();
    println!(
        "cancel the third: {}, again {}",
        calls[2].cancel(),
        calls[2].cancel()
    );
    wasmlet::sleep(ms(60)).unwrap();
    println!(
        "scheduled calls ran: {:?}; pending after {}",
        log.borrow(),
        calls[0].pending()
    );
    let count = Rc::new(Cell::new(0u32));
    for i in 0..3000u64 {
        let count = count.clone();
        wasmlet::schedule_call_global(ms(5 + i % 10), move || count.set(count.get() + 1));
    }
    let spawned = wasmlet::try_spawn(|| ());
    println!(
        "3000 pending calls, and still room to spawn: {}",
        spawned.is_ok()
    );
    // Timers fire in deadline order: every call (due by 14 ms) is made
    // before main wakes.
    wasmlet::sleep(ms(40)).unwrap();
    println!("3000 calls made: {}", count.get());

    // schedule_call_local: not made once its scheduler has ended.
    let made: Rc<RefCell<Vec<&str>>> = Rc::default();
    let local = {
        let made = made.clone();
        wasmlet::spawn(move || {
            let (a, b) = (made.clone(), made.clone());
            wasmlet::schedule_call_local(ms(5), move || a.borrow_mut().push("local"));
            wasmlet::schedule_call_global(ms(5), move || b.borrow_mut().push("global"));
        })
    };
    local.wait().unwrap();
    let alive = made.clone();
    wasmlet::schedule_call_local(ms(5), move || alive.borrow_mut().push("local, owner alive"));
    wasmlet::sleep(ms(20)).unwrap();
    println!("after the scheduler ended: {:?}", made.borrow());

    // A call that panics does not strand the calls after it.
    wasmlet::hub_exceptions(false);
    let after: Rc<Cell<bool>> = Rc::default();
    wasmlet::schedule_call_global(ms(1), || panic!("a bad callback"));
    let a = after.clone();
    wasmlet::schedule_call_global(ms(2), move || a.set(true));
    wasmlet::sleep(ms(20)).unwrap();
    println!("a call after one that panicked was made: {}", after.get());

    // GreenPile shared: one green thread spawns while another iterates
    // (eventlet's pile is used so from several greenthreads).
    let pile: GreenPile<u32> = GreenPile::new(4);
    pile.spawn(|| {
        wasmlet::sleep(ms(5)).unwrap();
        1
    })
    .unwrap();
    let feeder = {
        let pile = pile.clone();
        wasmlet::spawn(move || -> Result<(), Interrupted> {
            pile.spawn(|| 2)?;
            pile.spawn(|| 3)
        })
    };
    let got: Vec<u32> = pile.clone().map(Result::unwrap).collect();
    println!(
        "pile fed from another thread: {got:?}, feeder {:?}",
        feeder.wait()
    );

    // A putter served (its item queued) and then killed before it ran:
    // its put did what it waited to do; the kill reaches its next call.
    let q: Queue<&str> = Queue::bounded(1);
    q.put("first").unwrap();
    let report: Rc<RefCell<Vec<String>>> = Rc::default();
    let putter = {
        let (q, report) = (q.clone(), report.clone());
        wasmlet::spawn(move || {
            let put = q.put("second");
            report.borrow_mut().push(format!("put {put:?}"));
            let next = wasmlet::sleep(ms(1));
            report.borrow_mut().push(format!("then sleep {next:?}"));
        })
    };
    yield_now();
    println!("got {:?}", q.get()); // admits the putter's item
    putter.kill();
    println!(
        "served putter killed: {:?}; {}; queue holds {:?}",
        report.borrow(),
        putter.wait().is_err(),
        q.items()
    );
}

//! Behaviours that differed from eventlet 0.41.3 (issue 19), each printing
//! what its twin, `tests/twins/eventlet_twins.py`, prints under eventlet.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use wasmlet::{
    CappedSemaphore, GreenPile, GreenPool, GreenThreadError, Interrupted, Queue, Semaphore,
};

fn yield_now() {
    wasmlet::sleep(Duration::ZERO).expect("main is never killed");
}

fn wait_of<T>(r: Result<T, GreenThreadError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(GreenThreadError::Killed) => "killed",
        Err(_) => "failed",
    }
}

fn main() {
    // 1. kill(getcurrent()) while holding a permit: the permit comes back.
    let sem = Semaphore::new(1);
    let holder = {
        let sem = sem.clone();
        wasmlet::spawn(move || -> Result<(), Interrupted> {
            let _permit = sem.guard()?;
            wasmlet::kill(wasmlet::getcurrent());
            // The kill is reported by the next blocking call: return with it.
            wasmlet::sleep(Duration::ZERO)?;
            println!("after the self-kill, still running");
            Ok(())
        })
    };
    println!(
        "self-kill holding a permit: wait {}, balance {}",
        wait_of(holder.wait()),
        sem.balance()
    );

    // 2. CappedSemaphore::balance with blocked acquirers, then a blocked
    //    releaser.
    let capped = CappedSemaphore::new(0, 2);
    let acquirers: Vec<_> = (0..3)
        .map(|_| {
            let capped = capped.clone();
            wasmlet::spawn(move || capped.acquire())
        })
        .collect();
    yield_now();
    println!(
        "capped (0, 2), 3 acquirers blocked: balance {}",
        capped.balance()
    );
    for _ in 0..3 {
        capped.release().unwrap();
    }
    for a in acquirers {
        a.wait().unwrap().unwrap();
    }
    let capped = CappedSemaphore::new(2, 2);
    let releaser = {
        let capped = capped.clone();
        wasmlet::spawn(move || capped.release())
    };
    yield_now();
    println!(
        "capped (2, 2), 1 releaser blocked: balance {}",
        capped.balance()
    );
    capped.acquire().unwrap();
    releaser.wait().unwrap().unwrap();

    // 3. A GreenPile counts a spawn before it waits for a pool slot.
    let pool = GreenPool::new(1);
    let pile = GreenPile::with_pool(pool.clone());
    pool.spawn_n(|| wasmlet::sleep(Duration::from_millis(5)))
        .unwrap();
    let feeder = {
        let pile = pile.clone();
        wasmlet::spawn(move || pile.spawn(|| 1))
    };
    yield_now();
    let got: Vec<i32> = pile.map(Result::unwrap).collect();
    println!("pile iterated while a spawn waits for a slot: {got:?}");
    feeder.wait().unwrap().unwrap();

    // 4. A scheduled call takes a blocked putter's item without waiting
    //    (get_timeout(ZERO): see Queue::get_nowait).
    let q = Queue::bounded(0);
    let putter = {
        let q = q.clone();
        wasmlet::spawn(move || q.put("item").map_err(|_| "put failed"))
    };
    yield_now();
    let got = Rc::new(RefCell::new(Vec::new()));
    {
        let (q, got) = (q.clone(), got.clone());
        wasmlet::schedule_call_global(Duration::ZERO, move || {
            let item = q.get_timeout(Duration::ZERO).unwrap_or("Empty");
            got.borrow_mut().push(item);
        });
    }
    wasmlet::sleep(Duration::from_millis(1)).unwrap();
    putter.wait().unwrap().unwrap();
    println!(
        "a scheduled call took a blocked putter's item: {}",
        got.borrow()[0]
    );
}

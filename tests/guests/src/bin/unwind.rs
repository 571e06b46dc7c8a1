//! Kill that unwinds: the blocking call a killed green thread is suspended
//! in reports the kill, the thread returns through `?`, and what it owned is
//! dropped on the way: `Drop` values, std lock guards, `RefCell` borrows,
//! semaphore permits; its links run, and `wait()` reports the kill. A thread
//! that ignores the kill is ended hard after a bounded number of calls.
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmlet::{Event, GreenPool, GreenThreadError, Interrupted, Queue, Semaphore, Timeout};

/// Records its drop.
struct Owned(Rc<Cell<u32>>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

fn yield_now() {
    wasmlet::sleep(Duration::ZERO).expect("main is never killed");
}

fn describe<T: std::fmt::Debug>(r: &Result<T, GreenThreadError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e})"),
    }
}

/// Many killed threads whose unwinding frees a lot (time in `free`, under
/// wasi-libc's malloc lock), while preemption pauses them: every one must
/// unwind (a thread ended at an arbitrary point could leave the lock held).
fn heavy(threads: usize, strings: usize) {
    let drops = Rc::new(Cell::new(0u32));
    let victims: Vec<_> = (0..threads)
        .map(|_| {
            let d = drops.clone();
            wasmlet::spawn(move || -> Result<(), Interrupted> {
                let _owned = Owned(d);
                let _heap: Vec<String> = (0..strings).map(|i| i.to_string()).collect();
                wasmlet::sleep(Duration::from_secs(3600))
            })
        })
        .collect();
    yield_now();
    let mut killed = 0;
    for v in &victims {
        v.kill();
        if matches!(v.wait(), Err(GreenThreadError::Killed)) {
            killed += 1;
        }
    }
    let after: Vec<String> = (0..strings).map(|i| i.to_string()).collect();
    println!(
        "heavy: {killed} of {threads} killed, {} dropped, allocating after: {}",
        drops.get(),
        after.len()
    );
}

fn main() {
    if let Some(threads) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        heavy(threads, 3000);
        return;
    }
    // 1. Each blocking call reports the kill; the thread's values drop.
    let drops = Rc::new(Cell::new(0));
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let event: Event<u32> = Event::new();
    let queue: Queue<u32> = Queue::new();
    let sem = Semaphore::new(0);
    let sleeper_target = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
    let blockers: Vec<(&str, wasmlet::GreenThread<()>)> = vec![
        ("sleep", {
            let (d, s) = (drops.clone(), seen.clone());
            wasmlet::spawn(move || {
                let _owned = Owned(d);
                let r = wasmlet::sleep(Duration::from_secs(3600));
                s.borrow_mut().push(format!("sleep: {r:?}"));
            })
        }),
        ("event", {
            let (d, s, e) = (drops.clone(), seen.clone(), event.clone());
            wasmlet::spawn(move || {
                let _owned = Owned(d);
                let r = e.wait();
                s.borrow_mut().push(format!("event: {r:?}"));
            })
        }),
        ("queue", {
            let (d, s, q) = (drops.clone(), seen.clone(), queue.clone());
            wasmlet::spawn(move || {
                let _owned = Owned(d);
                let r = q.get();
                s.borrow_mut()
                    .push(format!("queue: killed {}", r.is_err_and(|e| e.is_killed())));
            })
        }),
        ("semaphore", {
            let (d, s, m) = (drops.clone(), seen.clone(), sem.clone());
            wasmlet::spawn(move || {
                let _owned = Owned(d);
                let r = m.acquire();
                s.borrow_mut().push(format!("semaphore: {r:?}"));
            })
        }),
        ("wait", {
            let (d, s, t) = (drops.clone(), seen.clone(), sleeper_target.clone());
            wasmlet::spawn(move || {
                let _owned = Owned(d);
                let r = t.wait();
                s.borrow_mut().push(format!("wait: {}", describe(&r)));
            })
        }),
    ];
    yield_now();
    for (name, gt) in &blockers {
        let killed = gt.kill();
        println!("kill {name}: {killed}, wait: {}", describe(&gt.wait()));
    }
    for line in seen.borrow().iter() {
        println!("  reported {line}");
    }
    println!(
        "  values dropped: {} of {}; waiting on event {}, semaphore balance {}",
        drops.get(),
        blockers.len(),
        event.waiting(),
        sem.balance()
    );
    sleeper_target.kill();

    // 2. A std lock held across a sleep is released; a RefCell borrow held
    // across a queue get ends; a semaphore permit held as a guard goes back.
    let lock = Arc::new(Mutex::new(0));
    let cell = Rc::new(RefCell::new(0));
    let permits = Semaphore::new(1);
    let holder = {
        let (lock, cell, permits) = (lock.clone(), cell.clone(), permits.clone());
        wasmlet::spawn(move || -> Result<(), Interrupted> {
            let _guard = permits.guard()?;
            let mut held = lock.lock().unwrap();
            let mut borrowed = cell.borrow_mut();
            *held += 1;
            *borrowed += 1;
            wasmlet::sleep(Duration::from_secs(3600))?;
            unreachable!("killed while asleep");
        })
    };
    yield_now();
    println!(
        "held: lock free {}, cell free {}, permits {}",
        lock.try_lock().is_ok(),
        cell.try_borrow_mut().is_ok(),
        permits.counter()
    );
    holder.kill();
    println!(
        "after kill: lock free {}, cell free {}, permits {}, wait {}",
        lock.try_lock().is_ok(),
        cell.try_borrow_mut().is_ok(),
        permits.counter(),
        describe(&holder.wait())
    );

    // 3. The pool slot of a killed member goes back; so does a queue item
    // handed to a getter that was killed before it ran.
    let pool = GreenPool::new(2);
    let q: Queue<u32> = Queue::new();
    let member = {
        let q = q.clone();
        pool.spawn(move || q.get().map_err(|e| e.is_killed()))
            .unwrap()
    };
    yield_now();
    println!("pool free while the member waits: {}", pool.free());
    member.kill();
    println!(
        "after kill: pool free {}, member {}",
        pool.free(),
        describe(&member.wait())
    );
    let getter = {
        let q = q.clone();
        wasmlet::spawn(move || q.get().map_err(|e| e.is_killed()))
    };
    yield_now();
    q.put(42).unwrap(); // handed to the getter, which has not run yet
    getter.kill();
    println!(
        "served getter killed: {}, queue holds {:?}",
        describe(&getter.wait()),
        q.items()
    );

    // 4. kill_with: the error reaches wait(), after the thread unwound.
    let drops = Rc::new(Cell::new(0));
    let victim = {
        let d = drops.clone();
        wasmlet::spawn(move || -> Result<(), Interrupted> {
            let _owned = Owned(d);
            wasmlet::sleep(Duration::from_secs(3600))
        })
    };
    yield_now();
    victim.kill_with("shutting down");
    println!(
        "kill_with: {}, dropped {}",
        describe(&victim.wait()),
        drops.get()
    );

    // 5. Links run as the dying thread, after it unwound.
    let order: Rc<RefCell<Vec<&str>>> = Rc::default();
    let linked = {
        let o = order.clone();
        wasmlet::spawn(move || {
            struct Last(Rc<RefCell<Vec<&'static str>>>);
            impl Drop for Last {
                fn drop(&mut self) {
                    self.0.borrow_mut().push("frames dropped");
                }
            }
            let _last = Last(o);
            let _ = wasmlet::sleep(Duration::from_secs(3600));
        })
    };
    let o = order.clone();
    linked.link(move |gt| {
        o.borrow_mut().push(if gt.dead() {
            "link ran, dead"
        } else {
            "link ran, alive"
        })
    });
    yield_now();
    linked.kill();
    order.borrow_mut().push("kill returned");
    println!("order: {:?}", order.borrow());

    // 6. After the kill, every blocking call answers at once; a thread
    // that ignores them is ended hard after a bounded number.
    let calls = Rc::new(Cell::new(0u32));
    let stubborn = {
        let calls = calls.clone();
        wasmlet::spawn(move || loop {
            let start = Instant::now();
            if wasmlet::sleep(Duration::from_secs(1)).is_err() {
                assert!(start.elapsed() < Duration::from_millis(500));
                calls.set(calls.get() + 1);
            }
        })
    };
    yield_now();
    stubborn.kill();
    println!(
        "stubborn: {}, calls after the kill {}",
        describe(&stubborn.wait()),
        calls.get()
    );

    // 7. A panic on the kill's error ends the thread as killed, quietly.
    let panicky = wasmlet::spawn(|| {
        wasmlet::sleep(Duration::from_secs(3600)).unwrap();
        1
    });
    yield_now();
    panicky.kill();
    println!("unwrap on the kill: {}", describe(&panicky.wait()));

    // 8. A pending Timeout does not hide the kill; the kill is not a timeout.
    let report = Rc::new(Cell::new(None));
    let timed = {
        let report = report.clone();
        wasmlet::spawn(move || {
            let t = Timeout::new(Duration::from_secs(3600));
            let r = wasmlet::sleep(Duration::from_secs(7200));
            report.set(Some((r.is_err_and(|e| e.is_killed()), t.fired())));
        })
    };
    yield_now();
    timed.kill();
    let (killed, fired) = report.get().expect("it unwound");
    println!(
        "under a Timeout: sleep reported the kill {killed}, timeout fired {fired}, {}",
        describe(&timed.wait())
    );

    // 9. A thread blocked on a std Mutex cannot report the kill (std's
    // lock retries): it is ended hard, and still reports the kill.
    let contended = Arc::new(Mutex::new(()));
    let guard = contended.lock().unwrap();
    let locker = {
        let c = contended.clone();
        wasmlet::spawn(move || drop(c.lock().unwrap()))
    };
    yield_now();
    locker.kill();
    drop(guard);
    println!(
        "blocked on a std lock: {}, lock free {}",
        describe(&locker.wait()),
        contended.try_lock().is_ok()
    );
}

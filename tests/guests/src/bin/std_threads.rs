//! Unmodified std-threaded code: `std::thread::spawn`, `JoinHandle::join`,
//! `thread::scope`, `Mutex`, `Condvar`, `mpsc`, `thread::sleep`,
//! `yield_now`, thread names: each std::thread is a green thread of the
//! guest, and every wait parks it alone. With the argument `panic`, a
//! std::thread panics (on wasm that aborts the program, as natively with
//! panic=abort).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

#[link(wasm_import_module = "wasi")]
extern "C" {
    #[link_name = "thread-spawn"]
    fn raw_thread_spawn(start_arg: u32) -> i32;
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("panic") => {
            let worker = thread::spawn(|| panic!("a std::thread gave up"));
            let _ = worker.join();
            println!("unreachable: the panic aborts the program");
            return;
        }
        Some("wild") => {
            // A start argument into nowhere: the new thread traps at once.
            // SAFETY: the hub validates it; the worst is a trap.
            let tid = unsafe { raw_thread_spawn(0xffff_fff0) };
            println!("wild thread-spawn gave id {}", tid > 0);
            thread::sleep(Duration::from_millis(10));
            println!("unreachable: the wild thread ends the guest");
            return;
        }
        Some("limit") => {
            // std::thread::Builder::spawn reports the host's refusal.
            let mut alive = Vec::new();
            let error = loop {
                match thread::Builder::new()
                    .stack_size(16 * 1024)
                    .spawn(|| thread::sleep(Duration::from_millis(20)))
                {
                    Ok(t) => alive.push(t),
                    Err(e) => break e,
                }
            };
            println!(
                "spawned {} std threads, then: {:?}",
                alive.len(),
                error.kind()
            );
            for t in alive {
                t.join().unwrap();
            }
            println!(
                "after they ended, another: {}",
                thread::spawn(|| 7).join().unwrap()
            );
            return;
        }
        _ => {}
    }

    // A producer and a consumer over a channel, both std threads.
    let (tx, rx) = mpsc::sync_channel::<u32>(4);
    let producer = thread::spawn(move || {
        for i in 0..100 {
            tx.send(i).unwrap();
        }
    });
    let consumer = thread::spawn(move || rx.iter().sum::<u32>());
    producer.join().unwrap();
    println!(
        "producer/consumer over mpsc: sum {}",
        consumer.join().unwrap()
    );

    // A Mutex-protected counter from many std threads, each yielding while
    // it holds the lock now and then.
    let counter = Arc::new(Mutex::new(0u64));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (counter, most_inside) = (counter.clone(), most_inside.clone());
            thread::spawn(move || {
                for i in 0..500 {
                    let mut n = counter.lock().unwrap();
                    let inside = most_inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert_eq!(inside, 1, "two threads inside the lock");
                    *n += 1;
                    if i % 50 == 0 {
                        thread::yield_now(); // a green yield, lock held
                    }
                    most_inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "mutex counter from 16 std threads: {}",
        *counter.lock().unwrap()
    );

    // thread::scope: scoped threads borrow the caller's data.
    let words = ["green", "threads", "all", "the", "way"];
    let total = thread::scope(|s| {
        let handles: Vec<_> = words.iter().map(|w| s.spawn(move || w.len())).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    println!("thread::scope: {total} letters");

    // thread::sleep waits green: the shorter sleeper finishes first.
    let order = Arc::new(Mutex::new(Vec::new()));
    let sleepers: Vec<_> = [(30u64, "slow"), (5, "fast")]
        .into_iter()
        .map(|(ms, name)| {
            let order = order.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(ms));
                order.lock().unwrap().push(name);
            })
        })
        .collect();
    for s in sleepers {
        s.join().unwrap();
    }
    println!("sleepers finished: {:?}", order.lock().unwrap());

    // A Condvar between a std thread and a green thread of the SDK.
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let waiter = {
        let pair = pair.clone();
        thread::Builder::new()
            .name("waiter".into())
            .spawn(move || {
                let (lock, cvar) = &*pair;
                let mut ready = lock.lock().unwrap();
                while !*ready {
                    ready = cvar.wait(ready).unwrap();
                }
                thread::current().name().map(str::to_owned)
            })
            .unwrap()
    };
    let signaller = {
        let pair = pair.clone();
        wasmlet::spawn(move || {
            let (lock, cvar) = &*pair;
            *lock.lock().unwrap() = true;
            cvar.notify_one();
        })
    };
    signaller.wait().unwrap();
    println!("condvar, std waiter named {:?}", waiter.join().unwrap());

    // Many at once: 200 std threads alive together, each waiting on a barrier.
    let barrier = Arc::new(std::sync::Barrier::new(200));
    let leaders = Arc::new(AtomicUsize::new(0));
    let all: Vec<_> = (0..200)
        .map(|_| {
            let (barrier, leaders) = (barrier.clone(), leaders.clone());
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    if barrier.wait().is_leader() {
                        leaders.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .unwrap()
        })
        .collect();
    for t in all {
        t.join().unwrap();
    }
    println!(
        "200 std threads through a barrier: {} leader",
        leaders.load(Ordering::SeqCst)
    );
}

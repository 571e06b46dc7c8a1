//! std's blocking primitives between green threads: each waits green (the
//! loader turned `memory.atomic.wait` into a hub call), so a lock held
//! across a yield no longer freezes the hub.
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex, OnceLock, RwLock};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let say = {
        let log = log.clone();
        move |s: &str| log.lock().unwrap().push(s.to_string())
    };
    match mode.as_str() {
        "mutex" => {
            let shared = Arc::new(Mutex::new(0));
            let (s, say2) = (shared.clone(), say.clone());
            let holder = wasmlet::spawn(move || {
                let mut guard = s.lock().unwrap();
                say2("holder locked");
                let _ = wasmlet::sleep(ms(20));
                *guard += 1;
                say2("holder unlocks");
            });
            let (s, say2) = (shared.clone(), say.clone());
            let waiter = wasmlet::spawn(move || {
                say2("waiter wants it");
                let mut guard = s.lock().unwrap();
                *guard += 10;
                say2("waiter got it");
            });
            let s2 = say.clone();
            let bystander = wasmlet::spawn(move || s2("bystander ran while the lock was held"));
            holder.wait().unwrap();
            waiter.wait().unwrap();
            bystander.wait().unwrap();
            say(&format!("total {}", shared.lock().unwrap()));
        }
        "condvar" => {
            let pair = Arc::new((Mutex::new(false), Condvar::new()));
            let (p, say2) = (pair.clone(), say.clone());
            let waiter = wasmlet::spawn(move || {
                let (lock, cvar) = &*p;
                let mut ready = lock.lock().unwrap();
                while !*ready {
                    ready = cvar.wait(ready).unwrap();
                }
                say2("woken by notify");
            });
            let _ = wasmlet::sleep(ms(5));
            say("notifying");
            *pair.0.lock().unwrap() = true;
            pair.1.notify_one();
            waiter.wait().unwrap();
            let (lock, cvar) = &*pair;
            let guard = lock.lock().unwrap();
            let (_guard, timeout) = cvar.wait_timeout(guard, ms(5)).unwrap();
            say(&format!("wait_timeout timed out: {}", timeout.timed_out()));
        }
        "park" => {
            let (tx, rx) = mpsc::channel();
            let say2 = say.clone();
            let parker = wasmlet::spawn(move || {
                tx.send(std::thread::current()).unwrap();
                std::thread::park();
                say2("unparked");
                std::thread::park_timeout(ms(5));
                say2("park_timeout returned");
            });
            let handle = rx.recv().unwrap();
            let _ = wasmlet::sleep(ms(5));
            say("unparking");
            handle.unpark();
            parker.wait().unwrap();
        }
        "mpsc" => {
            let (tx, rx) = mpsc::sync_channel::<u32>(1);
            let say2 = say.clone();
            let consumer = wasmlet::spawn(move || {
                let got: Vec<u32> = rx.iter().collect();
                say2(&format!("consumer got {got:?}"));
            });
            for i in 0..5 {
                tx.send(i).unwrap();
                let _ = wasmlet::sleep(ms(1));
            }
            drop(tx);
            consumer.wait().unwrap();
        }
        "once-barrier-rwlock" => {
            static CELL: OnceLock<u32> = OnceLock::new();
            let inits: Vec<_> = (0..3)
                .map(|i| {
                    wasmlet::spawn(move || {
                        *CELL.get_or_init(|| {
                            let _ = wasmlet::sleep(ms(5));
                            i
                        })
                    })
                })
                .collect();
            let values: Vec<u32> = inits.into_iter().map(|t| t.wait().unwrap()).collect();
            say(&format!(
                "OnceLock: one value for all: {}",
                values.iter().all(|&v| v == values[0])
            ));
            let barrier = Arc::new(Barrier::new(3));
            let parties: Vec<_> = (0..3)
                .map(|i| {
                    let b = barrier.clone();
                    wasmlet::spawn(move || {
                        let _ = wasmlet::sleep(ms(i * 3));
                        b.wait().is_leader()
                    })
                })
                .collect();
            let leaders = parties.into_iter().filter(|t| t.wait().unwrap()).count();
            say(&format!("Barrier: all three passed, {leaders} leader"));
            let lock = Arc::new(RwLock::new(0));
            let l = lock.clone();
            let writer = wasmlet::spawn(move || {
                let mut w = l.write().unwrap();
                let _ = wasmlet::sleep(ms(10));
                *w = 42;
            });
            let _ = wasmlet::sleep(ms(1));
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    let l = lock.clone();
                    wasmlet::spawn(move || *l.read().unwrap())
                })
                .collect();
            writer.wait().unwrap();
            let seen: Vec<i32> = readers.into_iter().map(|t| t.wait().unwrap()).collect();
            say(&format!("RwLock: readers saw {seen:?}"));
        }
        "deadlock" => {
            let a = Arc::new(Mutex::new(()));
            let b = Arc::new(Mutex::new(()));
            let (a1, b1) = (a.clone(), b.clone());
            let first = wasmlet::spawn(move || {
                let _a = a1.lock().unwrap();
                let _ = wasmlet::sleep(ms(5));
                let _b = b1.lock().unwrap();
            });
            let second = wasmlet::spawn(move || {
                let _b = b.lock().unwrap();
                let _ = wasmlet::sleep(ms(5));
                let _a = a.lock().unwrap();
            });
            let _ = first.wait();
            let _ = second.wait();
            println!("never printed");
        }
        "park-forever" => {
            // A futex wait without timeout that nothing will ever wake.
            std::thread::park();
            println!("never printed");
        }
        other => panic!("unknown mode {other:?}"),
    }
    for line in log.lock().unwrap().iter() {
        println!("{line}");
    }
}

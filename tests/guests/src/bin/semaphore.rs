//! Semaphore and BoundedSemaphore: counts, FIFO wake-up, non-blocking and
//! timed acquire, the guard, over-release, a killed waiter.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use wasmlet::{BoundedSemaphore, Semaphore};

fn main() {
    let sem = Semaphore::new(2);
    sem.acquire().unwrap();
    sem.acquire().unwrap();
    println!(
        "after 2 acquires: locked {}, try_acquire {}, balance {}",
        sem.locked(),
        sem.try_acquire(),
        sem.balance()
    );

    let order: Rc<RefCell<Vec<u32>>> = Rc::default();
    for n in 0..3 {
        let (sem, order) = (sem.clone(), order.clone());
        wasmlet::spawn_n(move || {
            sem.acquire().unwrap();
            order.borrow_mut().push(n);
        });
    }
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("3 waiting: balance {}", sem.balance());
    for _ in 0..3 {
        sem.release();
    }
    let _ = wasmlet::sleep(Duration::ZERO);
    println!(
        "woken in order: {:?}, balance {}",
        order.borrow(),
        sem.balance()
    );

    let err = sem.acquire_timeout(Duration::from_millis(5)).unwrap_err();
    println!("acquire_timeout: {err}, balance {}", sem.balance());

    let free = Semaphore::new(1);
    {
        let _permit = free.guard().unwrap();
        println!("guard held: counter {}", free.counter());
    }
    println!("guard dropped: counter {}", free.counter());

    let bounded = BoundedSemaphore::new(1);
    println!(
        "bounded release past bound: {}",
        bounded.release().unwrap_err()
    );
    bounded.acquire().unwrap();
    bounded.release().unwrap();
    println!("bounded acquire+release: counter {}", bounded.counter());
    {
        let _permit = bounded.guard().unwrap();
        println!("bounded guard held: locked {}", bounded.locked());
    }
    println!("bounded guard dropped: counter {}", bounded.counter());

    // A killed waiter does not swallow a permit.
    let zero = Semaphore::new(0);
    let victim = {
        let zero = zero.clone();
        wasmlet::spawn(move || zero.acquire().is_ok())
    };
    let survivor = {
        let zero = zero.clone();
        wasmlet::spawn(move || zero.acquire().is_ok())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    victim.kill();
    zero.release();
    println!(
        "killed waiter: {}; survivor acquired: {:?}; counter {}",
        victim.wait().unwrap_err(),
        survivor.wait().unwrap(),
        zero.counter()
    );

    // A waiter granted the permit and killed before it ran gives it back.
    let one = Semaphore::new(0);
    let granted = {
        let one = one.clone();
        wasmlet::spawn(move || one.acquire().is_ok())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    one.release();
    granted.kill();
    println!(
        "waiter killed after the grant: counter {}, try_acquire {}",
        one.counter(),
        one.try_acquire()
    );
}

//! A Timeout cancelled by another green thread while its owner waits under
//! it: the owner keeps waiting (no spin, no early return) and is served.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wasmlet::{Queue, Timeout};

fn main() {
    let shared: Rc<RefCell<Option<Rc<Timeout>>>> = Rc::default();
    let queue: Queue<&str> = Queue::new();

    let (s, q) = (shared.clone(), queue.clone());
    let getter = wasmlet::spawn(move || {
        let timeout = Rc::new(Timeout::new(Duration::from_millis(30)));
        *s.borrow_mut() = Some(timeout.clone());
        let got = q.get().map_err(|e| e.to_string());
        (got, timeout.fired())
    });
    let _ = wasmlet::sleep(Duration::from_millis(5));
    shared.borrow().as_ref().unwrap().cancel();
    let _ = wasmlet::sleep(Duration::from_millis(60));
    queue.put("late item").unwrap();
    println!(
        "get under a cancelled timeout: {:?}",
        getter.wait().unwrap()
    );

    let s = shared.clone();
    let sleeper = wasmlet::spawn(move || {
        let timeout = Rc::new(Timeout::new(Duration::from_millis(20)));
        *s.borrow_mut() = Some(timeout.clone());
        let start = Instant::now();
        let _ = wasmlet::sleep(Duration::from_millis(60));
        (
            start.elapsed() >= Duration::from_millis(60),
            timeout.fired(),
        )
    });
    let _ = wasmlet::sleep(Duration::from_millis(5));
    shared.borrow().as_ref().unwrap().cancel();
    println!(
        "sleep under a cancelled timeout (slept it all, fired): {:?}",
        sleeper.wait().unwrap()
    );
}

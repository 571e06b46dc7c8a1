//! spawn is FIFO and returns at once; sleep(0) yields to everything runnable.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

fn main() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let log = log.clone();
            wasmlet::spawn(move || log.borrow_mut().push(format!("run {i}")))
        })
        .collect();
    log.borrow_mut().push("spawned all".to_string());
    let _ = wasmlet::sleep(Duration::ZERO);
    log.borrow_mut().push("main resumed".to_string());
    for h in &handles {
        h.wait().unwrap();
    }
    // spawn_n: same order, no result.
    for i in 0..3 {
        let log = log.clone();
        wasmlet::spawn_n(move || log.borrow_mut().push(format!("n {i}")));
    }
    let _ = wasmlet::sleep(Duration::ZERO);
    // Ping-pong: two threads yielding alternate strictly.
    let pp: Vec<_> = ["ping", "pong"]
        .into_iter()
        .map(|name| {
            let log = log.clone();
            wasmlet::spawn(move || {
                for _ in 0..2 {
                    log.borrow_mut().push(name.to_string());
                    let _ = wasmlet::sleep(Duration::ZERO);
                }
            })
        })
        .collect();
    for h in &pp {
        h.wait().unwrap();
    }
    println!("{}", log.borrow().join(", "));
}

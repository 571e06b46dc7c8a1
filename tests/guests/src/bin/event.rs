//! Event: send wakes every waiter (FIFO) without yielding; wait after send;
//! double send; reset; wait_timeout; send_error; reset before waiters ran.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use wasmlet::{Event, EventError};

fn main() {
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let event: Event<u32> = Event::new();
    for n in 0..3 {
        let (event, log) = (event.clone(), log.clone());
        wasmlet::spawn_n(move || {
            let got = event.wait();
            log.borrow_mut().push(format!("waiter {n} got {got:?}"));
        });
    }
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("waiting: {}", event.waiting());
    event.send(5).unwrap();
    println!("sent; waiters run so far: {}", log.borrow().len());
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("{}", log.borrow().join("\n"));

    println!("ready: {}, wait now: {:?}", event.ready(), event.wait());
    println!("send again: {}", event.send(6).unwrap_err());
    event.reset().unwrap();
    println!(
        "after reset: ready {}, poll {:?}",
        event.ready(),
        event.poll().is_none()
    );
    event.send(6).unwrap();
    println!("resent: {:?}", event.wait());

    let unsent: Event = Event::new();
    match unsent.wait_timeout(Duration::from_millis(5)) {
        Err(EventError::Interrupted(i)) if i.timed_out().is_some() => {
            println!("wait_timeout: timed out, waiting {}", unsent.waiting())
        }
        other => println!("wait_timeout: {other:?}"),
    }

    let failing: Event<String> = Event::new();
    let waiter = {
        let failing = failing.clone();
        wasmlet::spawn(move || match failing.wait() {
            Err(EventError::Failed(e)) => format!("waiter got error: {e}"),
            other => format!("waiter got {other:?}"),
        })
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    failing.send_error("disk on fire").unwrap();
    println!("{}", waiter.wait().unwrap());
    println!("late wait: {}", failing.wait().unwrap_err());

    let flicker: Event<&str> = Event::new();
    let waiter = {
        let flicker = flicker.clone();
        wasmlet::spawn(move || flicker.wait())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    flicker.send("first").unwrap();
    flicker.reset().unwrap();
    println!(
        "reset before the waiter ran; it got {:?}",
        waiter.wait().unwrap()
    );
}

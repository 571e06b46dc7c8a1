//! Every green thread has its own thread-locals and shadow stack; all share
//! the heap.
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

thread_local! {
    static MINE: Cell<u32> = const { Cell::new(0) };
    static NAME: RefCell<String> = RefCell::new(String::from("unset"));
}

fn main() {
    MINE.with(|m| m.set(1000));
    let shared = Rc::new(RefCell::new(Vec::new()));
    let threads: Vec<_> = (1..=4u32)
        .map(|i| {
            let shared = shared.clone();
            wasmlet::spawn(move || {
                let before = MINE.with(Cell::get);
                MINE.with(|m| m.set(i));
                NAME.with(|n| *n.borrow_mut() = format!("thread {i}"));
                // A local whose address is taken lives on the shadow stack.
                let local = [i; 64];
                let _ = wasmlet::sleep(Duration::ZERO);
                let _ = wasmlet::sleep(Duration::from_millis(1));
                shared.borrow_mut().push(i);
                let sum: u32 = std::hint::black_box(&local).iter().sum();
                (
                    before,
                    MINE.with(Cell::get),
                    NAME.with(|n| n.borrow().clone()),
                    sum == 64 * i,
                )
            })
        })
        .collect();
    for t in &threads {
        let (before, after, name, stack_ok) = t.wait().unwrap();
        println!("fresh tls: {before}, own tls: {after}, name: {name}, stack intact: {stack_ok}");
    }
    println!("main tls untouched: {}", MINE.with(Cell::get));
    let mut seen = shared.borrow().clone();
    seen.sort();
    println!("shared heap saw: {seen:?}");

    // One after another: each green thread runs on the instance the last one
    // left behind (the hub reuses it), and still starts with fresh
    // thread-locals and a working thread pointer.
    let fresh: Vec<(u32, String)> = (0..3u32)
        .map(|i| {
            wasmlet::spawn(move || {
                let before = MINE.with(Cell::get);
                let name = NAME.with(|n| n.borrow().clone());
                MINE.with(|m| m.set(50 + i));
                NAME.with(|n| *n.borrow_mut() = format!("sequential {i}"));
                (before, name)
            })
            .wait()
            .unwrap()
        })
        .collect();
    println!("one after another, fresh tls: {fresh:?}");
}

//! Two green threads wait for each other while main waits for one of them.
use std::cell::RefCell;
use std::rc::Rc;

fn main() {
    let slot: Rc<RefCell<Option<wasmlet::GreenThread<()>>>> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    let a = wasmlet::spawn(move || {
        let b = s.borrow().clone().unwrap();
        b.wait().ok();
    });
    let a2 = a.clone();
    let b = wasmlet::spawn(move || {
        a2.wait().ok();
    });
    *slot.borrow_mut() = Some(b);
    println!("main waits");
    a.wait().ok();
    println!("never printed");
}

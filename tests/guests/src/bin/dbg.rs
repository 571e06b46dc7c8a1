use std::cell::RefCell;
thread_local! {
    static NAME: RefCell<String> = RefCell::new(String::from("unset"));
}
fn main() {
    let t = wasmlet::spawn(move || {
        eprintln!("in thread");
        NAME.with(|n| *n.borrow_mut() = "x".into());
        eprintln!("name ok");
        1
    });
    println!("{:?}", t.wait());
}

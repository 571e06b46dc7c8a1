//! link order, in the dying thread's context; link on an ended thread runs at
//! once; a link added inside a link runs once; unlink true/false; links of a
//! killed and of a panicked thread run too.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

fn main() {
    let log: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let gt = wasmlet::spawn(|| {
        let _ = wasmlet::sleep(Duration::from_millis(1));
        7
    });
    for n in 1..=3 {
        let log = log.clone();
        gt.link(move |gt| {
            let me = wasmlet::getcurrent() == gt.thread();
            log.borrow_mut()
                .push(format!("link {n} (as dying thread: {me})"));
        });
    }
    let log2 = log.clone();
    let removed = gt.link(move |_| log2.borrow_mut().push("removed link ran!".into()));
    println!("unlink pending: {}", gt.unlink(removed));
    println!("unlink again: {}", gt.unlink(removed));
    let log3 = log.clone();
    gt.link(move |gt| {
        let log4 = log3.clone();
        gt.link(move |_| log4.borrow_mut().push("link added inside a link".into()));
        log3.borrow_mut().push("outer link".into());
    });
    println!("result: {:?}", gt.wait());
    println!("{}", log.borrow().join("\n"));

    let log5 = log.clone();
    let ran_at_once = gt.link(move |_| log5.borrow_mut().push("linked after exit".into()));
    println!(
        "after exit: {:?}, unlink it: {}",
        log.borrow().last(),
        gt.unlink(ran_at_once)
    );

    let killed = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
    let log6 = log.clone();
    killed.link(move |gt| {
        log6.borrow_mut()
            .push(format!("killed link saw dead={}", gt.dead()))
    });
    let _ = wasmlet::sleep(Duration::ZERO);
    killed.kill();
    println!("{:?}", log.borrow().last());

    wasmlet::hub_exceptions(false);
    let panicky = wasmlet::spawn(|| -> u32 { panic!("boom") });
    let log7 = log.clone();
    panicky.link(move |gt| {
        log7.borrow_mut()
            .push(format!("panicked link: {}", gt.wait().unwrap_err()))
    });
    panicky.wait().ok();
    println!("{:?}", log.borrow().last());
}

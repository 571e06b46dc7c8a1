//! Timers fire in deadline order; spawn_after never runs before its delay;
//! spawn_after runs even when its spawner has ended; spawn_after_local does not.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn main() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let sleepers: Vec<_> = [30u64, 10, 20, 0]
        .into_iter()
        .map(|ms| {
            let log = log.clone();
            wasmlet::spawn(move || {
                let _ = wasmlet::sleep(Duration::from_millis(ms));
                log.borrow_mut().push(ms);
            })
        })
        .collect();
    for s in &sleepers {
        s.wait().unwrap();
    }
    println!("sleep order: {:?}", log.borrow());

    let started = Instant::now();
    let after = wasmlet::spawn_after(Duration::from_millis(25), move || started.elapsed());
    let waited = after.wait().unwrap();
    println!(
        "spawn_after waited its delay: {}",
        waited >= Duration::from_millis(25)
    );

    // Spawner ends before the delay: spawn_after still runs, the local one not.
    let parent = wasmlet::spawn(|| {
        let plain = wasmlet::spawn_after(Duration::from_millis(10), || "plain ran");
        let local = wasmlet::spawn_after_local(Duration::from_millis(10), || "local ran");
        (plain, local)
    });
    let (plain, local) = parent.wait().unwrap();
    println!("spawn_after after spawner ended: {:?}", plain.wait());
    println!(
        "spawn_after_local after spawner ended: {:?}",
        local.wait().map_err(|e| e.to_string())
    );

    // Spawner alive: spawn_after_local runs.
    let local = wasmlet::spawn_after_local(Duration::from_millis(5), || "local ran");
    println!("spawn_after_local with spawner alive: {:?}", local.wait());
}

//! GreenPool and GreenPile: the size bound, spawn blocking while full,
//! imap/starmap order, slot reuse after a panic and a kill, a member
//! spawning into its own full pool, resize, waitall.
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use wasmlet::{GreenPile, GreenPool};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn main() {
    let pool = GreenPool::new(2);
    let live = Rc::new(Cell::new(0));
    let peak = Rc::new(Cell::new(0));
    for _ in 0..6 {
        let (live, peak) = (live.clone(), peak.clone());
        pool.spawn_n(move || {
            live.set(live.get() + 1);
            peak.set(peak.get().max(live.get()));
            let _ = wasmlet::sleep(ms(2));
            live.set(live.get() - 1);
        })
        .unwrap();
    }
    pool.waitall().unwrap();
    println!(
        "peak concurrency {}, running {}, free {}",
        peak.get(),
        pool.running(),
        pool.free()
    );

    // spawn blocks the caller while the pool is full.
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let one = GreenPool::new(1);
    {
        let log = log.clone();
        one.spawn_n(move || {
            let _ = wasmlet::sleep(ms(5));
            log.borrow_mut().push("first ended".into());
        })
        .unwrap();
    }
    let waiter = {
        let (one, log) = (one.clone(), log.clone());
        wasmlet::spawn(move || {
            one.spawn(|| ()).unwrap();
            log.borrow_mut().push("second spawned".into());
        })
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("waiting for a slot: {}", one.waiting());
    waiter.wait().unwrap();
    println!("{:?}", log.borrow());

    // imap: results in input order, not finishing order.
    let three = GreenPool::new(3);
    let results: Vec<u64> = three
        .imap([30u64, 10, 20, 5], |n| {
            let _ = wasmlet::sleep(ms(n));
            n
        })
        .map(Result::unwrap)
        .collect();
    println!("imap: {results:?}");
    let sums: Vec<i32> = three
        .starmap([(1, 2), (3, 4), (5, 6)], |a: i32, b: i32| a * b)
        .map(Result::unwrap)
        .collect();
    println!("starmap: {sums:?}");

    // A panicking and a killed member free their slots.
    wasmlet::hub_exceptions(false);
    let single = GreenPool::new(1);
    let failed = single.spawn(|| -> u32 { panic!("member failed") }).unwrap();
    let after_panic = single.spawn(|| 1).unwrap();
    println!(
        "panicked member: {}; next member: {:?}",
        failed.wait().unwrap_err(),
        after_panic.wait()
    );
    let sleeper = single
        .spawn(|| wasmlet::sleep(Duration::from_secs(3600)))
        .unwrap();
    let _ = wasmlet::sleep(Duration::ZERO);
    sleeper.kill();
    let after_kill = single.spawn(|| 2).unwrap();
    println!(
        "killed member: {}; next member: {:?}; free {}",
        sleeper.wait().unwrap_err(),
        after_kill.wait(),
        single.free()
    );
    let imapped: Vec<String> = single
        .imap([1, 0, 2], |n: u32| 10 / n)
        .map(|r| match r {
            Ok(v) => v.to_string(),
            Err(e) => e.to_string(),
        })
        .collect();
    println!("imap with a failure: {imapped:?}");

    // A member spawning into its own full pool runs it inline.
    let nested = {
        let single2 = single.clone();
        single
            .spawn(move || single2.spawn(|| 6 * 7).unwrap().wait().unwrap())
            .unwrap()
    };
    println!("nested spawn in a full pool: {:?}", nested.wait());

    // resize admits waiting spawners.
    let grow = GreenPool::new(1);
    grow.spawn_n(|| wasmlet::sleep(ms(50))).unwrap();
    let late = {
        let grow = grow.clone();
        wasmlet::spawn(move || grow.spawn(|| "admitted").unwrap().wait().unwrap())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("before resize: waiting {}", grow.waiting());
    grow.resize(2);
    println!(
        "after resize: waiting {}, running {}",
        grow.waiting(),
        grow.running()
    );
    println!("late spawner: {:?}", late.wait());

    // A spawner handed a slot and killed before it could spawn gives the
    // slot back: the next spawner gets it.
    let tight = GreenPool::new(1);
    tight.spawn_n(|| wasmlet::sleep(ms(20))).unwrap();
    let doomed = {
        let tight = tight.clone();
        wasmlet::spawn(move || tight.spawn(|| "doomed ran").unwrap().wait().unwrap())
    };
    let patient = {
        let tight = tight.clone();
        wasmlet::spawn(move || tight.spawn(|| "patient ran").unwrap().wait().unwrap())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    // Room for one more: the slot goes to `doomed`, killed before it runs.
    tight.resize(2);
    doomed.kill();
    println!(
        "spawner killed after its slot: {}; next spawner: {:?}",
        doomed.wait().unwrap_err(),
        patient.wait()
    );
    tight.waitall().unwrap();
    println!("then: running {}, free {}", tight.running(), tight.free());

    // GreenPile: results in spawn order.
    let mut pile = GreenPile::new(4);
    for n in [15u64, 1, 8] {
        pile.spawn(move || {
            let _ = wasmlet::sleep(ms(n));
            n
        })
        .unwrap();
    }
    println!("pile holds {}", pile.len());
    let got: Vec<u64> = pile.by_ref().map(Result::unwrap).collect();
    println!("pile: {got:?}, empty {}", pile.is_empty());
}

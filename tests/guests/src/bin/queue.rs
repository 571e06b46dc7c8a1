//! Queue: FIFO items and waiters, bounded put blocking, nowait variants,
//! timeouts that consume nothing, a killed getter, rendezvous, resize,
//! task_done/join.
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use wasmlet::Queue;

fn main() {
    let q = Queue::new();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    let items: Vec<i32> = (0..5).map(|_| q.get().unwrap()).collect();
    println!("unbounded fifo: {items:?}");

    // Bounded: the producer blocks once two items are queued.
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let bq = Queue::bounded(2);
    {
        let (bq, log) = (bq.clone(), log.clone());
        wasmlet::spawn_n(move || {
            for i in 0..4 {
                bq.put(i).unwrap();
                log.borrow_mut().push(format!("put {i}"));
            }
        });
    }
    let _ = wasmlet::sleep(Duration::ZERO);
    println!(
        "bounded: {:?}, qsize {}, full {}, putting {}",
        log.borrow(),
        bq.qsize(),
        bq.full(),
        bq.putting()
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(bq.get().unwrap());
        let _ = wasmlet::sleep(Duration::ZERO);
    }
    println!("bounded got {got:?}; log {:?}", log.borrow());

    let one = Queue::bounded(1);
    one.put_nowait("a").unwrap();
    let full = one.put_nowait("b").unwrap_err();
    println!("put_nowait on full: {full}");
    println!("  item back: {}", full.into_inner());
    one.get().unwrap();
    println!("get_nowait on empty: {}", one.get_nowait().unwrap_err());

    // Blocked getters are served in the order they came.
    let fifo = Queue::new();
    let getters: Vec<_> = (0..3)
        .map(|n| {
            let fifo = fifo.clone();
            wasmlet::spawn(move || format!("getter {n} got {}", fifo.get().unwrap()))
        })
        .collect();
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("getting: {}", fifo.getting());
    for item in ["a", "b", "c"] {
        fifo.put(item).unwrap();
    }
    for g in getters {
        println!("{}", g.wait().unwrap());
    }

    // A killed getter consumes nothing.
    let kq = Queue::new();
    let victim = {
        let kq = kq.clone();
        wasmlet::spawn(move || kq.get().unwrap())
    };
    let survivor = {
        let kq = kq.clone();
        wasmlet::spawn(move || kq.get().unwrap())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    victim.kill();
    kq.put("x").unwrap();
    println!(
        "killed getter: {}; survivor got {:?}; left {}",
        victim.wait().unwrap_err(),
        survivor.wait().unwrap(),
        kq.qsize()
    );

    // A getter handed an item and killed before it ran again gives it back:
    // the next getter gets it.
    let hq = Queue::new();
    let handed = {
        let hq = hq.clone();
        wasmlet::spawn(move || hq.get().unwrap())
    };
    let next = {
        let hq = hq.clone();
        wasmlet::spawn(move || hq.get().unwrap())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    hq.put("h").unwrap();
    handed.kill();
    println!(
        "getter killed after being handed an item: next getter got {:?}; left {}",
        next.wait().unwrap(),
        hq.qsize()
    );
    // ...or, with no getter left, the item goes back to the head of the queue.
    let lone = {
        let hq = hq.clone();
        wasmlet::spawn(move || hq.get().unwrap())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    hq.put("first").unwrap();
    hq.put("second").unwrap();
    lone.kill();
    println!(
        "lone getter killed after being handed: queue holds {:?}",
        [hq.get_nowait(), hq.get_nowait()]
    );

    // A getter that timed out consumes nothing.
    let tq = Queue::new();
    let err = tq.get_timeout(Duration::from_millis(5)).unwrap_err();
    tq.put("y").unwrap();
    println!(
        "get_timeout: {err}, getting {}; later put stays queued: {:?}",
        tq.getting(),
        tq.get_nowait()
    );

    // A putter that timed out takes its item back.
    let pq = Queue::bounded(1);
    pq.put(1).unwrap();
    let err = pq.put_timeout(2, Duration::from_millis(5)).unwrap_err();
    println!(
        "put_timeout: {err}, item back {:?}, qsize {}, putting {}",
        err.timed_out().is_some(),
        pq.qsize(),
        pq.putting()
    );

    // Rendezvous: a put needs a getter.
    let rq = Queue::bounded(0);
    println!(
        "rendezvous put_nowait, no getter: {}",
        rq.put_nowait(0).unwrap_err()
    );
    let getter = {
        let rq = rq.clone();
        wasmlet::spawn(move || rq.get().unwrap())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    rq.put_nowait(1).unwrap();
    println!("rendezvous getter got {}", getter.wait().unwrap());
    let putter = {
        let rq = rq.clone();
        wasmlet::spawn(move || {
            rq.put(2).unwrap();
            "putter returned"
        })
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    println!(
        "putter blocked: putting {}, dead {}; get {:?}; {}",
        rq.putting(),
        putter.dead(),
        rq.get(),
        putter.wait().unwrap()
    );

    // Resize admits blocked putters, in order.
    let sq = Queue::bounded(1);
    sq.put(0).unwrap();
    for i in 1..3 {
        let sq = sq.clone();
        wasmlet::spawn_n(move || sq.put(i).unwrap());
    }
    let _ = wasmlet::sleep(Duration::ZERO);
    println!(
        "before resize: qsize {}, putting {}",
        sq.qsize(),
        sq.putting()
    );
    sq.resize(Some(3));
    let all: Vec<i32> = (0..3).map(|_| sq.get().unwrap()).collect();
    println!("after resize: putting {}, items {all:?}", sq.putting());

    // task_done / join.
    let jq = Queue::new();
    for i in 0..3 {
        jq.put(i).unwrap();
    }
    let done = Rc::new(RefCell::new(0));
    {
        let (jq, done) = (jq.clone(), done.clone());
        wasmlet::spawn_n(move || {
            for _ in 0..3 {
                jq.get().unwrap();
                let _ = wasmlet::sleep(Duration::from_millis(1));
                *done.borrow_mut() += 1;
                jq.task_done().unwrap();
            }
        });
    }
    println!("unfinished: {}", jq.unfinished_tasks());
    jq.join().unwrap();
    println!(
        "joined after {} done; extra task_done: {}",
        done.borrow(),
        jq.task_done().unwrap_err()
    );
}

//! Behaviours that once differed from eventlet's (issue 11, section 2), each
//! printing what eventlet prints for the same program.
use std::time::Duration;

use wasmlet::{Event, GreenPool, GreenThreadError, Queue, WaitallError};

fn main() {
    // 1. A put on a zero-size queue with a getter waiting: the getter runs
    //    before put returns.
    let q = Queue::bounded(0);
    let getter = {
        let q = q.clone();
        wasmlet::spawn(move || {
            println!("getter waiting");
            let got: i32 = q.get().unwrap();
            println!("getter got {got}");
        })
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    q.put(1).unwrap();
    println!("put returned");
    getter.wait().unwrap();

    // 2. spawn_after_local with no delay, whose spawner ends first: never
    //    runs.
    let spawner = wasmlet::spawn(|| wasmlet::spawn_after_local(Duration::ZERO, || "ran"));
    let local = spawner.wait().unwrap();
    println!(
        "local spawn after its spawner ended: {}",
        matches!(local.wait(), Err(GreenThreadError::Cancelled))
    );

    // 3. Resetting an event never sent is refused.
    let event: Event<i32> = Event::new();
    println!(
        "reset of a fresh event: {:?}",
        event.reset().map_err(|e| e.to_string())
    );
    event.send(5).unwrap();
    println!("reset after a send: {:?}", event.reset());

    // 4. waitall from a member is an error, and the pool stays usable.
    let pool = GreenPool::new(2);
    let inner = pool.clone();
    let member = pool.spawn(move || inner.waitall()).unwrap();
    println!(
        "waitall from a member: {:?}",
        member.wait().unwrap() == Err(WaitallError::FromMember)
    );
    let again = pool.spawn(|| 7).unwrap();
    pool.waitall().unwrap();
    println!(
        "the pool after: {}, free {}",
        again.wait().unwrap(),
        pool.free()
    );

    // 5. get_nowait on a zero-size queue with a putter blocked: Empty.
    let q = Queue::bounded(0);
    let putter = {
        let q = q.clone();
        wasmlet::spawn(move || q.put("item").unwrap())
    };
    let _ = wasmlet::sleep(Duration::ZERO);
    println!(
        "get_nowait with a putter waiting: {}",
        q.get_nowait().is_err()
    );
    println!("get: {}", q.get().unwrap());
    putter.wait().unwrap();

    // 6. free() after resizing below the running count is negative.
    let pool = GreenPool::new(3);
    for _ in 0..3 {
        pool.spawn_n(|| wasmlet::sleep(Duration::from_millis(5)))
            .unwrap();
    }
    pool.resize(1);
    println!("free after resize(1) with 3 running: {}", pool.free());
    pool.waitall().unwrap();

    // Section 3, in part: API eventlet users reach for.
    let event: Event<i32> = Event::new();
    let state = |e: &Event<i32>| {
        (
            e.has_result(),
            e.has_exception(),
            e.poll_result(),
            e.poll_exception().map(|x| x.to_string()),
        )
    };
    println!("fresh event: {:?}", state(&event));
    event.send(3).unwrap();
    println!("sent 3: {:?}", state(&event));
    let failed: Event<i32> = Event::new();
    failed.send_error(std::io::Error::other("no luck")).unwrap();
    println!("sent an error: {:?}", state(&failed));
    println!(
        "defaults: semaphore of {}, pool of {}",
        wasmlet::Semaphore::default().counter(),
        GreenPool::default().size()
    );
    let background = wasmlet::spawn_n(|| wasmlet::sleep(Duration::from_millis(1)));
    let before = background.dead();
    let _ = wasmlet::sleep(Duration::from_millis(5));
    println!(
        "spawn_n handle dead: before {before}, after {}",
        background.dead()
    );
    println!("getcurrent dead: {}", wasmlet::getcurrent().dead());
    let timeout = wasmlet::Timeout::new(Duration::from_millis(50));
    println!("{timeout}; its duration {:?}", timeout.duration());
    timeout.cancel();
    println!("{timeout}");
    let q: Queue<u32> = Queue::new();
    let fired = wasmlet::try_with_timeout(Duration::from_millis(5), || q.get().ok());
    println!(
        "try_with_timeout, nothing came: {:?}",
        fired.map_err(|e| e.to_string())
    );
    let quick = wasmlet::try_with_timeout(Duration::from_millis(50), || 7);
    println!("try_with_timeout, in time: {quick:?}");
    // LifoQueue and PriorityQueue, and a look at the queued items.
    let lifo = Queue::lifo(None);
    let prio = Queue::priority(Some(10));
    for (n, word) in [(2, "b"), (1, "a"), (3, "c"), (0, "z")] {
        lifo.put(word).unwrap();
        prio.put((n, word)).unwrap();
    }
    println!(
        "lifo items {:?}, priority items {:?}",
        lifo.items(),
        prio.items()
    );
    let order: Vec<_> = (0..4).map(|_| lifo.get().unwrap()).collect();
    let ranked: Vec<_> = (0..4).map(|_| prio.get().unwrap().1).collect();
    println!("lifo gets {order:?}, priority gets {ranked:?}");
}

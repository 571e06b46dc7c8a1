//! An ordinary std program that never names the SDK (so none of it is
//! linked): std::thread, a Mutex, a channel and thread::sleep run as green
//! threads of the guest all the same.
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

fn main() {
    let total = Arc::new(Mutex::new(0));
    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = (1..=4)
        .map(|n| {
            let (total, tx) = (total.clone(), tx.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(n));
                *total.lock().unwrap() += n;
                tx.send(n).unwrap();
            })
        })
        .collect();
    drop(tx);
    let mut got: Vec<u64> = rx.iter().collect();
    got.sort();
    for w in workers {
        w.join().unwrap();
    }
    println!("threads sent {got:?}, total {}", total.lock().unwrap());
}

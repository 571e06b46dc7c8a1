//! Thread-local destructors run when a green thread ends: normally, and when
//! it is killed (its frames are gone, so nothing borrows its thread-locals).
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct Counted(#[allow(dead_code)] Vec<u8>);

impl Drop for Counted {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

thread_local! {
    static HEAVY: RefCell<Option<Counted>> = const { RefCell::new(None) };
}

fn touch() {
    HEAVY.with(|h| *h.borrow_mut() = Some(Counted(vec![0; 4096])));
}

fn main() {
    let normal: Vec<_> = (0..50).map(|_| wasmlet::spawn(touch)).collect();
    for t in normal {
        t.wait().unwrap();
    }
    println!("after 50 normal ends: {}", DROPPED.load(Ordering::Relaxed));
    let killed: Vec<_> = (0..10)
        .map(|_| {
            wasmlet::spawn(|| {
                touch();
                let _ = wasmlet::sleep(Duration::from_secs(60));
            })
        })
        .collect();
    let _ = wasmlet::sleep(Duration::ZERO);
    for t in &killed {
        t.kill();
    }
    println!("after 10 kills: {}", DROPPED.load(Ordering::Relaxed));
    let untouched: Vec<_> = (0..10).map(|_| wasmlet::spawn(|| ())).collect();
    for t in untouched {
        t.wait().unwrap();
    }
    println!(
        "after 10 that never touched it: {}",
        DROPPED.load(Ordering::Relaxed)
    );
}

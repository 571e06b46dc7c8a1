//! The SDK's panic hook chains to the guest's own, and a green thread that
//! traps while its task is dropped is not dropped twice.
//! `user-hook`: a hook installed before the first spawn still runs.
//! `drop-bomb`: the result of a green thread whose handle is gone panics
//! when dropped, at the end of the thread's run.
use std::cell::Cell;

thread_local! {
    static SEEN: Cell<u32> = const { Cell::new(0) };
}

struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb went off while its task was dropped");
    }
}

fn main() {
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "user-hook" => {
            wasmlet::hub_exceptions(false);
            std::panic::set_hook(Box::new(|info| {
                SEEN.with(|s| s.set(s.get() + 1));
                println!(
                    "user hook saw: {}",
                    info.payload().downcast_ref::<&str>().unwrap()
                );
            }));
            let t = wasmlet::spawn(|| -> u32 { panic!("boom") });
            println!("wait: {:?}", t.wait().map_err(|e| e.to_string()));
        }
        "drop-bomb" => {
            let mut survivors = Vec::new();
            for round in 0..3 {
                let bomb = wasmlet::spawn(|| Bomb);
                let thread = bomb.thread();
                drop(bomb);
                let after = wasmlet::spawn(move || format!("round {round}"));
                survivors.push(after.wait().unwrap());
                let _ = thread;
            }
            let heap: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 100]).collect();
            println!(
                "{survivors:?}, heap ok: {}",
                heap.iter().enumerate().all(|(i, v)| v[99] == i as u8)
            );
        }
        other => panic!("unknown mode {other:?}"),
    }
}

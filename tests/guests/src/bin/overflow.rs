//! Shadow-stack overflows, caught at the overflowing frame.
//! `recurse`: unbounded recursion in a spawned green thread.
//! `big-frame`: a frame larger than the whole stack, next to a neighbour
//! whose live frame must stay intact.
//! `main`: unbounded recursion in main.
use std::hint::black_box;
use std::time::Duration;

use wasmlet::Builder;

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 16]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + frame[3]
}

#[inline(never)]
fn big_frame() -> u8 {
    let frame = black_box([7u8; 256 * 1024]);
    frame[black_box(1000)]
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    wasmlet::hub_exceptions(false);
    match mode.as_str() {
        "recurse" => {
            let t = wasmlet::spawn(|| recurse(0));
            println!("recurse: {:?}", t.wait().map_err(|e| e.to_string()));
            println!("main goes on");
        }
        "big-frame" => {
            let neighbour = Builder::new().stack_size(64 * 1024).spawn(|| {
                let mine = black_box([0x5au8; 1024]);
                let _ = wasmlet::sleep(Duration::from_millis(20));
                mine.iter().all(|&b| b == 0x5a)
            });
            let _ = wasmlet::sleep(Duration::ZERO);
            let big = Builder::new().stack_size(64 * 1024).spawn(big_frame);
            println!("big frame: {:?}", big.wait().map_err(|e| e.to_string()));
            println!("neighbour intact: {:?}", neighbour.wait());
        }
        "main" => {
            println!("{}", recurse(0));
        }
        other => panic!("unknown mode {other:?}"),
    }
}

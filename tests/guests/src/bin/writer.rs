//! Sleeps a little in a few green threads, then writes argv[1].
use std::time::Duration;

fn main() {
    let path = std::env::args().nth(1).unwrap();
    let hs: Vec<_> = (0..3)
        .map(|i| {
            wasmlet::spawn(move || {
                let _ = wasmlet::sleep(Duration::from_millis(2));
                i
            })
        })
        .collect();
    let sum: i32 = hs.iter().map(|h| h.wait().unwrap()).sum();
    std::fs::write(&path, format!("{sum}")).unwrap();
    println!("writer done: {sum}");
}

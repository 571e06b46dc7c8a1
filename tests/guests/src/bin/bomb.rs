//! A spawn bomb: every green thread spawns two more, to a depth. With a small
//! `--max-green-threads`, many spawns are refused.
fn bomb(depth: u32) {
    if depth == 0 {
        return;
    }
    let children = [
        wasmlet::spawn(move || bomb(depth - 1)),
        wasmlet::spawn(move || bomb(depth - 1)),
    ];
    for child in children {
        let _ = child.wait();
    }
}

fn main() {
    let depth: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    wasmlet::hub_exceptions(false);
    let root = wasmlet::spawn(move || bomb(depth));
    println!("root: {:?}", root.wait().is_ok());
}

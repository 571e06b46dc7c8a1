//! Sleeps argv[1] ms in one green sleep, then says so.
fn main() {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let _ = wasmlet::sleep(std::time::Duration::from_millis(ms));
    println!("slept {ms} ms");
}

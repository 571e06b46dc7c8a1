//! Allocates 1 MiB at a time and keeps it, until the allocator fails.
fn main() {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(vec![1; 1 << 20]);
        if kept.len().is_multiple_of(16) {
            println!("holding {} MiB", kept.len());
        }
    }
}

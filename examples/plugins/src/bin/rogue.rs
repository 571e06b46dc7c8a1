//! A misbehaving plugin: `spin` never returns, `panic` panics, `hog`
//! allocates without end; `ping` is well-behaved, to show which failures
//! the plugin survives.
fn spin(_: &[u8]) -> String {
    let mut spins = 0u64;
    loop {
        spins = std::hint::black_box(spins + 1);
    }
}

fn panic(_: &[u8]) -> String {
    panic!("this plugin gave up")
}

fn hog(_: &[u8]) -> String {
    let mut kept = Vec::new();
    loop {
        kept.push(vec![1u8; 1 << 20]);
    }
}

fn ping(_: &[u8]) -> &'static str {
    "pong"
}

wasmlet::export!(spin, panic, hog, ping);

fn main() {}

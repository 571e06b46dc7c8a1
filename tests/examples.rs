//! The example guests build with a plain `cargo build` and run through the CLI.

mod support;
use support::{build_guests, cli};

#[test]
fn hello_runs() {
    let dir = build_guests("examples/Cargo.toml");
    let out = cli(&dir.join("hello.wasm"), &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("alpha: step 1\nbeta: step 1\ngamma: step 1\nalpha: step 2\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("hello from wasmlet: 3 green threads returned 60\n"),
        "{stdout}"
    );
}

//! The example guests build with a plain `cargo build` and run through the CLI.

mod support;
use support::{build_guests, cli};

use std::path::PathBuf;
use std::sync::OnceLock;

fn example(name: &str) -> (i32, String) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| build_guests("examples/Cargo.toml"));
    let out = cli(&dir.join(format!("{name}.wasm")), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stderr}");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn hello_takes_turns() {
    let (_, stdout) = example("hello");
    assert!(
        stdout.starts_with("alpha: step 1\nbeta: step 1\ngamma: step 1\nalpha: step 2\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("hello from wasmlet: 3 green threads returned 60\n"),
        "{stdout}"
    );
}

#[test]
fn crawler_gathers_in_order() {
    let (_, stdout) = example("crawler");
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines[0], "https://example.org/: 2000 bytes");
    assert_eq!(lines[3], "https://example.org/contact: 2700 bytes");
    assert!(
        lines[4].starts_with("crawled 4 pages, 9600 bytes, in "),
        "{stdout}"
    );
}

#[test]
fn watchdog_kills_only_the_late_worker() {
    let (_, stdout) = example("watchdog");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "link: quick job finished its work",
            "quick: Ok(\"quick job finished its work\")",
            "link: slow job ended early: green thread was killed: slow job missed its 30 ms deadline",
            "watchdog: killed slow job",
            "slow: Err(\"green thread was killed: slow job missed its 30 ms deadline\")",
        ]
    );
}

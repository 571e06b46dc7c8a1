//! The example guests build with a plain `cargo build` and run through the CLI.

use crate::support::{build_guests, cli};

use std::path::PathBuf;
use std::sync::OnceLock;

/// The built example guest `name`.
fn example_wasm(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_guests("examples/Cargo.toml"))
        .join(format!("{name}.wasm"))
}

fn example(name: &str) -> (i32, String) {
    let out = cli(&example_wasm(name), &[]);
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

#[test]
fn pipeline_applies_backpressure_and_processes_every_job() {
    let (_, stdout) = example("pipeline");
    let lines: Vec<_> = stdout.lines().collect();
    // The producer never gets more than 3 jobs ahead: job 4 waits for room.
    assert_eq!(
        lines[..4],
        [
            "producer: queued job 1",
            "producer: queued job 2",
            "producer: queued job 3",
            "producer: queue full (3 jobs), waiting for room",
        ]
    );
    for job in 1..=10 {
        let square = job * job;
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("collector: job {job} -> {square} (worker "))),
            "{stdout}"
        );
    }
    assert_eq!(
        lines.last().copied(),
        Some("squares: [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]")
    );
}

#[test]
fn spider_gets_imap_results_in_order_within_the_pool_size() {
    let (_, stdout) = example("spider");
    let pages: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  /page/"))
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(pages, (0..40).collect::<Vec<_>>(), "{stdout}");
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.starts_with("crawled 40 pages (49860 bytes) over 4 levels, at most 4 at once, in "),
        "{summary}"
    );
}

#[test]
fn hostile_neighbours_are_each_stopped_by_their_limit_and_the_good_ones_stay_on_time() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO"))
        .args([
            "run",
            "--release",
            "--quiet",
            "--example",
            "neighbours",
            "--",
        ])
        .arg(example_wasm("neighbours"))
        .current_dir(crate::support::repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running cargo");
    // The stdin reader gets an open, empty stdin: it waits until its time
    // limit, as it would at a terminal.
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (round1, round2) = stdout.split_once("round 2").expect("two rounds");
    let row = |round: &str, name: &str| {
        round
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {round}"))
            .to_string()
    };
    let ended = |round: &str, name: &str, code: i32, says: &str| {
        let line = row(round, name);
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], code.to_string(), "{line}");
        assert!(line.contains(says), "{line}");
    };
    for round in [round1, round2] {
        ended(round, "futex-sleeper", 1, "deadlock");
        ended(round, "lock-holder", 137, "time limit of 0.250 s");
        ended(round, "thread-sleeper", 137, "time limit of 0.250 s");
        ended(round, "stdin-reader", 137, "time limit of 0.250 s");
        assert!(
            round.contains("waiting on a std lock, condition variable or other futex"),
            "the deadlock report says what the futex sleeper waits on: {round}"
        );
    }
    ended(round2, "spinner", 137, "CPU time limit of 0.200 s");
    ended(round2, "memory-hog", 137, "linear memory limit of 64 MiB");
    ended(round2, "spawn-bomb", 134, "the main green thread trapped");
    ended(round2, "descriptor-hog", 0, "refused after 64 files");
    ended(round2, "linker", 137, "host memory limit of 16 MiB");
    for round in [round1, round2] {
        for good in ["good-1", "good-2"] {
            // How late their timers were is the example's figure to show
            // (the isolation tests hold the hub to it by counting, not by a
            // clock); here, that they ran to the end beside every hostile one.
            ended(round, good, 0, "worst timer lateness");
            println!("{}", row(round, good));
        }
    }
}

#[test]
fn the_plugin_host_calls_100_plugins_at_once_and_a_rogue_one_fails_alone() {
    let dir = example_wasm("text").parent().unwrap().to_path_buf();
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "--release",
            "--quiet",
            "--example",
            "plugin-host",
            "--",
        ])
        .arg(dir)
        .current_dir(crate::support::repo_root())
        .output()
        .expect("running cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"loaded 100 plugin instances"), "{stdout}");
    assert!(
        lines.iter().any(|l| l.starts_with("1000 calls in ")),
        "{stdout}"
    );
    for (plugin, calls, result) in [
        ("lookup", 300, "\"item 42: 57.54\""),
        ("rules", 300, "\"2 lines pass\""),
        ("text", 400, "\"GREEN THREADS FOR PLUGINS\""),
    ] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{plugin} ")))
            .unwrap_or_else(|| panic!("no {plugin} row in {stdout}"));
        assert!(row.contains(&format!(" {calls} ")), "{row}");
        assert!(row.ends_with(result), "{row}");
    }
    for expected in [
        "rogue spin: error: no result within the timeout -> cancelled: error: the call was cancelled",
        "rogue panic: error: the call panicked: this plugin gave up",
        "rogue ping: \"pong\"",
        "rogue hog: plugin ended: the guest exceeded its linear memory limit of 32 MiB",
        "rogue restarted, ping: \"pong\"",
        "text plugin after all that: \"desserts\"",
    ] {
        assert!(lines.contains(&expected), "{expected:?} in {stdout}");
    }
}

/// A free loopback port (bound and let go: another process could take it
/// in between, which these tests would report as a failure to bind).
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Runs the server example `server` on a free port (as the README says),
/// then the client example `client` against it; the client's stdout.
fn against_server(server: &str, client: &str, client_args: &[&str]) -> String {
    let addr = free_port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .args(["run", "--listen", &addr])
        .arg(example_wasm(server))
        .args(["--", &addr])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut args = vec![addr.as_str()];
    args.extend(client_args);
    let out = crate::support::cli_with(&["--connect", &addr], &example_wasm(client), &args);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        out.status.success(),
        "{client}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On the defaults (no `--max-descriptors`): 1,000 connections held at
/// once by the server and by the client, where the old default of 256
/// descriptors per guest stopped the server.
#[test]
fn the_echo_server_echoes_every_message_of_many_concurrent_connections() {
    let stdout = against_server("echo-server", "echo-client", &["1000", "10"]);
    assert_eq!(
        stdout,
        "1000 connections x 10 messages: 10000 echoed, 0 connections failed\n"
    );
}

#[test]
fn the_crawler_fetches_every_page_of_the_http_server_through_a_pool() {
    let stdout = against_server("http-server", "fetch", &[]);
    assert_eq!(stdout, "fetched 511 pages (162145 bytes) over 9 levels\n");
}

#[test]
fn the_chat_server_broadcasts_each_line_to_the_other_clients() {
    let out = crate::support::cli_with(
        &["--listen", "127.0.0.1:0", "--connect", "127.0.0.1"],
        &example_wasm("chat"),
        &["demo"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = |who: &str| {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(who))
            .unwrap_or_else(|| panic!("{who}: {stdout}"));
        line.to_string()
    };
    assert!(heard("ann").contains("heard 1 lines") && heard("ann").contains("bob says hi ann"));
    assert!(
        heard("bob").contains("heard 2 lines") && heard("bob").contains("ann says how are you?")
    );
    assert!(heard("cat").contains("heard 3 lines"), "{stdout}");
}

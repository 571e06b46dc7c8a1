//! `wasmlet serve`: a manifest's plugins over HTTP, as a user runs it (the
//! CLI in a process of its own, called over a socket). The tests wait for
//! lines the server prints and for counts in its `/metrics`, never for time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::support::{build_guests, guest, repo_root};

/// A `wasmlet serve` process and its address; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
    dir: PathBuf,
    /// Kept open: the server (and its plugins) may print more.
    stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// Serves `plugins` (TOML `[[plugin]]` tables, `PLUGIN` standing for the
    /// test plugin's path) with `server` as the `[server]` table's lines.
    fn start(server: &str, plugins: &str) -> Server {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wasmlet-serve-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("manifest.toml");
        let plugin = guest("plugin").display().to_string();
        std::fs::write(
            &manifest,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nhubs = 1\n{server}\n{}",
                plugins.replace("PLUGIN", &plugin)
            ),
        )
        .unwrap();
        Server::serve(&manifest, &[], dir)
    }

    /// Runs `wasmlet serve MANIFEST ARGS...`; `dir` is removed when done.
    pub(crate) fn serve(manifest: &std::path::Path, args: &[&str], dir: PathBuf) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .arg("serve")
            .arg(manifest)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting wasmlet serve");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("the server said {line:?}, not where it listens"))
            .to_string();
        Server {
            child,
            addr,
            dir,
            stdout,
        }
    }

    /// Reads what the server prints until a line that starts with `prefix`.
    pub(crate) fn wait_for_line(&mut self, prefix: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.stdout.read_line(&mut line).unwrap();
            assert!(read > 0, "the server ended before it printed {prefix:?}");
            if line.starts_with(prefix) {
                return;
            }
        }
    }

    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        request(&self.addr, method, path, headers, body)
    }

    fn call(&self, function: &str, input: &str) -> Reply {
        self.request(
            "POST",
            &format!("/call/p/{function}"),
            &[],
            input.as_bytes(),
        )
    }

    /// The `/metrics` line that starts with `series`, if there is one.
    pub(crate) fn metric(&self, series: &str) -> Option<String> {
        let text = self.request("GET", "/metrics", &[], b"").text();
        text.lines()
            .find(|l| l.starts_with(series))
            .map(str::to_string)
    }

    /// Asks `/metrics` until `series` reads `value`.
    pub(crate) fn wait_for_metric(&self, series: &str, value: &str) {
        let want = format!("{series} {value}");
        while self.metric(series).as_deref() != Some(want.as_str()) {
            std::thread::yield_now();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON error body's `error` kind.
    fn kind(&self) -> String {
        let value: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", self.text()));
        value["error"].as_str().unwrap_or_default().to_string()
    }
}

/// One HTTP/1.1 request on a connection of its own.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut conn = TcpStream::connect(addr).expect("connecting to the server");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole HTTP head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    Reply {
        status,
        head,
        body: answer[split + 4..].to_vec(),
    }
}

const ONE_PLUGIN: &str = "[[plugin]]\nname = \"p\"\npath = \"PLUGIN\"\ninstances = 2\n";

#[test]
fn calls_come_back_as_bodies_and_errors_as_statuses() {
    let server = Server::start("", ONE_PLUGIN);
    let ok = server.call("upper", "hello");
    assert_eq!((ok.status, ok.text().as_str()), (200, "HELLO"));
    let json = server.call("total", r#"{"items": [2, 3]}"#);
    assert_eq!(json.text(), r#"{"count":2,"sum":5}"#);

    for (function, status, kind) in [
        ("fails", 422, "failed"),
        ("panics", 500, "panicked"),
        ("nope", 404, "no_such_function"),
        ("nope2", 404, "no_such_function"),
    ] {
        let reply = server.call(function, "x");
        assert_eq!(
            (reply.status, reply.kind()),
            (status, kind.to_string()),
            "{function}: {}",
            reply.text()
        );
    }
    let reply = server.request("POST", "/call/nope/upper", &[], b"");
    assert_eq!(
        (reply.status, reply.kind()),
        (404, "no_such_plugin".to_string())
    );
    let reply = server.request("GET", "/call/p/upper", &[], b"");
    assert_eq!(reply.status, 405);
    let reply = server.request("GET", "/elsewhere", &[], b"");
    assert_eq!(reply.status, 404);
    let reply = server.request(
        "POST",
        "/call/p/upper",
        &[("x-wasmlet-timeout-ms", "soon")],
        b"",
    );
    assert_eq!(
        (reply.status, reply.kind()),
        (400, "bad_request".to_string())
    );

    let health = server.request("GET", "/health", &[], b"");
    assert_eq!(health.status, 200);
    assert!(
        health.text().contains("\"status\":\"ok\""),
        "{}",
        health.text()
    );

    // Counted: by function and outcome, made-up names under "", latency.
    let metrics = server.request("GET", "/metrics", &[], b"");
    assert!(metrics.head.contains("text/plain"), "{}", metrics.head);
    let text = metrics.text();
    for line in [
        "wasmlet_calls_total{plugin=\"p\",function=\"upper\",outcome=\"ok\"} 1",
        "wasmlet_calls_total{plugin=\"p\",function=\"fails\",outcome=\"failed\"} 1",
        "wasmlet_calls_total{plugin=\"p\",function=\"\",outcome=\"no_such_function\"} 2",
        "wasmlet_call_duration_seconds_count{plugin=\"p\"} 6",
        "wasmlet_calls_in_flight{plugin=\"p\"} 0",
        "wasmlet_instance_green_threads{plugin=\"p\",instance=\"1\"}",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    assert!(!text.contains("nope"), "{text}");
}

#[test]
fn a_plugin_that_crashes_or_traps_is_served_again() {
    let server = Server::start("", "[[plugin]]\nname = \"p\"\npath = \"PLUGIN\"\n");
    // Its one instance exits during the call: the caller is told, and the
    // next call finds a fresh instance.
    let reply = server.call("exits", "");
    assert_eq!(
        (reply.status, reply.kind()),
        (502, "instance_ended".to_string()),
        "{}",
        reply.text()
    );
    let reply = server.call("upper", "again");
    assert_eq!((reply.status, reply.text().as_str()), (200, "AGAIN"));
    assert_eq!(
        server
            .metric("wasmlet_instance_restarts_total{plugin=\"p\"}")
            .as_deref(),
        Some("wasmlet_instance_restarts_total{plugin=\"p\"} 1")
    );
    let reply = server.call("traps", "");
    assert_eq!(reply.status / 100, 5, "{}", reply.text());
    let reply = server.call("upper", "still");
    assert_eq!((reply.status, reply.text().as_str()), (200, "STILL"));
}

#[test]
fn a_callers_deadline_cancels_the_call_and_a_full_host_says_so() {
    let server = Server::start("max_in_flight = 1", ONE_PLUGIN);
    // The deadline reaches the plugin: its green thread is cancelled, and
    // nothing stays in flight.
    let reply = server.request(
        "POST",
        "/call/p/slow",
        &[("x-wasmlet-timeout-ms", "50")],
        b"60000",
    );
    assert_eq!(
        (reply.status, reply.kind()),
        (504, "deadline_exceeded".to_string())
    );
    server.wait_for_metric("wasmlet_calls_in_flight{plugin=\"p\"}", "0");

    // At its in-flight limit the host refuses at once, with retry-after.
    let addr = server.addr.clone();
    let slow = std::thread::spawn(move || request(&addr, "POST", "/call/p/slow", &[], b"60000"));
    server.wait_for_metric("wasmlet_calls_in_flight{plugin=\"p\"}", "1");
    let reply = server.call("upper", "x");
    assert_eq!((reply.status, reply.kind()), (503, "host_busy".to_string()));
    assert!(
        reply.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        reply.head
    );
    assert_eq!(
        server.metric("wasmlet_host_busy_total").as_deref(),
        Some("wasmlet_host_busy_total 1")
    );
    drop(server);
    // The slow call's connection closes with its server.
    let _ = slow.join();
}

#[test]
fn sigterm_drains_the_calls_in_flight_then_exits() {
    let mut server = Server::start("", ONE_PLUGIN);
    let addr = server.addr.clone();
    let slow = std::thread::spawn(move || request(&addr, "POST", "/call/p/slow", &[], b"300"));
    server.wait_for_metric("wasmlet_calls_in_flight{plugin=\"p\"}", "1");
    // SAFETY: a plain kill(2) of the child this test started.
    let sent = unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let reply = slow.join().unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "slept 300 ms"));
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the server's exit");
    assert!(
        TcpStream::connect(&server.addr).is_err(),
        "it still listens"
    );
}

#[test]
fn a_body_past_the_limit_is_refused() {
    let server = Server::start("max_body_bytes = 16", ONE_PLUGIN);
    let reply = server.call("upper", &"x".repeat(100));
    assert_eq!(
        (reply.status, reply.kind()),
        (413, "body_too_large".to_string())
    );
    let reply = server.call("upper", "small");
    assert_eq!(reply.status, 200);
}

#[test]
fn a_bad_manifest_is_refused_naming_the_file_and_field() {
    let dir = std::env::temp_dir().join(format!("wasmlet-serve-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("bad.toml");
    // `wasmlet serve` on `text`: its exit code and stderr.
    let serve = |text: &str| {
        std::fs::write(&manifest, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .arg("serve")
            .arg(&manifest)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = serve("[[plugin]]\nname = \"p\"\npath = \"p.wasm\"\nmax_memory = 64\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("unknown field `max_memory`"),
        "{err}"
    );
    // A plugin file that is not there names the plugin.
    let (_, err) = serve("[[plugin]]\nname = \"p\"\npath = \"missing.wasm\"\n");
    assert!(
        err.contains("plugin `p`") && err.contains("missing.wasm"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's example: examples/serve/manifest.toml (its plugins found
/// where the tests build the examples) answers the call the README makes.
#[test]
fn the_example_manifest_serves_the_readme_call() {
    let built = build_guests("examples/Cargo.toml");
    let text = std::fs::read_to_string(repo_root().join("examples/serve/manifest.toml")).unwrap();
    let text = text.replace(
        "../target/wasm32-wasip1-threads/release/",
        &format!("{}/", built.display()),
    );
    let dir = std::env::temp_dir().join(format!("wasmlet-serve-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("manifest.toml");
    std::fs::write(&manifest, text).unwrap();
    let server = Server::serve(&manifest, &["--listen", "127.0.0.1:0"], dir);
    let reply = server.request("POST", "/call/text/upper", &[], b"hello, green world");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "HELLO, GREEN WORLD")
    );
    let reply = server.request("POST", "/call/rules/check", &[], b"not a rule");
    assert_eq!(
        (reply.status, reply.kind()),
        (422, "failed".to_string()),
        "{}",
        reply.text()
    );
}

/// A client that sends its request head slowly (slowloris) is cut off at
/// the header timeout, and the others are served meanwhile.
#[test]
fn a_slow_request_head_is_cut_off() {
    let server = Server::start("header_timeout_ms = 200", ONE_PLUGIN);
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"POST /call/p/upper HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let reply = server.call("upper", "meanwhile");
    assert_eq!((reply.status, reply.text().as_str()), (200, "MEANWHILE"));
    // Waits for the server to give up on it: an answer or the end (a
    // minute at most, so that a server that never does fails the test
    // rather than hang it).
    slow.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    if let Err(e) = slow.read_to_end(&mut rest) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the server never cut the slow client off"
        );
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );
}

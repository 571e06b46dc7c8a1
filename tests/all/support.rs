//! Shared by the end-to-end tests: builds the guests once per test binary and
//! runs them through the `wasmlet` CLI or the embedding API.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use wasmlet_host::{Config, GuestOptions, Hub, Program, Runtime};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds a guest workspace (release, wasm32-wasip1-threads) into a shared
/// target dir and returns the folder holding its `.wasm` files.
pub fn build_guests(manifest: &str) -> PathBuf {
    let root = repo_root();
    let target_dir = root.join("target").join("guests");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip1-threads",
        ])
        .arg("--manifest-path")
        .arg(root.join(manifest))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("running cargo to build guests");
    assert!(status.success(), "building {manifest} failed");
    target_dir.join("wasm32-wasip1-threads").join("release")
}

/// The test guest `name` (a binary of tests/guests).
pub fn guest(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_guests("tests/guests/Cargo.toml"))
        .join(format!("{name}.wasm"))
}

/// Runs `wasmlet run <wasm> -- args` and returns its output.
pub fn cli(wasm: &Path, args: &[&str]) -> Output {
    cli_with(&[], wasm, args)
}

/// `wasmlet run FLAGS WASM -- ARGS`.
#[allow(dead_code)]
pub fn cli_with(flags: &[&str], wasm: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .arg("run")
        .args(flags)
        .arg(wasm)
        .arg("--")
        .args(args)
        .output()
        .expect("running wasmlet")
}

/// What a guest run through the embedding API did.
pub struct Run {
    pub code: i32,
    pub error: Option<String>,
    pub stdout: String,
    pub stderr: String,
}

pub fn runtime() -> Runtime {
    Runtime::new(Config::default()).expect("runtime")
}

pub fn options(args: &[&str]) -> GuestOptions {
    GuestOptions {
        args: std::iter::once("guest")
            .chain(args.iter().copied())
            .map(String::from)
            .collect(),
        capture_output: true,
        ..Default::default()
    }
}

/// Runs the test guest `name` alone on a hub, capturing its output.
pub fn run(name: &str, args: &[&str]) -> Run {
    let runtime = runtime();
    let program = Program::from_file(runtime.engine(), guest(name)).expect("load guest");
    let mut hub = Hub::new(&runtime);
    let id = hub.add_guest(&program, options(args)).expect("add guest");
    hub.run();
    finished(&hub, id)
}

pub fn finished(hub: &Hub, id: wasmlet_host::GuestId) -> Run {
    let exit = hub.exit(id).expect("guest ended");
    let (stdout, stderr) = hub.output(id).expect("captured");
    Run {
        code: exit.code,
        error: exit.error.map(|e| e.to_string()),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Watches a running hub from another thread: waits until guest `first` has
/// ended, then says whether `second` was still live at that moment, and
/// kills `second`. Isolation tests use it instead of a bound on lateness: a
/// `second` that held the hub (a hog of a minute or more) would outlive
/// nothing, however loaded the machine.
pub fn ended_while_other_ran(
    handle: wasmlet_host::HubHandle,
    first: wasmlet_host::GuestId,
    second: wasmlet_host::GuestId,
) -> std::thread::JoinHandle<bool> {
    use std::time::Duration;
    std::thread::spawn(move || {
        // A hub that answers nothing for this long has failed the test.
        let wait = Duration::from_secs(300);
        // Polls the hub's report of `first` (each answer comes between two
        // steps); the pause only spaces the polls.
        while handle.usage(first, wait).is_some() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let live = handle.usage(second, wait).is_some();
        handle.kill_guest(second, "the test is done");
        live
    })
}

/// This OS thread's id in the kernel (for [`wait_until_asleep`]).
pub fn os_thread_id() -> i32 {
    // SAFETY: gettid(2) has no preconditions.
    unsafe { libc::gettid() }
}

/// Waits until the OS thread `tid` of this process sleeps in the kernel (it
/// is blocked: on a condition variable, say): how a test knows another
/// thread has reached a blocking call, without a sleep of its own.
pub fn wait_until_asleep(tid: i32) {
    loop {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .unwrap_or_else(|e| panic!("thread {tid} is gone: {e}"));
        // The state is the field after the parenthesised name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if state == Some('S') {
            return;
        }
        std::thread::yield_now();
    }
}

/// A child process, killed and reaped when dropped (a peer server, a guest
/// that serves until stopped).
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with its stdout piped and waits for its first line
/// (trimmed): the port or address a server prints once it listens. The
/// rest of its stdout is the third part.
pub fn start_until_first_line(
    command: &mut Command,
) -> (
    Running,
    String,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let mut stdout = std::io::BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    (running, line.trim().to_string(), stdout)
}

/// `tests/tools/http_peer.py` (Python's threaded `http.server`; behind
/// Python's `ssl` with `tls: Some((cert, key))`) and its port.
pub fn http_peer(tls: Option<(&Path, &Path)>) -> (Running, u16) {
    let mut command = Command::new("python3");
    command.arg(repo_root().join("tests/tools/http_peer.py"));
    if let Some((cert, key)) = tls {
        command.arg("--tls").arg(cert).arg(key);
    }
    let (peer, port, _) = start_until_first_line(&mut command);
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("http_peer.py said {port:?}"));
    (peer, port)
}

/// Runs `command` to its end, asserts that it succeeded (else fails with
/// its stderr), and returns its stdout.
pub fn stdout_of(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

//! The `wasmlet` CLI: exit codes, WASI plumbing (args, env, dirs), and clear
//! errors with a non-zero exit for input it cannot run.

use crate::support::{cli, cli_with, guest};

use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection,
    MemorySection, MemoryType, Module, TypeSection,
};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn exit_codes_follow_the_guest() {
    let exits = guest("exits");
    let out = cli(&exits, &["return"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "returning normally\n");

    let out = cli(&exits, &["exit-in-thread", "7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    let out = cli(&exits, &["panic-main"]);
    assert_eq!(out.status.code(), Some(134));
    let err = stderr(&out);
    assert!(err.contains("panicked at"), "{err}");
    assert!(err.contains("main gave up"), "{err}");
    assert!(err.contains("the main green thread trapped"), "{err}");

    let out = cli(&exits, &["trap-main"]);
    assert_ne!(out.status.code(), Some(0));

    let out = cli(&exits, &["kill-main"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the main green thread was killed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_host_says_why_it_refused_a_green_thread() {
    let out = cli(&guest("bogus"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("stopped: shadow stack of 4294967295 bytes asked for"),
        "{err}"
    );
}

#[test]
fn spawning_past_max_green_threads_is_refused_with_a_clear_error() {
    // Waves of 100 green threads alive at once, with room for 50.
    let waves = guest("waves");
    let out = cli_with(&["--max-green-threads", "50"], &waves, &["200", "100"]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("too many green threads alive at once: the hub holds at most 50"),
        "{err}"
    );
    // Within the limit the same guest runs.
    let out = cli_with(&["--max-green-threads", "150"], &waves, &["200", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn args_env_and_preopened_dirs_reach_the_guest() {
    let dir = std::env::temp_dir().join(format!("wasmlet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("input.txt"), "hello from the host\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .arg("run")
        .arg("--env")
        .arg("GREETING=hi there")
        .arg("--dir")
        .arg(format!("{}::/data", dir.display()))
        .arg(guest("environment"))
        .args(["--", "one", "two words"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI passes its stdin on to the guest.
    use std::io::Write as _;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed by the user\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "args: [\"one\", \"two words\"]\nGREETING=hi there\nfile: hello from the host\n\
         green thread wrote: Ok(true)\nstdin: Ok(\"typed by the user\")\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("from-thread.txt")).unwrap(),
        "written by a green thread"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn clocks_agree_with_the_host_and_with_wasi_sleeps() {
    let out = cli(&guest("clocks"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let unix: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("unix seconds: "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(host.abs_diff(unix) < 60, "guest {unix}, host {host}");
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [
            "monotonic across green threads: true",
            "WASI relative sleep: true",
            "WASI absolute deadline: errno 0, first fired: 7, waited 5 ms: true",
            "process cputime clock: errno 8",
            "thread cputime clock: errno 8",
            "unknown clock: errno 28",
            "pointer past memory: errno 21",
        ]
    );
}

/// A file in the temporary folder, removed when dropped.
struct TempFile(std::path::PathBuf);

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_temp(name: &str, bytes: &[u8]) -> TempFile {
    let path = std::env::temp_dir().join(format!("wasmlet-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    TempFile(path)
}

fn assert_refused(path: &std::path::Path, expected: &str) {
    let out = cli(path, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
    assert!(!err.contains("panicked"), "the host panicked: {err}");
}

/// A module with a `_start` and the given memory set-up.
fn module(import_shared: Option<bool>, define_memory: bool, export_start: bool) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    if let Some(shared) = import_shared {
        let mut imports = ImportSection::new();
        let ty = MemoryType {
            minimum: 1,
            maximum: Some(2),
            memory64: false,
            shared,
            page_size_log2: None,
        };
        imports.import("env", "memory", EntityType::Memory(ty));
        m.section(&imports);
    }
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    if define_memory {
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        m.section(&memories);
    }
    let mut exports = ExportSection::new();
    exports.export(
        if export_start { "_start" } else { "run" },
        ExportKind::Func,
        0,
    );
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instructions().end();
    code.function(&body);
    m.section(&code);
    m.finish()
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let path = write_temp("not.wasm", b"#!/bin/sh\necho this is not wasm\n");
    assert_refused(&path, "not a WebAssembly module");
    let path = write_temp("truncated.wasm", b"\0asm\x01\0\0\0\x01\x05");
    assert_refused(&path, "not a valid WebAssembly module");
}

#[test]
fn a_module_for_another_target_is_refused() {
    let path = write_temp("wasip1.wasm", &module(None, true, true));
    assert_refused(&path, "built for another target (such as wasm32-wasip1)");
    let path = write_temp("unshared.wasm", &module(Some(false), false, true));
    assert_refused(&path, "wasm32-wasip1-threads");
    let path = write_temp("component.wasm", b"\0asm\x0d\0\x01\0");
    assert_refused(&path, "is a WebAssembly component");
}

#[test]
fn a_module_without_start_is_refused() {
    let path = write_temp("nostart.wasm", &module(Some(true), false, false));
    assert_refused(&path, "no `_start` export");
}

#[test]
fn a_missing_file_and_bad_flags_are_reported() {
    let out = cli(std::path::Path::new("/nonexistent/guest.wasm"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reading /nonexistent/guest.wasm"),
        "{}",
        stderr(&out)
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .args(["run", "--env", "NOEQUALS", "x.wasm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected K=V"), "{}", stderr(&out));

    // Fiber stacks have no guard page, so a size leaving too little room for
    // host functions is refused.
    let out = cli_with(&["--fiber-stack-size", "65536"], &guest("exits"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fiber_stack_size must be at least 256 KiB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_spawn_bomb_is_logged_once_not_once_per_refused_spawn() {
    let out = cli_with(&["--max-green-threads", "50"], &guest("bomb"), &["10"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("stopped: too many green threads").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("more green threads of this guest were stopped the same way"),
        "{err}"
    );
}

#[test]
fn time_limit_ends_a_guest_that_runs_too_long() {
    let out = cli_with(
        &["--time-limit", "0.2"],
        &guest("spinner"),
        &["60000", "/none"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exceeded its time limit of 0.200 s"),
        "{}",
        stderr(&out)
    );
    let out = cli_with(
        &["--time-limit", "soon"],
        &guest("spinner"),
        &["1", "/none"],
    );
    assert!(
        stderr(&out).contains("expected a number of seconds"),
        "{}",
        stderr(&out)
    );
}

/// `wasmlet run stdio.wasm -- mode` with every stream piped.
fn stdio_guest(mode: &str) -> std::process::Child {
    stdio_guest_with(&[], mode)
}

/// `stdio_guest` with CLI flags.
fn stdio_guest_with(flags: &[&str], mode: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .args(["run"])
        .args(flags)
        .arg(guest("stdio"))
        .args(["--", mode])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running wasmlet")
}

#[test]
fn a_stdin_read_waits_green_while_other_green_threads_run() {
    read_waits_green("read");
}

#[test]
fn a_write_to_a_full_stdout_pipe_waits_green() {
    write_waits_green("write");
}

/// Runs the stdio guest's read `mode`: stdin is written only once the
/// guest's neighbour has ticked 20 times while the reader waits (a read
/// that blocked the hub's thread would stop the ticks).
fn read_waits_green(mode: &str) {
    use std::io::Write;
    let (mut child, lines) = stdio_guest_lines(mode);
    expect_line(&mut child, &lines, "ticked 20 times while reading");
    child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "read: hello\n");
}

/// Runs the stdio guest's write `mode`: stdout is drained only once the
/// guest's neighbour has ticked 20 times while the writer waits on the full
/// pipe.
fn write_waits_green(mode: &str) {
    use std::io::Read;
    let (mut child, lines) = stdio_guest_lines(mode);
    expect_line(&mut child, &lines, "ticked 20 times while writing");
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    assert_eq!(expect_line(&mut child, &lines, "wrote: "), "wrote: true");
    assert!(child.wait().unwrap().success());
    assert_eq!(stdout.len(), 4 << 20, "every byte arrives");
    assert!(stdout.iter().all(|&b| b == b'x'));
}

#[test]
fn a_green_thread_waiting_on_stdin_can_be_killed_and_the_guest_ends() {
    let mut child = stdio_guest("kill");
    // stdin stays open and empty until the guest has ended (wait_with_output
    // would close it).
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reader: Err(\"green thread was killed (GreenletExit)\")\n"
    );
}

#[test]
fn sigquit_prints_every_green_thread_and_what_it_waits_for() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .args(["run", "--time-limit", "4"])
        .arg(guest("sleeper"))
        .args(["--", "60000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running wasmlet");
    let (lines, from_child) = std::sync::mpsc::channel();
    let stderr_pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // A SIGQUIT before the CLI takes it over kills the process: wait until
    // the kernel says it is caught. One before the hub runs (while the
    // program compiles) finds no hub to report yet, and one before main's
    // first step finds it runnable: ask until a report shows main asleep
    // (the guest's time limit counts from when the hub runs it).
    let caught = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (libc::SIGQUIT - 1)) != 0)
    };
    while !caught(child.id()) {
        assert!(child.try_wait().unwrap().is_none(), "wasmlet ended early");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut err = String::new();
    loop {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
        match from_child.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(line) => {
                err += &line;
                err.push('\n');
                if line.contains("  main green thread: sleeping") {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for line in from_child.iter() {
        err += &line;
        err.push('\n');
    }
    let status = child.wait().unwrap();
    // The guest went on after the report, to its time limit.
    assert_eq!(status.code(), Some(137), "{err}");
    assert!(
        err.contains("wasmlet: SIGQUIT: hub: 1 live guests, 1 green threads"),
        "{err}"
    );
    assert!(err.contains("guest 0 (program): 1 green threads"), "{err}");
    assert!(err.contains("  main green thread: sleeping"), "{err}");
}

#[test]
fn the_cpu_time_and_descriptor_limits_have_flags() {
    let out = cli_with(&["--max-cpu-time", "0.2"], &guest("hostile"), &["spin"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(137), "{err}");
    assert!(
        err.contains("the guest exceeded its CPU time limit of 0.200 s"),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("wasmlet-cli-fds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data"), b"x").unwrap();
    let mapping = format!("{}::/d", dir.display());
    let out = cli_with(
        &["--dir", &mapping, "--max-descriptors", "5"],
        &guest("hostile"),
        &["files", "/d"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("refused after 5 files:"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs the stdio guest in `mode` with stdin and stdout piped, and hands
/// its stderr lines over a channel (so that a test can wait for a line with
/// a watchdog, never for time to pass).
fn stdio_guest_lines(mode: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    // A preopened directory, at descriptor 3: what the guest moves its
    // stream onto.
    let dir = format!("{}::/d", std::env::temp_dir().display());
    let mut child = stdio_guest_with(&["--dir", &dir], mode);
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Waits for a stderr line starting with `prefix`; a guest that never says
/// it (a hub blocked for good, say) is killed after a minute, failing the
/// test instead of hanging it.
fn expect_line(
    child: &mut std::process::Child,
    lines: &std::sync::mpsc::Receiver<String>,
    prefix: &str,
) -> String {
    let watchdog = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = watchdog.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no line {prefix:?}; stderr was {seen:?}");
            }
        }
    }
}

/// Issue 19: a guest that moves its stdout onto descriptor 3 and writes more
/// than the pipe holds still waits green (it blocked the hub's OS thread,
/// and every guest with it, when the moved stream was handed to
/// wasmtime-wasi as an ordinary descriptor).
#[test]
fn a_stdout_moved_past_2_still_waits_green_when_full() {
    write_waits_green("write-moved");
}

/// The same for stdin moved onto descriptor 3.
#[test]
fn a_stdin_moved_past_2_still_waits_green() {
    read_waits_green("read-moved");
}

/// A guest cannot read its stdout: a terminal's descriptor is open both
/// ways, and the guest read the user's keystrokes through it. A socket
/// stands in for the terminal here.
#[test]
fn a_guest_cannot_read_the_hosts_stdout() {
    use std::io::Write;
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.write_all(b"secret\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .args(["run"])
        .arg(guest("stdio"))
        .args(["--", "read-stdout"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("running wasmlet");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("reading stdout: Err(Some(8))"), "EBADF: {err}");
}

/// The host's own log line to a stderr pipe a guest has filled (nobody
/// reads it) does not stop the hub: it is dropped and counted (it blocked
/// the hub's OS thread for good).
#[test]
fn a_host_log_line_to_a_full_stderr_does_not_stop_the_hub() {
    use std::io::{BufRead, Read};
    let mut child = stdio_guest("full-stderr");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Stderr is read only once the guest says it still runs (a watchdog
    // ends a guest that never does).
    let line = rx.recv_timeout(std::time::Duration::from_secs(60));
    if line.is_err() {
        let _ = child.kill();
    }
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let status = child.wait().unwrap();
    assert_eq!(
        line.as_deref(),
        Ok("still running after the refusal: true"),
        "{}",
        err.trim_start_matches('e')
    );
    assert!(status.success());
}

//! `wasmlet new`: the projects it writes build with one `cargo build
//! --release` and run with one `wasmlet run` (a program) or `wasmlet serve`
//! (a plugin), as its next steps say.

use std::path::Path;
use std::process::Command;

use crate::serve::Server;
use crate::support::{repo_root, start_until_first_line};

fn wasmlet(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `cargo build --release` in `project`, with its compiled dependencies
/// kept in `target`.
fn cargo_build(project: &Path, target: &Path) {
    let status = Command::new(env!("CARGO"))
        .current_dir(project)
        .args(["build", "--release", "--quiet"])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build in {}", project.display());
}

#[test]
fn new_projects_build_and_run_as_their_next_steps_say() {
    let dir = std::env::temp_dir().join(format!("wasmlet-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Their dependencies are those of the test guests, compiled already.
    let target = repo_root().join("target/guests");

    let out = wasmlet(&dir, &["new", "greeter"]);
    let steps = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{steps}");
    assert!(
        steps.contains("cargo build --release")
            && steps.contains("wasmlet run target/wasm32-wasip1-threads/release/greeter.wasm"),
        "{steps}"
    );
    cargo_build(&dir.join("greeter"), &target);
    let run = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .arg("run")
        .arg(target.join("wasm32-wasip1-threads/release/greeter.wasm"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{printed}");
    assert!(
        printed.ends_with("3 green threads returned 60\n"),
        "{printed}"
    );
    assert_eq!(printed.matches(": step ").count(), 6, "{printed}");

    // A plugin: its manifest serves it, and a call comes back.
    let out = wasmlet(&dir, &["new", "shout", "--plugin"]);
    assert!(out.status.success());
    let project = dir.join("shout");
    cargo_build(&project, &target);
    // Where its manifest looks for it (the build went to the shared target).
    let module = project.join("target/wasm32-wasip1-threads/release/shout.wasm");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip1-threads/release/shout.wasm"),
        &module,
    )
    .unwrap();
    let server = Server::serve(
        &project.join("manifest.toml"),
        &["--listen", "127.0.0.1:0"],
        dir.clone(),
    );
    let reply = server.request("POST", "/call/shout/upper", &[], b"hello, green world");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "HELLO, GREEN WORLD")
    );

    // An HTTP service behind TLS, made and run as its next steps say: the
    // certificate by their openssl command, the server, then curl.
    let out = wasmlet(&dir, &["new", "hello-tls", "--http"]);
    let steps = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{steps}");
    let project = dir.join("hello-tls");
    cargo_build(&project, &target);
    let make_certificate = steps
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("openssl req"))
        .unwrap_or_else(|| panic!("no openssl step in {steps}"));
    let made = Command::new("sh")
        .args(["-c", make_certificate])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(steps.contains("wasmlet run --listen-tls 127.0.0.1:8443 --cert cert.pem --key key.pem"));
    // Port 0 here, where the steps say 8443: tests run side by side.
    let (_service, line, _) = start_until_first_line(
        Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .current_dir(&project)
            .args([
                "run",
                "--listen-tls",
                "127.0.0.1:0",
                "--cert",
                "cert.pem",
                "--key",
                "key.pem",
            ])
            .arg(target.join("wasm32-wasip1-threads/release/hello-tls.wasm"))
            .args(["--", "127.0.0.1:0"]),
    );
    let port = line.rsplit_once(':').map(|(_, p)| p.to_string()).unwrap();
    let curl = |extra: &[&str], path: &str| {
        let out = Command::new("curl")
            .current_dir(&project)
            .args(["--silent", "--show-error", "--cacert", "cert.pem"])
            .args(extra)
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    assert_eq!(curl(&[], "/"), "hello from a green thread\n");
    assert_eq!(
        curl(&["-d", "hello, green world"], "/echo"),
        "hello, green world"
    );

    // Bad input is refused, saying why.
    let out = wasmlet(&dir, &["new", "shout"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = wasmlet(&dir, &["new", "2fast"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot name a package"));
    let out = wasmlet(&dir, &["new", "elsewhere", "--sdk", "/nonexistent"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the guest SDK's folder"));
}

//! `wasmlet new NAME [--plugin | --http]`: writes a guest project that
//! builds with one `cargo build --release` and runs with one `wasmlet run`
//! (a program, or an HTTPS service) or `wasmlet serve` (a plugin).
//!
//! ```text
//! NAME/
//!   Cargo.toml            the SDK as a path dependency (or a version one)
//!   .cargo/config.toml    the target, wasm32-wasip1-threads
//!   .gitignore
//!   README.md             how to build and run it
//!   src/main.rs           green threads taking turns, a plugin's functions,
//!                         or an HTTP service
//!   manifest.toml         (a plugin) for `wasmlet serve`
//! ```

use std::path::{Path, PathBuf};

use wasmtime::error::Context as _;
use wasmtime::{bail, Result};

/// What `wasmlet new` was asked for.
pub struct NewProject {
    /// The project's folder; its last part names the package.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// The guest SDK's folder, for a path dependency.
    pub sdk: Option<PathBuf>,
}

/// What kind of guest a project is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A program: green threads taking turns.
    Program,
    /// Functions the host calls, with a manifest for `wasmlet serve`.
    Plugin,
    /// An HTTP service on the SDK's `http` feature, run behind TLS that the
    /// host terminates.
    Http,
}

/// The SDK of the source tree this binary was built from, if it is still
/// there: a path dependency on it works before the SDK is published.
fn sdk_beside_this_binary() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    sdk.join("Cargo.toml").is_file().then(|| {
        // A clean absolute path: the project may be anywhere.
        sdk.canonicalize().unwrap_or(sdk)
    })
}

/// Writes the project and returns what to run next.
///
/// # Errors
/// If the name is not a valid package name, the folder exists, or a file
/// cannot be written.
pub fn write(project: &NewProject) -> Result<String> {
    let name = project
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let valid = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` cannot name a package: start with a letter, then letters, digits, `-` or `_`"
        );
    }
    if project.path.exists() {
        bail!(
            "{} already exists: pick another name, or remove it",
            project.path.display()
        );
    }
    let dependency = match project.sdk.clone().or_else(sdk_beside_this_binary) {
        Some(sdk) => {
            if !sdk.join("Cargo.toml").is_file() {
                bail!(
                    "{} is not the guest SDK's folder (no Cargo.toml there)",
                    sdk.display()
                );
            }
            let sdk = sdk.canonicalize().unwrap_or(sdk);
            format!("wasmlet = {{ path = {:?}", sdk.display().to_string())
        }
        None => "wasmlet = { version = \"0.1\"".to_string(),
    };
    let dependency = match project.kind {
        Kind::Http => format!("{dependency}, features = [\"http\"] }}"),
        _ => format!("{dependency} }}"),
    };
    let files: Vec<(&str, String)> = vec![
        (
            "Cargo.toml",
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
                 publish = false\n\n[dependencies]\n{dependency}\n\n\
                 # A project of its own, even inside another workspace.\n[workspace]\n"
            ),
        ),
        (
            ".cargo/config.toml",
            "# wasmlet guests are built for WASI with threads' shared memory.\n\
             [build]\ntarget = \"wasm32-wasip1-threads\"\n"
                .to_string(),
        ),
        (".gitignore", "/target\n".to_string()),
        (
            "src/main.rs",
            match project.kind {
                Kind::Program => PROGRAM_MAIN,
                Kind::Plugin => PLUGIN_MAIN,
                Kind::Http => HTTP_MAIN,
            }
            .to_string(),
        ),
        ("README.md", readme(&name, project.kind)),
    ];
    let mut files = files;
    if project.kind == Kind::Plugin {
        files.push(("manifest.toml", plugin_manifest(&name)));
    }
    for (relative, text) in &files {
        let path = project.path.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(next_steps(&project.path, &name, project.kind))
}

/// A self-signed certificate for `localhost`, in one openssl command.
pub const CERTIFICATE_COMMAND: &str = "openssl req -x509 -newkey ec -pkeyopt \
    ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost";

fn run_command(name: &str, kind: Kind) -> String {
    let module = format!("target/wasm32-wasip1-threads/release/{name}.wasm");
    match kind {
        Kind::Plugin => format!(
            "wasmlet serve manifest.toml &\ncurl -d 'hello, green world' http://127.0.0.1:8080/call/{name}/upper"
        ),
        Kind::Program => format!("wasmlet run {module}"),
        Kind::Http => format!(
            "{CERTIFICATE_COMMAND}\n\
             wasmlet run --listen-tls 127.0.0.1:8443 --cert cert.pem --key key.pem {module} &\n\
             curl --cacert cert.pem https://localhost:8443/\n\
             curl --cacert cert.pem -d 'hello, green world' https://localhost:8443/echo"
        ),
    }
}

fn next_steps(path: &Path, name: &str, kind: Kind) -> String {
    format!(
        "wrote {}\n\nnext:\n  cd {}\n  cargo build --release\n  {}\n\n\
         (once: rustup target add wasm32-wasip1-threads)",
        path.display(),
        path.display(),
        run_command(name, kind).replace('\n', "\n  ")
    )
}

fn readme(name: &str, kind: Kind) -> String {
    let what = match kind {
        Kind::Plugin => {
            "A wasmlet plugin: functions a host calls by name, each call a green thread."
        }
        Kind::Program => {
            "A wasmlet guest: a program whose green threads the wasmlet hub schedules."
        }
        Kind::Http => {
            "A wasmlet HTTP service: a green thread per connection, behind TLS that the host \
             terminates (the guest never holds the key)."
        }
    };
    format!(
        "# {name}\n\n{what}\n\n```sh\nrustup target add wasm32-wasip1-threads   # once\n\
         cargo build --release\n{}\n```\n",
        run_command(name, kind)
    )
}

fn plugin_manifest(name: &str) -> String {
    format!(
        "# `wasmlet serve manifest.toml`: this plugin over HTTP on localhost.\n\
         [server]\nlisten = \"127.0.0.1:8080\"\n\n\
         [[plugin]]\nname = \"{name}\"\n\
         path = \"target/wasm32-wasip1-threads/release/{name}.wasm\"\ninstances = 1\n"
    )
}

const PROGRAM_MAIN: &str = r#"//! Green threads taking turns: each sleeps, prints, and returns a value
//! that `main` waits for (eventlet's `spawn` and `GreenThread.wait`).
use std::time::Duration;

fn main() {
    let workers: Vec<_> = ["alpha", "beta", "gamma"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            wasmlet::spawn(move || {
                for step in 1..=2 {
                    println!("{name}: step {step}");
                    // Parks this green thread alone; the others run meanwhile.
                    let _ = wasmlet::sleep(Duration::from_millis(10));
                }
                (i + 1) * 10
            })
        })
        .collect();
    let total: usize = workers.iter().map(|w| w.wait().unwrap()).sum();
    println!("{} green threads returned {total}", workers.len());
}
"#;

const PLUGIN_MAIN: &str = r#"//! A plugin: the host calls these functions by name, each call a green
//! thread of its own (so a call that waits does not hold up the others).
//! A function takes the input bytes and returns bytes, a string, or a
//! `Result` whose error the caller sees.

fn upper(input: &[u8]) -> Vec<u8> {
    input.to_ascii_uppercase()
}

fn words(input: &[u8]) -> Result<String, std::str::Utf8Error> {
    Ok(std::str::from_utf8(input)?.split_whitespace().count().to_string())
}

wasmlet::export!(upper, words);

fn main() {}
"#;

const HTTP_MAIN: &str = r#"//! An HTTP service: each connection is a green thread, and each request's
//! handler one of its own (a handler that panics answers 500). Run with
//! `--listen-tls ADDR --cert FILE --key FILE` and the host terminates TLS:
//! this code reads and writes plaintext and never holds the key.
use wasmlet::http::{serve, Request, Response, StatusCode};
use wasmlet::net::TcpListener;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8443".into());
    let listener = TcpListener::bind(&addr)?;
    println!("serving on {}", listener.local_addr()?);
    serve(listener, |request: Request<Vec<u8>>| match request.uri().path() {
        "/" => Response::new(b"hello from a green thread\n".to_vec()),
        "/echo" => Response::new(request.into_body()),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(b"not found\n".to_vec())
            .unwrap(),
    })
}
"#;

//! TLS as a host capability, against peers no one here wrote: Python's
//! `ssl` and `http.client`, and curl, with a CA made at test time by the
//! openssl CLI. The guest's server reads plaintext from a `--listen-tls`
//! listener; its client connections (`TlsStream`, `https://`) are verified
//! by the host, and every failure says what failed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use crate::http::HttpGuest;
use crate::support::{guest, http_peer, stdout_of};

/// A CA, a server certificate it signed for `localhost` (and for no
/// address), and a self-signed certificate for `localhost`, in a folder of
/// their own that goes when dropped.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make() -> Certificates {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wasmlet-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("running openssl (Debian: apt install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let req = |rest: &[&str]| {
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(rest);
            openssl(&args);
        };
        req(&[
            "-x509",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=wasmlet test CA",
        ]);
        req(&[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        req(&[
            "-x509",
            "-keyout",
            "self.key",
            "-out",
            "self.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ]);
        Certificates { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn python(script: &str) -> String {
    stdout_of(Command::new("python3").args(["-c", script]))
}

/// The `http_server` guest, unchanged, behind a `--listen-tls` listener:
/// Python's `http.client` (keep-alive, a body of many records) and curl
/// are served; a plaintext client, a client that does not trust the
/// certificate, and one that never starts its handshake cost the server
/// nothing.
#[test]
fn a_tls_listener_serves_python_and_curl_while_the_guest_sees_plaintext() {
    let certs = Certificates::make();
    let server = HttpGuest::start_with(&[
        "--listen-tls",
        "127.0.0.1:0",
        "--cert",
        &certs.text("server.pem"),
        "--key",
        &certs.text("server.key"),
    ]);
    let port = server.addr.rsplit_once(':').unwrap().1;
    // Held open, silent, for the whole test: a handshake never begun.
    let _silent = std::net::TcpStream::connect(&server.addr).unwrap();
    let out = python(&format!(
        r#"
import http.client, socket, ssl
ca = ssl.create_default_context(cafile={ca:?})
c = http.client.HTTPSConnection("localhost", {port}, context=ca, timeout=60)
c.request("GET", "/hello")
r = c.getresponse(); print(r.status, r.read().decode())
sock = c.sock
body = bytes(range(256)) * 200
c.request("POST", "/echo", body=body)
r = c.getresponse(); print(r.status, r.getheader("x-length"), r.read() == body)
print("same connection:", c.sock is sock)
print("version:", c.sock.version())

plain = socket.create_connection(("127.0.0.1", {port}), timeout=60)
plain.sendall(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
answer = b""
while True:
    try:
        got = plain.recv(4096)
    except ConnectionResetError:
        break
    if not got: break
    answer += got
print("plaintext client: no HTTP answer:", b"hello" not in answer)

try:
    other = ssl.create_default_context()
    u = http.client.HTTPSConnection("localhost", {port}, context=other, timeout=60)
    u.request("GET", "/hello"); u.getresponse()
    print("untrusting client: served?!")
except ssl.SSLCertVerificationError:
    print("untrusting client: refused the certificate")

c2 = http.client.HTTPSConnection("localhost", {port}, context=ca, timeout=60)
c2.request("GET", "/hello")
r = c2.getresponse(); print("after:", r.status, r.read().decode())
"#,
        ca = certs.text("ca.pem"),
    ));
    assert_eq!(
        out,
        "200 hello\n200 51200 True\nsame connection: True\nversion: TLSv1.3\n\
         plaintext client: no HTTP answer: True\n\
         untrusting client: refused the certificate\nafter: 200 hello\n"
    );
    let curl = Command::new("curl")
        .args(["--silent", "--show-error", "--cacert"])
        .arg(certs.path("ca.pem"))
        .arg(format!("https://localhost:{port}/hello"))
        .output()
        .expect("running curl (Debian: apt install curl)");
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "hello",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
}

/// The guest's client connections: `https://` and `TlsStream` against
/// Python's `ssl` servers, verified against `--ca`; an address the
/// certificate is not for, a self-signed server, a server that never
/// answers the handshake, a plain HTTP server, and a port no `--connect`
/// rule allows each fail with what failed.
#[test]
fn the_guests_tls_connections_are_verified_and_failures_say_why() {
    let certs = Certificates::make();
    let (_good, good) = http_peer(Some((&certs.path("server.pem"), &certs.path("server.key"))));
    let (_self_signed, self_signed) =
        http_peer(Some((&certs.path("self.pem"), &certs.path("self.key"))));
    let (_plain, plain) = http_peer(None);
    // Connects complete in the backlog; nothing is ever read or written.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = |l: &TcpListener| l.local_addr().unwrap().port();
    let ports = [good, self_signed, port(&silent), plain, port(&forbidden)].map(|p| p.to_string());
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmlet"));
    command.arg("run").arg("--ca").arg(certs.path("ca.pem"));
    for p in &ports[..4] {
        command.args(["--connect", &format!("127.0.0.1:{p}")]);
    }
    let printed = stdout_of(command.arg(guest("tls_client")).arg("--").args(&ports));
    assert_eq!(
        printed,
        "https get: 200 hello\nhttps reuse: true\nhttps post: true\nstream: HTTP/1.1 200 OK\n\
         by address: InvalidData (name mismatch)\nself-signed: InvalidData (unknown issuer)\n\
         silent: TimedOut (timed out)\nplain: InvalidData (handshake failed)\n\
         forbidden: PermissionDenied (--connect)\ndone\n"
    );
}

/// Each TLS session the host keeps for a guest is charged to its host
/// memory: past the limit a new one is refused, saying which flag raises
/// it, and once sessions close there is room again.
#[test]
fn tls_sessions_count_against_the_guests_host_memory() {
    let certs = Certificates::make();
    let (_good, good) = http_peer(Some((&certs.path("server.pem"), &certs.path("server.key"))));
    let printed = stdout_of(
        Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .args(["run", "--max-host-memory", "2", "--ca"])
            .arg(certs.path("ca.pem"))
            .args(["--connect", &format!("127.0.0.1:{good}")])
            .arg(guest("tls_client"))
            .args(["--", "limit", &good.to_string()]),
    );
    assert_eq!(
        printed,
        "limit: some sessions, then OutOfMemory (names the flag: true)\n\
         after closing them: Ok(())\n"
    );
}

/// Bad TLS flags stop `wasmlet run` before the guest starts, saying what
/// to pass or which file is wrong.
#[test]
fn bad_tls_flags_are_refused_with_what_to_do() {
    let certs = Certificates::make();
    let run = |flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .arg("run")
            .args(flags)
            .arg(guest("http_server"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = run(&["--listen-tls", "127.0.0.1:0"]);
    assert!(said.contains("--cert"), "{said}");
    let with =
        |cert: &str, key: &str| run(&["--listen-tls", "127.0.0.1:0", "--cert", cert, "--key", key]);
    let said = with("/nonexistent.pem", "/nonexistent.key");
    assert!(said.contains("reading /nonexistent.pem"), "{said}");
    let server = certs.text("server.pem");
    let said = with(&server, &server);
    assert!(said.contains("private key"), "{said}");
    let said = with(&server, &certs.text("self.key"));
    assert!(said.contains("not usable"), "{said}");
    let said = run(&["--ca", &certs.text("server.key")]);
    assert!(said.contains("BEGIN CERTIFICATE"), "{said}");
}

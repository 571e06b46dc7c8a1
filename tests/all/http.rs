//! `wasmlet::http` (the SDK's HTTP/1.1 server, feature `http`) against a
//! client no one here wrote, Python's `http.client`, and against raw bytes
//! for what a library client never sends: pipelining, `Expect:
//! 100-continue`, malformed and oversized requests, slowloris, a client
//! that vanishes mid-body, a handler that panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use crate::support::guest;

/// The `http_server` test guest, serving on a loopback port.
struct HttpGuest {
    child: Child,
    addr: String,
}

impl HttpGuest {
    fn start() -> HttpGuest {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .args(["run", "--listen", "127.0.0.1:0"])
            .arg(guest("http_server"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the guest said {line:?}"))
            .to_string();
        HttpGuest { child, addr }
    }

    /// Writes `bytes` on a connection of its own and reads until the
    /// server closes it.
    fn exchange(&self, bytes: &[u8]) -> String {
        let mut conn = TcpStream::connect(&self.addr).unwrap();
        conn.write_all(bytes).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }
}

impl Drop for HttpGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pythons_http_client_gets_keep_alive_bodies_chunks_and_head() {
    let server = HttpGuest::start();
    let (host, port) = server.addr.split_once(':').unwrap();
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("{host}", {port}, timeout=60)
c.request("GET", "/hello")
r = c.getresponse(); print(r.status, r.read().decode())
sock = c.sock
c.request("POST", "/echo", body=b"x" * 3000)
r = c.getresponse(); print(r.status, r.getheader("x-length"), len(r.read()))
print("same connection:", c.sock is sock)
c.request("POST", "/echo", body=iter([b"chunk one, ", b"chunk two"]), encode_chunked=True)
r = c.getresponse(); print(r.status, r.read().decode())
c.request("HEAD", "/hello")
r = c.getresponse(); print(r.status, r.getheader("content-length"), repr(r.read()))
c.request("GET", "/nowhere")
r = c.getresponse(); print(r.status, r.read().decode())
c.request("GET", "/panic")
r = c.getresponse(); print(r.status, r.read().decode().strip())
c.request("GET", "/hello")
r = c.getresponse(); print(r.status, r.read().decode())
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 hello\n200 3000 3000\nsame connection: True\n200 chunk one, chunk two\n\
         200 5 b''\n404 no such page\n500 the handler failed\n200 hello\n"
    );
}

#[test]
fn pipelined_requests_and_100_continue_are_answered_in_order() {
    let server = HttpGuest::start();
    let answer = server.exchange(
        b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nping\
          GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
    let (first, rest) = answer.split_once("hello").unwrap();
    assert!(first.ends_with("\r\n\r\n"), "{answer}");
    assert!(rest.contains("ping") && rest.ends_with("hello"), "{answer}");
    assert!(rest.contains("connection: close"), "{answer}");

    // Expect: 100-continue: the interim answer comes before the body is sent.
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    conn.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(b"later").unwrap();
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");
}

#[test]
fn bad_requests_get_4xx_and_cost_the_server_nothing() {
    let server = HttpGuest::start();
    for (request, status) in [
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), "400"),
        (
            format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(5000)).into_bytes(),
            "431",
        ),
        (
            b"POST /echo HTTP/1.1\r\ncontent-length: 100000\r\n\r\n".to_vec(),
            "413",
        ),
        (
            b"POST /echo HTTP/1.1\r\ncontent-length: ten\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"POST /echo HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            "400",
        ),
    ] {
        let answer = server.exchange(&request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {answer}"
        );
        assert!(answer.contains("connection: close"), "{answer}");
    }

    // Slowloris: a head that never ends is cut off at the head timeout
    // (408), and others are served meanwhile.
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    // A client that vanishes mid-body.
    let mut vanished = TcpStream::connect(&server.addr).unwrap();
    vanished
        .write_all(b"POST /echo HTTP/1.1\r\ncontent-length: 1000\r\n\r\nonly this")
        .unwrap();
    drop(vanished);
    let answer = server.exchange(b"GET /hello HTTP/1.1\r\nconnection: close\r\n\r\n");
    assert!(answer.ends_with("hello"), "{answer}");
    let mut cut = String::new();
    let _ = slow.read_to_string(&mut cut);
    assert!(cut.starts_with("HTTP/1.1 408 "), "{cut}");

    // A slowloris that sends a byte every 100 ms (each read well within
    // the 500 ms head timeout, the whole head not): cut off all the same.
    // The sleeps are the attack's pace, not a wait for the server.
    let mut dribble = TcpStream::connect(&server.addr).unwrap();
    let mut sent = 0;
    for byte in b"GET /hello HTTP/1.1\r\nhost: slowly.example\r\n\r\n" {
        if dribble.write_all(&[*byte]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut cut = String::new();
    let _ = dribble.read_to_string(&mut cut);
    assert!(
        cut.starts_with("HTTP/1.1 408 "),
        "after {sent} bytes: {cut}"
    );
}

/// The client against Python's `http.server` (threaded, HTTP/1.1): keep-
/// alive reuse, bodies by length, chunks and close, redirects, a timeout.
#[test]
fn the_client_talks_to_pythons_http_server() {
    let script = r#"
import http.server, socketserver, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, code, body, **headers):
        self.send_response(code)
        for k, v in headers.items(): self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        if self.path == "/hello": self.send(200, b"hello")
        elif self.path == "/port": self.send(200, str(self.client_address[1]).encode())
        elif self.path == "/old": self.send(302, b"", Location="/hello")
        elif self.path == "/slow": time.sleep(5); self.send(200, b"late")
        elif self.path == "/chunked":
            self.send_response(200); self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
            for part in (b"one ", b"two ", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200); self.send_header("Connection", "close"); self.end_headers()
            self.wfile.write(b"the rest"); self.close_connection = True
        else: self.send(404, b"no")
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send(200, body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(python.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let addr = format!("127.0.0.1:{}", port.trim());
    let out = Command::new(env!("CARGO_BIN_EXE_wasmlet"))
        .args(["run", "--connect", &addr])
        .arg(guest("http_client"))
        .arg("--")
        .arg(format!("http://{addr}"))
        .output()
        .unwrap();
    let _ = python.kill();
    let _ = python.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "get: 200 hello\nsame connection: true\npost: 200 ping\nchunked: one two three\n\
         until close: the rest\nno redirect: 302\nredirect: 200 hello\nmissing: 404\n\
         slow: TimedOut\nhttps: Unsupported\nbad url: InvalidInput\n"
    );
}

//! `wasmlet::http` (the SDK's HTTP/1.1 server, feature `http`) against a
//! client no one here wrote, Python's `http.client`, and against raw bytes
//! for what a library client never sends: pipelining, `Expect:
//! 100-continue`, malformed and oversized requests, slowloris, a client
//! that vanishes mid-body, a handler that panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::support::{guest, http_peer, start_until_first_line, stdout_of, Running};

/// The `http_server` test guest, serving on a loopback port.
pub struct HttpGuest {
    child: Running,
    pub addr: String,
    /// Its stdout after the first line.
    stdout: BufReader<std::process::ChildStdout>,
}

impl HttpGuest {
    fn start() -> HttpGuest {
        HttpGuest::start_with(&["--listen", "127.0.0.1:0"])
    }

    /// The guest run with these `wasmlet run` flags (its listen rule).
    pub fn start_with(flags: &[&str]) -> HttpGuest {
        let (child, line, stdout) = start_until_first_line(
            Command::new(env!("CARGO_BIN_EXE_wasmlet"))
                .arg("run")
                .args(flags)
                .arg(guest("http_server"))
                .stderr(Stdio::null()),
        );
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the guest said {line:?}"))
            .to_string();
        HttpGuest {
            child,
            addr,
            stdout,
        }
    }

    /// Waits for the guest to print `line` (the next line it prints).
    fn expect_line(&mut self, line: &str) {
        let mut got = String::new();
        self.stdout.read_line(&mut got).unwrap();
        assert_eq!(got.trim_end(), line);
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
    assert_eq!(
        stdout_of(Command::new("python3").args(["-c", &script])),
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
    let (_python, port) = http_peer(None);
    let addr = format!("127.0.0.1:{port}");
    let printed = stdout_of(
        Command::new(env!("CARGO_BIN_EXE_wasmlet"))
            .args(["run", "--connect", &addr])
            .arg(guest("http_client"))
            .arg("--")
            .arg(format!("http://{addr}")),
    );
    // https:// is allowed only where a --connect rule is: not port 443.
    assert_eq!(
        printed,
        "get: 200 hello\nsame connection: true\npost: 200 ping\nchunked: one two three\n\
         until close: the rest\nno redirect: 302\nredirect: 200 hello\nmissing: 404\n\
         slow: TimedOut\nhttps: PermissionDenied\nbad url: InvalidInput\n"
    );
}

/// Sends a request on `conn` and reads its answer: (head, body).
fn request(conn: &mut TcpStream, path: &str) -> (String, String) {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .unwrap();
    read_response(conn)
}

/// Reads one response with a `content-length` body: (head, body).
fn read_response(conn: &mut TcpStream) -> (String, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).unwrap(),
            1,
            "closed mid-head: {bytes:?}"
        );
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    conn.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// Whether the server closed `conn` with nothing more to say.
fn closed_silently(conn: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    if !rest.is_empty() {
        eprintln!("the server said: {}", String::from_utf8_lossy(&rest));
    }
    rest.is_empty()
}

/// A graceful shutdown: the listener closes, an idle keep-alive connection
/// is closed without a word, a request under way is answered (with
/// `connection: close`), and `serve` returns `Ok`.
#[test]
fn a_graceful_shutdown_answers_what_is_under_way_and_closes_the_rest() {
    let mut server = HttpGuest::start();
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    let (head, body) = request(&mut idle, "/hello");
    assert!(head.starts_with("HTTP/1.1 200") && !head.contains("connection: close"));
    assert_eq!(body, "hello");
    let mut busy = TcpStream::connect(&server.addr).unwrap();
    busy.write_all(b"GET /wait?ms=300 HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    server.expect_line("waiting");
    let mut stopper = TcpStream::connect(&server.addr).unwrap();
    let (head, body) = request(&mut stopper, "/stop?grace_ms=60000");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, "stopping");
    let (head, body) = read_response(&mut busy);
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, "waited");
    assert!(closed_silently(&mut busy));
    assert!(closed_silently(&mut idle), "the idle connection was closed");
    server.expect_line("stopped: ok");
    assert!(server.child.0.wait().unwrap().success());
    assert!(
        TcpStream::connect(&server.addr).is_err(),
        "the listener is closed"
    );
}

/// Past the grace period, what is still running is killed: its
/// connection closes unanswered, and `serve` still returns `Ok`.
#[test]
fn a_request_past_the_grace_period_is_cut_off() {
    let mut server = HttpGuest::start();
    let mut busy = TcpStream::connect(&server.addr).unwrap();
    busy.write_all(b"GET /wait?ms=3600000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    server.expect_line("waiting");
    let mut stopper = TcpStream::connect(&server.addr).unwrap();
    let (_, body) = request(&mut stopper, "/stop?grace_ms=50");
    assert_eq!(body, "stopping");
    assert!(closed_silently(&mut busy), "cut off without an answer");
    server.expect_line("stopped: ok");
    assert!(server.child.0.wait().unwrap().success());
}

//! TLS client connections the host makes for the guest (`TlsStream`, and
//! `https://` in `wasmlet::http`), against Python's `ssl` servers in
//! `tests/all/tls.rs`: prints one line per check.
//!
//! With `limit PORT`, see [`limit`]. Otherwise the arguments are the ports
//! of a server whose certificate (for `localhost`
//! only) the test's CA signed, of a self-signed one, of one that accepts
//! and says nothing, of one that answers in plain HTTP, and of one no
//! `--connect` rule allows.
use std::io::{Read, Write};
use std::time::Duration;

use wasmlet::http::{self, Client};
use wasmlet::net::TlsStream;

/// `limit PORT`: TLS sessions to `localhost:PORT` until the host refuses
/// one for the guest's host memory limit; then, with them closed, one more.
fn limit(port: u16) {
    let mut held = Vec::new();
    let refused = loop {
        match TlsStream::connect("localhost", port) {
            Ok(tls) if held.len() < 10_000 => held.push(tls),
            Ok(_) => panic!("10,000 TLS sessions and no limit"),
            Err(e) => break e,
        }
    };
    println!(
        "limit: {} sessions, then {:?} (names the flag: {})",
        if held.is_empty() { "no" } else { "some" },
        refused.kind(),
        refused.to_string().contains("--max-host-memory")
    );
    drop(held);
    let again = TlsStream::connect("localhost", port).map(drop);
    println!("after closing them: {:?}", again.map_err(|e| e.kind()));
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("limit") {
        let port = std::env::args().nth(2).unwrap().parse().unwrap();
        return limit(port);
    }
    let ports: Vec<u16> = std::env::args()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    let [good, self_signed, silent, plain, forbidden] = ports[..] else {
        panic!("usage: tls_client GOOD SELF-SIGNED SILENT PLAIN FORBIDDEN")
    };
    let failed = |e: std::io::Error| {
        let what = e.to_string();
        let why = [
            "unknown issuer",
            "name mismatch",
            "handshake failed",
            "timed out",
            "--connect",
        ]
        .into_iter()
        .find(|w| what.contains(w))
        .unwrap_or(&what);
        format!("{:?} ({why})", e.kind())
    };

    let r = http::get(&format!("https://localhost:{good}/hello")).unwrap();
    println!(
        "https get: {} {}",
        r.status().as_u16(),
        String::from_utf8_lossy(r.body())
    );
    let client = Client::new();
    let port_of = |client: &Client| {
        let r = client
            .get(&format!("https://localhost:{good}/port"))
            .unwrap();
        String::from_utf8_lossy(r.body()).into_owned()
    };
    let first = port_of(&client);
    println!("https reuse: {}", first == port_of(&client));
    let big = vec![b'x'; 100_000];
    let r = client
        .post(&format!("https://localhost:{good}/echo"), big.clone())
        .unwrap();
    println!("https post: {}", r.body() == &big);

    let mut tls = TlsStream::connect("localhost", good).unwrap();
    tls.write_all(b"GET /hello HTTP/1.0\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).unwrap();
    println!(
        "stream: {}",
        answer.lines().next().unwrap_or_default().trim()
    );

    let e = TlsStream::connect("127.0.0.1", good).unwrap_err();
    println!("by address: {}", failed(e));
    let e = TlsStream::connect("localhost", self_signed).unwrap_err();
    println!("self-signed: {}", failed(e));
    let e = TlsStream::connect_timeout("localhost", silent, Duration::from_millis(300)).unwrap_err();
    println!("silent: {}", failed(e));
    let e = TlsStream::connect("localhost", plain).unwrap_err();
    println!("plain: {}", failed(e));
    let e = TlsStream::connect("localhost", forbidden).unwrap_err();
    println!("forbidden: {}", failed(e));
    println!("done");
}

//! eventlet's web crawler, against the local HTTP server: a `GreenPool` of
//! 20 fetches pages concurrently (`imap`), level by level, following links
//! from `/page/1`.
//!
//! ```sh
//! wasmlet run --connect 127.0.0.1:8080 fetch.wasm -- 127.0.0.1:8080
//! ```
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Instant;

use wasmlet::net::TcpStream;
use wasmlet::GreenPool;

/// GETs `path`: the status line and the body.
fn get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut conn = TcpStream::connect(addr)?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    Ok((status, body.to_string()))
}

fn links(body: &str) -> Vec<String> {
    body.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let pool = GreenPool::new(20);
    let start = Instant::now();
    let mut seen = BTreeSet::from(["/page/1".to_string()]);
    let mut level = vec!["/page/1".to_string()];
    let (mut pages, mut bytes, mut depth) = (0, 0, 0);
    while !level.is_empty() {
        let fetches = pool.imap(level.clone(), {
            let addr = addr.clone();
            move |path: String| get(&addr, &path).map(|(status, body)| (path, status, body))
        });
        let mut next = Vec::new();
        for fetched in fetches {
            let (path, status, body) = match fetched.map_err(std::io::Error::from) {
                Ok(Ok(page)) => page,
                Ok(Err(e)) | Err(e) => {
                    eprintln!("a fetch failed: {e}");
                    continue;
                }
            };
            assert!(status.ends_with("200 OK"), "{path}: {status}");
            pages += 1;
            bytes += body.len();
            for link in links(&body) {
                if seen.insert(link.clone()) {
                    next.push(link);
                }
            }
        }
        depth += 1;
        level = next;
    }
    println!("fetched {pages} pages ({bytes} bytes) over {depth} levels");
    eprintln!("in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
}

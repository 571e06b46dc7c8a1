//! A small HTTP/1.1 server, a green thread per connection (keep-alive
//! included): `/page/N` is an HTML page linking to pages `2N` and `2N+1`
//! (up to page 511), anything else a 404.
//!
//! ```sh
//! wasmlet run --listen 127.0.0.1:8080 http-server.wasm -- 127.0.0.1:8080
//! ```
use std::io::{BufRead, BufReader, Write};

use wasmlet::net::{TcpListener, TcpStream};

const LAST_PAGE: u32 = 511;

fn page(n: u32) -> Option<String> {
    if n == 0 || n > LAST_PAGE {
        return None;
    }
    let links: String = [2 * n, 2 * n + 1]
        .iter()
        .filter(|&&c| c <= LAST_PAGE)
        .map(|c| format!("<a href=\"/page/{c}\">page {c}</a>\n"))
        .collect();
    Some(format!(
        "<html><body><h1>Page {n}</h1>\n{links}{}</body></html>\n",
        "lorem ipsum ".repeat(20)
    ))
}

fn handle(conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(&conn);
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if header.eq_ignore_ascii_case("connection: close") {
                close = true;
            }
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/");
        let found = path
            .strip_prefix("/page/")
            .and_then(|n| n.parse().ok())
            .and_then(page);
        let (status, body) = match found {
            Some(body) => ("200 OK", body),
            None => ("404 Not Found", "not found\n".to_string()),
        };
        write!(
            &conn,
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        if close {
            return Ok(());
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let listener = TcpListener::bind_with_backlog(addr.as_str(), 1024)?;
    eprintln!("http server on {}", listener.local_addr()?);
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                wasmlet::spawn_n(move || handle(conn));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

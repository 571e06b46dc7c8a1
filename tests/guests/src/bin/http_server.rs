//! `wasmlet::http` under test: prints `listening on ADDR`, then serves
//! `/hello`, `/echo` (the body back, its length in `x-length`), `/panic` (a
//! handler that panics), `/wait?ms=N` (prints `waiting`, then answers after
//! N ms) and `/stop?grace_ms=N` (a graceful shutdown with that grace), with
//! small limits so that the tests reach them. Prints `stopped: ok` when the
//! server has stopped.
use std::io::Write;
use std::time::Duration;

use wasmlet::http::{Limits, Request, Response, Server, StatusCode};

/// The number after `name=` in the request's query.
fn query(request: &Request<Vec<u8>>, name: &str) -> u64 {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let listener = wasmlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    let mut limits = Limits::default();
    limits.max_head_bytes = 4096;
    limits.max_body_bytes = 64 * 1024;
    limits.head_timeout = Duration::from_millis(500);
    let server = Server::new(listener).limits(limits);
    let stop = server.shutdown_handle();
    let served = server.serve(move |request: Request<Vec<u8>>| {
        match request.uri().path() {
            "/hello" => Response::new(b"hello".to_vec()),
            "/echo" => Response::builder()
                .header("x-length", request.body().len())
                .body(request.body().clone())
                .unwrap(),
            "/panic" => panic!("the handler failed on purpose"),
            "/wait" => {
                println!("waiting");
                std::io::stdout().flush().unwrap();
                // A kill (the shutdown's grace passed) ends the wait early.
                match wasmlet::sleep(Duration::from_millis(query(&request, "ms"))) {
                    Ok(()) => Response::new(b"waited".to_vec()),
                    Err(_) => Response::new(b"killed".to_vec()),
                }
            }
            "/stop" => {
                stop.shutdown(Duration::from_millis(query(&request, "grace_ms")));
                Response::new(b"stopping".to_vec())
            }
            _ => {
                let mut response = Response::new(b"no such page".to_vec());
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        }
    });
    println!("stopped: {}", if served.is_ok() { "ok" } else { "error" });
}

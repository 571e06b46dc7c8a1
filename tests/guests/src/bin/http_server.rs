//! `wasmlet::http` under test: prints `listening on ADDR`, then serves
//! `/hello`, `/echo` (the body back, its length in `x-length`) and `/panic`
//! (a handler that panics), with small limits so that the tests reach them.
use std::time::Duration;

use wasmlet::http::{serve_with, Limits, Request, Response, StatusCode};

fn main() {
    let listener = wasmlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    let mut limits = Limits::default();
    limits.max_head_bytes = 4096;
    limits.max_body_bytes = 64 * 1024;
    limits.head_timeout = Duration::from_millis(500);
    serve_with(
        listener,
        limits,
        |request: Request<Vec<u8>>| match request.uri().path() {
            "/hello" => Response::new(b"hello".to_vec()),
            "/echo" => Response::builder()
                .header("x-length", request.body().len())
                .body(request.body().clone())
                .unwrap(),
            "/panic" => panic!("the handler failed on purpose"),
            _ => {
                let mut response = Response::new(b"no such page".to_vec());
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        },
    )
    .unwrap();
}

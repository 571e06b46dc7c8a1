//! The HTTP benchmark's server (bench/http/run.py): `wasmlet::http::serve`
//! on the address given, answering `/hello` with "hello" and `/json` with
//! the benchmark's 4 KB document, serialised for each request (as every
//! server in the benchmark does). Run under `--listen` or `--listen-tls`:
//! the code is the same.
use wasmlet::http::{serve_with, Limits, Request, Response, StatusCode};

include!("../../http/document.rs");

fn main() {
    let addr = std::env::args().nth(1).expect("usage: http-bench IP:PORT");
    let listener = wasmlet::net::TcpListener::bind(&addr).unwrap();
    let document = document();
    let mut limits = Limits::default();
    limits.max_connections = 20_000;
    serve_with(listener, limits, move |request: Request<Vec<u8>>| {
        match request.uri().path() {
            "/hello" => Response::new(b"hello".to_vec()),
            "/json" => Response::builder()
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&document).unwrap())
                .unwrap(),
            _ => {
                let mut response = Response::new(Vec::new());
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        }
    })
    .unwrap();
}

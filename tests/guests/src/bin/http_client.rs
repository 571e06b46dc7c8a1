//! `wasmlet::http`'s client under test, against the server at the URL it
//! is given (Python's `http.server` in `tests/all/http.rs`): prints one
//! line per check.
use std::time::Duration;

use wasmlet::http::{self, Client};

fn main() {
    let base = std::env::args()
        .nth(1)
        .expect("usage: http_client BASE-URL");
    let url = |path: &str| format!("{base}{path}");
    let text = |r: &http::Response<Vec<u8>>| String::from_utf8_lossy(r.body()).into_owned();

    let r = http::get(&url("/hello")).unwrap();
    println!("get: {} {}", r.status().as_u16(), text(&r));

    let client = Client::new();
    let first = text(&client.get(&url("/port")).unwrap());
    let second = text(&client.get(&url("/port")).unwrap());
    println!("same connection: {}", first == second);

    let r = http::post(&url("/echo"), b"ping".to_vec()).unwrap();
    println!("post: {} {}", r.status().as_u16(), text(&r));

    let r = client.get(&url("/chunked")).unwrap();
    println!("chunked: {}", text(&r));
    let r = client.get(&url("/close")).unwrap();
    println!("until close: {}", text(&r));

    let r = client.get(&url("/old")).unwrap();
    println!("no redirect: {}", r.status().as_u16());
    let r = Client::new().redirects(3).get(&url("/old")).unwrap();
    println!("redirect: {} {}", r.status().as_u16(), text(&r));

    let r = client.get(&url("/nowhere")).unwrap();
    println!("missing: {}", r.status().as_u16());

    let e = Client::new()
        .timeout(Duration::from_millis(300))
        .get(&url("/slow"))
        .unwrap_err();
    println!("slow: {:?}", e.kind());
    let e = http::get("https://127.0.0.1/").unwrap_err();
    println!("https: {:?}", e.kind());
    let e = http::get("not a url").unwrap_err();
    println!("bad url: {:?}", e.kind());
}

//! Fan-out / fan-in: "fetch" a set of pages concurrently (each fetch is a
//! sleep standing in for network latency), then gather the results in order.
//! All fetches overlap, so the whole crawl takes about as long as the slowest
//! page, not the sum.
use std::time::{Duration, Instant};

fn fetch(url: &'static str, latency_ms: u64) -> usize {
    let _ = wasmlet::sleep(Duration::from_millis(latency_ms));
    url.len() * 100 // a stand-in for the page size
}

fn main() {
    let pages = [
        ("https://example.org/", 40),
        ("https://example.org/about", 25),
        ("https://example.org/blog", 60),
        ("https://example.org/contact", 10),
    ];
    let started = Instant::now();
    let fetches: Vec<_> = pages
        .iter()
        .map(|&(url, ms)| (url, wasmlet::spawn(move || fetch(url, ms))))
        .collect();
    let mut total = 0;
    for (url, fetch) in &fetches {
        let size = fetch.wait().expect("fetch failed");
        println!("{url}: {size} bytes");
        total += size;
    }
    let serial: u64 = pages.iter().map(|p| p.1).sum();
    println!(
        "crawled {} pages, {total} bytes, in {} ms (one after another: {serial} ms)",
        fetches.len(),
        started.elapsed().as_millis()
    );
}

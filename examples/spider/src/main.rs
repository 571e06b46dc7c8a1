//! A GreenPool crawling a synthetic web with `imap`: each level of the site is
//! fetched concurrently, at most 4 pages at a time, and the results come back
//! in the order the pages were listed, however long each fetch took.
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wasmlet::GreenPool;

/// The synthetic site: page `n` links to pages `3n+1 ..= 3n+3`, up to `PAGES`.
const PAGES: u32 = 40;
const POOL_SIZE: usize = 4;

struct Page {
    id: u32,
    bytes: usize,
    links: Vec<u32>,
}

/// Stands in for an HTTP GET: latency from the page number, then its links.
fn fetch(id: u32) -> Page {
    let _ = wasmlet::sleep(Duration::from_millis(u64::from(id * 7 % 11) + 1));
    Page {
        id,
        bytes: 1000 + (id as usize * 37) % 500,
        links: (3 * id + 1..=3 * id + 3).filter(|&n| n < PAGES).collect(),
    }
}

fn main() {
    let pool = GreenPool::new(POOL_SIZE);
    let in_flight = Rc::new(Cell::new(0));
    let peak = Rc::new(Cell::new(0));
    let started = Instant::now();
    let (mut level, mut frontier, mut pages, mut bytes) = (0, vec![0u32], 0, 0);
    while !frontier.is_empty() {
        println!("level {level}: fetching {} pages", frontier.len());
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        let fetched = pool.imap(frontier, move |id| {
            in_flight.set(in_flight.get() + 1);
            peak.set(peak.get().max(in_flight.get()));
            let page = fetch(id);
            in_flight.set(in_flight.get() - 1);
            page
        });
        let mut next = Vec::new();
        for page in fetched {
            let page = page.expect("fetch failed");
            println!(
                "  /page/{}: {} bytes, {} links",
                page.id,
                page.bytes,
                page.links.len()
            );
            pages += 1;
            bytes += page.bytes;
            next.extend(page.links);
        }
        frontier = next;
        level += 1;
    }
    println!(
        "crawled {pages} pages ({bytes} bytes) over {level} levels, at most {} at once, in {} ms",
        peak.get(),
        started.elapsed().as_millis()
    );
}

//! Drives an echo server with N concurrent connections, a green thread each,
//! each sending M messages and waiting for each echo; prints the rate and
//! the round-trip latency.
//!
//! ```sh
//! wasmlet run --connect 127.0.0.1:6000 echo-client.wasm -- 127.0.0.1:6000 100 1000
//! ```
use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use wasmlet::net::TcpStream;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or("127.0.0.1:6000".into());
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let latencies: Rc<RefCell<Vec<Duration>>> = Rc::default();
    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|i| {
            let (addr, latencies) = (addr.clone(), latencies.clone());
            wasmlet::spawn(move || -> std::io::Result<()> {
                let mut conn = TcpStream::connect(addr.as_str())?;
                conn.set_nodelay(true)?;
                let msg = format!("message from connection {i:>6}\n");
                let mut back = vec![0; msg.len()];
                for _ in 0..messages {
                    let sent = Instant::now();
                    conn.write_all(msg.as_bytes())?;
                    conn.read_exact(&mut back)?;
                    assert_eq!(back, msg.as_bytes(), "the echo differs");
                    latencies.borrow_mut().push(sent.elapsed());
                }
                Ok(())
            })
        })
        .collect();
    let failed = clients
        .into_iter()
        .filter_map(|c| c.join().ok()?.err())
        .inspect(|e| eprintln!("a connection failed: {e}"))
        .count();
    let elapsed = start.elapsed();
    let mut l = latencies.take();
    l.sort();
    let at = |q: f64| l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!(
        "{connections} connections x {messages} messages: {} echoed, {failed} connections failed",
        l.len()
    );
    eprintln!(
        "{:.0} messages/s; round trip p50 {:.3} ms, p99 {:.3} ms",
        l.len() as f64 / elapsed.as_secs_f64(),
        ms(at(0.50)),
        ms(at(0.99))
    );
}

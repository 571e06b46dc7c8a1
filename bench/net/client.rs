//! The network benchmark's load client (native, tokio, the same for every
//! server): prints one JSON line.
//!
//! ```text
//! net-bench-client ADDR rr CONNECTIONS SECONDS   round trips of 64 bytes on each connection
//! net-bench-client ADDR setup COUNT              connect, one round trip, close; 64 at a time
//! net-bench-client ADDR idle COUNT PID           the server's RSS growth per idle connection
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const MESSAGE: [u8; 64] = [b'x'; 64];

async fn round_trip(conn: &mut TcpStream) -> std::io::Result<()> {
    let mut back = [0u8; 64];
    conn.write_all(&MESSAGE).await?;
    conn.read_exact(&mut back).await?;
    Ok(())
}

/// Opens `count` connections, at most 256 connecting at once.
async fn connect_all(addr: &str, count: usize) -> Vec<TcpStream> {
    let gate = Arc::new(Semaphore::new(256));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (addr, gate) = (addr.to_string(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let mut conn = TcpStream::connect(&addr).await.expect("connect");
                conn.set_nodelay(true).unwrap();
                round_trip(&mut conn).await.expect("first round trip");
                conn
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(count);
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    conns
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    f64::from(sorted[at]) / 1e3
}

async fn rr(addr: &str, connections: usize, seconds: f64) -> String {
    let conns = connect_all(addr, connections).await;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::new();
                while Instant::now() < end {
                    let sent = Instant::now();
                    if round_trip(&mut conn).await.is_err() {
                        break;
                    }
                    latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    format!(
        "{{\"round_trips_per_s\": {:.0}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99)
    )
}

async fn setup(addr: &str, count: usize) -> String {
    let gate = Arc::new(Semaphore::new(64));
    let start = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (addr, gate) = (addr.to_string(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let mut conn = TcpStream::connect(&addr).await.expect("connect");
                round_trip(&mut conn).await.expect("round trip");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    format!(
        "{{\"connections_per_s\": {:.0}}}",
        count as f64 / start.elapsed().as_secs_f64()
    )
}

async fn idle(addr: &str, count: usize, pid: &str) -> String {
    let before = rss_kib(pid);
    let conns = connect_all(addr, count).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    drop(conns);
    format!(
        "{{\"rss_per_idle_connection_bytes\": {:.0}}}",
        after.saturating_sub(before) as f64 * 1024.0 / count as f64
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: net-bench-client ADDR (rr CONNECTIONS SECONDS | setup COUNT | idle COUNT PID)";
    let (addr, mode) = (args.first().expect(usage), args.get(1).expect(usage));
    let number = |i: usize| -> usize { args.get(i).and_then(|a| a.parse().ok()).expect(usage) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let line = runtime.block_on(async {
        match mode.as_str() {
            "rr" => rr(addr, number(2), args[3].parse().expect(usage)).await,
            "setup" => setup(addr, number(2)).await,
            "idle" => idle(addr, number(2), args.get(3).expect(usage)).await,
            _ => panic!("{usage}"),
        }
    });
    println!("{line}");
}

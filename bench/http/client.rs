//! The HTTP benchmark's load client (native, tokio, the same for every
//! server): keep-alive `GET`s, one at a time on each of its connections,
//! for a fixed time; plain or TLS (rustls, trusting the CA given). Prints
//! one JSON line: requests per second, latency p50 and p99, and the body
//! size seen.
//!
//! ```text
//! http-bench-client ADDR PATH CONNECTIONS SECONDS [CA]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// A connection: plain or TLS, read through a buffer.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// Sends one `GET` and reads its answer: the body's length.
async fn get(conn: &mut BufReader<Box<dyn Conn>>, request: &[u8]) -> std::io::Result<usize> {
    conn.get_mut().write_all(request).await?;
    let mut length = None;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if first {
            if !line.starts_with("HTTP/1.1 200") {
                return Err(std::io::Error::other(format!("answer: {line}")));
            }
            first = false;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(n) = lower.strip_prefix("content-length:") {
            length = n.trim().parse().ok();
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("no content-length"))?;
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok(length)
}

fn connector(ca: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)] // ring: see host/src/io/tls.rs `provider`
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(addr: &str, tls: Option<&tokio_rustls::TlsConnector>) -> Box<dyn Conn> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    match tls {
        None => Box::new(stream),
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            Box::new(
                connector
                    .connect(name, stream)
                    .await
                    .expect("TLS handshake"),
            )
        }
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    f64::from(sorted[at]) / 1e3
}

async fn run(addr: &str, path: &str, connections: usize, seconds: f64, ca: Option<&str>) -> String {
    let tls = ca.map(connector).map(Arc::new);
    let request = Arc::new(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").into_bytes());
    // At most 256 connecting (and shaking hands) at once; each makes one
    // request before the clock starts.
    let gate = Arc::new(Semaphore::new(256));
    let opening: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, gate, tls, request) =
                (addr.to_string(), gate.clone(), tls.clone(), request.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let mut conn = BufReader::new(connect(&addr, tls.as_deref()).await);
                let size = get(&mut conn, &request).await.expect("first request");
                (conn, size)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(connections);
    let mut body_bytes = 0;
    for t in opening {
        let (conn, size) = t.await.unwrap();
        body_bytes = size;
        conns.push(conn);
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < end {
                    let sent = Instant::now();
                    if get(&mut conn, &request).await.is_err() {
                        errors += 1;
                        break;
                    }
                    latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (latencies, failed) = t.await.unwrap();
        all.extend(latencies);
        errors += failed;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    format!(
        "{{\"requests_per_s\": {:.0}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"body_bytes\": {body_bytes}, \"errors\": {errors}}}",
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99)
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: http-bench-client ADDR PATH CONNECTIONS SECONDS [CA]";
    let addr = args.first().expect(usage);
    let path = args.get(1).expect(usage);
    let connections: usize = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let seconds: f64 = args.get(3).and_then(|a| a.parse().ok()).expect(usage);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let line = runtime.block_on(run(
        addr,
        path,
        connections,
        seconds,
        args.get(4).map(String::as_str),
    ));
    println!("{line}");
}

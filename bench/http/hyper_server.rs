//! The HTTP benchmark's native baseline: hyper's HTTP/1.1 server on a tokio
//! runtime of one thread (as the echo benchmark's tokio server), answering
//! `/hello` and `/json` as every server in the benchmark does; with `CERT
//! KEY`, behind rustls (tokio-rustls).
//!
//! ```text
//! http-bench-hyper IP:PORT [CERT KEY]
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

include!("document.rs");

fn answer(
    request: &Request<hyper::body::Incoming>,
    document: &serde_json::Value,
) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/hello" => Response::new(Full::new(Bytes::from_static(b"hello"))),
        "/json" => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(document).unwrap(),
            )))
            .unwrap(),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

async fn serve_connection<S>(io: S, document: Arc<serde_json::Value>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let response = answer(&request, &document);
        async move { Ok::<_, Infallible>(response) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    #[allow(deprecated)] // ring: see host/src/io/tls.rs `provider`
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .expect("usage: http-bench-hyper IP:PORT [CERT KEY]")
        .clone();
    let tls = match (args.get(2), args.get(3)) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)),
        _ => None,
    };
    let document = Arc::new(document());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await.unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (document, tls) = (document.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_connection(stream, document).await;
                        }
                    }
                    None => serve_connection(stream, document).await,
                }
            });
        }
    });
}

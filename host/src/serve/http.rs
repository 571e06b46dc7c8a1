//! The service over HTTP/1.1 (hyper on tokio):
//!
//! | request | answer |
//! |---|---|
//! | `POST /call/PLUGIN/FUNCTION`, body = input | 200, body = output; else a status and a JSON error |
//! | `GET /health` | 200 `{"status":"ok",...}`; 503 while draining |
//! | `GET /metrics` | Prometheus text format |
//!
//! A caller's deadline is the `x-wasmlet-timeout-ms` header (at most the
//! manifest's `call_timeout_ms`). Errors map to statuses a client or a
//! load balancer can act on:
//!
//! | error | status |
//! |---|---|
//! | no such plugin or function | 404 |
//! | the function returned an error | 422 |
//! | it panicked or trapped | 500 |
//! | its instance ended during the call | 502 |
//! | host or plugin at its limit, draining, refused | 503, `retry-after: 1` |
//! | deadline passed (the call was cancelled) | 504 |
//! | body too large | 413 |

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use wasmtime::{format_err, Result};

use super::{ServeError, ServerSpec, Service};
use crate::CallError;

/// The header a caller sends its deadline in, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-wasmlet-timeout-ms";

type Answer = Response<Full<Bytes>>;

/// Serves `service` as `server` says (its address, body limit and header
/// timeout) until `shutdown` resolves, then drains:
/// stops accepting, answers new calls on open connections with 503, lets
/// the calls in flight finish (up to the call timeout) and returns.
/// Prints `listening on http://ADDR` to stdout once bound.
///
/// # Errors
/// If `listen` cannot be bound.
pub async fn serve_http(
    service: Arc<Service>,
    server: &ServerSpec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let listener = bind(server.listen).await?;
    serve_http_on(service, listener, server, shutdown).await
}

/// Binds the HTTP listener at `listen`.
pub(super) async fn bind(listen: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format_err!("binding {listen}: {e}"))
}

/// As [`serve_http`], on a listener already bound.
pub(super) async fn serve_http_on(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    server: &ServerSpec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let max_body = server.max_body_bytes;
    let header_timeout = Duration::from_millis(server.header_timeout_ms);
    let local = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{local}");
        let _ = out.flush();
    }
    tracing::info!(
        "serving {:?} on http://{local}",
        service.plugins().collect::<Vec<_>>()
    );
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, say: the next accept may work.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let handler = hyper::service::service_fn(move |request| {
                    let service = service.clone();
                    async move { Ok::<_, Infallible>(answer(&service, request, max_body).await) }
                });
                // A client that sends its head slowly (slowloris) is cut
                // off: it costs a task and a socket for a while at most.
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), handler);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    service.drain();
    tracing::info!("draining: {} calls in flight", service.in_flight());
    // Open connections close once their request in flight is answered.
    let most = service.call_timeout + Duration::from_secs(1);
    if tokio::time::timeout(most, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "drained for {most:?}; {} calls still in flight",
            service.in_flight()
        );
    }
    Ok(())
}

async fn answer(service: &Service, request: Request<Incoming>, max_body: usize) -> Answer {
    let path = request.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (request.method(), parts.as_slice()) {
        (&Method::POST, ["call", plugin, function]) => {
            let deadline = match deadline(&request) {
                Ok(deadline) => deadline,
                Err(why) => return error(StatusCode::BAD_REQUEST, "bad_request", &why),
            };
            let (plugin, function) = (plugin.to_string(), function.to_string());
            let body = match Limited::new(request.into_body(), max_body).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        &format!("the body is larger than the {max_body} bytes this host takes"),
                    )
                }
            };
            match service
                .call(&plugin, &function, body.to_vec(), deadline)
                .await
            {
                Ok(output) => Response::builder()
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(Full::new(Bytes::from(output)))
                    .expect("a valid response"),
                Err(e) => {
                    let status = status_of(&e);
                    error(status, e.kind(), &e.to_string())
                }
            }
        }
        (_, ["call", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "call a plugin with POST /call/PLUGIN/FUNCTION, the input as the body",
        ),
        (&Method::GET, ["health"]) => {
            let draining = service.is_draining();
            let body = serde_json::json!({
                "status": if draining { "draining" } else { "ok" },
                "plugins": service.plugins().collect::<Vec<_>>(),
                "in_flight": service.in_flight(),
            });
            let status = if draining {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            json(status, &body)
        }
        (&Method::GET, ["metrics"]) => {
            // It asks each hub and waits for the answers: off the tokio
            // threads that carry calls.
            let text = tokio::task::block_in_place(|| service.metrics_text());
            Response::builder()
                .header(CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(text)))
                .expect("a valid response")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "the paths are POST /call/PLUGIN/FUNCTION, GET /health and GET /metrics",
        ),
    }
}

/// The caller's deadline, if it sent one.
fn deadline(request: &Request<Incoming>) -> Result<Option<Duration>, String> {
    let Some(value) = request.headers().get(TIMEOUT_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or_else(|| format!("{TIMEOUT_HEADER} must be a positive whole number of milliseconds"))
}

/// The status of a served call's error (see the module docs).
pub fn status_of(error: &ServeError) -> StatusCode {
    match error {
        ServeError::NoSuchPlugin(_) => StatusCode::NOT_FOUND,
        ServeError::HostBusy(_) | ServeError::Draining => StatusCode::SERVICE_UNAVAILABLE,
        ServeError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
        ServeError::InputTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ServeError::Call(e) => match e {
            CallError::NoSuchFunction(_) => StatusCode::NOT_FOUND,
            CallError::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CallError::Panicked(_) | CallError::Trapped(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CallError::GuestEnded(_) => StatusCode::BAD_GATEWAY,
            CallError::TimedOut | CallError::Cancelled => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Answer {
    let mut response = json(
        status,
        &serde_json::json!({ "error": kind, "message": message }),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn json(status: StatusCode, body: &serde_json::Value) -> Answer {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

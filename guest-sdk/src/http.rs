//! An HTTP/1.1 server on green sockets (feature `http`): eventlet's
//! `eventlet.wsgi.server`, with the ecosystem's types (`http`'s `Request`
//! and `Response`, `httparse` for the request head).
//!
//! ```no_run
//! use wasmlet::http::{serve, Request, Response};
//!
//! let listener = wasmlet::net::TcpListener::bind("127.0.0.1:8080")?;
//! serve(listener, |request: Request<Vec<u8>>| {
//!     Response::new(format!("hello, {}", request.uri().path()).into_bytes())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Each connection is a green thread (at most [`Limits::max_connections`]
//! at once, through a [`GreenPool`]); each request's handler runs in a green
//! thread of its own, so a handler that panics answers 500 and the server
//! goes on. What it does, and its limits:
//! - keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked) and pipelined
//!   requests, answered in order;
//! - request bodies with `Content-Length` or `Transfer-Encoding: chunked`,
//!   and `Expect: 100-continue`;
//! - a head larger than [`Limits::max_head_bytes`] is answered 431, a body
//!   larger than [`Limits::max_body_bytes`] 413, a malformed request 400,
//!   a head not sent within [`Limits::head_timeout`] 408: a slow client
//!   (slowloris) costs one green thread for that long, not the server;
//! - responses get a `Content-Length` (and `Connection: close` when the
//!   connection ends after them).

use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

pub use http::{header, HeaderMap, Method, Request, Response, StatusCode, Version};

use crate::net::{TcpListener, TcpStream};
use crate::GreenPool;

/// What one connection and one request may cost.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Largest request head (request line and headers).
    pub max_head_bytes: usize,
    /// Most headers in a request.
    pub max_headers: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How long a request head may take to arrive, from its first byte.
    pub head_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long a body may pause between two reads.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1 << 20,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `handler` on `listener` with the default [`Limits`], until
/// accepting fails.
///
/// # Errors
/// When the listener cannot accept (it was closed, or this green thread was
/// killed while it waited).
pub fn serve<H>(listener: TcpListener, handler: H) -> io::Result<()>
where
    H: Fn(Request<Vec<u8>>) -> Response<Vec<u8>> + 'static,
{
    serve_with(listener, Limits::default(), handler)
}

/// [`serve`] with `limits`.
///
/// # Errors
/// As [`serve`].
pub fn serve_with<H>(listener: TcpListener, limits: Limits, handler: H) -> io::Result<()>
where
    H: Fn(Request<Vec<u8>>) -> Response<Vec<u8>> + 'static,
{
    let handler: Handler = Rc::new(handler);
    let pool = GreenPool::new(limits.max_connections.max(1));
    loop {
        let (stream, _) = listener.accept()?;
        let (handler, limits) = (handler.clone(), limits.clone());
        pool.spawn_n(move || {
            let _ = stream.set_nodelay(true);
            let _ = Connection::new(stream, limits).serve(&handler);
        })
        .map_err(io::Error::from)?;
    }
}

type Handler = Rc<dyn Fn(Request<Vec<u8>>) -> Response<Vec<u8>>>;

/// Why a request could not be read; each becomes an answer (or silence).
enum Bad {
    /// The peer closed, or went quiet between requests: no answer.
    Gone,
    /// Answer with this status and close.
    Status(StatusCode, &'static str),
}

impl From<io::Error> for Bad {
    fn from(_: io::Error) -> Bad {
        Bad::Gone
    }
}

/// A connection's stream and the bytes read but not yet used (the start of
/// a pipelined request, say).
struct Connection {
    stream: TcpStream,
    limits: Limits,
    unread: Vec<u8>,
}

impl Connection {
    fn new(stream: TcpStream, limits: Limits) -> Connection {
        Connection {
            stream,
            limits,
            unread: Vec::new(),
        }
    }

    fn serve(&mut self, handler: &Handler) -> io::Result<()> {
        loop {
            let (request, keep_alive) = match self.read_request() {
                Ok(read) => read,
                Err(Bad::Gone) => return Ok(()),
                Err(Bad::Status(status, why)) => {
                    let mut response = Response::new(format!("{why}\n").into_bytes());
                    *response.status_mut() = status;
                    return self.write_response(&response, false, false);
                }
            };
            let head = request.method() == Method::HEAD;
            // Its own green thread: a panic ends that thread alone.
            let handler = handler.clone();
            let answer = crate::spawn(move || handler(request)).wait();
            let response = answer.unwrap_or_else(|_| {
                let mut response = Response::new(b"the handler failed\n".to_vec());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            });
            self.write_response(&response, keep_alive, head)?;
            if !keep_alive {
                return Ok(());
            }
        }
    }

    /// Reads more bytes into `unread`, waiting up to `timeout`.
    fn fill(&mut self, timeout: Duration) -> Result<usize, io::Error> {
        self.stream.set_read_timeout(Some(timeout))?;
        let bytes = self.stream.recv(16 * 1024)?;
        self.unread.extend_from_slice(&bytes);
        Ok(bytes.len())
    }

    fn read_request(&mut self) -> Result<(Request<Vec<u8>>, bool), Bad> {
        // The head: idle until its first byte, then `head_timeout`.
        let head_len = loop {
            if let Some(end) = find(&self.unread, b"\r\n\r\n") {
                break end + 4;
            }
            if self.unread.len() > self.limits.max_head_bytes {
                return Err(Bad::Status(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "the request head is too large",
                ));
            }
            let timeout = if self.unread.is_empty() {
                self.limits.idle_timeout
            } else {
                self.limits.head_timeout
            };
            match self.fill(timeout) {
                Ok(0) => return Err(Bad::Gone),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !self.unread.is_empty() => {
                    return Err(Bad::Status(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request head did not arrive in time",
                    ))
                }
                Err(_) => return Err(Bad::Gone),
            }
        };
        if head_len > self.limits.max_head_bytes {
            return Err(Bad::Status(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "the request head is too large",
            ));
        }
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&self.unread[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Bad::Status(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many headers",
                ))
            }
            _ => return Err(Bad::Status(StatusCode::BAD_REQUEST, "a malformed request")),
        }
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let mut builder = Request::builder()
            .method(parsed.method.unwrap_or("GET"))
            .uri(parsed.path.unwrap_or("/"))
            .version(version);
        for h in parsed.headers.iter() {
            builder = builder.header(h.name, h.value);
        }
        let mut request = builder
            .body(Vec::new())
            .map_err(|_| Bad::Status(StatusCode::BAD_REQUEST, "a malformed request"))?;
        self.unread.drain(..head_len);

        let headers = request.headers();
        let has = |name: header::HeaderName, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        let keep_alive = match version {
            Version::HTTP_10 => has(header::CONNECTION, "keep-alive"),
            _ => !has(header::CONNECTION, "close"),
        };
        let chunked = has(header::TRANSFER_ENCODING, "chunked");
        let length = match headers.get(header::CONTENT_LENGTH) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or(Bad::Status(StatusCode::BAD_REQUEST, "a bad Content-Length"))?,
            ),
        };
        if chunked && length.is_some() {
            return Err(Bad::Status(
                StatusCode::BAD_REQUEST,
                "both Content-Length and chunked",
            ));
        }
        if length.is_some_and(|n| n > self.limits.max_body_bytes) {
            return Err(Bad::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            ));
        }
        let expects_body = chunked || length.is_some_and(|n| n > 0);
        if expects_body && has(header::EXPECT, "100-continue") && self.unread.is_empty() {
            (&self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = if chunked {
            self.read_chunked()?
        } else {
            self.read_exactly(length.unwrap_or(0))?
        };
        *request.body_mut() = body;
        Ok((request, keep_alive))
    }

    /// Takes `n` bytes of body.
    fn read_exactly(&mut self, n: usize) -> Result<Vec<u8>, Bad> {
        while self.unread.len() < n {
            if self.fill(self.limits.body_timeout)? == 0 {
                return Err(Bad::Gone);
            }
        }
        Ok(self.unread.drain(..n).collect())
    }

    /// Takes a line ending in CRLF (without it), at most `most` long.
    fn read_line(&mut self, most: usize) -> Result<Vec<u8>, Bad> {
        loop {
            if let Some(end) = find(&self.unread, b"\r\n") {
                let line = self.unread[..end].to_vec();
                self.unread.drain(..end + 2);
                return Ok(line);
            }
            if self.unread.len() > most {
                return Err(Bad::Status(StatusCode::BAD_REQUEST, "a malformed chunk"));
            }
            if self.fill(self.limits.body_timeout)? == 0 {
                return Err(Bad::Gone);
            }
        }
    }

    /// Takes a chunked body, its trailers dropped.
    fn read_chunked(&mut self) -> Result<Vec<u8>, Bad> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(1024)?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                .ok_or(Bad::Status(
                    StatusCode::BAD_REQUEST,
                    "a malformed chunk size",
                ))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line(self.limits.max_head_bytes)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > self.limits.max_body_bytes {
                return Err(Bad::Status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                ));
            }
            body.extend(self.read_exactly(size)?);
            if !self.read_line(2)?.is_empty() {
                return Err(Bad::Status(StatusCode::BAD_REQUEST, "a malformed chunk"));
            }
        }
    }

    fn write_response(
        &mut self,
        response: &Response<Vec<u8>>,
        keep_alive: bool,
        head: bool,
    ) -> io::Result<()> {
        let status = response.status();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .into_bytes();
        for (name, value) in response.headers() {
            if name == header::CONTENT_LENGTH || name == header::CONNECTION {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n", response.body().len()).as_bytes());
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head {
            out.extend_from_slice(response.body());
        }
        (&self.stream).write_all(&out)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

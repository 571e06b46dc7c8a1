//! The server: [`serve`], [`serve_with`], [`Limits`].

use std::io::{self, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response, StatusCode, Version};

use super::wire::{find, has_token, Reader, WireError};
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
    /// How long a whole request head may take to arrive, from its first
    /// byte.
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

impl From<WireError> for Bad {
    fn from(error: WireError) -> Bad {
        match error {
            WireError::Io(_) | WireError::Closed => Bad::Gone,
            WireError::TooLarge => Bad::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            ),
            WireError::Malformed(why) => Bad::Status(StatusCode::BAD_REQUEST, why),
        }
    }
}

/// A connection: its stream, through a reader that keeps the bytes read
/// but not yet used (the start of a pipelined request, say).
struct Connection {
    reader: Reader,
    limits: Limits,
}

impl Connection {
    fn new(stream: TcpStream, limits: Limits) -> Connection {
        Connection {
            reader: Reader::new(stream),
            limits,
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

    fn read_request(&mut self) -> Result<(Request<Vec<u8>>, bool), Bad> {
        // The head: idle until its first byte, then all of it within
        // `head_timeout` of that (a deadline, not a pause between reads: a
        // client that sends a byte now and then is cut off all the same).
        let mut head_deadline: Option<Instant> = None;
        let head_len = loop {
            if let Some(end) = find(&self.reader.unread, b"\r\n\r\n") {
                break end + 4;
            }
            if self.reader.unread.len() > self.limits.max_head_bytes {
                return Err(Bad::Status(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "the request head is too large",
                ));
            }
            let timeout = if self.reader.unread.is_empty() {
                self.limits.idle_timeout
            } else {
                let deadline =
                    *head_deadline.get_or_insert_with(|| Instant::now() + self.limits.head_timeout);
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Bad::Status(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request head did not arrive in time",
                    ));
                }
                left
            };
            match self.reader.fill(timeout) {
                Ok(0) => return Err(Bad::Gone),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !self.reader.unread.is_empty() => {
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
        match parsed.parse(&self.reader.unread[..head_len]) {
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
        self.reader.unread.drain(..head_len);

        let headers = request.headers();
        let has = |name: header::HeaderName, token: &str| has_token(headers, name, token);
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
        if expects_body && has(header::EXPECT, "100-continue") && self.reader.unread.is_empty() {
            (&self.reader.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let (timeout, most) = (self.limits.body_timeout, self.limits.max_body_bytes);
        let body = if chunked {
            self.reader
                .read_chunked(timeout, most, self.limits.max_head_bytes)?
        } else {
            self.reader.read_exactly(length.unwrap_or(0), timeout)?
        };
        *request.body_mut() = body;
        Ok((request, keep_alive))
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
        (&self.reader.stream).write_all(&out)
    }
}

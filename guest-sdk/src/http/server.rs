//! The server: [`serve`], [`serve_with`], [`Limits`], and [`Server`] with
//! its [`ShutdownHandle`] for a graceful stop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response, StatusCode, Version};

use super::wire::{find, has_token, Reader, WireError};
use crate::net::{TcpListener, TcpStream};
use crate::{Event, GreenPool, Thread, Timeout};

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
/// accepting fails. For a server that can be stopped gracefully, see
/// [`Server`].
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
    Server::new(listener).limits(limits).serve(handler)
}

/// A server that can be stopped gracefully, as Go's `http.Server.Shutdown`
/// and hyper's graceful shutdown: [`ShutdownHandle::shutdown`] stops
/// accepting (the listener closes), closes the connections that wait for a
/// request, lets each request under way finish and answer (with
/// `connection: close`), and after the grace period kills what is left.
/// [`serve`](Server::serve) then returns `Ok(())`.
///
/// ```no_run
/// use std::time::Duration;
/// use wasmlet::http::{Response, Server};
///
/// let server = Server::new(wasmlet::net::TcpListener::bind("127.0.0.1:8080")?);
/// let stop = server.shutdown_handle();
/// // Stopped on a request to /stop, say, or by a signal the guest hears.
/// let stopper = stop.clone();
/// server.serve(move |request| {
///     if request.uri().path() == "/stop" {
///         stopper.shutdown(Duration::from_secs(5));
///     }
///     Response::new(b"ok".to_vec())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    listener: TcpListener,
    limits: Limits,
    stop: ShutdownHandle,
}

/// Stops a [`Server`] gracefully; clones stop the same server.
#[derive(Clone, Default)]
pub struct ShutdownHandle {
    /// The grace period, once asked; or `None` sent by the accepting green
    /// thread when accepting failed.
    asked: Event<Option<Duration>>,
    /// Set at once by `shutdown`, so that the very answer of the handler
    /// that asked already says `connection: close`.
    stopping: Rc<Cell<bool>>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("asked", &self.asked.ready())
            .finish()
    }
}

impl ShutdownHandle {
    /// Asks the server to stop: requests under way have `grace` to answer,
    /// then their connections are killed. Only the first call counts; it
    /// never blocks, so a handler may call it.
    pub fn shutdown(&self, grace: Duration) {
        self.stopping.set(true);
        let _ = self.asked.send(Some(grace));
    }
}

/// The server's connections, each its green thread and whether it waits for
/// a request with nothing of it read (idle: closed at once on shutdown).
struct Connections {
    stopping: Rc<Cell<bool>>,
    table: RefCell<HashMap<u64, Tracked>>,
    next_key: Cell<u64>,
}

struct Tracked {
    thread: Option<Thread>,
    /// The green thread running its current request's handler.
    handler: Option<Thread>,
    idle: bool,
}

/// A connection's place in [`Connections`], given up when it ends (or is
/// killed: dropping it unwinds).
struct Tracker {
    connections: Rc<Connections>,
    key: u64,
}

impl Tracker {
    fn set(&self, change: impl FnOnce(&mut Tracked)) {
        if let Some(t) = self.connections.table.borrow_mut().get_mut(&self.key) {
            change(t);
        }
    }

    fn stopping(&self) -> bool {
        self.connections.stopping.get()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.connections.table.borrow_mut().remove(&self.key);
    }
}

impl Server {
    /// A server on `listener` with the default [`Limits`].
    pub fn new(listener: TcpListener) -> Server {
        Server {
            listener,
            limits: Limits::default(),
            stop: ShutdownHandle::default(),
        }
    }

    /// Its limits.
    pub fn limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
    }

    /// What stops it ([`ShutdownHandle::shutdown`]).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.stop.clone()
    }

    /// Serves `handler` until a [`ShutdownHandle`] stops it (then
    /// `Ok(())`, once every connection has ended), or accepting fails.
    ///
    /// # Errors
    /// When the listener cannot accept, or this green thread was killed
    /// while it served (its connections are then killed too).
    pub fn serve<H>(self, handler: H) -> io::Result<()>
    where
        H: Fn(Request<Vec<u8>>) -> Response<Vec<u8>> + 'static,
    {
        let Server {
            listener,
            limits,
            stop,
        } = self;
        let handler: Handler = Rc::new(handler);
        let pool = GreenPool::new(limits.max_connections.max(1));
        let connections = Rc::new(Connections {
            stopping: stop.stopping.clone(),
            table: RefCell::default(),
            next_key: Cell::new(0),
        });
        let accepting = {
            let (pool, connections, stop) = (pool.clone(), connections.clone(), stop.clone());
            crate::spawn(move || -> io::Result<()> {
                let accepted = accept(&listener, &pool, &connections, &limits, &handler);
                // Wakes `serve`: accepting failed (a shutdown kills this
                // thread instead, and its answer has been sent).
                let _ = stop.asked.send(None);
                accepted
            })
        };
        let asked = stop.asked.wait();
        let grace = match asked {
            Ok(Some(grace)) => grace,
            Ok(None) => {
                return match accepting.join() {
                    Ok(Err(e)) => Err(e),
                    _ => Err(io::Error::other("the server stopped accepting")),
                }
            }
            Err(e) => {
                // This green thread was killed (or timed out) while it
                // served: nothing of the server is to outlive it.
                accepting.kill();
                stop_all(&connections);
                return Err(io::Error::other(e.to_string()));
            }
        };
        // The listener closes as the accepting thread unwinds.
        accepting.kill();
        let idle: Vec<Thread> = connections
            .table
            .borrow()
            .values()
            .filter(|c| c.idle)
            .filter_map(|c| c.thread)
            .collect();
        for thread in idle {
            thread.kill();
        }
        let timeout = Timeout::new(grace);
        let finished = pool.waitall();
        timeout.cancel();
        if finished.is_err() {
            stop_all(&connections);
            let _ = pool.waitall();
        }
        Ok(())
    }
}

/// Kills every connection and its handler.
fn stop_all(connections: &Connections) {
    let threads: Vec<Thread> = connections
        .table
        .borrow()
        .values()
        .flat_map(|c| [c.thread, c.handler])
        .flatten()
        .collect();
    for thread in threads {
        thread.kill();
    }
}

/// Accepts connections, each served by a green thread of `pool`.
fn accept(
    listener: &TcpListener,
    pool: &GreenPool,
    connections: &Rc<Connections>,
    limits: &Limits,
    handler: &Handler,
) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept()?;
        let key = connections.next_key.get();
        connections.next_key.set(key + 1);
        connections.table.borrow_mut().insert(
            key,
            Tracked {
                thread: None,
                handler: None,
                idle: false,
            },
        );
        let tracker = Tracker {
            connections: connections.clone(),
            key,
        };
        let (handler, limits) = (handler.clone(), limits.clone());
        let thread = pool
            .spawn_n(move || {
                let _ = stream.set_nodelay(true);
                let _ = Connection::new(stream, limits, tracker).serve(&handler);
            })
            .map_err(io::Error::from)?;
        if let Some(t) = connections.table.borrow_mut().get_mut(&key) {
            t.thread = Some(thread);
        }
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
    tracker: Tracker,
}

impl Connection {
    fn new(stream: TcpStream, limits: Limits, tracker: Tracker) -> Connection {
        Connection {
            reader: Reader::new(stream),
            limits,
            tracker,
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
            let running = crate::spawn(move || handler(request));
            self.tracker.set(|t| t.handler = Some(running.thread()));
            let answer = running.wait();
            self.tracker.set(|t| t.handler = None);
            if let Err(crate::GreenThreadError::Interrupted(why)) = answer {
                // This connection's own green thread was killed (a
                // shutdown's grace passed): it says nothing more.
                return Err(why.into());
            }
            // A server stopping answers what it took, then closes.
            let keep_alive = keep_alive && !self.tracker.stopping();
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
            let idle = self.reader.unread.is_empty();
            if idle && self.tracker.stopping() {
                return Err(Bad::Gone);
            }
            let timeout = if idle {
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
            // Idle: a shutdown closes it at once.
            self.tracker.set(|t| t.idle = idle);
            let filled = self.reader.fill(timeout);
            self.tracker.set(|t| t.idle = false);
            match filled {
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

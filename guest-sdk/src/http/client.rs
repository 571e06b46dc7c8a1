//! The client: [`get`], [`post`], and [`Client`], which keeps connections
//! for reuse, has a timeout, and follows redirects when asked.
//!
//! ```no_run
//! let page = wasmlet::http::get("http://127.0.0.1:8080/hello")?;
//! assert_eq!(page.status(), 200);
//!
//! let client = wasmlet::http::Client::new().redirects(5);
//! let answer = client.post("http://127.0.0.1:8080/echo", b"ping".to_vec())?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! `https://` URLs go through [`TlsStream`]: the host makes the TLS
//! connection and verifies the server (`wasmlet run --ca FILE`, else
//! Mozilla's roots), and the host and port must be allowed by a `--connect`
//! rule, as for `http://`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode, Uri, Version};

use super::wire::{find, has_token, Reader};
use crate::net::{TcpStream, TlsStream};

/// An HTTP/1.1 client that reuses connections (per host and port), with a
/// timeout on each wait and, if asked, redirects followed.
pub struct Client {
    idle: RefCell<HashMap<Origin, Vec<Reader>>>,
    timeout: Duration,
    redirects: usize,
    max_body_bytes: usize,
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field("redirects", &self.redirects)
            .finish_non_exhaustive()
    }
}

/// One `GET` with a fresh [`Client`].
///
/// # Errors
/// As [`Client::send`].
pub fn get(url: &str) -> io::Result<Response<Vec<u8>>> {
    Client::new().get(url)
}

/// One `POST` of `body` with a fresh [`Client`].
///
/// # Errors
/// As [`Client::send`].
pub fn post(url: &str, body: Vec<u8>) -> io::Result<Response<Vec<u8>>> {
    Client::new().post(url, body)
}

impl Client {
    /// A client with a 30 s timeout, no redirects followed, and bodies of
    /// up to 16 MiB.
    pub fn new() -> Client {
        Client {
            idle: RefCell::new(HashMap::new()),
            timeout: Duration::from_secs(30),
            redirects: 0,
            max_body_bytes: 16 << 20,
        }
    }

    /// The longest any one wait (connect, send, each read) may take.
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Follows up to `count` redirects (301, 302, 303, 307, 308); 0, the
    /// default, follows none.
    pub fn redirects(mut self, count: usize) -> Client {
        self.redirects = count;
        self
    }

    /// The largest response body taken.
    pub fn max_body_bytes(mut self, most: usize) -> Client {
        self.max_body_bytes = most;
        self
    }

    /// `GET url`.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub fn get(&self, url: &str) -> io::Result<Response<Vec<u8>>> {
        self.send(request(Method::GET, url, Vec::new())?)
    }

    /// `POST url` with `body`.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub fn post(&self, url: &str, body: Vec<u8>) -> io::Result<Response<Vec<u8>>> {
        self.send(request(Method::POST, url, body)?)
    }

    /// Sends `request` (its URI absolute, `http://`) and reads the answer,
    /// following redirects if the client was asked to.
    ///
    /// # Errors
    /// A URI that is not absolute `http://`; the connection failing or
    /// timing out; a malformed answer or one larger than allowed; too many
    /// redirects.
    pub fn send(&self, mut request: Request<Vec<u8>>) -> io::Result<Response<Vec<u8>>> {
        let mut left = self.redirects;
        loop {
            let response = self.send_once(&request)?;
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok());
            let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let (Some(location), true) = (location, redirect) else {
                return Ok(response);
            };
            if left == 0 {
                if self.redirects == 0 {
                    return Ok(response);
                }
                return Err(io::Error::other(format!(
                    "more than {} redirects",
                    self.redirects
                )));
            }
            left -= 1;
            let next = resolve(request.uri(), location)?;
            *request.uri_mut() = next;
            if status == StatusCode::SEE_OTHER
                || (matches!(status.as_u16(), 301 | 302) && request.method() == Method::POST)
            {
                *request.method_mut() = Method::GET;
                request.body_mut().clear();
            }
        }
    }

    fn send_once(&self, request: &Request<Vec<u8>>) -> io::Result<Response<Vec<u8>>> {
        let key = origin(request.uri())?;
        let (host, port) = (key.host.clone(), key.port);
        // The Host header names the port unless it is the scheme's own.
        let authority = request
            .uri()
            .authority()
            .map_or_else(
                || host.clone(),
                |a| a.as_str().rsplit('@').next().unwrap_or_default().to_string(),
            );
        let pooled = self.idle.borrow_mut().get_mut(&key).and_then(Vec::pop);
        if let Some(mut reader) = pooled {
            // A kept connection the server may have closed meanwhile: if
            // nothing at all comes back, the request goes again on a
            // fresh one (nothing of it can have been acted on).
            match self.exchange(&mut reader, request, &authority) {
                Ok((response, reusable)) => {
                    self.keep(key, reader, reusable);
                    return Ok(response);
                }
                Err((error, anything_read)) if anything_read => return Err(error),
                Err(_) => {}
            }
        }
        let stream = if key.tls {
            TlsStream::connect_timeout(&host, port, self.timeout)?.into_tcp()
        } else {
            TcpStream::connect((host.as_str(), port))?
        };
        let _ = stream.set_nodelay(true);
        let mut reader = Reader::new(stream);
        let (response, reusable) = self
            .exchange(&mut reader, request, &authority)
            .map_err(|(error, _)| error)?;
        self.keep(key, reader, reusable);
        Ok(response)
    }

    fn keep(&self, key: Origin, reader: Reader, reusable: bool) {
        if reusable && reader.unread.is_empty() {
            self.idle.borrow_mut().entry(key).or_default().push(reader);
        }
    }

    /// Writes `request` and reads its answer; on failure, says whether any
    /// of the answer had come.
    fn exchange(&self, reader: &mut Reader, request: &Request<Vec<u8>>, host: &str) -> Exchanged {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut out = format!("{} {path} HTTP/1.1\r\n", request.method()).into_bytes();
        if !request.headers().contains_key(header::HOST) {
            out.extend_from_slice(format!("host: {host}\r\n").as_bytes());
        }
        for (name, value) in request.headers() {
            if name == header::CONTENT_LENGTH {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let body = request.body();
        if !body.is_empty() || request.method() == Method::POST || request.method() == Method::PUT {
            out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        reader
            .stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| (e, false))?;
        (&reader.stream).write_all(&out).map_err(|e| (e, false))?;
        self.read_response(reader, request.method() == Method::HEAD)
    }

    fn read_response(&self, reader: &mut Reader, head_only: bool) -> Exchanged {
        loop {
            let head_len = loop {
                if let Some(end) = find(&reader.unread, b"\r\n\r\n") {
                    break end + 4;
                }
                if reader.unread.len() > 64 * 1024 {
                    return Err((malformed("the response head is too large"), true));
                }
                let before = reader.unread.len();
                match reader.fill(self.timeout) {
                    Ok(0) => {
                        return Err((
                            io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the server closed the connection without an answer",
                            ),
                            before > 0,
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return Err((e, before > 0)),
                }
            };
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&reader.unread[..head_len]) {
                Ok(httparse::Status::Complete(_)) => {}
                _ => return Err((malformed("a malformed response head"), true)),
            }
            let code = parsed.code.unwrap_or(0);
            let version = match parsed.version {
                Some(0) => Version::HTTP_10,
                _ => Version::HTTP_11,
            };
            let mut builder = Response::builder().status(code).version(version);
            for h in parsed.headers.iter() {
                builder = builder.header(h.name, h.value);
            }
            let mut response = builder
                .body(Vec::new())
                .map_err(|_| (malformed("a malformed response head"), true))?;
            reader.unread.drain(..head_len);
            if (100..200).contains(&code) {
                // An interim answer (100 Continue): the real one follows.
                continue;
            }
            let headers = response.headers();
            let chunked = has_token(headers, header::TRANSFER_ENCODING, "chunked");
            let length = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            let mut reusable = match version {
                Version::HTTP_10 => has_token(headers, header::CONNECTION, "keep-alive"),
                _ => !has_token(headers, header::CONNECTION, "close"),
            };
            let no_body = head_only || code == 204 || code == 304;
            let body = if no_body {
                Ok(Vec::new())
            } else if chunked {
                reader.read_chunked(self.timeout, self.max_body_bytes, 64 * 1024)
            } else if let Some(n) = length {
                if n > self.max_body_bytes {
                    return Err((malformed("the response body is larger than allowed"), true));
                }
                reader.read_exactly(n, self.timeout)
            } else {
                // Delimited by the end of the connection.
                reusable = false;
                reader.read_to_close(self.timeout, self.max_body_bytes)
            };
            *response.body_mut() = body.map_err(|e| (io::Error::from(e), true))?;
            return Ok((response, reusable));
        }
    }
}

/// An answer and whether its connection may be kept; or the error and
/// whether any of the answer had come (if not, a kept connection that had
/// gone stale is the likely cause, and the request may go again).
type Exchanged = Result<(Response<Vec<u8>>, bool), (io::Error, bool)>;

fn malformed(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

fn request(method: Method, url: &str, body: Vec<u8>) -> io::Result<Request<Vec<u8>>> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))
}

/// Where a request goes: connections are kept per origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

fn origin(uri: &Uri) -> io::Result<Origin> {
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{uri}: give an absolute http:// or https:// URL"),
            ))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Origin {
        tls,
        host: host.to_string(),
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
    })
}

/// The URI a `Location` names, relative to `base`.
fn resolve(base: &Uri, location: &str) -> io::Result<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location
            .parse()
            .map_err(|_| malformed("a malformed Location"));
    }
    let authority = base
        .authority()
        .map(|a| a.as_str())
        .ok_or_else(|| malformed("no authority to resolve a Location against"))?;
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    let scheme = base.scheme_str().unwrap_or("http");
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|_| malformed("a malformed Location"))
}

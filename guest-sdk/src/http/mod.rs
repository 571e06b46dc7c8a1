//! HTTP/1.1 on green sockets (feature `http`): a server, eventlet's
//! `eventlet.wsgi.server`, and a client, eventlet's green `urllib`, with
//! the ecosystem's types (`http`'s `Request` and `Response`, `httparse` for
//! message heads).
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
//! The client: [`get`], [`post`], and [`Client`] for connection reuse,
//! timeouts and redirects (see `client`).
//!
//! The server: each connection is a green thread (at most [`Limits::max_connections`]
//! at once, through a [`GreenPool`](crate::GreenPool)); each request's handler runs in a green
//! thread of its own, so a handler that panics answers 500 and the server
//! goes on. What it does, and its limits:
//! - keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked) and pipelined
//!   requests, answered in order;
//! - request bodies with `Content-Length` or `Transfer-Encoding: chunked`,
//!   and `Expect: 100-continue`;
//! - a head larger than [`Limits::max_head_bytes`] is answered 431, a body
//!   larger than [`Limits::max_body_bytes`] 413, a malformed request 400,
//!   a head not all sent within [`Limits::head_timeout`] of its first byte
//!   408: a slow client (slowloris, even one that sends a byte now and
//!   then) costs one green thread for that long, not the server;
//! - responses get a `Content-Length` (and `Connection: close` when the
//!   connection ends after them);
//! - a graceful stop ([`Server`], [`ShutdownHandle`]): accepting stops,
//!   idle connections close, requests under way answer within a grace
//!   period, then what is left is killed.

mod client;
mod server;
mod wire;

pub use http::{header, HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

pub use self::client::{get, post, Client};
pub use self::server::{serve, serve_with, Limits, Server, ShutdownHandle};

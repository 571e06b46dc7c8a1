//! Green sockets: TCP and UDP shaped like `std::net`, where every call that
//! would block parks only the calling green thread until the socket is
//! ready (eventlet's green sockets).
//!
//! Nothing is reachable unless the host allows it (`wasmlet run --listen
//! IP:PORT`, `--connect CIDR[:PORTS]|HOST:PORT`): a refused call fails with
//! [`io::ErrorKind::PermissionDenied`] and a message naming the flag. A
//! [`Timeout`](crate::Timeout) interrupts any socket call (the error's kind
//! is [`io::ErrorKind::TimedOut`]), and so does the socket's own read or
//! write timeout; a kill reaches a green thread blocked on a socket at once
//! ([`Interrupted::of`] finds [`Interrupted::Killed`] in the error): return,
//! and the thread's sockets close as they are dropped.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use wasmlet::net::TcpListener;
//!
//! // eventlet's echo server: a green thread per connection.
//! let listener = TcpListener::bind("127.0.0.1:6000")?;
//! for conn in listener.incoming() {
//!     let mut conn = conn?;
//!     wasmlet::spawn_n(move || -> std::io::Result<()> {
//!         let mut buf = [0; 4096];
//!         loop {
//!             let n = conn.read(&mut buf)?;
//!             if n == 0 {
//!                 return Ok(());
//!             }
//!             conn.write_all(&buf[..n])?;
//!         }
//!     });
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::abi::wasmlet::runtime::net as host;
use crate::error::Interrupted;
use crate::timeout::Limit;

/// The WIT `net-error` cases, in order (a call returns `-(1 + case)`).
const ERRORS: [(&str, io::ErrorKind); 23] = [
    ("denied", io::ErrorKind::PermissionDenied),
    ("no such socket", io::ErrorKind::InvalidInput),
    ("not an IP:PORT address", io::ErrorKind::InvalidInput),
    ("the socket is of another kind", io::ErrorKind::InvalidInput),
    ("timed out", io::ErrorKind::TimedOut),
    ("interrupted by a kill", io::ErrorKind::Other),
    ("connection refused", io::ErrorKind::ConnectionRefused),
    ("connection reset", io::ErrorKind::ConnectionReset),
    ("connection aborted", io::ErrorKind::ConnectionAborted),
    ("not connected", io::ErrorKind::NotConnected),
    ("address in use", io::ErrorKind::AddrInUse),
    ("address not available", io::ErrorKind::AddrNotAvailable),
    ("broken pipe", io::ErrorKind::BrokenPipe),
    (
        "the guest holds as many descriptors as it may",
        io::ErrorKind::Other,
    ),
    ("unreachable", io::ErrorKind::HostUnreachable),
    ("invalid input", io::ErrorKind::InvalidInput),
    ("network error", io::ErrorKind::Other),
    (
        "TLS: the peer's certificate chains to no trusted root (unknown issuer): trust its CA \
         with `wasmlet run --ca FILE` (TlsOptions::trust)",
        io::ErrorKind::InvalidData,
    ),
    (
        "TLS: the peer's certificate is not for the name connected to (name mismatch)",
        io::ErrorKind::InvalidData,
    ),
    (
        "TLS: the peer's certificate is not valid: expired or not yet valid, revoked, badly \
         signed, of the wrong kind (a CA's, say) or malformed (the host's debug log says which)",
        io::ErrorKind::InvalidData,
    ),
    (
        "TLS: the peer refused the handshake (it sent an alert: it may not trust this side)",
        io::ErrorKind::ConnectionAborted,
    ),
    (
        "TLS: the handshake failed (the peer does not speak TLS, shares no version or cipher \
         with the host, or closed the connection)",
        io::ErrorKind::InvalidData,
    ),
    (
        "another TLS session would pass the guest's host memory limit (each is charged 48 KiB): \
         raise it with `wasmlet run --max-host-memory MIB` (GuestOptions::max_host_memory), or \
         close some",
        io::ErrorKind::OutOfMemory,
    ),
];

const DENIED: i64 = -1;
const TIMED_OUT: i64 = -5;
const INTERRUPTED: i64 = -6;
const TOO_MANY_DESCRIPTORS: i64 = -14;

impl Interrupted {
    /// The interruption an I/O error carries, if it is one: a socket call
    /// that a [`Timeout`](crate::Timeout) or a kill interrupted.
    pub fn of(error: &io::Error) -> Option<&Interrupted> {
        error.get_ref()?.downcast_ref::<Interrupted>()
    }
}

impl From<Interrupted> for io::Error {
    fn from(i: Interrupted) -> io::Error {
        let kind = match i {
            Interrupted::TimedOut(_) => io::ErrorKind::TimedOut,
            Interrupted::Killed => io::ErrorKind::Other,
        };
        io::Error::new(kind, i)
    }
}

/// The error of a call refused because the guest, or the whole process,
/// holds as many descriptors as it may (the WIT `too-many-descriptors`).
#[derive(Debug)]
struct OutOfDescriptors;

impl fmt::Display for OutOfDescriptors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "too many open descriptors: the guest holds as many as it may (raise it with \
             `--max-descriptors N`, GuestOptions::max_descriptors), or the host has none left",
        )
    }
}

impl std::error::Error for OutOfDescriptors {}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<OutOfDescriptors>())
}

/// A resource `incoming` waits for rather than fails on: a descriptor, or
/// room in the host memory limit for a TLS session.
fn is_exhausted(e: &io::Error) -> bool {
    is_out_of_descriptors(e) || e.kind() == io::ErrorKind::OutOfMemory
}

/// How long `incoming` waits before it tries again while descriptors are
/// exhausted: Go's `net/http` figures (5 ms, doubling, at most 1 s).
#[derive(Default)]
struct Backoff {
    /// The current wait; zero outside an episode.
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);

    /// Waits before the next try, saying why on the first wait of an
    /// episode.
    fn wait(&mut self, why: &io::Error) -> Result<(), Interrupted> {
        if self.delay.is_zero() {
            eprintln!("accept: {why}; waiting for one to be closed");
            self.delay = Self::FIRST;
        } else {
            self.delay = (self.delay * 2).min(Self::MOST);
        }
        crate::sleep(self.delay)
    }

    fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }
}

/// What a refused call says: the flag that would allow it.
enum Needs {
    Listen(SocketAddr),
    Connect(SocketAddr),
    Resolve(String),
}

fn error(code: i64, needs: impl FnOnce() -> Option<Needs>) -> io::Error {
    if code == INTERRUPTED {
        return Interrupted::Killed.into();
    }
    if code == DENIED {
        let message = match needs() {
            Some(Needs::Listen(addr)) => format!(
                "binding {addr} is not allowed: run with `--listen {addr}` \
                 (GuestOptions::net_listen)"
            ),
            Some(Needs::Connect(addr)) => format!(
                "connecting to {addr} is not allowed: run with `--connect {addr}` \
                 (GuestOptions::net_connect)"
            ),
            Some(Needs::Resolve(name)) => format!(
                "resolving `{name}` is not allowed: run with `--connect {name}:PORT` \
                 (GuestOptions::net_connect)"
            ),
            None => "not allowed by the host".to_string(),
        };
        return io::Error::new(io::ErrorKind::PermissionDenied, message);
    }
    if code == TOO_MANY_DESCRIPTORS {
        return io::Error::other(OutOfDescriptors);
    }
    let index = usize::try_from(-code - 1).unwrap_or(usize::MAX);
    match ERRORS.get(index) {
        Some((what, kind)) => io::Error::new(*kind, *what),
        None => io::Error::other(format!("unknown network error {code}")),
    }
}

/// Runs a blocking call under `limit` (the socket's own timeout and the
/// caller's pending [`Timeout`](crate::Timeout)s): again if a timeout that
/// was cancelled meanwhile ended its wait.
fn blocking(
    own: Option<Duration>,
    mut call: impl FnMut(u64) -> i64,
    needs: impl Fn() -> Option<Needs>,
) -> io::Result<u64> {
    let limit = Limit::new(own);
    loop {
        let code = call(limit.timeout_ns());
        if code >= 0 {
            return Ok(code as u64);
        }
        if code == TIMED_OUT {
            match limit.check() {
                Err(t) => return Err(Interrupted::TimedOut(t).into()),
                Ok(()) if limit.unbounded() => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
                }
                Ok(()) => continue,
            }
        }
        return Err(error(code, &needs));
    }
}

fn immediate(code: i64, needs: impl FnOnce() -> Option<Needs>) -> io::Result<u64> {
    if code >= 0 {
        Ok(code as u64)
    } else {
        Err(error(code, needs))
    }
}

/// A socket handle, closed when the last owner drops it.
struct Handle {
    id: u32,
    /// `set_nonblocking`: shared by every clone of the socket, as the flag
    /// of a file description is by every duplicate of its descriptor.
    nonblocking: Cell<bool>,
}

impl Handle {
    fn new(id: u32) -> Handle {
        Handle {
            id,
            nonblocking: Cell::new(false),
        }
    }

    /// Runs a call that may wait: at once and never waiting in
    /// non-blocking mode (`WouldBlock` if it would have waited), else as
    /// [`blocking`].
    fn call(
        &self,
        own: Option<Duration>,
        mut call: impl FnMut(u64) -> i64,
        needs: impl Fn() -> Option<Needs>,
    ) -> io::Result<u64> {
        if !self.nonblocking.get() {
            return blocking(own, call, needs);
        }
        match call(0) {
            TIMED_OUT => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the socket is not ready (non-blocking mode)",
            )),
            code => immediate(code, needs),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        host::close(self.id);
    }
}

/// A socket's own timeout, checked as std checks it: a zero duration is
/// refused.
fn own_timeout(timeout: Option<Duration>) -> io::Result<Option<Duration>> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a zero timeout is not allowed (as in std): use set_nonblocking(true) for calls \
             that never wait",
        ));
    }
    Ok(timeout)
}

fn address_of(handle: u32, peer: bool) -> io::Result<SocketAddr> {
    let mut buf = [0u8; 64];
    let n = immediate(
        host::address(handle, peer, buf.as_mut_ptr() as u32, buf.len() as u32),
        || None,
    )?;
    std::str::from_utf8(&buf[..n as usize])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("the host gave an unreadable address"))
}

/// Something that names one or more socket addresses: `"IP:PORT"`,
/// `"HOST:PORT"` (resolved through the host, `localhost` locally), a
/// [`SocketAddr`], or `(IpAddr, u16)` / `(&str, u16)`.
pub trait ToAddrs {
    /// The addresses, in the order to try them.
    ///
    /// # Errors
    /// If it is not an address, or its name cannot be resolved.
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>>;
}

impl ToAddrs for SocketAddr {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![*self])
    }
}

impl ToAddrs for (IpAddr, u16) {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(self.0, self.1)])
    }
}

impl ToAddrs for (&str, u16) {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.0.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.1)]);
        }
        let ips = lookup_host(self.0)?;
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.1))
            .collect())
    }
}

impl ToAddrs for str {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        let (host, port) = self
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{self}` is not IP:PORT or HOST:PORT"),
                )
            })?;
        (host, port).to_addrs()
    }
}

impl ToAddrs for String {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().to_addrs()
    }
}

impl<T: ToAddrs + ?Sized> ToAddrs for &T {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).to_addrs()
    }
}

/// Resolves `name` through the host (only names a `--connect HOST:PORT`
/// rule allows; `localhost` needs no rule): its addresses.
///
/// # Errors
/// `PermissionDenied` if no rule allows the name; `InvalidInput` if it does
/// not resolve.
pub fn lookup_host(name: &str) -> io::Result<Vec<IpAddr>> {
    if name.eq_ignore_ascii_case("localhost") {
        return Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    }
    let mut buf = vec![0u8; 4096];
    let n = immediate(
        host::resolve(
            name.as_ptr() as u32,
            name.len() as u32,
            buf.as_mut_ptr() as u32,
            buf.len() as u32,
        ),
        || Some(Needs::Resolve(name.to_string())),
    )?;
    let text = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
    Ok(text.lines().filter_map(|l| l.parse().ok()).collect())
}

/// Tries each address in turn; the first success, or the last error.
fn each_addr<T>(
    addrs: &impl ToAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addrs.to_addrs()? {
        match f(addr) {
            Ok(v) => return Ok(v),
            Err(e) if Interrupted::of(&e).is_some() => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses")))
}

/// A TCP socket listening for connections: eventlet's `eventlet.listen`.
pub struct TcpListener {
    handle: Handle,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr` (a backlog of 128).
    ///
    /// # Errors
    /// `PermissionDenied` naming the `--listen` flag that would allow it;
    /// `AddrInUse`; too many descriptors.
    pub fn bind(addr: impl ToAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with_backlog(addr, 128)
    }

    /// [`bind`](Self::bind) with room for `backlog` pending connections.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_with_backlog(addr: impl ToAddrs, backlog: u32) -> io::Result<TcpListener> {
        each_addr(&addr, |addr| {
            let text = addr.to_string();
            let code = host::tcp_listen(text.as_ptr() as u32, text.len() as u32, backlog);
            let handle = immediate(code, || Some(Needs::Listen(addr)))?;
            Ok(TcpListener {
                handle: Handle::new(handle as u32),
            })
        })
    }

    /// Yields until a connection comes; the stream and its peer's address.
    ///
    /// # Errors
    /// An interruption (a [`Timeout`](crate::Timeout), a kill), or the
    /// socket's error.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let handle = self
            .handle
            .call(None, |t| host::tcp_accept(self.handle.id, t), || None)?;
        let stream = TcpStream::from_handle(handle as u32);
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }

    /// The connections as they come (each [`accept`](Self::accept)); never
    /// ends on its own.
    ///
    /// It does not spin when the guest (or the process) holds as many
    /// descriptors as it may, or (on a `--listen-tls` listener) as many TLS
    /// sessions as its host memory limit allows: as Go's `net/http` does,
    /// it waits (5 ms, doubling up to 1 s) and tries again until a
    /// connection can be taken,
    /// and prints the condition to stderr once per episode, with the flag
    /// that raises the limit. Other errors, and an interruption of that wait
    /// (a kill, a [`Timeout`](crate::Timeout)), are handed out.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        let mut backoff = Backoff::default();
        std::iter::repeat_with(move || loop {
            match self.accept() {
                Ok((stream, _)) => {
                    backoff.reset();
                    return Ok(stream);
                }
                Err(e) if is_exhausted(&e) && !self.handle.nonblocking.get() => {
                    if let Err(interrupted) = backoff.wait(&e) {
                        return Err(interrupted.into());
                    }
                }
                Err(e) => return Err(e),
            }
        })
    }

    /// Moves the listener into or out of non-blocking mode, as std's: an
    /// `accept` with no connection waiting fails at once with `WouldBlock`.
    ///
    /// # Errors
    /// Never (std's signature).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.handle.nonblocking.set(nonblocking);
        Ok(())
    }

    /// The address it listens on (the port the host picked, for port 0).
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        address_of(self.handle.id, false)
    }
}

/// A TCP connection: `std::io::Read` and `Write` that wait green.
/// `try_clone` shares it (one green thread may read while another writes);
/// it closes when the last clone is dropped.
pub struct TcpStream {
    handle: Rc<Handle>,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

impl TcpStream {
    fn from_handle(handle: u32) -> TcpStream {
        TcpStream {
            handle: Rc::new(Handle::new(handle)),
            read_timeout: Cell::new(None),
            write_timeout: Cell::new(None),
        }
    }

    /// Connects to `addr` (each of its addresses in turn), yielding until
    /// connected.
    ///
    /// # Errors
    /// `PermissionDenied` naming the `--connect` flag that would allow it;
    /// `ConnectionRefused`; an interruption.
    pub fn connect(addr: impl ToAddrs) -> io::Result<TcpStream> {
        each_addr(&addr, |addr| TcpStream::connect_limited(addr, None))
    }

    /// [`connect`](Self::connect) to one address, giving up after
    /// `timeout`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); `TimedOut`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        TcpStream::connect_limited(*addr, Some(timeout))
    }

    fn connect_limited(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let text = addr.to_string();
        let handle = blocking(
            timeout,
            |t| host::tcp_connect(text.as_ptr() as u32, text.len() as u32, t),
            || Some(Needs::Connect(addr)),
        )?;
        Ok(TcpStream::from_handle(handle as u32))
    }

    /// The peer's address.
    ///
    /// # Errors
    /// `NotConnected`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        address_of(self.handle.id, true)
    }

    /// Its own address.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        address_of(self.handle.id, false)
    }

    /// Shuts down reading, writing or both.
    ///
    /// # Errors
    /// `NotConnected`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => 0,
            Shutdown::Write => 1,
            Shutdown::Both => 2,
        };
        immediate(host::shutdown(self.handle.id, how), || None).map(drop)
    }

    /// Sets `TCP_NODELAY`.
    ///
    /// # Errors
    /// The socket's error.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        immediate(host::set_nodelay(self.handle.id, on), || None).map(drop)
    }

    /// A limit on each read (None: none); a read past it fails with
    /// `TimedOut`.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration, as std's (for reads that never
    /// wait, [`set_nonblocking`](Self::set_nonblocking)).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(own_timeout(timeout)?);
        Ok(())
    }

    /// A limit on each write (None: none).
    ///
    /// # Errors
    /// As [`set_read_timeout`](Self::set_read_timeout).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(own_timeout(timeout)?);
        Ok(())
    }

    /// Moves the connection (every clone of it) into or out of
    /// non-blocking mode, as std's: a read or write that would wait fails at
    /// once with `WouldBlock` instead (eventlet's `setblocking(False)`).
    ///
    /// # Errors
    /// Never (std's signature).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.handle.nonblocking.set(nonblocking);
        Ok(())
    }

    /// Another handle to the same connection.
    ///
    /// # Errors
    /// Never (std's signature).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            handle: self.handle.clone(),
            read_timeout: Cell::new(self.read_timeout.get()),
            write_timeout: Cell::new(self.write_timeout.get()),
        })
    }
}

impl TcpStream {
    /// eventlet's `sock.recv(bufsize)`: waits until bytes can be read, then
    /// reads up to `max` of them into a new `Vec` (empty: the peer closed
    /// its side). The buffer is taken only once bytes have come, and is not
    /// zeroed first, so a green thread waiting on an idle connection holds
    /// no buffer: a server of many idle connections costs a few KiB each
    /// instead of its read buffer each.
    ///
    /// ```no_run
    /// # fn handle(conn: wasmlet::net::TcpStream) -> std::io::Result<()> {
    /// use std::io::Write;
    /// loop {
    ///     let bytes = conn.recv(16 * 1024)?;
    ///     if bytes.is_empty() {
    ///         return Ok(());
    ///     }
    ///     (&conn).write_all(&bytes)?;
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Read::read`]: the read timeout passed, the connection failed,
    /// or the green thread was killed while it waited.
    pub fn recv(&self, max: usize) -> io::Result<Vec<u8>> {
        self.handle.call(
            self.read_timeout.get(),
            |t| host::readable(self.handle.id, t),
            || None,
        )?;
        let mut buf = Vec::with_capacity(max);
        let (at, len) = (buf.as_mut_ptr() as u32, max as u32);
        let n = self.handle.call(
            self.read_timeout.get(),
            |t| host::read(self.handle.id, at, len, t),
            || None,
        )?;
        // SAFETY: the host wrote `n` bytes (at most `len`, the capacity) at
        // the buffer's start before it returned.
        unsafe { buf.set_len((n as usize).min(max)) };
        Ok(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (at, len) = (buf.as_mut_ptr() as u32, buf.len() as u32);
        let n = self.handle.call(
            self.read_timeout.get(),
            |t| host::read(self.handle.id, at, len, t),
            || None,
        )?;
        Ok(n as usize)
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (at, len) = (buf.as_ptr() as u32, buf.len() as u32);
        let n = self.handle.call(
            self.write_timeout.get(),
            |t| host::write(self.handle.id, at, len, t),
            || None,
        )?;
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS client connection: the host connects, verifies the server's
/// certificate for the name given (against `wasmlet run --ca FILE`, else
/// Mozilla's roots) and encrypts; the guest reads and writes plaintext and
/// never holds a key. It is a [`TcpStream`] in every other way (timeouts,
/// `recv`, `try_clone`), reached through `Deref`.
///
/// Only addresses a `--connect` rule allows can be reached, as for plain
/// TCP. For the server side, a listener on a `--listen-tls IP:PORT` address
/// accepts TLS connections that read as plaintext: no code changes.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use wasmlet::net::TlsStream;
///
/// // wasmlet run guest.wasm --connect example.com:443
/// let mut tls = TlsStream::connect("example.com", 443)?;
/// tls.write_all(b"HEAD / HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n")?;
/// let mut answer = String::new();
/// tls.read_to_string(&mut answer)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TlsStream {
    stream: TcpStream,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

impl TlsStream {
    /// Connects to `host` (a name, resolved through the host, or an IP
    /// address) on `port` and completes a TLS handshake with it, trying
    /// each of its addresses in turn.
    ///
    /// # Errors
    /// `PermissionDenied` naming the `--connect` rule that would allow it;
    /// `ConnectionRefused`; `InvalidData` saying what was wrong with the
    /// certificate (unknown issuer, name mismatch, expired) or that the
    /// handshake failed; an interruption.
    pub fn connect(host: &str, port: u16) -> io::Result<TlsStream> {
        TlsStream::connect_limited(host, port, None)
    }

    /// [`connect`](Self::connect), giving up after `timeout` (for the
    /// connect and the handshake together: a server that accepts and then
    /// says nothing fails with `TimedOut`).
    ///
    /// # Errors
    /// As [`connect`](Self::connect); `TimedOut`.
    pub fn connect_timeout(host: &str, port: u16, timeout: Duration) -> io::Result<TlsStream> {
        TlsStream::connect_limited(host, port, Some(timeout))
    }

    fn connect_limited(host: &str, port: u16, timeout: Option<Duration>) -> io::Result<TlsStream> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        each_addr(&(host, port), |addr| {
            let text = addr.to_string();
            let handle = blocking(
                timeout,
                |t| {
                    host::tls_connect(
                        text.as_ptr() as u32,
                        text.len() as u32,
                        host.as_ptr() as u32,
                        host.len() as u32,
                        t,
                    )
                },
                || Some(Needs::Connect(addr)),
            )
            .map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut && Interrupted::of(&e).is_none() {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("TLS to {host} ({addr}): the connect and handshake timed out"),
                    )
                } else {
                    io::Error::new(e.kind(), format!("TLS to {host} ({addr}): {e}"))
                }
            })?;
            Ok(TlsStream {
                stream: TcpStream::from_handle(handle as u32),
            })
        })
    }

    /// The connection as a plain [`TcpStream`] (still encrypted by the
    /// host: only the type changes).
    pub fn into_tcp(self) -> TcpStream {
        self.stream
    }
}

impl std::ops::Deref for TlsStream {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream).read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for &TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream).read(buf)
    }
}

impl Write for &TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A UDP socket.
pub struct UdpSocket {
    handle: Handle,
    read_timeout: Cell<Option<Duration>>,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl UdpSocket {
    /// A UDP socket bound to `addr` (a `--listen` rule must allow it).
    ///
    /// # Errors
    /// As [`TcpListener::bind`].
    pub fn bind(addr: impl ToAddrs) -> io::Result<UdpSocket> {
        each_addr(&addr, |addr| {
            let text = addr.to_string();
            let code = host::udp_bind(text.as_ptr() as u32, text.len() as u32);
            let handle = immediate(code, || Some(Needs::Listen(addr)))?;
            Ok(UdpSocket {
                handle: Handle::new(handle as u32),
                read_timeout: Cell::new(None),
            })
        })
    }

    /// Sends `buf` to `addr` (a `--connect` rule must allow it).
    ///
    /// # Errors
    /// `PermissionDenied`; an interruption.
    pub fn send_to(&self, buf: &[u8], addr: impl ToAddrs) -> io::Result<usize> {
        let to = *addr
            .to_addrs()?
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses"))?;
        let text = to.to_string();
        let n = self.handle.call(
            None,
            |t| {
                host::udp_send_to(
                    self.handle.id,
                    buf.as_ptr() as u32,
                    buf.len() as u32,
                    text.as_ptr() as u32,
                    text.len() as u32,
                    t,
                )
            },
            || Some(Needs::Connect(to)),
        )?;
        Ok(n as usize)
    }

    /// Yields until a datagram comes: its length (cut to `buf`) and sender.
    ///
    /// # Errors
    /// An interruption, or the read timeout.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut from = [0u8; 64];
        let (at, len) = (buf.as_mut_ptr() as u32, buf.len() as u32);
        let n = self.handle.call(
            self.read_timeout.get(),
            |t| host::udp_recv_from(self.handle.id, at, len, from.as_mut_ptr() as u32, t),
            || None,
        )?;
        let end = from.iter().position(|&b| b == 0).unwrap_or(from.len());
        let sender = std::str::from_utf8(&from[..end])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("the host gave an unreadable address"))?;
        Ok((n as usize, sender))
    }

    /// A limit on each `recv_from` (None: none).
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration, as std's.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(own_timeout(timeout)?);
        Ok(())
    }

    /// Moves the socket into or out of non-blocking mode, as std's: a
    /// `send_to` or `recv_from` that would wait fails at once with
    /// `WouldBlock` instead.
    ///
    /// # Errors
    /// Never (std's signature).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.handle.nonblocking.set(nonblocking);
        Ok(())
    }

    /// Its own address.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        address_of(self.handle.id, false)
    }
}

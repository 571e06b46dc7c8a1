//! A guest's sockets: host sockets in non-blocking mode, named by handles
//! that are the guest's own (shared by its green threads), and the
//! operations on them, each tried once: ready, failed, or "would block",
//! naming the descriptor and readiness to wait for in the hub's poller.
//! Free of wasmtime; the hub functions (`host_functions::net_imports`) do the waiting.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use slab::Slab;
use socket2::{Domain, Protocol, Type};

pub(crate) use crate::io::net_outcome::{NetError, Try};
use crate::io::poller::Interest;
use crate::io::tls::TlsSession;

/// A guest's socket.
pub(crate) enum Socket {
    Listener(TcpListener),
    Stream(TcpStream),
    Udp(UdpSocket),
}

impl Socket {
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            Socket::Listener(s) => s.as_raw_fd(),
            Socket::Stream(s) => s.as_raw_fd(),
            Socket::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// A socket in the table.
struct SocketEntry {
    socket: Socket,
    /// A connect under way: the stream is not usable until it completes.
    connecting: bool,
    tls: Tls,
}

/// The TLS the host terminates on a socket.
enum Tls {
    Plain,
    /// A listener whose connections are TLS, with this configuration.
    Listener(Arc<rustls::ServerConfig>),
    /// A stream whose bytes go through this session.
    Session(Box<TlsSession>),
}

/// The most bytes one read or write moves (a larger buffer is served in
/// parts, as a socket would).
pub(crate) const MOST_PER_CALL: usize = 256 * 1024;

/// A guest's sockets, by handle (a slab key plus one: 0 is never a handle).
#[derive(Default)]
pub(crate) struct Sockets {
    table: Slab<SocketEntry>,
    /// How many entries hold a TLS session (charged to the guest's host
    /// memory).
    tls_sessions: usize,
}

impl Sockets {
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// How many of its sockets carry a TLS session.
    pub(crate) fn tls_sessions(&self) -> usize {
        self.tls_sessions
    }

    /// Whether `handle` is a listener whose connections are TLS.
    pub(crate) fn is_tls_listener(&self, handle: u32) -> bool {
        matches!(
            self.entry(handle),
            Ok(SocketEntry {
                tls: Tls::Listener(_),
                ..
            })
        )
    }

    fn insert(&mut self, socket: Socket, connecting: bool) -> u32 {
        self.insert_tls(socket, connecting, Tls::Plain)
    }

    fn insert_tls(&mut self, socket: Socket, connecting: bool, tls: Tls) -> u32 {
        if let Tls::Session(_) = tls {
            self.tls_sessions += 1;
        }
        self.table.insert(SocketEntry {
            socket,
            connecting,
            tls,
        }) as u32
            + 1
    }

    fn entry(&self, handle: u32) -> Result<&SocketEntry, NetError> {
        let key = handle.checked_sub(1).ok_or(NetError::BadHandle)?;
        self.table.get(key as usize).ok_or(NetError::BadHandle)
    }

    pub(crate) fn get(&self, handle: u32) -> Result<&Socket, NetError> {
        self.entry(handle).map(|entry| &entry.socket)
    }

    /// Takes a socket out (to close it), saying goodbye first on a TLS
    /// stream (close_notify, if the socket takes it now).
    pub(crate) fn remove(&mut self, handle: u32) -> Result<Socket, NetError> {
        self.get(handle)?;
        let mut entry = self.table.remove(handle as usize - 1);
        if let (Socket::Stream(tcp), Tls::Session(session)) = (&entry.socket, &mut entry.tls) {
            session.close_notify(tcp);
            self.tls_sessions -= 1;
        }
        Ok(entry.socket)
    }

    /// Every socket's descriptor (the guest is ending: to forget them in
    /// the poller before they close).
    pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
        self.table.iter().map(|(_, s)| s.socket.raw_fd()).collect()
    }

    fn stream(&self, handle: u32) -> Result<&TcpStream, NetError> {
        match self.entry(handle)? {
            SocketEntry {
                connecting: true, ..
            } => Err(NetError::NotConnected),
            SocketEntry {
                socket: Socket::Stream(s),
                ..
            } => Ok(s),
            _ => Err(NetError::WrongKind),
        }
    }

    /// A connected stream and its TLS session, if it has one.
    fn stream_mut(
        &mut self,
        handle: u32,
    ) -> Result<(&TcpStream, Option<&mut TlsSession>), NetError> {
        let key = handle.checked_sub(1).ok_or(NetError::BadHandle)?;
        match self
            .table
            .get_mut(key as usize)
            .ok_or(NetError::BadHandle)?
        {
            SocketEntry {
                connecting: true, ..
            } => Err(NetError::NotConnected),
            SocketEntry {
                socket: Socket::Stream(s),
                tls,
                ..
            } => Ok((
                s,
                match tls {
                    Tls::Session(session) => Some(session),
                    _ => None,
                },
            )),
            _ => Err(NetError::WrongKind),
        }
    }

    fn udp(&self, handle: u32) -> Result<&UdpSocket, NetError> {
        match self.get(handle)? {
            Socket::Udp(s) => Ok(s),
            _ => Err(NetError::WrongKind),
        }
    }

    /// A listening TCP socket on `addr` with room for `backlog` pending
    /// connections; with `tls`, the connections it accepts are TLS that
    /// the host terminates.
    pub(crate) fn listen(
        &mut self,
        addr: SocketAddr,
        backlog: u32,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<u32, NetError> {
        let socket =
            socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                .map_err(|e| NetError::of(&e))?;
        let set_up = socket
            .set_reuse_address(true)
            .and_then(|()| socket.set_nonblocking(true))
            .and_then(|()| socket.bind(&addr.into()))
            .and_then(|()| socket.listen(backlog.clamp(1, 65_535) as i32));
        set_up.map_err(|e| NetError::of(&e))?;
        let tls = tls.map_or(Tls::Plain, Tls::Listener);
        Ok(self.insert_tls(Socket::Listener(socket.into()), false, tls))
    }

    /// Accepts a connection: its handle and the peer's address.
    pub(crate) fn accept(&mut self, handle: u32) -> Try<(u32, SocketAddr)> {
        let (listener, tls) = match self.entry(handle) {
            Ok(SocketEntry {
                socket: Socket::Listener(l),
                tls,
                ..
            }) => (l, tls),
            Ok(_) => return Try::Failed(NetError::WrongKind),
            Err(e) => return Try::Failed(e),
        };
        let fd = listener.as_raw_fd();
        match Try::of(listener.accept(), fd, Interest::Read) {
            Try::Ready((stream, peer)) => {
                // The handshake runs in the guest's first read or write.
                let tls = match tls {
                    Tls::Listener(config) => match TlsSession::server(config.clone()) {
                        Ok(session) => Tls::Session(Box::new(session)),
                        Err(e) => return Try::Failed(e),
                    },
                    _ => Tls::Plain,
                };
                match stream.set_nonblocking(true) {
                    Ok(()) => {
                        Try::Ready((self.insert_tls(Socket::Stream(stream), false, tls), peer))
                    }
                    Err(e) => Try::Failed(NetError::of(&e)),
                }
            }
            Try::Failed(e) => Try::Failed(e),
            Try::WouldBlock(fd, i) => Try::WouldBlock(fd, i),
        }
    }

    /// Starts a connect to `addr`: the handle of a stream that is not
    /// usable until [`Sockets::finish_connect`] says it is connected.
    pub(crate) fn start_connect(&mut self, addr: SocketAddr) -> Result<u32, NetError> {
        let socket =
            socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                .map_err(|e| NetError::of(&e))?;
        socket.set_nonblocking(true).map_err(|e| NetError::of(&e))?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(NetError::of(&e)),
        }
        Ok(self.insert(Socket::Stream(socket.into()), true))
    }

    /// Whether the connect of `handle` has completed.
    pub(crate) fn finish_connect(&mut self, handle: u32) -> Try<()> {
        let stream = match self.entry(handle) {
            Ok(SocketEntry {
                socket: Socket::Stream(s),
                connecting: true,
                ..
            }) => s,
            Ok(_) => return Try::Failed(NetError::WrongKind),
            Err(e) => return Try::Failed(e),
        };
        match stream.take_error() {
            Ok(Some(e)) | Err(e) => return Try::Failed(NetError::of(&e)),
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                return Try::WouldBlock(stream.as_raw_fd(), Interest::Write);
            }
            Err(e) => return Try::Failed(NetError::of(&e)),
        }
        // In place: the guest's handle stays the same.
        self.table[handle as usize - 1].connecting = false;
        Try::Ready(())
    }

    /// Makes the connected stream `handle` a TLS client of `name`: its
    /// bytes go through the session from now on, and
    /// [`Sockets::tls_handshake`] completes the handshake.
    pub(crate) fn start_tls_client(
        &mut self,
        handle: u32,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<(), NetError> {
        self.stream(handle)?;
        let session = TlsSession::client(config, name)?;
        let tls = &mut self.table[handle as usize - 1].tls;
        if !matches!(tls, Tls::Session(_)) {
            self.tls_sessions += 1;
        }
        *tls = Tls::Session(Box::new(session));
        Ok(())
    }

    /// Drives the TLS handshake of `handle` until it is complete.
    pub(crate) fn tls_handshake(&mut self, handle: u32) -> Try<()> {
        match self.stream_mut(handle) {
            Ok((s, Some(session))) => session.handshake(s),
            Ok((_, None)) => Try::Failed(NetError::WrongKind),
            Err(e) => Try::Failed(e),
        }
    }

    /// Reads up to `len` bytes (0: the peer closed its side).
    pub(crate) fn read(&mut self, handle: u32, len: usize) -> Try<Vec<u8>> {
        let stream = match self.stream_mut(handle) {
            Ok((s, None)) => s,
            Ok((s, Some(session))) => return session.read(s, len.min(MOST_PER_CALL)),
            Err(e) => return Try::Failed(e),
        };
        let mut buf = vec![0; len.min(MOST_PER_CALL)];
        match Try::of(
            (&*stream).read(&mut buf),
            stream.as_raw_fd(),
            Interest::Read,
        ) {
            Try::Ready(n) => {
                buf.truncate(n);
                Try::Ready(buf)
            }
            Try::Failed(e) => Try::Failed(e),
            Try::WouldBlock(fd, i) => Try::WouldBlock(fd, i),
        }
    }

    /// Whether a read would not wait: bytes have come or the peer closed
    /// its side (a one-byte peek, which takes nothing).
    pub(crate) fn readable(&mut self, handle: u32) -> Try<()> {
        match self.stream_mut(handle) {
            Ok((s, Some(session))) => session.readable(s),
            Ok((s, None)) => match Try::of(s.peek(&mut [0]), s.as_raw_fd(), Interest::Read) {
                Try::Ready(_) => Try::Ready(()),
                Try::Failed(e) => Try::Failed(e),
                Try::WouldBlock(fd, i) => Try::WouldBlock(fd, i),
            },
            Err(e) => Try::Failed(e),
        }
    }

    /// Writes some of `bytes`; how many. `taken` is for a TLS stream: see
    /// [`TlsSession::write`] (None on the first try of each write).
    pub(crate) fn write(
        &mut self,
        handle: u32,
        bytes: &[u8],
        taken: &mut Option<usize>,
    ) -> Try<usize> {
        match self.stream_mut(handle) {
            Ok((s, Some(session))) => session.write(s, bytes, taken),
            Ok((s, None)) => Try::of((&*s).write(bytes), s.as_raw_fd(), Interest::Write),
            Err(e) => Try::Failed(e),
        }
    }

    pub(crate) fn shutdown(&mut self, handle: u32, how: u32) -> Result<(), NetError> {
        let how = match how {
            0 => Shutdown::Read,
            1 => Shutdown::Write,
            2 => Shutdown::Both,
            _ => return Err(NetError::InvalidInput),
        };
        let (tcp, session) = self.stream_mut(handle)?;
        if let (Some(session), Shutdown::Write | Shutdown::Both) = (session, how) {
            session.close_notify(tcp);
        }
        tcp.shutdown(how).map_err(|e| NetError::of(&e))
    }

    pub(crate) fn set_nodelay(&self, handle: u32, on: bool) -> Result<(), NetError> {
        self.stream(handle)?
            .set_nodelay(on)
            .map_err(|e| NetError::of(&e))
    }

    /// The socket's own address (`peer`: its peer's).
    pub(crate) fn addr(&self, handle: u32, peer: bool) -> Result<SocketAddr, NetError> {
        let entry = self.entry(handle)?;
        let result = match (&entry.socket, peer) {
            (Socket::Listener(l), false) => l.local_addr(),
            (Socket::Stream(s), false) => s.local_addr(),
            (Socket::Stream(_), true) if entry.connecting => return Err(NetError::NotConnected),
            (Socket::Stream(s), true) => s.peer_addr(),
            (Socket::Udp(u), false) => u.local_addr(),
            (Socket::Udp(u), true) => u.peer_addr(),
            (Socket::Listener(_), true) => return Err(NetError::NotConnected),
        };
        result.map_err(|e| NetError::of(&e))
    }

    /// A UDP socket bound to `addr`.
    pub(crate) fn udp_bind(&mut self, addr: SocketAddr) -> Result<u32, NetError> {
        let socket = UdpSocket::bind(addr).map_err(|e| NetError::of(&e))?;
        socket.set_nonblocking(true).map_err(|e| NetError::of(&e))?;
        Ok(self.insert(Socket::Udp(socket), false))
    }

    pub(crate) fn send_to(&self, handle: u32, bytes: &[u8], to: SocketAddr) -> Try<usize> {
        match self.udp(handle) {
            Ok(u) => Try::of(u.send_to(bytes, to), u.as_raw_fd(), Interest::Write),
            Err(e) => Try::Failed(e),
        }
    }

    pub(crate) fn recv_from(&self, handle: u32, len: usize) -> Try<(Vec<u8>, SocketAddr)> {
        let socket = match self.udp(handle) {
            Ok(u) => u,
            Err(e) => return Try::Failed(e),
        };
        let mut buf = vec![0; len.min(MOST_PER_CALL)];
        match Try::of(
            socket.recv_from(&mut buf),
            socket.as_raw_fd(),
            Interest::Read,
        ) {
            Try::Ready((n, from)) => {
                buf.truncate(n);
                Try::Ready((buf, from))
            }
            Try::Failed(e) => Try::Failed(e),
            Try::WouldBlock(fd, i) => Try::WouldBlock(fd, i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_accept_read_write_round_trip_never_blocks() {
        let mut sockets = Sockets::default();
        let listener = sockets
            .listen("127.0.0.1:0".parse().unwrap(), 16, None)
            .unwrap();
        let addr = sockets.addr(listener, false).unwrap();
        assert!(matches!(
            sockets.accept(listener),
            Try::WouldBlock(_, Interest::Read)
        ));
        let client = sockets.start_connect(addr).unwrap();
        let server = loop {
            if let Try::Ready((h, _)) = sockets.accept(listener) {
                break h;
            }
        };
        while let Try::WouldBlock(..) = sockets.finish_connect(client) {}
        assert!(matches!(
            sockets.write(client, b"ping", &mut None),
            Try::Ready(4)
        ));
        let got = loop {
            if let Try::Ready(b) = sockets.read(server, 64) {
                break b;
            }
        };
        assert_eq!(got, b"ping");
        assert!(matches!(
            sockets.read(server, 64),
            Try::WouldBlock(_, Interest::Read)
        ));
        sockets.shutdown(client, 1).unwrap();
        let eof = loop {
            if let Try::Ready(b) = sockets.read(server, 64) {
                break b;
            }
        };
        assert!(eof.is_empty(), "0 bytes: the peer closed its side");
        assert_eq!(sockets.len(), 3);
        assert!(matches!(sockets.remove(client), Ok(Socket::Stream(_))));
        assert_eq!(sockets.get(client).err(), Some(NetError::BadHandle));
        assert_eq!(sockets.get(0).err(), Some(NetError::BadHandle));
        assert_eq!(sockets.get(u32::MAX).err(), Some(NetError::BadHandle));
        assert!(matches!(
            sockets.read(listener, 1),
            Try::Failed(NetError::WrongKind)
        ));
        assert_eq!(sockets.shutdown(server, 9), Err(NetError::InvalidInput));
    }

    #[test]
    fn a_refused_connect_fails_and_says_so() {
        // A port just freed: nobody listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut sockets = Sockets::default();
        let h = sockets.start_connect(port).unwrap();
        let result = loop {
            match sockets.finish_connect(h) {
                Try::WouldBlock(..) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Try::Failed(e) => break e,
                Try::Ready(()) => panic!("connected to nobody"),
            }
        };
        assert_eq!(result, NetError::ConnectionRefused);
    }
}

//! TLS that the host terminates for a guest, so that private keys and the
//! handshake's secrets never enter the sandbox.
//!
//! - A **listener** on an address in [`TlsOptions::listen`] (`wasmlet run
//!   --listen-tls ADDR --cert FILE --key FILE`) accepts connections whose
//!   bytes the host decrypts: the guest reads and writes plaintext with the
//!   same `net` calls as on any stream. The handshake runs inside the
//!   guest's first read or write of the connection, within that call's
//!   timeout, so a peer that never finishes it costs the green thread that
//!   reads, as a slowloris does, and nothing else.
//! - A **client** connection (`tls-connect`, the SDK's `TlsStream::connect`)
//!   is verified against [`TlsTrust`]: Mozilla's roots (`webpki-roots`), or
//!   the certificates of a PEM file (`--ca FILE`). Only addresses a
//!   `--connect` rule allows can be reached, as for plain TCP.
//!
//! A session never blocks: each step moves what the socket takes now and
//! otherwise names the readiness to wait for ([`Try::WouldBlock`]), as every
//! other socket operation does. Failures reach the guest as `net-error`
//! cases that say what failed (an unknown issuer, a name mismatch, a bad
//! certificate, a refusing peer, a failed handshake); the host logs the
//! full reason at `debug` level.
//!
//! ```text
//!  peer ──TLS records──▶ socket ──read_tls──▶ rustls ──plaintext──▶ guest memory
//!  peer ◀──TLS records── socket ◀─write_tls── rustls ◀──plaintext── guest memory
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::io::net_outcome::{NetError, Try};
use crate::io::poller::Interest;

/// Why a TLS configuration could not be built; each says which file and
/// what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file holds no PEM item of the kind needed, or a malformed one.
    #[error("{what} ({path}): {why}")]
    Pem {
        /// What the file was to hold.
        what: &'static str,
        /// The file (`<memory>` for bytes given directly).
        path: String,
        /// Why.
        why: String,
    },
    /// rustls refused the certificate or key (a key that does not match the
    /// certificate, an algorithm it does not support).
    #[error("the TLS certificate or key is not usable: {0}")]
    Rustls(#[from] rustls::Error),
    /// [`TlsOptions::listen`] names addresses but no identity is given.
    #[error(
        "TLS listen addresses are given but no certificate and key: pass `--cert FILE --key \
         FILE` (TlsOptions::identity)"
    )]
    NoIdentity,
}

/// The certificate chain and private key a TLS listener presents.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsIdentity { .. }")
    }
}

/// The crypto provider: ring, already built for the NATS client.
///
/// rustls 0.23.48 deprecates ring's provider because it has no
/// post-quantum key exchange; aws-lc-rs has one but would add a CMake and
/// assembler build of its C to every build of the host. Switching is one
/// line here (and a feature in Cargo.toml) when that is worth it.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of PEM text (`where_` names it in errors).
fn certificates(
    pem: &[u8],
    what: &'static str,
    where_: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bad = |why: String| TlsConfigError::Pem {
        what,
        path: where_.to_string(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "no `-----BEGIN CERTIFICATE-----` block in it".to_string()
        ));
    }
    Ok(certs)
}

impl TlsIdentity {
    /// The certificate chain (PEM, the server's own certificate first) and
    /// its private key (PEM: PKCS#8, PKCS#1 or SEC1) in these files.
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or key, or a key
    /// that does not match the certificate.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsConfigError> {
        let chain = read_file(cert)?;
        let key_pem = read_file(key)?;
        TlsIdentity::build(
            &chain,
            &key_pem,
            &cert.display().to_string(),
            &key.display().to_string(),
        )
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM text.
    ///
    /// # Errors
    /// As [`from_pem_files`](Self::from_pem_files).
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<TlsIdentity, TlsConfigError> {
        TlsIdentity::build(cert, key, "<memory>", "<memory>")
    }

    fn build(
        cert: &[u8],
        key: &[u8],
        cert_at: &str,
        key_at: &str,
    ) -> Result<TlsIdentity, TlsConfigError> {
        let chain = certificates(cert, "the TLS certificate chain", cert_at)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsConfigError::Pem {
            what: "the TLS private key",
            path: key_at.to_string(),
            why: format!("{e} (expected a `-----BEGIN PRIVATE KEY-----` block)"),
        })?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(TlsIdentity {
            config: Arc::new(config),
        })
    }
}

/// What a guest's TLS client connections trust. Default: Mozilla's roots
/// (the `webpki-roots` crate, built in: no system store is read).
#[derive(Clone, Default)]
pub struct TlsTrust {
    /// None: the built-in roots.
    config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.config {
            None => f.write_str("TlsTrust::WebPkiRoots"),
            Some(_) => f.write_str("TlsTrust::Certificates"),
        }
    }
}

impl TlsTrust {
    /// Trusts the certificates of this PEM file instead of the built-in
    /// roots (a private CA's, or a self-signed server's).
    ///
    /// # Errors
    /// A file that cannot be read or holds no certificate.
    pub fn from_pem_file(ca: &Path) -> Result<TlsTrust, TlsConfigError> {
        TlsTrust::build(&read_file(ca)?, &ca.display().to_string())
    }

    /// As [`from_pem_file`](Self::from_pem_file), from PEM text.
    ///
    /// # Errors
    /// As [`from_pem_file`](Self::from_pem_file).
    pub fn from_pem(ca: &[u8]) -> Result<TlsTrust, TlsConfigError> {
        TlsTrust::build(ca, "<memory>")
    }

    fn build(pem: &[u8], at: &str) -> Result<TlsTrust, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(pem, "the trusted CA certificates", at)? {
            roots.add(cert)?;
        }
        Ok(TlsTrust {
            config: Some(client_config(roots)?),
        })
    }

    /// The configuration client connections are made with.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        static WEBPKI: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        match &self.config {
            Some(config) => config.clone(),
            None => WEBPKI
                .get_or_init(|| {
                    let roots = RootCertStore {
                        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                    };
                    client_config(roots).expect("ring supports the safe default versions")
                })
                .clone(),
        }
    }
}

fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsConfigError> {
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The TLS a guest may use (`GuestOptions::tls`).
///
/// ```no_run
/// use std::path::Path;
/// use wasmlet_host::tls::{TlsIdentity, TlsOptions, TlsTrust};
///
/// let tls = TlsOptions {
///     listen: vec!["127.0.0.1:8443".parse()?],
///     identity: Some(TlsIdentity::from_pem_files(
///         Path::new("cert.pem"),
///         Path::new("key.pem"),
///     )?),
///     trust: TlsTrust::from_pem_file(Path::new("ca.pem"))?,
/// };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Addresses the guest may listen on whose connections the host
    /// decrypts (each exactly, as `GuestOptions::net_listen`; it need not
    /// be listed there too). `wasmlet run --listen-tls IP:PORT`.
    pub listen: Vec<SocketAddr>,
    /// The certificate and key those listeners present; required when
    /// `listen` is not empty. `--cert FILE --key FILE`.
    pub identity: Option<TlsIdentity>,
    /// What client connections trust. `--ca FILE`; default: Mozilla's
    /// roots.
    pub trust: TlsTrust,
}

impl TlsOptions {
    /// Checks that they make sense together.
    ///
    /// # Errors
    /// [`TlsConfigError::NoIdentity`]: listen addresses without an identity.
    pub fn check(&self) -> Result<(), TlsConfigError> {
        if !self.listen.is_empty() && self.identity.is_none() {
            return Err(TlsConfigError::NoIdentity);
        }
        Ok(())
    }

    /// The server configuration for a listener on `addr`, if the host
    /// terminates TLS there.
    pub(crate) fn listener(&self, addr: SocketAddr) -> Option<Arc<ServerConfig>> {
        if !self.listen.contains(&addr) {
            return None;
        }
        self.identity.as_ref().map(|i| i.config.clone())
    }
}

/// The `net-error` for a TLS failure. The guest hears the case; the host's
/// log has the whole reason.
pub(crate) fn net_error_of(e: &rustls::Error) -> NetError {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => NetError::TlsUnknownIssuer,
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => NetError::TlsNameMismatch,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            NetError::TlsBadCertificate
        }
        rustls::Error::AlertReceived(_) => NetError::TlsPeerRefused,
        _ => NetError::TlsHandshake,
    }
}

/// Most rounds of taking in records per try: a peer that streams records
/// that carry no plaintext (empty records, key updates) must not hold the
/// hub's thread. Past it, a try waits for the socket to be readable, which
/// it is at once if more has come, so the hub goes round its other work
/// first.
const MOST_ROUNDS: usize = 16;

/// What one step of moving TLS records came to.
enum Pump {
    /// Records moved: look again.
    Moved,
    /// Nothing can move until the socket is ready so.
    Wait(Interest),
    /// The peer closed the connection.
    Closed,
    Failed(NetError),
}

/// Whether what rustls has to send went out.
enum Flush {
    Done,
    Blocked,
    Failed(NetError),
}

/// One TLS connection over a guest's non-blocking socket.
///
/// Invariant: a plaintext write is taken by rustls only when nothing older
/// waits to go out, and is reported written only once its records have all
/// gone to the socket, so no bytes are ever left in rustls while the guest
/// waits for the peer's answer.
pub(crate) struct TlsSession {
    conn: rustls::Connection,
    /// The peer closed the TCP connection (read_tls returned 0).
    closed: bool,
    /// The first failure: every later call fails the same way.
    failed: Option<NetError>,
}

impl TlsSession {
    /// The server side of a connection a TLS listener accepted.
    pub(crate) fn server(config: Arc<ServerConfig>) -> Result<TlsSession, NetError> {
        let conn = rustls::ServerConnection::new(config).map_err(|e| {
            tracing::debug!("TLS server session: {e}");
            NetError::Other
        })?;
        Ok(TlsSession::new(conn.into()))
    }

    /// The client side of a connection to `name` (the name the server's
    /// certificate must be for; an IP address is checked as one).
    pub(crate) fn client(config: Arc<ClientConfig>, name: &str) -> Result<TlsSession, NetError> {
        let name = ServerName::try_from(name.to_string()).map_err(|_| NetError::InvalidInput)?;
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| {
            tracing::debug!("TLS client session: {e}");
            NetError::Other
        })?;
        Ok(TlsSession::new(conn.into()))
    }

    fn new(conn: rustls::Connection) -> TlsSession {
        TlsSession {
            conn,
            closed: false,
            failed: None,
        }
    }

    /// Records the failure `e` and sends the alert rustls made for it, if
    /// the socket takes it now.
    fn fail(&mut self, tcp: &TcpStream, e: &rustls::Error) -> NetError {
        let code = net_error_of(e);
        tracing::debug!(peer = ?tcp.peer_addr().ok(), "TLS failed: {e}");
        self.failed = Some(code);
        let _ = self.flush(tcp);
        code
    }

    /// Sends what rustls has queued.
    fn flush(&mut self, tcp: &TcpStream) -> Flush {
        while self.conn.wants_write() {
            let mut socket: &TcpStream = tcp;
            match self.conn.write_tls(&mut socket) {
                Ok(_) => {}
                Err(e) if would_block(&e) => return Flush::Blocked,
                Err(e) => return Flush::Failed(NetError::of(&e)),
            }
        }
        Flush::Done
    }

    /// Sends what is queued, then takes in what the peer sent.
    fn pump(&mut self, tcp: &TcpStream) -> Pump {
        match self.flush(tcp) {
            Flush::Done => {}
            Flush::Blocked => return Pump::Wait(Interest::Write),
            Flush::Failed(e) => return Pump::Failed(e),
        }
        if self.closed || !self.conn.wants_read() {
            // Nothing more will come (the peer closed, or sent close_notify).
            return Pump::Closed;
        }
        let mut socket: &TcpStream = tcp;
        match self.conn.read_tls(&mut socket) {
            Ok(0) => {
                self.closed = true;
                Pump::Closed
            }
            Ok(_) => match self.conn.process_new_packets() {
                Ok(_) => Pump::Moved,
                Err(e) => Pump::Failed(self.fail(tcp, &e)),
            },
            Err(e) if would_block(&e) => Pump::Wait(Interest::Read),
            Err(e) => Pump::Failed(NetError::of(&e)),
        }
    }

    /// Drives the handshake until it is complete and its last records sent.
    pub(crate) fn handshake(&mut self, tcp: &TcpStream) -> Try<()> {
        let fd = tcp.as_raw_fd();
        for _ in 0..MOST_ROUNDS {
            if let Some(e) = self.failed {
                return Try::Failed(e);
            }
            if !self.conn.is_handshaking() {
                return match self.flush(tcp) {
                    Flush::Done => Try::Ready(()),
                    Flush::Blocked => Try::WouldBlock(fd, Interest::Write),
                    Flush::Failed(e) => Try::Failed(e),
                };
            }
            match self.pump(tcp) {
                Pump::Moved => {}
                Pump::Wait(interest) => return Try::WouldBlock(fd, interest),
                Pump::Closed => {
                    tracing::debug!(peer = ?tcp.peer_addr().ok(), "TLS: closed during the handshake");
                    self.failed = Some(NetError::TlsHandshake);
                }
                Pump::Failed(e) => return Try::Failed(e),
            }
        }
        Try::WouldBlock(fd, Interest::Read)
    }

    /// Reads up to `len` bytes of plaintext (none: the peer closed).
    pub(crate) fn read(&mut self, tcp: &TcpStream, len: usize) -> Try<Vec<u8>> {
        let fd = tcp.as_raw_fd();
        let mut buf = vec![0; len];
        for _ in 0..MOST_ROUNDS {
            if let Some(e) = self.failed {
                return Try::Failed(e);
            }
            if !self.conn.is_handshaking() {
                match self.conn.reader().read(&mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        return Try::Ready(buf);
                    }
                    // Closed without close_notify: most HTTP peers do so,
                    // and the guest's framing says whether all came.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Try::Ready(Vec::new())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Try::Failed(NetError::of(&e)),
                }
            }
            match self.pump(tcp) {
                Pump::Moved => {}
                Pump::Wait(interest) => return Try::WouldBlock(fd, interest),
                Pump::Closed if self.conn.is_handshaking() => {
                    tracing::debug!(peer = ?tcp.peer_addr().ok(), "TLS: closed during the handshake");
                    self.failed = Some(NetError::TlsHandshake);
                }
                Pump::Closed => return Try::Ready(Vec::new()),
                Pump::Failed(e) => return Try::Failed(e),
            }
        }
        Try::WouldBlock(fd, Interest::Read)
    }

    /// Whether a read would not wait: plaintext has come, or the peer
    /// closed. Takes no plaintext.
    pub(crate) fn readable(&mut self, tcp: &TcpStream) -> Try<()> {
        let fd = tcp.as_raw_fd();
        for _ in 0..MOST_ROUNDS {
            if let Some(e) = self.failed {
                return Try::Failed(e);
            }
            match self.conn.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                    return Try::Ready(())
                }
                Ok(_) => {}
                Err(e) => return Try::Failed(self.fail(tcp, &e)),
            }
            match self.pump(tcp) {
                Pump::Moved => {}
                Pump::Wait(interest) => return Try::WouldBlock(fd, interest),
                Pump::Closed => return Try::Ready(()),
                Pump::Failed(e) => return Try::Failed(e),
            }
        }
        Try::WouldBlock(fd, Interest::Read)
    }

    /// Writes some of `bytes`: how many. `taken` carries, between tries of
    /// one write, how many rustls took while their records wait to go out.
    pub(crate) fn write(
        &mut self,
        tcp: &TcpStream,
        bytes: &[u8],
        taken: &mut Option<usize>,
    ) -> Try<usize> {
        let fd = tcp.as_raw_fd();
        if let Some(e) = self.failed {
            return Try::Failed(e);
        }
        if self.conn.is_handshaking() {
            match self.handshake(tcp) {
                Try::Ready(()) => {}
                Try::Failed(e) => return Try::Failed(e),
                Try::WouldBlock(fd, interest) => return Try::WouldBlock(fd, interest),
            }
        }
        let flushed = |session: &mut TlsSession, n: usize| match session.flush(tcp) {
            Flush::Done => Try::Ready(n),
            Flush::Blocked => Try::WouldBlock(fd, Interest::Write),
            Flush::Failed(e) => Try::Failed(e),
        };
        if let Some(n) = *taken {
            return flushed(self, n);
        }
        match self.flush(tcp) {
            Flush::Done => {}
            Flush::Blocked => return Try::WouldBlock(fd, Interest::Write),
            Flush::Failed(e) => return Try::Failed(e),
        }
        if bytes.is_empty() {
            return Try::Ready(0);
        }
        match self.conn.writer().write(bytes) {
            Ok(n) => {
                *taken = Some(n);
                flushed(self, n)
            }
            Err(e) => Try::Failed(NetError::of(&e)),
        }
    }

    /// Says the connection ends (close_notify), if the socket takes it now:
    /// before a close or a shutdown of writing.
    pub(crate) fn close_notify(&mut self, tcp: &TcpStream) {
        if self.failed.is_none() {
            self.conn.send_close_notify();
            let _ = self.flush(tcp);
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A certificate for `names`, self-signed: (certificate, key) in PEM.
    /// Each has a subject of its own, as separate CAs do (a shared one
    /// makes a stranger's certificate look badly signed, not unknown).
    fn certificate(names: &[&str]) -> (String, String) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        let subject = format!("wasmlet test {}", NEXT.fetch_add(1, Ordering::Relaxed));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, subject);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A connected pair of non-blocking loopback streams.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    /// Tries `step` until it is ready or fails (the other side runs on
    /// another thread meanwhile).
    fn until<T>(mut step: impl FnMut() -> Try<T>) -> Result<T, NetError> {
        loop {
            match step() {
                Try::Ready(v) => return Ok(v),
                Try::Failed(e) => return Err(e),
                Try::WouldBlock(..) => thread::yield_now(),
            }
        }
    }

    /// Reads until `len` bytes or the end.
    fn read_all(session: &mut TlsSession, tcp: &TcpStream, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            let bytes = until(|| session.read(tcp, 16 * 1024)).unwrap();
            if bytes.is_empty() {
                break;
            }
            got.extend(bytes);
        }
        got
    }

    fn identity(names: &[&str]) -> (TlsIdentity, TlsTrust) {
        let (cert, key) = certificate(names);
        (
            TlsIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap(),
            TlsTrust::from_pem(cert.as_bytes()).unwrap(),
        )
    }

    #[test]
    fn a_session_pair_moves_plaintext_both_ways_and_closes() {
        let (identity, trust) = identity(&["localhost"]);
        let (client_tcp, server_tcp) = pair();
        let mut server = TlsSession::server(identity.config.clone()).unwrap();
        let mut client = TlsSession::client(trust.client_config(), "localhost").unwrap();
        // Bigger than a record and than rustls' send buffer: the write is
        // taken in parts, each flushed before it counts.
        let message: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let expected = message.clone();
        let server_side = thread::spawn(move || {
            until(|| server.readable(&server_tcp)).unwrap();
            let got = read_all(&mut server, &server_tcp, expected.len());
            assert_eq!(got, expected);
            let mut written = 0;
            while written < 5 {
                let mut taken = None;
                written +=
                    until(|| server.write(&server_tcp, &b"done!"[written..], &mut taken)).unwrap();
            }
            server.close_notify(&server_tcp);
            // After close_notify the peer's reads end; ours see its close.
            read_all(&mut server, &server_tcp, 1)
        });
        until(|| client.handshake(&client_tcp)).unwrap();
        let mut written = 0;
        while written < message.len() {
            let mut taken = None;
            written +=
                until(|| client.write(&client_tcp, &message[written..], &mut taken)).unwrap();
        }
        assert_eq!(read_all(&mut client, &client_tcp, 5), b"done!");
        assert_eq!(until(|| client.read(&client_tcp, 64)).unwrap(), b"");
        client.close_notify(&client_tcp);
        assert_eq!(server_side.join().unwrap(), b"");
    }

    /// Runs a handshake between a server with `identity` and a client that
    /// trusts `trust` and expects `name`: (client's, server's) results.
    fn handshake(
        identity: &TlsIdentity,
        trust: &TlsTrust,
        name: &str,
    ) -> (Result<(), NetError>, Result<(), NetError>) {
        let (client_tcp, server_tcp) = pair();
        let mut server = TlsSession::server(identity.config.clone()).unwrap();
        let mut client = TlsSession::client(trust.client_config(), name).unwrap();
        let server_side = thread::spawn(move || until(|| server.readable(&server_tcp)));
        let client_result = until(|| client.handshake(&client_tcp));
        // The server's wait ends with the client's alert or close_notify;
        // the socket stays open until then, so no reset races either.
        client.close_notify(&client_tcp);
        let server_result = server_side.join().unwrap();
        (client_result, server_result)
    }

    #[test]
    fn failures_say_what_failed() {
        let (identity, trust) = identity(&["localhost"]);
        let (_, other_trust) = super::tests::identity(&["localhost"]);
        let (client, server) = handshake(&identity, &trust, "localhost");
        assert_eq!(client, Ok(()));
        assert_eq!(server, Ok(()), "readable: the client said close_notify");

        let (client, server) = handshake(&identity, &trust, "example.com");
        assert_eq!(client, Err(NetError::TlsNameMismatch));
        assert_eq!(server, Err(NetError::TlsPeerRefused));

        let (client, server) = handshake(&identity, &other_trust, "localhost");
        assert_eq!(client, Err(NetError::TlsUnknownIssuer));
        assert_eq!(server, Err(NetError::TlsPeerRefused));

        // Mozilla's roots do not know a self-signed certificate.
        let (client, _) = handshake(&identity, &TlsTrust::default(), "localhost");
        assert_eq!(client, Err(NetError::TlsUnknownIssuer));

        assert!(TlsSession::client(trust.client_config(), "not a name!").is_err());
    }

    #[test]
    fn plaintext_to_a_tls_server_fails_its_handshake() {
        let (identity, _) = identity(&["localhost"]);
        let (client_tcp, server_tcp) = pair();
        let mut server = TlsSession::server(identity.config.clone()).unwrap();
        (&client_tcp)
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        assert_eq!(
            until(|| server.read(&server_tcp, 64)),
            Err(NetError::TlsHandshake)
        );
        // A peer that closes mid-handshake fails it too.
        let (client_tcp, server_tcp) = pair();
        let mut server = TlsSession::server(identity.config.clone()).unwrap();
        drop(client_tcp);
        assert_eq!(
            until(|| server.read(&server_tcp, 64)),
            Err(NetError::TlsHandshake)
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_the_reason() {
        let (cert, key) = certificate(&["localhost"]);
        let (_, other_key) = certificate(&["localhost"]);
        let no_cert = TlsIdentity::from_pem(b"", key.as_bytes()).unwrap_err();
        assert!(
            no_cert.to_string().contains("BEGIN CERTIFICATE"),
            "{no_cert}"
        );
        let no_key = TlsIdentity::from_pem(cert.as_bytes(), b"").unwrap_err();
        assert!(no_key.to_string().contains("private key"), "{no_key}");
        let mismatch = TlsIdentity::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(mismatch, TlsConfigError::Rustls(_)), "{mismatch}");
        let missing =
            TlsIdentity::from_pem_files(Path::new("/nonexistent/c.pem"), Path::new("k.pem"))
                .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/c.pem"),
            "{missing}"
        );
        let options = TlsOptions {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..TlsOptions::default()
        };
        assert!(matches!(options.check(), Err(TlsConfigError::NoIdentity)));
        assert!(options.listener("127.0.0.1:0".parse().unwrap()).is_none());
    }
}

//! What one try of a socket operation comes to: ready, failed with a WIT
//! `net-error`, or "would block" on a descriptor. Shared by the sockets
//! (`net_sockets`) and the TLS sessions on them (`tls`); free of wasmtime.

use std::io;
use std::os::fd::RawFd;

use crate::io::poller::Interest;

/// The WIT `net-error` cases, in order: a failed call returns
/// `-(case + 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum NetError {
    Denied = 0,
    BadHandle,
    BadAddress,
    WrongKind,
    TimedOut,
    Interrupted,
    ConnectionRefused,
    ConnectionReset,
    ConnectionAborted,
    NotConnected,
    AddressInUse,
    AddressNotAvailable,
    BrokenPipe,
    TooManyDescriptors,
    Unreachable,
    InvalidInput,
    Other,
    /// TLS: the peer's certificate chains to no trusted root.
    TlsUnknownIssuer,
    /// TLS: the peer's certificate is not for the name connected to.
    TlsNameMismatch,
    /// TLS: the peer's certificate is expired, not yet valid, revoked,
    /// badly signed or malformed.
    TlsBadCertificate,
    /// TLS: the peer refused the handshake (it sent an alert).
    TlsPeerRefused,
    /// TLS: the handshake failed otherwise (the peer does not speak TLS,
    /// shares no version or cipher, or closed the connection).
    TlsHandshake,
    /// Another TLS session would pass the guest's host memory limit.
    HostMemoryFull,
}

impl NetError {
    /// What a hub function returns for it.
    pub(crate) fn code(self) -> i64 {
        -(self as i64 + 1)
    }

    pub(crate) fn of(e: &io::Error) -> NetError {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => NetError::ConnectionRefused,
            K::ConnectionReset => NetError::ConnectionReset,
            K::ConnectionAborted => NetError::ConnectionAborted,
            K::NotConnected => NetError::NotConnected,
            K::AddrInUse => NetError::AddressInUse,
            K::AddrNotAvailable => NetError::AddressNotAvailable,
            K::BrokenPipe => NetError::BrokenPipe,
            K::TimedOut => NetError::TimedOut,
            K::HostUnreachable | K::NetworkUnreachable => NetError::Unreachable,
            K::InvalidInput => NetError::InvalidInput,
            K::PermissionDenied => NetError::Denied,
            _ => match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) => NetError::TooManyDescriptors,
                _ => NetError::Other,
            },
        }
    }
}

/// One try of an operation.
pub(crate) enum Try<T> {
    Ready(T),
    Failed(NetError),
    /// Wait until this descriptor is ready so, then try again.
    WouldBlock(RawFd, Interest),
}

impl<T> Try<T> {
    pub(crate) fn of(result: io::Result<T>, fd: RawFd, interest: Interest) -> Try<T> {
        match result {
            Ok(v) => Try::Ready(v),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Try::WouldBlock(fd, interest),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Try::WouldBlock(fd, interest),
            Err(e) => Try::Failed(NetError::of(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NetError;

    /// A guest decodes `-(case + 1)` by the WIT's order: the host's cases
    /// must be the WIT's, in its order.
    #[test]
    fn the_cases_are_the_wits_in_order() {
        let mut resolve = wit_parser::Resolve::default();
        resolve
            .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
            .unwrap();
        let (_, net_error) = resolve
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("net-error"))
            .expect("wit/hub.wit declares net-error");
        let wit_parser::TypeDefKind::Enum(cases) = &net_error.kind else {
            panic!("net-error is an enum");
        };
        let wit: Vec<&str> = cases.cases.iter().map(|c| c.name.as_str()).collect();
        use NetError as E;
        let ours = [
            E::Denied,
            E::BadHandle,
            E::BadAddress,
            E::WrongKind,
            E::TimedOut,
            E::Interrupted,
            E::ConnectionRefused,
            E::ConnectionReset,
            E::ConnectionAborted,
            E::NotConnected,
            E::AddressInUse,
            E::AddressNotAvailable,
            E::BrokenPipe,
            E::TooManyDescriptors,
            E::Unreachable,
            E::InvalidInput,
            E::Other,
            E::TlsUnknownIssuer,
            E::TlsNameMismatch,
            E::TlsBadCertificate,
            E::TlsPeerRefused,
            E::TlsHandshake,
            E::HostMemoryFull,
        ];
        assert_eq!(ours.len(), wit.len(), "a case is missing on one side");
        for case in ours {
            // `TlsUnknownIssuer` is `tls-unknown-issuer`.
            let mut kebab = String::new();
            for c in format!("{case:?}").chars() {
                if c.is_ascii_uppercase() && !kebab.is_empty() {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            assert_eq!(
                wit[case as usize], kebab,
                "{case:?} is at {}",
                case as usize
            );
        }
    }
}

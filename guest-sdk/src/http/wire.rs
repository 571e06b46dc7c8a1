//! What the server and the client both read off a connection: bytes kept
//! between messages, bodies of a known length, chunked bodies.

use std::io;
use std::time::Duration;

use http::header::HeaderName;
use http::HeaderMap;

use crate::net::TcpStream;

/// Why a message could not be read.
pub(super) enum WireError {
    /// The connection failed or timed out.
    Io(io::Error),
    /// The peer closed before the message ended.
    Closed,
    /// The body is larger than allowed.
    TooLarge,
    /// Not HTTP: what was wrong.
    Malformed(&'static str),
}

impl From<io::Error> for WireError {
    fn from(error: io::Error) -> WireError {
        WireError::Io(error)
    }
}

impl From<WireError> for io::Error {
    fn from(error: WireError) -> io::Error {
        match error {
            WireError::Io(e) => e,
            WireError::Closed => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection mid-message",
            ),
            WireError::TooLarge => io::Error::new(
                io::ErrorKind::InvalidData,
                "the body is larger than allowed",
            ),
            WireError::Malformed(why) => io::Error::new(io::ErrorKind::InvalidData, why),
        }
    }
}

/// A stream and the bytes read off it but not yet used.
pub(super) struct Reader {
    pub stream: TcpStream,
    pub unread: Vec<u8>,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            unread: Vec::new(),
        }
    }

    /// Reads more bytes into `unread`, waiting up to `timeout`; 0 when the
    /// peer has closed.
    pub fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(timeout))?;
        let bytes = self.stream.recv(16 * 1024)?;
        self.unread.extend_from_slice(&bytes);
        Ok(bytes.len())
    }

    /// Takes `n` bytes.
    pub fn read_exactly(&mut self, n: usize, timeout: Duration) -> Result<Vec<u8>, WireError> {
        while self.unread.len() < n {
            if self.fill(timeout)? == 0 {
                return Err(WireError::Closed);
            }
        }
        Ok(self.unread.drain(..n).collect())
    }

    /// Takes everything until the peer closes, at most `most` bytes.
    pub fn read_to_close(&mut self, timeout: Duration, most: usize) -> Result<Vec<u8>, WireError> {
        while self.fill(timeout)? > 0 {
            if self.unread.len() > most {
                return Err(WireError::TooLarge);
            }
        }
        Ok(std::mem::take(&mut self.unread))
    }

    /// Takes a line ending in CRLF (without it), at most `most` long.
    pub fn read_line(&mut self, timeout: Duration, most: usize) -> Result<Vec<u8>, WireError> {
        loop {
            if let Some(end) = find(&self.unread, b"\r\n") {
                let line = self.unread[..end].to_vec();
                self.unread.drain(..end + 2);
                return Ok(line);
            }
            if self.unread.len() > most {
                return Err(WireError::Malformed("a malformed chunk"));
            }
            if self.fill(timeout)? == 0 {
                return Err(WireError::Closed);
            }
        }
    }

    /// Takes a chunked body of at most `most` bytes; its trailers (at most
    /// `most_trailer` bytes a line) are dropped.
    pub fn read_chunked(
        &mut self,
        timeout: Duration,
        most: usize,
        most_trailer: usize,
    ) -> Result<Vec<u8>, WireError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(timeout, 1024)?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                .ok_or(WireError::Malformed("a malformed chunk size"))?;
            if size == 0 {
                while !self.read_line(timeout, most_trailer)?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > most {
                return Err(WireError::TooLarge);
            }
            body.extend(self.read_exactly(size, timeout)?);
            if !self.read_line(timeout, 2)?.is_empty() {
                return Err(WireError::Malformed("a malformed chunk"));
            }
        }
    }
}

/// Where `needle` first is in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether a header `name` lists `token` (comma-separated, any case).
pub(super) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

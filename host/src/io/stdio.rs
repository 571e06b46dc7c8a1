//! The host's stdin, stdout and stderr as a guest that inherits them sees
//! them: reads and writes that never block the hub's OS thread.
//!
//! wasmtime-wasi reads and writes inherited streams with blocking calls, so
//! one green thread reading an empty stdin (or writing to a full pipe)
//! stalled every green thread of every guest. The hub answers `fd_read` and
//! `fd_write` on those descriptors itself: it asks the kernel whether the
//! host descriptor is ready (`poll` with no wait), reads or writes only
//! then, and otherwise parks the green thread in the hub's
//! [`Poller`](crate::io::poller::Poller) until it is.
//!
//! The descriptors are left in blocking mode (their open file description is
//! shared with the embedder and the parent shell, which would see
//! `EAGAIN` otherwise), so a transfer after readiness is kept within what
//! cannot block: a read returns what is there, and a write to a pipe is at
//! most `PIPE_BUF` bytes, which fits in the room `POLLOUT` promises. Another
//! reader of the same stdin (the embedder) could take the bytes between the
//! check and the read; that read then waits, as it would in any program.

use std::os::fd::{BorrowedFd, RawFd};

use crate::abi::errno;

/// Most bytes one read takes: what a caller asks beyond it comes with its
/// next read.
const READ_CHUNK: usize = 64 * 1024;

/// Which of a guest's descriptors are the host's own stdin, stdout and
/// stderr: 0, 1 and 2 to begin with (those it inherits), wherever the guest
/// moves them (`fd_renumber`) until it closes them. Followed past 2: a
/// stream moved to 3 blocked the hub's thread when it was handed to
/// wasmtime-wasi as an ordinary descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostStdio {
    /// By host stream (0, 1, 2): the guest's descriptor for it, if it still
    /// has one.
    guest_fd: [Option<u32>; 3],
}

impl HostStdio {
    /// The host streams a guest starts with: stdin if it inherits it, and
    /// stdout and stderr unless they are captured.
    pub fn new(stdin: bool, stdout_and_stderr: bool) -> HostStdio {
        HostStdio {
            guest_fd: [
                stdin.then_some(0),
                stdout_and_stderr.then_some(1),
                stdout_and_stderr.then_some(2),
            ],
        }
    }

    /// The host stream behind the guest's `fd` (0, 1 or 2), if it is one.
    pub fn host_fd(&self, fd: u32) -> Option<RawFd> {
        let host = self.guest_fd.iter().position(|&g| g == Some(fd))?;
        Some(host as RawFd)
    }

    /// The guest closed `fd`.
    pub fn closed(&mut self, fd: u32) {
        for slot in &mut self.guest_fd {
            if *slot == Some(fd) {
                *slot = None;
            }
        }
    }

    /// The guest moved `from` onto `to` (`fd_renumber`): what was `to` is
    /// closed, and a host stream at `from` is at `to` now.
    pub fn renumbered(&mut self, from: u32, to: u32) {
        if from == to {
            return;
        }
        self.closed(to);
        for slot in &mut self.guest_fd {
            if *slot == Some(from) {
                *slot = Some(to);
            }
        }
    }
}

/// Whether the host stream `host` (0, 1 or 2) is one to read (stdin) or to
/// write: a read of the host's stdout would read a terminal's keystrokes,
/// as a terminal's descriptor is open both ways.
pub(crate) fn is_input(host: RawFd) -> bool {
    host == 0
}

/// The process's stderr for the host's own log lines, written without ever
/// blocking: the hub logs from its own thread, and a guest that filled a
/// stderr pipe nobody reads made the host's next log line stop the hub
/// (and every guest on it). A line that does not fit now is dropped and
/// counted; the next one that fits says how many were.
///
/// ```no_run
/// tracing_subscriber::fmt().with_writer(|| wasmlet_host::StderrLog).init();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StderrLog;

/// Log lines [`StderrLog`] dropped since it last said so.
static DROPPED_LINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::io::Write for StderrLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        // SAFETY: descriptor 2 is the process's stderr; were it closed, the
        // write fails with EBADF (or reaches what took its number, as any
        // program's stderr write would).
        let fd = unsafe { BorrowedFd::borrow_raw(2) };
        let dropped = DROPPED_LINES.swap(0, Relaxed);
        if dropped > 0 {
            let note = format!("wasmlet: {dropped} log lines dropped: stderr was full\n");
            if !matches!(try_write(fd, note.as_bytes()), Attempt::Done(_)) {
                DROPPED_LINES.fetch_add(dropped + 1, Relaxed);
                return Ok(buf.len());
            }
        }
        match try_write(fd, buf) {
            Attempt::Done(n) => Ok(n),
            // Full: dropped. Failed (stderr closed): there is nowhere to say
            // it.
            Attempt::NotReady | Attempt::Failed(_) => {
                DROPPED_LINES.fetch_add(1, Relaxed);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a transfer that must not block did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt<T> {
    /// Done: the bytes read (empty at end of input), or how many written.
    Done(T),
    /// The descriptor is not ready: wait for it in the poller.
    NotReady,
    /// It failed: the WASI errno.
    Failed(i32),
}

/// Reads up to `max` bytes from `fd` if that cannot block.
pub(crate) fn try_read(fd: BorrowedFd<'_>, max: usize) -> Attempt<Vec<u8>> {
    match ready(fd, rustix::event::PollFlags::IN) {
        Ok(true) => {}
        Ok(false) => return Attempt::NotReady,
        Err(errno) => return Attempt::Failed(errno),
    }
    let mut buf = vec![0; max.min(READ_CHUNK)];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Attempt::Done(buf);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Attempt::NotReady,
            Err(e) => return Attempt::Failed(wasi_errno(e)),
        }
    }
}

/// Writes a prefix of `bytes` to `fd` if that cannot block; how many bytes.
pub(crate) fn try_write(fd: BorrowedFd<'_>, bytes: &[u8]) -> Attempt<usize> {
    match ready(fd, rustix::event::PollFlags::OUT) {
        Ok(true) => {}
        Ok(false) => return Attempt::NotReady,
        Err(errno) => return Attempt::Failed(errno),
    }
    // A regular file never blocks: it takes everything. Anything else takes
    // at most PIPE_BUF bytes once it is writable.
    let regular = rustix::fs::fstat(fd)
        .is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_file());
    let len = if regular {
        bytes.len()
    } else {
        bytes.len().min(libc::PIPE_BUF)
    };
    loop {
        match rustix::io::write(fd, &bytes[..len]) {
            Ok(n) => return Attempt::Done(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Attempt::NotReady,
            Err(e) => return Attempt::Failed(wasi_errno(e)),
        }
    }
}

/// Whether `fd` is ready for `flags` (or has an error or hang-up to
/// report), without waiting.
fn ready(fd: BorrowedFd<'_>, flags: rustix::event::PollFlags) -> Result<bool, i32> {
    let mut fds = [rustix::event::PollFd::new(&fd, flags)];
    loop {
        match rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())) {
            Ok(0) => return Ok(false),
            Ok(_) => {
                if fds[0].revents().contains(rustix::event::PollFlags::NVAL) {
                    return Err(errno::BADF);
                }
                return Ok(true);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(wasi_errno(e)),
        }
    }
}

fn wasi_errno(e: rustix::io::Errno) -> i32 {
    match e {
        rustix::io::Errno::BADF => errno::BADF,
        rustix::io::Errno::PIPE => errno::PIPE,
        rustix::io::Errno::INVAL => errno::INVAL,
        _ => errno::IO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_read_with_nothing_to_read_does_not_block() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        assert_eq!(try_read(rx.as_fd(), 100), Attempt::NotReady);
        tx.write_all(b"hello").unwrap();
        assert_eq!(try_read(rx.as_fd(), 3), Attempt::Done(b"hel".to_vec()));
        drop(tx);
        assert_eq!(try_read(rx.as_fd(), 100), Attempt::Done(b"lo".to_vec()));
        assert_eq!(
            try_read(rx.as_fd(), 100),
            Attempt::Done(Vec::new()),
            "end of input"
        );
    }

    #[test]
    fn a_write_to_a_full_pipe_does_not_block() {
        let (tx, mut rx) = UnixStream::pair().unwrap();
        let chunk = vec![7u8; 1 << 20];
        let mut written = 0;
        loop {
            match try_write(tx.as_fd(), &chunk) {
                Attempt::Done(n) => written += n,
                Attempt::NotReady => break,
                Attempt::Failed(e) => panic!("errno {e}"),
            }
            assert!(written < 64 << 20, "never full?");
        }
        let mut buf = vec![0; written];
        rx.read_exact(&mut buf).unwrap();
        assert!(matches!(try_write(tx.as_fd(), &chunk), Attempt::Done(_)));
    }

    #[test]
    fn a_write_to_a_closed_pipe_fails_with_epipe() {
        let (tx, rx) = UnixStream::pair().unwrap();
        drop(rx);
        assert_eq!(try_write(tx.as_fd(), b"x"), Attempt::Failed(errno::PIPE));
    }

    #[test]
    fn the_guest_can_move_and_close_its_standard_descriptors() {
        let mut stdio = HostStdio::new(true, true);
        assert_eq!(stdio.host_fd(0), Some(0));
        stdio.renumbered(2, 1);
        assert_eq!((stdio.host_fd(1), stdio.host_fd(2)), (Some(2), None));
        stdio.closed(0);
        stdio.renumbered(7, 0);
        assert_eq!(stdio.host_fd(0), None, "a file moved onto 0 is WASI's own");
        assert_eq!(HostStdio::new(false, false).host_fd(1), None);
        assert_eq!(stdio.host_fd(u32::MAX), None);
    }

    #[test]
    fn a_host_stream_moved_past_2_is_still_the_hosts() {
        let mut stdio = HostStdio::new(true, true);
        stdio.renumbered(1, 3);
        assert_eq!((stdio.host_fd(1), stdio.host_fd(3)), (None, Some(1)));
        stdio.renumbered(0, 10);
        assert_eq!(stdio.host_fd(10), Some(0));
        stdio.renumbered(3, 3);
        assert_eq!(stdio.host_fd(3), Some(1));
        stdio.renumbered(10, 3);
        assert_eq!(
            (stdio.host_fd(3), stdio.host_fd(10)),
            (Some(0), None),
            "stdout at 3 was closed by the move"
        );
        assert!(is_input(0) && !is_input(1) && !is_input(2));
    }
}

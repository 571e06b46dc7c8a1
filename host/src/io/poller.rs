//! The hub's readiness poller: which green threads wait for which host
//! descriptor to become readable or writable, and the OS poller (epoll,
//! through the `polling` crate) that says when one does.
//!
//! A green thread that would block on a host descriptor (the host's stdin
//! or stdout when a guest inherits them, and guests' sockets) registers here and
//! suspends; the hub asks the OS poller, without waiting while any green
//! thread is runnable, and until the next timer when none is, and wakes the
//! waiters of every descriptor that became ready. So only the waiting green
//! thread waits.
//!
//! Each descriptor is registered once however many green threads (of however
//! many guests) wait on it, in oneshot mode, and re-armed while waiters
//! remain. Its waiters are served one per readiness, in the order they came
//! (see [`Poller::poll`]). A waiter is an opaque `W` the hub checks when it is woken (its
//! green thread may have been killed meanwhile): the poller knows nothing of
//! the scheduler.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

/// What a waiter waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// The green threads waiting on one descriptor.
struct Source<W> {
    readers: VecDeque<W>,
    writers: VecDeque<W>,
    /// Waiters a prune left: the lists are pruned again when they have
    /// doubled, so waiters of killed green threads cannot pile up.
    kept: usize,
}

/// Waits for host descriptors on behalf of green threads.
pub(crate) struct Poller<W> {
    os: Arc<polling::Poller>,
    sources: FxHashMap<RawFd, Source<W>>,
    events: polling::Events,
}

impl<W: Copy> Poller<W> {
    /// # Errors
    /// If the OS poller cannot be made (out of descriptors).
    pub fn new() -> io::Result<Poller<W>> {
        Ok(Poller {
            os: Arc::new(polling::Poller::new()?),
            sources: FxHashMap::default(),
            events: polling::Events::new(),
        })
    }

    /// The OS poller, for other threads to [`polling::Poller::notify`] it.
    pub fn notifier(&self) -> Arc<polling::Poller> {
        self.os.clone()
    }

    /// True while any green thread waits here.
    pub fn is_waiting(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Records that `waiter` waits for `fd` to be ready for `interest`.
    /// `is_live` says which earlier waiters are still waiting (used to drop
    /// the others now and then).
    ///
    /// # Errors
    /// If the descriptor cannot be polled (a regular file or `/dev/null`,
    /// which epoll refuses with `EPERM`: they never block, so the caller
    /// goes on at once), or the OS poller fails.
    pub fn wait_for(
        &mut self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        waiter: W,
        is_live: impl Fn(&W) -> bool,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        let source = match self.sources.entry(raw) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                // SAFETY: the descriptor stays open while it is registered:
                // it is the host's stdin, stdout or stderr, or a guest's
                // socket the hub owns, which is `forget`-ten before it is
                // closed; and it is deleted from the poller as soon as no
                // green thread waits on it (in `poll`).
                unsafe { self.os.add(raw, polling::Event::none(key_of(raw)))? };
                entry.insert(Source {
                    readers: VecDeque::new(),
                    writers: VecDeque::new(),
                    kept: 0,
                })
            }
        };
        match interest {
            Interest::Read => source.readers.push_back(waiter),
            Interest::Write => source.writers.push_back(waiter),
        }
        if source.readers.len() + source.writers.len() > 2 * source.kept.max(32) {
            source.readers.retain(&is_live);
            source.writers.retain(&is_live);
            source.kept = source.readers.len() + source.writers.len();
        }
        let event = event_for(raw, source);
        self.os.modify(fd, event)
    }

    /// Drops the waiters that `is_live` says have left (killed, or their
    /// guest ended), and the descriptors no one waits on any more.
    ///
    /// # Errors
    /// If the OS poller fails.
    pub fn prune(&mut self, is_live: impl Fn(&W) -> bool) -> io::Result<()> {
        let mut result = Ok(());
        self.sources.retain(|&raw, source| {
            source.readers.retain(&is_live);
            source.writers.retain(&is_live);
            source.kept = source.readers.len() + source.writers.len();
            if source.kept > 0 {
                return true;
            }
            // SAFETY: registered descriptors are open (see `wait_for`).
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            if let Err(e) = self.os.delete(fd) {
                result = Err(e);
            }
            false
        });
        result
    }

    /// Forgets `fd`, which is about to be closed: it leaves the OS poller,
    /// and its waiters are handed back (to wake: their wait is over).
    ///
    /// # Errors
    /// If the OS poller fails.
    pub fn forget(&mut self, fd: RawFd) -> io::Result<Vec<W>> {
        let Some(source) = self.sources.remove(&fd) else {
            return Ok(Vec::new());
        };
        // SAFETY: registered descriptors are open (see `wait_for`); the
        // caller closes it only after this.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        self.os.delete(borrowed)?;
        let mut waiters = Vec::from(source.readers);
        waiters.extend(source.writers);
        Ok(waiters)
    }

    /// Waits up to `timeout` (None: until a descriptor is ready or
    /// [`polling::Poller::notify`] is called) and hands waiters of every
    /// descriptor that became ready to `wake`, which says whether the waiter
    /// was still waiting (and so is served).
    ///
    /// Waiters of one descriptor are served in turn: a readiness serves the
    /// longest-waiting live reader (or writer) alone, and the others keep
    /// their places. A green thread that has read and comes back to wait
    /// goes behind them, so two readers of one socket take its chunks in
    /// turn (as eventlet's do) instead of the first taking every one. If the
    /// one served leaves data unread, the level-triggered re-arm reports the
    /// descriptor again at the next poll and the next waiter is served. An
    /// error or hang-up wakes every waiter: each must see it.
    ///
    /// # Errors
    /// If the OS poller fails (not on an interrupted wait: that returns
    /// with nothing woken).
    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        mut wake: impl FnMut(W) -> bool,
    ) -> io::Result<()> {
        self.events.clear();
        match self.os.wait(&mut self.events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            let raw = event.key as RawFd;
            let Some(source) = self.sources.get_mut(&raw) else {
                continue;
            };
            // An error or hang-up is reported as both, to every waiter: the
            // read or write that follows sees it.
            let failed = event.is_err() == Some(true) || event.is_interrupt();
            if failed {
                for waiter in source.readers.drain(..).chain(source.writers.drain(..)) {
                    wake(waiter);
                }
            } else {
                if event.readable {
                    serve_one(&mut source.readers, &mut wake);
                }
                if event.writable {
                    serve_one(&mut source.writers, &mut wake);
                }
            }
            // SAFETY: registered descriptors are open (see `wait_for`), so
            // the borrow is of an open descriptor.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            if source.readers.is_empty() && source.writers.is_empty() {
                self.sources.remove(&raw);
                self.os.delete(fd)?;
            } else {
                let event = event_for(raw, source);
                self.os.modify(fd, event)?;
            }
        }
        Ok(())
    }
}

/// Wakes the longest-waiting waiter of `waiters` that is still waiting,
/// dropping those before it that have left.
fn serve_one<W>(waiters: &mut VecDeque<W>, wake: &mut impl FnMut(W) -> bool) {
    while let Some(waiter) = waiters.pop_front() {
        if wake(waiter) {
            return;
        }
    }
}

fn key_of(raw: RawFd) -> usize {
    raw as usize
}

fn event_for<W>(raw: RawFd, source: &Source<W>) -> polling::Event {
    polling::Event::new(
        key_of(raw),
        !source.readers.is_empty(),
        !source.writers.is_empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::net::UnixStream;

    /// Polls once, waiting up to `timeout`; every waiter handed out (each
    /// still waiting).
    fn poll_all(poller: &mut Poller<u32>, timeout: Duration) -> Vec<u32> {
        let mut woken = Vec::new();
        poller
            .poll(Some(timeout), |w| {
                woken.push(w);
                true
            })
            .unwrap();
        woken
    }

    #[test]
    fn a_reader_is_woken_once_its_descriptor_has_data() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut poller = Poller::new().unwrap();
        poller
            .wait_for(rx.as_fd(), Interest::Read, 7u32, |_| true)
            .unwrap();
        let mut woken = poll_all(&mut poller, Duration::ZERO);
        assert!(woken.is_empty(), "no data yet");
        assert!(poller.is_waiting());
        tx.write_all(b"x").unwrap();
        woken.extend(poll_all(&mut poller, Duration::from_secs(5)));
        assert_eq!(woken, [7]);
        assert!(!poller.is_waiting(), "the descriptor is deregistered");
    }

    #[test]
    fn readers_and_writers_of_one_descriptor_wake_on_their_own_readiness() {
        let (_tx, rx) = UnixStream::pair().unwrap();
        let mut poller = Poller::new().unwrap();
        poller
            .wait_for(rx.as_fd(), Interest::Read, 1u32, |_| true)
            .unwrap();
        poller
            .wait_for(rx.as_fd(), Interest::Write, 2u32, |_| true)
            .unwrap();
        let woken = poll_all(&mut poller, Duration::from_secs(5));
        assert_eq!(woken, [2], "writable at once, not readable");
        assert!(poller.is_waiting(), "the reader still waits, re-armed");
    }

    #[test]
    fn waiters_that_left_are_pruned_when_the_list_doubles() {
        let (_tx, rx) = UnixStream::pair().unwrap();
        let mut poller = Poller::new().unwrap();
        for w in 0..10_000u32 {
            // Only the newest waiter is still waiting.
            poller
                .wait_for(rx.as_fd(), Interest::Read, w, |&x| x == w)
                .unwrap();
        }
        let source = &poller.sources[&rx.as_raw_fd()];
        assert!(source.readers.len() <= 66, "{}", source.readers.len());
    }

    #[test]
    fn pruning_forgets_descriptors_whose_waiters_all_left() {
        let (_tx, rx) = UnixStream::pair().unwrap();
        let mut poller = Poller::new().unwrap();
        poller
            .wait_for(rx.as_fd(), Interest::Read, 1u32, |_| true)
            .unwrap();
        poller
            .wait_for(rx.as_fd(), Interest::Read, 2u32, |_| true)
            .unwrap();
        poller.prune(|&w| w == 2).unwrap();
        assert!(poller.is_waiting());
        poller.prune(|_| false).unwrap();
        assert!(!poller.is_waiting());
        // Deregistered: it can be registered afresh.
        poller
            .wait_for(rx.as_fd(), Interest::Read, 3u32, |_| true)
            .unwrap();
    }

    #[test]
    fn a_regular_file_cannot_be_polled_and_says_so() {
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let mut poller = Poller::new().unwrap();
        let error = poller
            .wait_for(file.as_fd(), Interest::Read, 1u32, |_| true)
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn readers_of_one_descriptor_are_served_in_turn() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut poller = Poller::new().unwrap();
        for w in [1u32, 2, 3] {
            poller
                .wait_for(rx.as_fd(), Interest::Read, w, |_| true)
                .unwrap();
        }
        tx.write_all(b"x").unwrap();
        let mut woken = Vec::new();
        // Reader 1 has left (killed, say): the next one is served instead.
        poller
            .poll(Some(Duration::from_secs(5)), |w| {
                woken.push(w);
                w != 1
            })
            .unwrap();
        assert_eq!(woken, [1, 2], "one live reader per readiness");
        // Reader 2 read nothing and comes back: it goes behind reader 3,
        // which the level-triggered re-arm serves next.
        poller
            .wait_for(rx.as_fd(), Interest::Read, 2, |_| true)
            .unwrap();
        assert_eq!(poll_all(&mut poller, Duration::from_secs(5)), [3]);
    }

    #[test]
    fn a_hang_up_wakes_every_waiter() {
        let (tx, rx) = UnixStream::pair().unwrap();
        let mut poller = Poller::new().unwrap();
        for w in [1u32, 2, 3] {
            poller
                .wait_for(rx.as_fd(), Interest::Read, w, |_| true)
                .unwrap();
        }
        drop(tx);
        let woken = poll_all(&mut poller, Duration::from_secs(5));
        assert_eq!(woken, [1, 2, 3]);
    }
}

//! Waits for host descriptors (the poller), guests' descriptors and sockets,
//! and the hub's report.

use super::*;

impl HubState {
    /// Starts the green thread waiting for host descriptor `fd` to be ready
    /// for `interest`. False if it need not wait: the descriptor cannot be
    /// polled (a regular file is always ready).
    ///
    /// # Errors
    /// If the hub's poller cannot be made or fails (out of descriptors):
    /// the caller reports an I/O error.
    pub fn io_wait(
        &mut self,
        guest: GuestKey,
        thread: ThreadKey,
        fd: std::os::fd::BorrowedFd<'_>,
        interest: Interest,
        timeout: Option<Duration>,
    ) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        if self.poller.is_none() {
            let poller = Poller::new()?;
            self.control.wake_poller_too(poller.notifier());
            self.poller = Some(poller);
        }
        let poller = self.poller.as_mut().expect("made above");
        let write = interest == Interest::Write;
        let waiter =
            self.sched
                .io_wait(guest, thread, fd.as_raw_fd(), write, timeout, Instant::now);
        let sched = &self.sched;
        match poller.wait_for(fd, interest, waiter, |w| sched.io_waiter_is_live(w)) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.sched.io_wait_abandoned(guest, thread);
                match e.raw_os_error() {
                    Some(libc::EPERM) => Ok(false),
                    _ => Err(e),
                }
            }
        }
    }

    /// Wakes the green threads whose host descriptors became ready, waiting
    /// for one up to `timeout` (None: until one is, or a handle calls).
    pub fn poll_io(&mut self, timeout: Option<Duration>) {
        let Some(poller) = self.poller.as_mut() else {
            return;
        };
        let sched = &mut self.sched;
        if let Err(e) = poller.poll(timeout, |waiter| sched.io_ready(waiter)) {
            tracing::error!("the hub's poller failed: {e}");
        }
    }

    /// Every live guest of the hub: what it uses, and each green thread
    /// with what it does or waits for (the deadlock report's format).
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut report = String::new();
        let live = self.sched.live_guests();
        let _ = writeln!(
            report,
            "hub: {} live guests, {} green threads, {} calls in flight",
            live.len(),
            self.sched.alive(),
            self.calls.len()
        );
        for guest in live {
            let Some(usage) = self.usage(guest) else {
                continue;
            };
            let kind = if self.guests[guest].plugin {
                "plugin"
            } else {
                "program"
            };
            let calls = self.calls.keys().filter(|k| k.0 == guest).count();
            let _ = writeln!(
                report,
                "guest {guest} ({kind}): {} green threads, {calls} calls in flight, cpu {:.3} s, \
                 linear memory {} KiB, host memory {} KiB, {} files open",
                usage.green_threads,
                usage.cpu_time.as_secs_f64(),
                usage.memory >> 10,
                usage.host_memory >> 10,
                usage.descriptors
            );
            report.push_str(&self.sched.report(guest, |id| {
                let call = self.calls.get(&(guest, id))?;
                Some(format!("call of `{}`", call.name))
            }));
        }
        report
    }

    /// True while a plugin guest lives (it may be called at any time).
    pub fn plugin_alive(&self) -> bool {
        self.guests
            .iter()
            .enumerate()
            .any(|(key, g)| g.plugin && self.sched.is_live(GuestKey(key)))
    }

    /// True while a green thread waits for a host descriptor. With
    /// `prune`, waiters that have left (killed, or their guest ended) are
    /// dropped first, so that the hub does not wait for nobody.
    pub fn io_waiting(&mut self, prune: bool) -> bool {
        let Some(poller) = self.poller.as_mut() else {
            return false;
        };
        if prune {
            let sched = &self.sched;
            if let Err(e) = poller.prune(|w| sched.io_waiter_is_live(w)) {
                tracing::error!("the hub's poller failed: {e}");
            }
        }
        poller.is_waiting()
    }

    /// True if the guest may open another descriptor: it holds fewer than
    /// its `max_descriptors`, and its neighbours' guarantees leave it room
    /// (see [`crate::io::descriptor_budget`]).
    pub fn may_open(&mut self, guest: GuestKey) -> bool {
        let record = &mut self.guests[guest];
        let held = record.held_descriptors();
        record.descriptors.may_open(held).is_ok()
    }

    /// The guest opened or closed a descriptor: the process's count
    /// follows.
    pub fn descriptors_changed(&mut self, guest: GuestKey) {
        let record = &mut self.guests[guest];
        let held = record.held_descriptors();
        record.descriptors.update(held);
    }

    /// Closes a socket of the guest: it leaves the poller first, and green
    /// threads waiting on it are woken (their call then finds it closed).
    ///
    /// # Errors
    /// `bad-handle` if the guest has no such socket.
    pub fn close_socket(&mut self, guest: GuestKey, handle: u32) -> Result<(), NetError> {
        let socket = self.guests[guest].sockets.remove(handle)?;
        self.forget_descriptor(socket.raw_fd());
        drop(socket);
        self.descriptors_changed(guest);
        Ok(())
    }

    /// A descriptor about to be closed leaves the poller; its waiters wake.
    pub(super) fn forget_descriptor(&mut self, fd: std::os::fd::RawFd) {
        let Some(poller) = self.poller.as_mut() else {
            return;
        };
        match poller.forget(fd) {
            Ok(waiters) => waiters.into_iter().for_each(|w| {
                self.sched.io_ready(w);
            }),
            Err(e) => tracing::error!("the hub's poller failed: {e}"),
        }
    }

    /// The guest opened file or directory `fd` (WASI's `path_open`).
    pub fn file_opened(&mut self, guest: GuestKey, fd: u32) {
        self.guests[guest].opened.insert(fd);
        self.descriptors_changed(guest);
    }

    /// The guest closed `fd` (WASI's `fd_close`).
    pub fn file_closed(&mut self, guest: GuestKey, fd: u32) {
        let record = &mut self.guests[guest];
        record.host_stdio.closed(fd);
        if record.opened.remove(&fd) {
            self.descriptors_changed(guest);
        }
    }

    /// The guest moved `from` onto `to` (WASI's `fd_renumber`): `to` was
    /// closed and `from` took its number.
    pub fn file_renumbered(&mut self, guest: GuestKey, from: u32, to: u32) {
        let record = &mut self.guests[guest];
        record.host_stdio.renumbered(from, to);
        let moved = record.opened.remove(&from);
        record.opened.remove(&to);
        if moved {
            record.opened.insert(to);
        }
        self.descriptors_changed(guest);
    }
}

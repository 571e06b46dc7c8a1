//! The WASI functions the hub answers itself instead of wasmtime-wasi,
//! because wasmtime-wasi's would block the hub's OS thread (and with it every
//! green thread of every guest) or cost too much per call:
//!
//! | function | why | instead |
//! |---|---|---|
//! | `poll_oneoff` | sleeps the OS thread | clock subscriptions become a hub timer ([`crate::host_functions::wasi_poll`]) |
//! | `clock_time_get` | a memory-export lookup per call | the hub's clocks ([`crate::clock`]) |
//! | `sched_yield` | yields the OS thread, not the green thread | the hub's `sleep(0)`: std's `thread::yield_now` lets the guest's other green threads run |
//! | `fd_read`, `fd_write` on the host's stdin/stdout/stderr (wherever the guest moved them) | block on the host descriptor | transfer only when ready, else wait in the hub's poller ([`crate::io::stdio`]); a read of stdout or stderr, or a write of stdin, fails with `EBADF` |
//! | `path_open` | nothing bounds how many a guest opens | refused with `EMFILE` past the guest's share of the process's descriptors ([`crate::io::descriptor_budget`]) |
//! | `fd_close`, `fd_renumber` | — | passed on, noting which descriptors are still the host's streams, and which the guest opened |
//!
//! Every other descriptor (files in preopened directories, captured output)
//! is passed on to wasmtime-wasi unchanged.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use wasmtime::{AsContextMut, Caller, Extern, Linker, Result};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};

use crate::abi::errno;
use crate::guest::store_data::ThreadData;
use crate::host_functions::host_call::{
    as_caller, func_wrap_green, ready, suspend, wait_ready, Answer, Calling, Me,
};
use crate::io::poller::Interest;
use crate::io::stdio::{self, Attempt};

const P1: &str = "wasi_snapshot_preview1";

/// Most subscriptions one `poll_oneoff` may pass (each is copied out of the
/// guest's memory); more is refused with `EINVAL`.
const MAX_SUBSCRIPTIONS: u32 = 4096;

/// Most buffers one `fd_read` or `fd_write` may pass (POSIX's `IOV_MAX`);
/// more is refused with `EINVAL`.
const MAX_IOVECS: u32 = 1024;

/// Most bytes one `fd_write` to a host stream gathers from the guest: the
/// rest is for the guest's next call (a write may be partial).
const WRITE_CHUNK: usize = 64 * 1024;

/// Replaces WASI's functions listed in the module docs in `linker` (which
/// must already hold WASI) with the hub's.
pub(crate) fn add_to_linker(linker: &mut Linker<ThreadData>) -> Result<()> {
    linker.allow_shadowing(true);
    let defined = add_poll_oneoff(linker)
        .and_then(|()| add_sched_yield(linker))
        .and_then(|()| add_clock_time_get(linker))
        .and_then(|()| add_stdio(linker))
        .and_then(|()| add_descriptors(linker));
    linker.allow_shadowing(false);
    defined
}

/// Calls wasmtime-wasi's own `$func` with the caller's WASI context and
/// memory, as its linker functions do.
macro_rules! wasi_p1 {
    ($caller:expr, $func:ident($($arg:expr),* $(,)?)) => {{
        let caller: &mut Caller<'_, ThreadData> = $caller;
        let Some(Extern::SharedMemory(memory)) = caller.get_export("memory") else {
            wasmtime::bail!("the guest exports no shared memory");
        };
        let fuel = caller.as_context_mut().hostcall_fuel();
        let ctx = caller.data_mut().wasi();
        ctx.set_hostcall_fuel(fuel);
        let mut memory = wiggle::GuestMemory::Shared(memory.data());
        wasmtime_wasi::runtime::in_tokio(p1::$func(ctx, &mut memory, $($arg),*))
    }};
}

fn add_stdio(linker: &mut Linker<ThreadData>) -> Result<()> {
    func_wrap_green(
        linker,
        P1,
        "fd_read",
        |caller, (fd, iovs, iovs_len, nread): (i32, i32, i32, i32)| match host_stream(caller, fd) {
            Err(e) => ready(Err(e)),
            Ok(Some(host)) if stdio::is_input(host.as_raw_fd()) => {
                Box::pin(read_host(caller.me(), host, iovs, iovs_len, nread))
            }
            // The host's stdout or stderr: not for reading (it may be a
            // terminal, open both ways).
            Ok(Some(_)) => ready(Ok(errno::BADF)),
            Ok(None) => ready((|| wasi_p1!(caller, fd_read(fd, iovs, iovs_len, nread)))()),
        },
    )?;
    func_wrap_green(
        linker,
        P1,
        "fd_write",
        |caller, (fd, iovs, iovs_len, nwritten): (i32, i32, i32, i32)| match host_stream(caller, fd)
        {
            Err(e) => ready(Err(e)),
            Ok(Some(host)) if !stdio::is_input(host.as_raw_fd()) => {
                Box::pin(write_host(caller.me(), host, iovs, iovs_len, nwritten))
            }
            Ok(Some(_)) => ready(Ok(errno::BADF)),
            Ok(None) => ready((|| {
                wasi_p1!(caller, fd_write(fd, iovs, iovs_len, nwritten))
            })()),
        },
    )?;
    Ok(())
}

fn add_descriptors(linker: &mut Linker<ThreadData>) -> Result<()> {
    linker.func_wrap(
        P1,
        "path_open",
        |mut caller: Caller<'_, ThreadData>,
         dir: i32,
         dirflags: i32,
         path: i32,
         path_len: i32,
         oflags: i32,
         rights: i64,
         inheriting: i64,
         fdflags: i32,
         opened: i32|
         -> Result<i32> {
            if !as_caller(&caller, |s, guest, _| s.may_open(guest))? {
                return Ok(errno::MFILE);
            }
            let result = wasi_p1!(
                &mut caller,
                path_open(
                    dir, dirflags, path, path_len, oflags, rights, inheriting, fdflags, opened
                )
            )?;
            if result == errno::SUCCESS {
                as_caller(&caller, |s, guest, _| {
                    // Where WASI wrote it: in bounds, or the call had failed.
                    if let Some(fd) = s.read_guest_memory(guest, opened as u32, 4) {
                        let fd = u32::from_le_bytes(fd.try_into().expect("4 bytes"));
                        s.file_opened(guest, fd);
                    }
                })?;
            }
            Ok(result)
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_close",
        |mut caller: Caller<'_, ThreadData>, fd: i32| -> Result<i32> {
            let result = wasi_p1!(&mut caller, fd_close(fd))?;
            if result == errno::SUCCESS {
                as_caller(&caller, |s, guest, _| s.file_closed(guest, fd as u32))?;
            }
            Ok(result)
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_renumber",
        |mut caller: Caller<'_, ThreadData>, from: i32, to: i32| -> Result<i32> {
            let result = wasi_p1!(&mut caller, fd_renumber(from, to))?;
            if result == errno::SUCCESS {
                as_caller(&caller, |s, guest, _| {
                    s.file_renumbered(guest, from as u32, to as u32)
                })?;
            }
            Ok(result)
        },
    )?;
    Ok(())
}

/// The host descriptor behind the guest's `fd`, if it is one of the host's
/// own streams.
fn host_stream(caller: &impl Calling, fd: i32) -> Result<Option<BorrowedFd<'static>>> {
    let host = as_caller(caller, |s, guest, _| s.host_stream(guest, fd as u32))?;
    // SAFETY: the host process's descriptors 0-2, which stay open while it
    // runs. Were the embedder to close one, the calls on it would fail with
    // EBADF (or reach whatever took its number, as they would in the
    // embedder's own code): no memory is at stake.
    Ok(host.map(|raw| unsafe { BorrowedFd::borrow_raw(raw) }))
}

/// The guest's iovec array: (address, length) pairs; Err(errno) if it is
/// too long or out of its memory.
fn iovecs(caller: &impl Calling, iovs: i32, iovs_len: i32) -> Answer<Vec<(u32, u32)>, i32> {
    let count = iovs_len as u32;
    if count > MAX_IOVECS {
        return Ok(Err(errno::INVAL));
    }
    let bytes = as_caller(caller, |s, guest, _| {
        s.read_guest_memory(guest, iovs as u32, count as usize * 8)
    })?;
    let Some(bytes) = bytes else {
        return Ok(Err(errno::FAULT));
    };
    Ok(Ok(bytes
        .chunks_exact(8)
        .map(|v| {
            let word = |at: usize| u32::from_le_bytes(v[at..at + 4].try_into().expect("4 bytes"));
            (word(0), word(4))
        })
        .collect()))
}

/// `fd_read` from a host stream: parks the caller until input is there.
async fn read_host(
    caller: Me,
    fd: BorrowedFd<'static>,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> Result<i32> {
    let iovecs = match iovecs(&caller, iovs, iovs_len)? {
        Ok(iovecs) => iovecs,
        Err(errno) => return Ok(errno),
    };
    let want = iovecs
        .iter()
        .fold(0usize, |sum, &(_, len)| sum.saturating_add(len as usize));
    let bytes = loop {
        if want == 0 {
            break Vec::new();
        }
        match stdio::try_read(fd, want) {
            Attempt::Done(bytes) => break bytes,
            Attempt::Failed(errno) => return Ok(errno),
            Attempt::NotReady => {
                if let Err(errno) = wait_ready(caller, fd.as_raw_fd(), Interest::Read, None).await?
                {
                    return Ok(errno);
                }
            }
        }
    };
    let stored = as_caller(&caller, |s, guest, _| {
        let mut rest = &bytes[..];
        for &(at, len) in &iovecs {
            let (part, tail) = rest.split_at(rest.len().min(len as usize));
            if !s.write_guest_memory(guest, at, part) {
                return false;
            }
            rest = tail;
        }
        s.write_guest_memory(guest, nread as u32, &(bytes.len() as u32).to_le_bytes())
    })?;
    Ok(if stored { errno::SUCCESS } else { errno::FAULT })
}

/// `fd_write` to a host stream: parks the caller until the stream takes
/// some of the bytes; may write fewer than given.
async fn write_host(
    caller: Me,
    fd: BorrowedFd<'static>,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<i32> {
    let iovecs = match iovecs(&caller, iovs, iovs_len)? {
        Ok(iovecs) => iovecs,
        Err(errno) => return Ok(errno),
    };
    let gathered = as_caller(&caller, |s, guest, _| {
        let mut bytes = Vec::new();
        for &(at, len) in &iovecs {
            let take = (len as usize).min(WRITE_CHUNK - bytes.len());
            bytes.extend(s.read_guest_memory(guest, at, take)?);
            if bytes.len() == WRITE_CHUNK {
                break;
            }
        }
        Some(bytes)
    })?;
    let Some(bytes) = gathered else {
        return Ok(errno::FAULT);
    };
    let written = loop {
        if bytes.is_empty() {
            break 0;
        }
        match stdio::try_write(fd, &bytes) {
            Attempt::Done(n) => break n,
            Attempt::Failed(errno) => return Ok(errno),
            Attempt::NotReady => {
                if let Err(errno) =
                    wait_ready(caller, fd.as_raw_fd(), Interest::Write, None).await?
                {
                    return Ok(errno);
                }
            }
        }
    };
    let stored = as_caller(&caller, |s, guest, _| {
        s.write_guest_memory(guest, nwritten as u32, &(written as u32).to_le_bytes())
    })?;
    Ok(if stored { errno::SUCCESS } else { errno::FAULT })
}

fn add_poll_oneoff(linker: &mut Linker<ThreadData>) -> Result<()> {
    use crate::clock::{monotonic_ns, realtime_ns};
    use crate::host_functions::wasi_poll::{self, SUBSCRIPTION_SIZE};
    func_wrap_green(
        linker,
        P1,
        "poll_oneoff",
        |caller, (subs, out, n, nevents): (i32, i32, i32, i32)| {
            let caller = caller.me();
            async move {
                let n = n as u32;
                if n == 0 || n > MAX_SUBSCRIPTIONS {
                    return Ok(errno::INVAL);
                }
                let len = n as usize * SUBSCRIPTION_SIZE;
                let bytes = as_caller(&caller, |s, guest, _| {
                    s.read_guest_memory(guest, subs as u32, len)
                })?;
                let Some(bytes) = bytes else {
                    return Ok(errno::FAULT);
                };
                let subscriptions = wasi_poll::parse(&bytes, monotonic_ns(), realtime_ns());
                let wait = wasi_poll::wait(&subscriptions, monotonic_ns());
                if !wait.is_zero() {
                    // A green thread unwinding from a kill does not wait.
                    let waits = as_caller(&caller, |s, guest, thread| {
                        s.sleep_unless_killed(guest, thread, wait)
                    })??;
                    if waits {
                        suspend().await;
                    }
                }
                let (events, count) = wasi_poll::events(&subscriptions, monotonic_ns());
                let written = as_caller(&caller, |s, guest, _| {
                    s.write_guest_memory(guest, out as u32, &events)
                        && s.write_guest_memory(guest, nevents as u32, &count.to_le_bytes())
                })?;
                Ok(if written {
                    errno::SUCCESS
                } else {
                    errno::FAULT
                })
            }
        },
    )?;
    Ok(())
}

/// `sched_yield` (std's `thread::yield_now`): the hub's cooperative yield,
/// `sleep(0)`, rather than the OS thread's.
fn add_sched_yield(linker: &mut Linker<ThreadData>) -> Result<()> {
    func_wrap_green(linker, P1, "sched_yield", |caller, (): ()| {
        let caller = caller.me();
        async move {
            let waits = as_caller(&caller, |s, guest, thread| {
                s.sleep_unless_killed(guest, thread, Duration::ZERO)
            })??;
            if waits {
                suspend().await;
            }
            Ok(errno::SUCCESS)
        }
    })?;
    Ok(())
}

fn add_clock_time_get(linker: &mut Linker<ThreadData>) -> Result<()> {
    linker
        .func_wrap(
            P1,
            "clock_time_get",
            |caller: Caller<'_, ThreadData>, id: i32, _precision: i64, out: i32| -> Result<i32> {
                let now = match crate::clock::now(id) {
                    Ok(now) => now,
                    Err(errno) => return Ok(errno),
                };
                let stored = as_caller(&caller, |s, guest, _| {
                    s.write_guest_memory(guest, out as u32, &now.to_le_bytes())
                })?;
                Ok(if stored { errno::SUCCESS } else { errno::FAULT })
            },
        )
        .map(|_| ())
}

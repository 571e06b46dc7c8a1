//! The hub's side of the WIT `net` interface: a guest's sockets, each call
//! checked against its [`NetPolicy`](crate::io::net_policy::NetPolicy), each
//! wait served by the hub's poller so that only the calling green thread
//! waits (see `wit/hub.wit`).
//!
//! Every function returns an `i64`: the value, or `-(1 + net-error)`. A
//! pointer or length outside the guest's memory traps the caller alone.

use std::net::SocketAddr;
use std::time::Instant;

use wasmtime::{Caller, Linker, Result};

use crate::abi::{errno, timeout_of};
use crate::guest::store_data::ThreadData;
use crate::host_functions::host_call::{
    as_caller, await_green, func_wrap_green, wait_ready, Answer, Calling, Me,
};
use crate::hub_state::HubState;
use crate::io::net_sockets::{NetError, Try, MOST_PER_CALL};
use crate::io::poller::Interest;
use crate::io::resolver::Resolver;
use crate::scheduler::GuestKey;

/// The WIT interface's import module name.
pub const NET_MODULE: &str = "wasmlet:runtime/net@0.1.0";

/// The longest address text a guest may pass.
const MOST_ADDRESS: u32 = 256;

/// Bytes `udp-recv-from` writes the sender's address into.
const FROM_BUFFER: usize = 64;

/// What a call returns: its value, or its error's code.
fn encode(result: Result<u64, NetError>) -> i64 {
    match result {
        Ok(v) => i64::try_from(v).unwrap_or(i64::MAX),
        Err(e) => e.code(),
    }
}

/// Reads guest memory for the calling green thread.
///
/// # Errors
/// If it is outside the guest's memory: that traps the caller.
fn read_memory(caller: &impl Calling, at: u32, len: u32) -> Result<Vec<u8>> {
    as_caller(caller, |s, guest, _| {
        s.read_guest_memory(guest, at, len as usize)
    })?
    .ok_or_else(|| wasmtime::format_err!("a net call's buffer is outside the guest's memory"))
}

/// Writes guest memory for the calling green thread.
///
/// # Errors
/// As [`read_memory`].
fn write_memory(caller: &impl Calling, at: u32, bytes: &[u8]) -> Result<()> {
    if as_caller(caller, |s, guest, _| s.write_guest_memory(guest, at, bytes))? {
        Ok(())
    } else {
        wasmtime::bail!("a net call's buffer is outside the guest's memory")
    }
}

/// The address text at `at`.
///
/// # Errors
/// As [`read_memory`] (a length past [`MOST_ADDRESS`] is `bad-address`).
fn read_address(caller: &impl Calling, at: u32, len: u32) -> Answer<SocketAddr, NetError> {
    if len > MOST_ADDRESS {
        return Ok(Err(NetError::BadAddress));
    }
    let bytes = read_memory(caller, at, len)?;
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(NetError::BadAddress))
}

/// When a call given `timeout_ns` gives up: None for never (no timeout,
/// or one past what `Instant` can hold).
fn deadline_of(timeout_ns: u64) -> Option<Instant> {
    timeout_of(timeout_ns).and_then(|d| Instant::now().checked_add(d))
}

/// Runs `attempt` until it is ready or fails, waiting in the hub's poller
/// whenever it would block, for at most `timeout_ns` in all.
async fn until_ready<T>(
    caller: Me,
    timeout_ns: u64,
    attempt: impl FnMut(&mut HubState, GuestKey) -> Try<T>,
) -> Answer<T, NetError> {
    until_ready_by(caller, deadline_of(timeout_ns), attempt).await
}

/// [`until_ready`] until `deadline` (None: none).
async fn until_ready_by<T>(
    caller: Me,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(&mut HubState, GuestKey) -> Try<T>,
) -> Answer<T, NetError> {
    loop {
        let (fd, interest) = match as_caller(&caller, |s, guest, _| attempt(s, guest))? {
            Try::Ready(value) => return Ok(Ok(value)),
            Try::Failed(e) => return Ok(Err(e)),
            Try::WouldBlock(fd, interest) => (fd, interest),
        };
        let left = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(Err(NetError::TimedOut)),
            },
        };
        match wait_ready(caller, fd, interest, left).await? {
            Ok(()) => {}
            Err(errno::INTR) => return Ok(Err(NetError::Interrupted)),
            Err(_) => return Ok(Err(NetError::Other)),
        }
    }
}

/// Adds the `net` interface to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ThreadData>) -> Result<()> {
    linker.func_wrap(
        NET_MODULE,
        "tcp-listen",
        |caller: Caller<'_, ThreadData>, addr: u32, len: u32, backlog: u32| -> Result<i64> {
            let addr = match read_address(&caller, addr, len)? {
                Ok(addr) => addr,
                Err(e) => return Ok(e.code()),
            };
            as_caller(&caller, |s, guest, _| {
                encode(open(s, guest, |s| {
                    check(s.net_policy(guest).check_listen(addr))?;
                    let tls = s.tls_options(guest).listener(addr);
                    s.sockets(guest).listen(addr, backlog, tls)
                }))
            })
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "tcp-accept",
        |caller, (listener, timeout_ns): (u32, u64)| {
            let caller = caller.me();
            async move {
                let accepted = until_ready(caller, timeout_ns, |s, guest| {
                    if !s.may_open(guest) {
                        return Try::Failed(NetError::TooManyDescriptors);
                    }
                    if s.sockets(guest).is_tls_listener(listener) && !s.may_add_tls_session(guest) {
                        return Try::Failed(NetError::HostMemoryFull);
                    }
                    let accepted = s.sockets(guest).accept(listener);
                    if let Try::Ready(_) = accepted {
                        s.descriptors_changed(guest);
                    }
                    accepted
                })
                .await?;
                Ok(encode(accepted.map(|(handle, _)| u64::from(handle))))
            }
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "tcp-connect",
        |caller, (addr, len, timeout_ns): (u32, u32, u64)| {
            let caller = caller.me();
            async move {
                let addr = match read_address(&caller, addr, len)? {
                    Ok(addr) => addr,
                    Err(e) => return Ok(e.code()),
                };
                let deadline = deadline_of(timeout_ns);
                Ok(encode(
                    connect(caller, addr, deadline).await?.map(u64::from),
                ))
            }
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "tls-connect",
        |caller, (addr, len, name, name_len, timeout_ns): (u32, u32, u32, u32, u64)| {
            let caller = caller.me();
            async move {
                let addr = match read_address(&caller, addr, len)? {
                    Ok(addr) => addr,
                    Err(e) => return Ok(e.code()),
                };
                if name_len > MOST_ADDRESS {
                    return Ok(NetError::InvalidInput.code());
                }
                let Ok(name) = String::from_utf8(read_memory(&caller, name, name_len)?) else {
                    return Ok(NetError::InvalidInput.code());
                };
                let deadline = deadline_of(timeout_ns);
                let handle = match connect(caller, addr, deadline).await? {
                    Ok(handle) => handle,
                    Err(e) => return Ok(e.code()),
                };
                // One timeout for the connect and the handshake, so that a
                // peer that accepts and then says nothing costs only that.
                let handshake = match as_caller(&caller, |s, guest, _| {
                    if !s.may_add_tls_session(guest) {
                        return Err(NetError::HostMemoryFull);
                    }
                    let config = s.tls_options(guest).trust.client_config();
                    s.sockets(guest).start_tls_client(handle, config, &name)
                })? {
                    Ok(()) => {
                        until_ready_by(caller, deadline, |s, guest| {
                            s.sockets(guest).tls_handshake(handle)
                        })
                        .await?
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = handshake {
                    as_caller(&caller, |s, guest, _| s.close_socket(guest, handle))?.ok();
                    return Ok(e.code());
                }
                Ok(i64::from(handle))
            }
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "read",
        |caller, (socket, buf, len, timeout_ns): (u32, u32, u32, u64)| {
            let caller = caller.me();
            async move {
                let read = until_ready(caller, timeout_ns, |s, guest| {
                    s.sockets(guest).read(socket, len as usize)
                })
                .await?;
                match read {
                    Ok(bytes) => {
                        write_memory(&caller, buf, &bytes)?;
                        Ok(bytes.len() as i64)
                    }
                    Err(e) => Ok(e.code()),
                }
            }
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "readable",
        |caller, (socket, timeout_ns): (u32, u64)| {
            let caller = caller.me();
            async move {
                let ready = until_ready(caller, timeout_ns, |s, guest| {
                    s.sockets(guest).readable(socket)
                })
                .await?;
                Ok(encode(ready.map(|()| 0)))
            }
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "write",
        |caller, (socket, buf, len, timeout_ns): (u32, u32, u32, u64)| {
            let caller = caller.me();
            async move {
                let bytes = read_memory(&caller, buf, len.min(MOST_PER_CALL as u32))?;
                let mut taken = None;
                let written = until_ready(caller, timeout_ns, |s, guest| {
                    s.sockets(guest).write(socket, &bytes, &mut taken)
                })
                .await?;
                Ok(encode(written.map(|n| n as u64)))
            }
        },
    )?;
    linker.func_wrap(
        NET_MODULE,
        "shutdown",
        |caller: Caller<'_, ThreadData>, socket: u32, how: u32| -> Result<i64> {
            as_caller(&caller, |s, guest, _| {
                encode(s.sockets(guest).shutdown(socket, how).map(|()| 0))
            })
        },
    )?;
    linker.func_wrap(
        NET_MODULE,
        "close",
        |caller: Caller<'_, ThreadData>, socket: u32| -> Result<i64> {
            as_caller(&caller, |s, guest, _| {
                encode(s.close_socket(guest, socket).map(|()| 0))
            })
        },
    )?;
    linker.func_wrap(
        NET_MODULE,
        "address",
        |caller: Caller<'_, ThreadData>,
         socket: u32,
         peer: u32,
         buf: u32,
         len: u32|
         -> Result<i64> {
            let addr = as_caller(&caller, |s, guest, _| {
                s.sockets(guest).addr(socket, peer != 0)
            })?;
            let text = match addr {
                Ok(addr) => addr.to_string(),
                Err(e) => return Ok(e.code()),
            };
            if text.len() > len as usize {
                return Ok(NetError::InvalidInput.code());
            }
            write_memory(&caller, buf, text.as_bytes())?;
            Ok(text.len() as i64)
        },
    )?;
    linker.func_wrap(
        NET_MODULE,
        "set-nodelay",
        |caller: Caller<'_, ThreadData>, socket: u32, on: u32| -> Result<i64> {
            as_caller(&caller, |s, guest, _| {
                encode(s.sockets(guest).set_nodelay(socket, on != 0).map(|()| 0))
            })
        },
    )?;
    linker.func_wrap(
        NET_MODULE,
        "udp-bind",
        |caller: Caller<'_, ThreadData>, addr: u32, len: u32| -> Result<i64> {
            let addr = match read_address(&caller, addr, len)? {
                Ok(addr) => addr,
                Err(e) => return Ok(e.code()),
            };
            as_caller(&caller, |s, guest, _| {
                encode(open(s, guest, |s| {
                    check(s.net_policy(guest).check_listen(addr))?;
                    s.sockets(guest).udp_bind(addr)
                }))
            })
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "udp-send-to",
        |caller, (socket, buf, len, to, to_len, timeout_ns): (u32, u32, u32, u32, u32, u64)| {
            let caller = caller.me();
            async move {
                let to = match read_address(&caller, to, to_len)? {
                    Ok(addr) => addr,
                    Err(e) => return Ok(e.code()),
                };
                let allowed =
                    as_caller(&caller, |s, guest, _| s.net_policy(guest).check_connect(to))?;
                if allowed.is_err() {
                    return Ok(NetError::Denied.code());
                }
                let bytes = read_memory(&caller, buf, len.min(MOST_PER_CALL as u32))?;
                let sent = until_ready(caller, timeout_ns, |s, guest| {
                    s.sockets(guest).send_to(socket, &bytes, to)
                })
                .await?;
                Ok(encode(sent.map(|n| n as u64)))
            }
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "udp-recv-from",
        |caller, (socket, buf, len, from, timeout_ns): (u32, u32, u32, u32, u64)| {
            let caller = caller.me();
            async move {
                let received = until_ready(caller, timeout_ns, |s, guest| {
                    s.sockets(guest).recv_from(socket, len as usize)
                })
                .await?;
                match received {
                    Ok((bytes, sender)) => {
                        let mut text = [0u8; FROM_BUFFER];
                        let sender = sender.to_string();
                        text[..sender.len()].copy_from_slice(sender.as_bytes());
                        write_memory(&caller, from, &text)?;
                        write_memory(&caller, buf, &bytes)?;
                        Ok(bytes.len() as i64)
                    }
                    Err(e) => Ok(e.code()),
                }
            }
        },
    )?;
    func_wrap_green(
        linker,
        NET_MODULE,
        "resolve",
        |caller, (name, name_len, buf, len): (u32, u32, u32, u32)| {
            let caller = caller.me();
            async move {
                if name_len > MOST_ADDRESS {
                    return Ok(NetError::BadAddress.code());
                }
                let bytes = read_memory(&caller, name, name_len)?;
                let Ok(name) = String::from_utf8(bytes) else {
                    return Ok(NetError::BadAddress.code());
                };
                let (ports, owner) = as_caller(&caller, |s, guest, _| {
                    (
                        s.net_policy(guest).check_resolve(&name),
                        s.lookup_owner(guest),
                    )
                })?;
                let Ok(ports) = ports else {
                    return Ok(NetError::Denied.code());
                };
                let lookup = Resolver::system().lookup(owner, name);
                let found = await_green(caller, Box::pin(lookup)).await?;
                let Ok(addrs) = found else {
                    return Ok(NetError::BadAddress.code());
                };
                let text: String = addrs.iter().map(|ip| format!("{ip}\n")).collect();
                if text.len() > len as usize {
                    return Ok(NetError::InvalidInput.code());
                }
                as_caller(&caller, |s, guest, _| {
                    s.net_policy(guest).learn(&addrs, &ports)
                })?;
                write_memory(&caller, buf, text.as_bytes())?;
                Ok(text.len() as i64)
            }
        },
    )?;
    Ok(())
}

/// Connects the calling guest to `addr` (if a rule allows it) by
/// `deadline`: the new socket's handle. A connect that fails closes its
/// socket.
async fn connect(caller: Me, addr: SocketAddr, deadline: Option<Instant>) -> Answer<u32, NetError> {
    let started = as_caller(&caller, |s, guest, _| {
        open(s, guest, |s| {
            check(s.net_policy(guest).check_connect(addr))?;
            s.sockets(guest).start_connect(addr)
        })
    })?;
    let handle = match started {
        Ok(handle) => handle as u32,
        Err(e) => return Ok(Err(e)),
    };
    // As eventlet's green connect, it always waits in the hub once: on
    // loopback the connect is often done at once, and a client connecting
    // in a loop would otherwise never let the green thread that accepts run
    // (and its backlog fills).
    let mut first = true;
    let connected = until_ready_by(caller, deadline, |s, guest| {
        let sockets = s.sockets(guest);
        if std::mem::take(&mut first) {
            if let Ok(socket) = sockets.get(handle) {
                return Try::WouldBlock(socket.raw_fd(), Interest::Write);
            }
        }
        sockets.finish_connect(handle)
    })
    .await?;
    if let Err(e) = connected {
        // Timed out, refused or interrupted: the socket goes.
        as_caller(&caller, |s, guest, _| s.close_socket(guest, handle))?.ok();
        return Ok(Err(e));
    }
    Ok(Ok(handle))
}

/// A policy refusal as a net error.
fn check(allowed: Result<(), crate::io::net_policy::Denied>) -> Result<(), NetError> {
    allowed.map_err(|_| NetError::Denied)
}

/// Opens a socket with `make`, if the guest may hold another descriptor.
fn open(
    s: &mut HubState,
    guest: GuestKey,
    make: impl FnOnce(&mut HubState) -> Result<u32, NetError>,
) -> Result<u64, NetError> {
    if !s.may_open(guest) {
        return Err(NetError::TooManyDescriptors);
    }
    let handle = make(s)?;
    s.descriptors_changed(guest);
    Ok(u64::from(handle))
}

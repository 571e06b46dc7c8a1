//! Green sockets end to end, on loopback: an echo server with a green thread
//! per connection and many concurrent clients in the same guest;
//! capabilities; timeouts; a kill reaching a blocked reader; half-close;
//! backpressure (a blocked writer, while others run); UDP; name resolution.
//! Run with `--listen 127.0.0.1:0 --connect 127.0.0.0/8`. With the
//! arguments `many N`: N connections held open at once, then all echoed.
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wasmlet::net::{lookup_host, TcpListener, TcpStream, UdpSocket};
use wasmlet::{Builder, Interrupted, Timeout};

fn yield_now() {
    wasmlet::sleep(Duration::ZERO).expect("main is never killed");
}

/// eventlet's echo server: accepts for ever, a green thread per connection
/// (with `stack` bytes of shadow stack).
fn echo_server(stack: usize) -> (std::net::SocketAddr, wasmlet::Thread) {
    let listener = TcpListener::bind_with_backlog("127.0.0.1:0", 4096).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = wasmlet::spawn_n(move || -> std::io::Result<()> {
        for conn in listener.incoming() {
            let mut conn = conn?;
            Builder::new()
                .stack_size(stack)
                .spawn_n(move || -> std::io::Result<()> {
                    let mut buf = [0; 4096];
                    loop {
                        let n = conn.read(&mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        conn.write_all(&buf[..n])?;
                    }
                });
        }
        Ok(())
    });
    (addr, server)
}

fn many(n: usize) {
    // Small stacks: the guest's memory (1 GiB) holds 2n of them.
    let stack = 16 * 1024;
    let (addr, server) = echo_server(stack);
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(TcpStream::connect(addr).unwrap());
    }
    let connected = start.elapsed();
    let ok = Rc::new(Cell::new(0usize));
    let clients: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            let ok = ok.clone();
            Builder::new()
                .stack_size(stack)
                .spawn(move || -> std::io::Result<()> {
                    let msg = format!("hello from {i}");
                    conn.write_all(msg.as_bytes())?;
                    let mut back = vec![0; msg.len()];
                    conn.read_exact(&mut back)?;
                    if back == msg.as_bytes() {
                        ok.set(ok.get() + 1);
                    }
                    Ok(())
                })
        })
        .collect();
    for c in clients {
        c.join().unwrap().unwrap();
    }
    eprintln!(
        "{n} connections in {:.1} ms, echoed in {:.1} ms",
        connected.as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3
    );
    println!("many: {} of {n} echoed", ok.get());
    server.kill();
}

/// N connect/accept/close cycles against its own listener.
fn cycles(n: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = wasmlet::spawn(move || -> std::io::Result<usize> {
        let mut accepted = 0;
        for conn in listener.incoming().take(n) {
            drop(conn?);
            accepted += 1;
        }
        Ok(accepted)
    });
    for _ in 0..n {
        drop(TcpStream::connect(addr).unwrap());
    }
    println!(
        "cycles: {n} connected, {:?} accepted",
        acceptor.join().unwrap().ok()
    );
}

/// Connects N times to `addr` and writes to each until it blocks (the peer
/// does not read): the host then ends the guest mid-transfer.
fn hold(addr: &str, n: usize) {
    for i in 0..n {
        let mut conn = TcpStream::connect(addr).unwrap();
        wasmlet::spawn_n(move || -> std::io::Result<()> {
            let chunk = vec![i as u8; 64 * 1024];
            loop {
                conn.write_all(&chunk)?;
            }
        });
    }
    println!("holding {n}");
    loop {
        wasmlet::sleep(Duration::from_secs(60)).unwrap();
    }
}

/// Accepts one connection on `addr` and reads until the peer goes.
fn reset(addr: &str) {
    let listener = TcpListener::bind(addr).unwrap();
    println!("listening");
    let (mut conn, _) = listener.accept().unwrap();
    let mut buf = [0; 1024];
    let mut first = true;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return println!("read: the end"),
            // Tells the peer it has read, so the reset comes while it waits
            // in its next read.
            Ok(_) if first => {
                first = false;
                conn.write_all(b"!").unwrap();
            }
            Ok(_) => {}
            Err(e) => return println!("read: {:?}", e.kind()),
        }
    }
}

/// Two green threads reading one socket take its chunks in turn; non-blocking
/// mode reports `WouldBlock`; a zero timeout is refused as std's.
fn turns() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let counts = Rc::new([Cell::new(0), Cell::new(0)]);
    let readers: Vec<_> = (0..2)
        .map(|me| {
            let conn = conn.try_clone().unwrap();
            let counts = counts.clone();
            wasmlet::spawn(move || -> std::io::Result<()> {
                let mut buf = [0; 64];
                loop {
                    if (&conn).read(&mut buf)? == 0 {
                        return Ok(());
                    }
                    counts[me].set(counts[me].get() + 1);
                    (&conn).write_all(b"k")?;
                }
            })
        })
        .collect();
    // Both readers wait now, the first one first.
    yield_now();
    for _ in 0..20 {
        client.write_all(b"chunk").unwrap();
        client.read_exact(&mut [0; 1]).unwrap();
    }
    client.shutdown(Shutdown::Write).unwrap();
    for r in readers {
        r.join().unwrap().unwrap();
    }
    println!(
        "two readers of one socket: {} and {} chunks",
        counts[0].get(),
        counts[1].get()
    );

    listener.set_nonblocking(true).unwrap();
    let nothing = listener.accept().unwrap_err().kind();
    let mut second = TcpStream::connect(addr).unwrap();
    let (conn, _) = listener.accept().unwrap();
    conn.set_nonblocking(true).unwrap();
    let empty = (&conn).read(&mut [0; 8]).unwrap_err().kind();
    // Loopback delivers the byte within the write.
    second.write_all(b"x").unwrap();
    let got = (&conn).read(&mut [0; 8]).map_err(|e| e.kind());
    let zero = conn
        .set_read_timeout(Some(Duration::ZERO))
        .unwrap_err()
        .kind();
    println!(
        "non-blocking: accept {nothing:?}, read {empty:?}, then {got:?}; a zero timeout: {zero:?}"
    );
}

/// Accepts on `addr` with a cap of descriptors (given by the host), holding
/// what it accepts in batches of `batch`, until `total` came: `incoming`
/// waits, without spinning, while the guest is at its cap.
fn exhaust(addr: &str, batch: usize, total: usize) {
    let listener = TcpListener::bind(addr).unwrap();
    println!("listening");
    let accepted = wasmlet::Queue::new();
    let server = {
        let accepted = accepted.clone();
        wasmlet::spawn_n(move || -> std::io::Result<()> {
            for conn in listener.incoming() {
                accepted.put(conn?).ok();
            }
            Ok(())
        })
    };
    let mut held = Vec::new();
    for _ in 0..total {
        held.push(accepted.get().unwrap());
        if held.len() == batch {
            // The server is at the cap and backing off: a few of its
            // retries pass, refused, before the batch is let go.
            wasmlet::sleep(Duration::from_millis(40)).unwrap();
            held.clear();
        }
    }
    server.kill();
    println!("accepted {total}");
}

/// Connects `n` times to `addr`, then waits for each connection's end.
fn connect_many(addr: &str, n: usize) {
    let conns: Vec<_> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for mut conn in conns {
        conn.read_to_end(&mut Vec::new()).unwrap();
    }
    println!("{n} connections served");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("turns") => return turns(),
        Some("exhaust") => {
            return exhaust(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap())
        }
        Some("connect-many") => return connect_many(&args[2], args[3].parse().unwrap()),
        Some("many") => return many(args[2].parse().unwrap()),
        Some("cycles") => return cycles(args[2].parse().unwrap()),
        Some("hold") => return hold(&args[2], args[3].parse().unwrap()),
        Some("reset") => return reset(&args[2]),
        _ => {}
    }

    // 1. Echo: 200 concurrent clients, each a green thread.
    let (addr, server) = echo_server(64 * 1024);
    let clients: Vec<_> = (0..200)
        .map(|i| {
            wasmlet::spawn(move || -> std::io::Result<bool> {
                let mut conn = TcpStream::connect(addr)?;
                conn.set_nodelay(true)?;
                let mut ok = true;
                for round in 0..5 {
                    let msg = format!("client {i} round {round}\n");
                    conn.write_all(msg.as_bytes())?;
                    let mut back = vec![0; msg.len()];
                    conn.read_exact(&mut back)?;
                    ok &= back == msg.as_bytes();
                }
                Ok(ok)
            })
        })
        .collect();
    let good = clients
        .into_iter()
        .filter(|c| matches!(c.clone().join(), Ok(Ok(true))))
        .count();
    println!("echo: {good} of 200 clients got their 5 rounds back");

    // 2. Capabilities: what no rule allows is refused, naming the flag.
    let denied = TcpListener::bind("127.0.0.1:9").unwrap_err();
    println!("listen refused: {:?}: {denied}", denied.kind());
    let denied = TcpStream::connect("10.1.2.3:80").unwrap_err();
    println!("connect refused: {:?}: {denied}", denied.kind());
    let denied = lookup_host("example.com").unwrap_err();
    println!("resolve refused: {:?}: {denied}", denied.kind());
    println!("localhost: {:?}", lookup_host("localhost").unwrap());

    // 3. Timeouts: a Timeout interrupts accept; a read timeout, a read.
    let quiet = TcpListener::bind("127.0.0.1:0").unwrap();
    let t = Timeout::new(Duration::from_millis(20));
    let err = quiet.accept().unwrap_err();
    println!(
        "accept under a Timeout: {:?}, ours {}",
        err.kind(),
        Interrupted::of(&err).is_some_and(|i| i.is(&t))
    );
    drop(t);
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let err = idle.read(&mut [0; 8]).unwrap_err();
    println!("read timeout: {:?}", err.kind());
    drop(idle);

    // 4. A kill reaches a green thread blocked on a read at once; its
    // socket closes as it unwinds, so the peer sees the end.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    let reader = wasmlet::spawn(move || -> std::io::Result<usize> {
        let mut conn = TcpStream::connect(local)?;
        conn.read(&mut [0; 16])
    });
    let (mut peer, _) = listener.accept().unwrap();
    yield_now();
    let started = Instant::now();
    reader.kill();
    let mut rest = Vec::new();
    let eof = peer.read_to_end(&mut rest).map(|_| rest.len());
    println!(
        "killed reader: {:?}, at once {}, the peer read to the end: {eof:?}",
        reader.join().map(|_| ()),
        started.elapsed() < Duration::from_secs(5)
    );

    // 4b. `recv` (eventlet's `recv(bufsize)`): bytes in chunks of at most
    // the size asked, then the end as nothing; a receiver waiting for bytes
    // is killed at once too.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    let receiver = wasmlet::spawn(move || -> std::io::Result<Vec<Vec<u8>>> {
        let (conn, _) = listener.accept()?;
        let mut chunks = Vec::new();
        loop {
            let bytes = conn.recv(4)?;
            if bytes.is_empty() {
                return Ok(chunks);
            }
            chunks.push(bytes);
        }
    });
    let mut client = TcpStream::connect(local).unwrap();
    client.write_all(b"hello, green world").unwrap();
    drop(client);
    let chunks = receiver.join().unwrap().unwrap();
    println!(
        "recv: {:?} in chunks of at most 4: {}, then the end",
        String::from_utf8_lossy(&chunks.concat()),
        chunks.iter().all(|c| !c.is_empty() && c.len() <= 4)
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    let waiting =
        wasmlet::spawn(move || -> std::io::Result<Vec<u8>> { TcpStream::connect(local)?.recv(16) });
    let (_peer, _) = listener.accept().unwrap();
    yield_now();
    waiting.kill();
    println!("killed receiver: {:?}", waiting.join().map(|_| ()));

    // 5. Half-close: the client shuts down writing; the server still
    // answers, and the client reads the answer, then the end.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    let half = wasmlet::spawn(move || -> std::io::Result<String> {
        let (mut conn, _) = listener.accept()?;
        let mut got = String::new();
        conn.read_to_string(&mut got)?;
        conn.write_all(format!("you said {got}").as_bytes())?;
        Ok(got)
    });
    let mut client = TcpStream::connect(local).unwrap();
    client.write_all(b"bye").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    println!(
        "half-close: {answer:?}; server {:?}",
        half.join().unwrap().ok()
    );

    // 6. Backpressure: a writer to a peer that does not read blocks (only
    // its green thread), while another green thread keeps running; once
    // the peer reads, every byte arrives.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    let total = 8 << 20;
    let writer = wasmlet::spawn(move || -> std::io::Result<usize> {
        let mut conn = TcpStream::connect(local)?;
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            conn.write_all(&chunk)?;
            sent += chunk.len();
        }
        Ok(sent)
    });
    let (mut slow, _) = listener.accept().unwrap();
    let ticks = Rc::new(Cell::new(0));
    let ticker = {
        let ticks = ticks.clone();
        wasmlet::spawn(move || {
            for _ in 0..50 {
                ticks.set(ticks.get() + 1);
                if wasmlet::sleep(Duration::from_millis(1)).is_err() {
                    return;
                }
            }
        })
    };
    ticker.wait().unwrap();
    let blocked = !writer.dead();
    let mut received = 0;
    let mut buf = vec![0; 256 * 1024];
    while received < total {
        let n = slow.read(&mut buf).unwrap();
        assert!(buf[..n].iter().all(|&b| b == 7));
        received += n;
    }
    println!(
        "backpressure: writer blocked {blocked} while the ticker ticked {}; received {received}, writer {:?}",
        ticks.get(),
        writer.join().unwrap().ok()
    );

    // 7. UDP.
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    let receiver = wasmlet::spawn(move || -> std::io::Result<String> {
        let mut buf = [0; 64];
        let (n, from) = b.recv_from(&mut buf)?;
        b.send_to(&buf[..n], from)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    a.send_to(b"datagram", b_addr).unwrap();
    let mut buf = [0; 64];
    let (n, from) = a.recv_from(&mut buf).unwrap();
    println!(
        "udp: echoed {:?} from the receiver's port {}; receiver got {:?}",
        String::from_utf8_lossy(&buf[..n]),
        from == b_addr,
        receiver.join().unwrap().ok()
    );

    server.kill();
    println!("done");
}

//! A chat server: every line a client sends goes to every other client.
//! Each client has a `Queue` of lines to send it, drained by a writer green
//! thread; the reader green thread puts each line it reads into the other
//! clients' queues (eventlet's chat server example).
//!
//! ```sh
//! wasmlet run --listen 127.0.0.1:7000 chat.wasm -- 127.0.0.1:7000   # then: nc 127.0.0.1 7000
//! wasmlet run --listen 127.0.0.1:0 --connect 127.0.0.1 chat.wasm -- demo
//! ```
//! `demo` starts the server on a free port and three scripted clients in the
//! same guest, and prints what each one heard.
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::rc::Rc;
use std::time::Duration;

use wasmlet::net::{TcpListener, TcpStream};
use wasmlet::Queue;

/// Each connected client's outgoing queue, by client number.
type Clients = Rc<RefCell<BTreeMap<usize, Queue<String>>>>;

fn serve(listener: TcpListener) -> std::io::Result<()> {
    let clients: Clients = Rc::default();
    for (number, conn) in listener.incoming().enumerate() {
        let conn = conn?;
        let outbox = Queue::new();
        clients.borrow_mut().insert(number, outbox.clone());
        // The writer: this client's queue to its socket.
        let mut writer = conn.try_clone()?;
        wasmlet::spawn_n(move || -> std::io::Result<()> {
            loop {
                let line: String = outbox.get().map_err(std::io::Error::other)?;
                writer.write_all(line.as_bytes())?;
            }
        });
        // The reader: each line to every other client's queue.
        let clients = clients.clone();
        wasmlet::spawn_n(move || {
            let mut lines = BufReader::new(&conn).lines();
            while let Some(Ok(line)) = lines.next() {
                for (other, outbox) in clients.borrow().iter() {
                    if *other != number {
                        let _ = outbox.put(format!("{number}: {line}\n"));
                    }
                }
            }
            clients.borrow_mut().remove(&number);
        });
    }
    Ok(())
}

/// A scripted client: says its lines, then reports what it heard.
fn client(
    addr: String,
    name: &'static str,
    lines: &'static [&'static str],
) -> std::io::Result<Vec<String>> {
    let conn = TcpStream::connect(addr.as_str())?;
    conn.set_read_timeout(Some(Duration::from_millis(300)))?;
    // Everyone connects before anyone speaks.
    wasmlet::sleep(Duration::from_millis(50)).map_err(std::io::Error::from)?;
    for line in lines {
        (&conn).write_all(format!("{name} says {line}\n").as_bytes())?;
        wasmlet::sleep(Duration::from_millis(10)).map_err(std::io::Error::from)?;
    }
    let mut heard = Vec::new();
    for line in BufReader::new(&conn).lines() {
        match line {
            Ok(line) => heard.push(line),
            // Quiet for 300 ms: the chat is over.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => return Err(e),
        }
    }
    Ok(heard)
}

fn main() -> std::io::Result<()> {
    let arg = std::env::args().nth(1).unwrap_or("127.0.0.1:7000".into());
    if arg != "demo" {
        let listener = TcpListener::bind(arg.as_str())?;
        eprintln!("chat server on {}", listener.local_addr()?);
        return serve(listener);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let server = wasmlet::spawn_n(move || serve(listener));
    let script: [(&str, &[&str]); 3] = [
        ("ann", &["hello", "how are you?"]),
        ("bob", &["hi ann"]),
        ("cat", &[]),
    ];
    let clients: Vec<_> = script
        .into_iter()
        .map(|(name, lines)| {
            let addr = addr.clone();
            (name, wasmlet::spawn(move || client(addr, name, lines)))
        })
        .collect();
    for (name, gt) in clients {
        let heard = gt.join()??;
        println!("{name} heard {} lines: {heard:?}", heard.len());
    }
    server.kill();
    Ok(())
}

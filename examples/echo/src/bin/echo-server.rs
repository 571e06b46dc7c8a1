//! eventlet's echo server: one green thread per connection.
//!
//! ```sh
//! wasmlet run --listen 127.0.0.1:6000 echo-server.wasm -- 127.0.0.1:6000
//! ```
use std::io::Write;

use wasmlet::net::{TcpListener, TcpStream};

fn handle(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    loop {
        // eventlet's `conn.recv(16384)`: the buffer is taken once bytes
        // have come, so an idle connection holds none.
        let bytes = conn.recv(16 * 1024)?;
        if bytes.is_empty() {
            return Ok(());
        }
        conn.write_all(&bytes)?;
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:6000".into());
    let listener = TcpListener::bind_with_backlog(addr.as_str(), 4096)?;
    eprintln!("echo server on {}", listener.local_addr()?);
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                wasmlet::spawn_n(move || handle(conn));
            }
            // Out of descriptors, say: this connection is refused, the
            // server goes on.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

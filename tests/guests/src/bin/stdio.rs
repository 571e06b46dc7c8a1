//! Reads of stdin and writes to stdout that must wait suspend only their
//! green thread: a neighbour ticks every millisecond meanwhile.
//!
//! `stdio read`: reads one line from stdin (the test sends it late).
//! `stdio write`: writes 4 MiB to stdout (the test drains it late).
//! `stdio kill`: a green thread waiting on stdin is killed; main goes on.
use std::io::{BufRead, Write};
use std::time::Duration;

/// Ticks every millisecond until `done` is set; how many ticks it made.
fn ticker(done: std::rc::Rc<std::cell::Cell<bool>>) -> wasmlet::GreenThread<u32> {
    wasmlet::spawn(move || {
        let mut ticks = 0;
        while !done.get() {
            let _ = wasmlet::sleep(Duration::from_millis(1));
            ticks += 1;
        }
        ticks
    })
}

fn main() {
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    match std::env::args().nth(1).as_deref() {
        Some("read") => {
            let ticks = ticker(done.clone());
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            done.set(true);
            eprintln!("ticks while reading: {}", ticks.wait().unwrap());
            println!("read: {}", line.trim_end());
        }
        Some("write") => {
            let ticks = ticker(done.clone());
            let block = vec![b'x'; 4 << 20];
            std::io::stdout().lock().write_all(&block).unwrap();
            done.set(true);
            eprintln!("ticks while writing: {}", ticks.wait().unwrap());
        }
        Some("kill") => {
            let reader = wasmlet::spawn(|| {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map(|_| line)
                    .map_err(|e| e.to_string())
            });
            let _ = wasmlet::sleep(Duration::from_millis(20));
            reader.kill();
            println!("reader: {:?}", reader.wait().map_err(|e| e.to_string()));
        }
        _ => panic!("usage: stdio read|write|kill"),
    }
}

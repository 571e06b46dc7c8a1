//! Reads of stdin and writes to stdout that must wait suspend only their
//! green thread: a neighbour ticks every millisecond meanwhile, and says on
//! stderr when it has ticked 20 times while the reader or writer waits (the
//! test waits for that line before it sends or drains anything).
//!
//! `stdio read`: reads one line from stdin.
//! `stdio write`: writes 4 MiB to stdout.
//! `stdio kill`: a green thread waiting on stdin is killed; main goes on.
//! `stdio write-moved` / `read-moved`: the same after moving stdout (or
//! stdin) onto descriptor 3 with `fd_renumber` (run with a `--dir`, whose
//! preopen is 3: WASI moves only onto an open descriptor); each says on
//! stderr when its neighbour has ticked 20 times while it waits.
//! `stdio read-stdout`: tries to read descriptor 1.
//! `stdio full-stderr`: fills stderr (the test reads it only at the end),
//! then makes the host log a line (a spawn it refuses), then says on stdout
//! that it still runs.
use std::io::{BufRead, Read, Write};
use std::os::fd::FromRawFd;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn fd_renumber(from: u32, to: u32) -> u16;
}

/// Moves descriptor `from` onto `to`.
fn renumber(from: u32, to: u32) {
    // SAFETY: a plain WASI call on two descriptor numbers.
    assert_eq!(unsafe { fd_renumber(from, to) }, 0, "fd_renumber");
}

/// Ticks every millisecond while `waiting` runs; says so on stderr once it
/// has ticked 20 times.
fn tick_while<T: 'static>(waiting: &wasmlet::GreenThread<T>, what: &str) {
    let mut ticks = 0;
    while !waiting.thread().dead() {
        let _ = wasmlet::sleep(Duration::from_millis(1));
        ticks += 1;
        if ticks == 20 {
            eprintln!("ticked 20 times while {what}");
        }
    }
}
use std::time::Duration;

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("read") => {
            let reader = wasmlet::spawn(|| {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map(|_| line)
            });
            tick_while(&reader, "reading");
            println!("read: {}", reader.join().unwrap().unwrap().trim_end());
        }
        Some("write") => {
            let writer = wasmlet::spawn(|| {
                std::io::stdout()
                    .lock()
                    .write_all(&vec![b'x'; 4 << 20])
                    .is_ok()
            });
            tick_while(&writer, "writing");
            eprintln!("wrote: {}", writer.wait().unwrap());
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
        Some("write-moved") => {
            renumber(1, 3);
            let writer = wasmlet::spawn(|| {
                // SAFETY: descriptor 3 is stdout, moved; this File is its
                // only owner.
                let mut out = unsafe { std::fs::File::from_raw_fd(3) };
                out.write_all(&vec![b'x'; 4 << 20]).is_ok()
            });
            tick_while(&writer, "writing");
            eprintln!("wrote: {}", writer.wait().unwrap());
        }
        Some("read-moved") => {
            renumber(0, 3);
            let reader = wasmlet::spawn(|| {
                // SAFETY: descriptor 3 is stdin, moved; this File is its
                // only owner.
                let input = unsafe { std::fs::File::from_raw_fd(3) };
                let mut line = String::new();
                std::io::BufReader::new(input)
                    .read_line(&mut line)
                    .map(|_| line)
            });
            tick_while(&reader, "reading");
            println!("read: {}", reader.join().unwrap().unwrap().trim_end());
        }
        Some("read-stdout") => {
            // SAFETY: descriptor 1 is stdout; forgotten below, not closed.
            let mut out = unsafe { std::fs::File::from_raw_fd(1) };
            let got = out.read(&mut [0; 64]).map_err(|e| e.raw_os_error());
            std::mem::forget(out);
            eprintln!("reading stdout: {got:?}");
        }
        Some("full-stderr") => {
            // The writer holds std's stderr lock while it waits: nothing
            // else of the guest's may print there.
            wasmlet::hub_exceptions(false);
            let writer = wasmlet::spawn(|| std::io::stderr().write_all(&vec![b'e'; 1 << 20]));
            // 20 ticks with the writer still at it: the pipe is full.
            let mut ticks = 0;
            while ticks < 20 && !writer.thread().dead() {
                let _ = wasmlet::sleep(Duration::from_millis(1));
                ticks += 1;
            }
            // A spawn the host refuses, which it logs (to the full stderr).
            let spawner = wasmlet::spawn(|| {
                wasmlet::Builder::new()
                    .stack_size(u32::MAX as usize)
                    .spawn(|| ());
            });
            let refused = spawner.wait().is_err();
            for _ in 0..20 {
                let _ = wasmlet::sleep(Duration::from_millis(1));
            }
            println!("still running after the refusal: {refused}");
            std::process::exit(0);
        }
        _ => panic!("usage: stdio read|write|kill|write-moved|read-moved|read-stdout|full-stderr"),
    }
}

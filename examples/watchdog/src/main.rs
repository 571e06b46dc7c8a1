//! A watchdog: a worker that may hang is given a deadline with spawn_after;
//! if the deadline fires first it kills the worker. Links report how each
//! worker ended, from the worker's own context.
use std::time::Duration;

fn supervised(name: &'static str, work_ms: u64, deadline_ms: u64) -> wasmlet::GreenThread<String> {
    let worker = wasmlet::spawn(move || {
        let _ = wasmlet::sleep(Duration::from_millis(work_ms));
        format!("{name} finished its work")
    });
    let target = worker.clone();
    let watchdog = wasmlet::spawn_after(Duration::from_millis(deadline_ms), move || {
        if target.kill_with(format!("{name} missed its {deadline_ms} ms deadline")) {
            println!("watchdog: killed {name}");
        }
    });
    worker.link(move |gt| {
        // The worker ended in time: the watchdog is no longer needed.
        watchdog.cancel();
        match gt.wait() {
            Ok(msg) => println!("link: {msg}"),
            Err(e) => println!("link: {name} ended early: {e}"),
        }
    });
    worker
}

fn main() {
    let quick = supervised("quick job", 10, 50);
    let slow = supervised("slow job", 1_000, 30);
    println!("quick: {:?}", quick.wait());
    println!("slow: {:?}", slow.wait().map_err(|e| e.to_string()));
}

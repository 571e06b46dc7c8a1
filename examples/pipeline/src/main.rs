//! A producer/consumer pipeline over bounded queues: a producer reads "jobs",
//! three workers process them, a collector gathers the results.
//!
//! The job queue holds at most 3 jobs, so the producer can never run more
//! than 3 jobs ahead of the workers: `put` waits for room (backpressure).
//! `task_done`/`join` tell the producer when every job has been processed.
use std::time::Duration;

use wasmlet::Queue;

const JOBS: u32 = 10;
const WORKERS: u32 = 3;

fn main() {
    let jobs: Queue<Option<u32>> = Queue::bounded(3);
    let results: Queue<(u32, u32, u32)> = Queue::new();

    for worker in 1..=WORKERS {
        let (jobs, results) = (jobs.clone(), results.clone());
        wasmlet::spawn_n(move || {
            // `None` is the signal to stop.
            while let Some(job) = jobs.get().expect("no timeout is set") {
                // Processing takes a while: the job number decides how long.
                let _ = wasmlet::sleep(Duration::from_millis(u64::from(job % 4) * 3));
                results.put((job, job * job, worker)).expect("unbounded");
                jobs.task_done().expect("one task_done per job taken");
            }
            jobs.task_done().expect("one task_done per stop signal");
        });
    }

    let mut waited = 0;
    for job in 1..=JOBS {
        if jobs.full() {
            waited += 1;
            println!(
                "producer: queue full ({} jobs), waiting for room",
                jobs.qsize()
            );
        }
        jobs.put(Some(job)).expect("no timeout is set");
        println!("producer: queued job {job}");
    }
    jobs.join().expect("no timeout is set");
    println!("producer: all {JOBS} jobs processed; stopping the workers");
    for _ in 0..WORKERS {
        jobs.put(None).expect("no timeout is set");
    }
    jobs.join().expect("no timeout is set");

    let mut done: Vec<(u32, u32, u32)> = (0..JOBS)
        .map(|_| results.get_nowait().expect("every job left a result"))
        .collect();
    for (job, square, worker) in &done {
        println!("collector: job {job} -> {square} (worker {worker})");
    }
    done.sort();
    let squares: Vec<u32> = done.iter().map(|r| r.1).collect();
    println!(
        "pipeline done: {JOBS} jobs, {WORKERS} workers, producer waited for room {waited} times"
    );
    println!("squares: {squares:?}");
}

//! Settings for a [`Runtime`](crate::Runtime) and the hubs built on it.

use std::time::Duration;

/// How green threads are sized and scheduled. `Config::default()` suits most
/// programs; every field can be changed before [`Runtime::new`](crate::Runtime::new).
///
/// ```
/// let mut config = wasmlet_host::Config::default();
/// config.max_green_threads = 100_000;
/// config.fiber_stack_size = 256 * 1024;
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Shadow stack (the part of a green thread's stack in the guest's linear
    /// memory) for a green thread spawned without a size of its own. A
    /// guest's memory holds at most 4 GiB (wasm32), so this bounds how many
    /// green threads one guest can hold at once: about 120,000 of the
    /// default. An overflow is caught at the frame that would overflow, and
    /// says to spawn with a larger `Builder::stack_size`. The thread's TLS
    /// block is carved from its top. Default 32 KiB.
    pub shadow_stack_size: u32,
    /// Native stack each green thread's wasm code runs on (wasmtime's fiber
    /// stack), rounded up to whole pages; at least 256 KiB. Wasm code may use
    /// all but a quarter of it (at least 128 KiB), which is kept for the host
    /// functions it calls. Only touched pages take memory (typically one
    /// page for a green thread that sleeps). Default 1 MiB.
    pub fiber_stack_size: usize,
    /// Most green threads alive at once in one hub (over all its guests); a
    /// spawn past it traps the spawner with an error saying so. A sanity
    /// bound: what guards the host against a guest spawning without end is
    /// the guest's `GuestOptions::max_host_memory` (a running green thread
    /// holds about 25 KiB of host memory, one spawned but not yet started a
    /// few hundred bytes). Default 4,000,000.
    pub max_green_threads: u32,
    /// A green thread that runs this long without yielding is paused so that
    /// other *guests* run; no other green thread of its own guest runs before
    /// it resumes. `None` turns preemption off. Default 10 ms.
    pub time_slice: Option<Duration>,
    /// Instances (with their stores) a guest keeps from green threads that
    /// ended normally, to run its next green threads without instantiating
    /// anew (about 20 KiB of host memory each). Up to 16 times as many are
    /// kept and reused until the hub is next idle, and the surplus is dropped
    /// then. Default 1,024.
    pub spare_instances: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shadow_stack_size: 32 * 1024,
            fiber_stack_size: 1024 * 1024,
            max_green_threads: 4_000_000,
            time_slice: Some(Duration::from_millis(10)),
            spare_instances: 1024,
        }
    }
}

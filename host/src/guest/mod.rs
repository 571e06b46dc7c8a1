//! What a guest starts with (arguments, environment, directories, output)
//! and how it ended.

pub(crate) mod asyncify;
pub(crate) mod cpu_clock;
pub(crate) mod module_cache;
pub(crate) mod program;
pub(crate) mod rewrite;
pub(crate) mod shadow_stack;
pub(crate) mod store_data;
pub(crate) mod unwind;

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::error::Context;
use wasmtime::Result;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::scheduler::GuestKey;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Names a guest added to a [`Hub`](crate::Hub).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestId(pub(crate) GuestKey);

/// How a guest is started.
///
/// ```
/// let options = wasmlet_host::GuestOptions {
///     args: vec!["hello.wasm".into(), "--verbose".into()],
///     env: vec![("LANG".into(), "C".into())],
///     ..Default::default()
/// };
/// ```
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// The guest's `argv`, program name first.
    pub args: Vec<String>,
    /// Environment variables the guest sees (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// Host directories the guest may open, and the path it sees each at.
    pub dirs: Vec<(PathBuf, String)>,
    /// Keep the guest's stdout and stderr (see [`Hub::output`](crate::Hub::output))
    /// instead of passing them through to the host's.
    pub capture_output: bool,
    /// Let the guest read the host process's stdin (a read with nothing to
    /// read waits only its green thread). Off by default: a plugin has no
    /// business reading its embedder's input, and whoever reads first gets
    /// the bytes. The `wasmlet` CLI turns it on.
    pub inherit_stdin: bool,
    /// Most green threads of this guest alive at once (under the hub's
    /// `Config::max_green_threads`, which counts every guest's): a spawn
    /// past it traps the spawner, saying so (`try_spawn` returns the
    /// refusal). None: only the hub's limit.
    pub max_green_threads: Option<u32>,
    /// Most bytes of linear memory the guest may grow to (rounded down to
    /// whole 64 KiB pages; never above what the module declares, where the
    /// loader reads the toolchain's default 1 GiB as all of wasm32's 4 GiB,
    /// so that shadow stacks of many green threads fit). A guest
    /// whose main green thread fails with its memory at this limit ends
    /// with [`GuestError::LimitExceeded`] and exit code 137. None: the
    /// module's own maximum.
    pub max_memory: Option<u64>,
    /// How long the guest may run, from when it is added: past it, the hub
    /// ends it (within one time slice even while it spins) with
    /// [`GuestError::LimitExceeded`] and exit code 137. None: no limit.
    pub time_limit: Option<std::time::Duration>,
    /// Most CPU time the guest's green threads may use, as the hub measures
    /// it (see [`GuestUsage::cpu_time`]): past it, the hub ends the guest
    /// (within one time slice even while it spins) with
    /// [`GuestError::LimitExceeded`] and exit code 137. None: no limit.
    /// Ending a guest that spins without a host call needs preemption
    /// (`Config::time_slice`): the limit is checked as each step ends.
    pub max_cpu_time: Option<std::time::Duration>,
    /// Most host memory the guest's green threads and links may take. Each
    /// green thread that has started is charged [`HOST_BYTES_PER_GREEN_THREAD`]
    /// (its store and instance, the top 16 KiB of its fiber stack, its
    /// timer and scheduling record; [`HOST_BYTES_PER_COMPACT_THREAD`] in the
    /// compact model, where it has no store, instance or fiber) and the rest of its fiber stack as deep
    /// as it may have touched it (x86-64 Linux 6.13+: a thread past the
    /// limit there ends the guest, when it next suspends), each one spawned but not yet started
    /// [`HOST_BYTES_PER_UNSTARTED_THREAD`] (a record in a queue), each
    /// pending link [`HOST_BYTES_PER_LINK`], each TLS session the host
    /// keeps for it [`HOST_BYTES_PER_TLS_SESSION`] (a session past the
    /// limit is refused: `tls-connect` fails, and a TLS listener accepts no
    /// more until one closes). A spawn is refused unless one
    /// more started green thread would fit (`try_spawn` reports it; `spawn`
    /// traps the spawner); a green thread whose start would pass the limit
    /// (many spawned, then all sleeping) fails instead of starting (its
    /// `wait` reports a trap, and the hub logs why); a link past it ends the guest
    /// with [`GuestError::LimitExceeded`]. Default 4 GiB: about 130,000
    /// green threads running at once (4 million in the compact model, where
    /// the guest's 4 GiB of memory for their shadow stacks bounds first), or millions spawned at once and run
    /// a few at a time (eventlet's "spawn them all, then wait for each");
    /// lower it where many guests share a host.
    pub max_host_memory: u64,
    /// Most sockets, files and directories the guest may have open at once
    /// that it opened itself (its standard streams and preopened directories
    /// do not count): an open past it fails with `EMFILE`, which the guest
    /// sees as an error (`std::fs::File::open` returns it; a socket call
    /// says which flag raises it).
    ///
    /// Default: no cap of its own (`u32::MAX`). As with eventlet and Go, a
    /// server may then hold what the process may: the host raises the
    /// process's `RLIMIT_NOFILE` to its hard limit, keeps a reserve for
    /// itself, and shares the rest between guests so that none can starve
    /// another: each guest is guaranteed 256 descriptors (or its cap, if
    /// lower), and past that takes only room that is neither held nor
    /// guaranteed to another guest. Set a cap where many guests share a
    /// host and one should hold no more.
    pub max_descriptors: u32,
    /// Most bytes kept of each captured stream (see `capture_output`): a
    /// write past it traps the writing green thread, and a guest whose main
    /// green thread fails that way ends with [`GuestError::LimitExceeded`].
    /// Also the most a plugin's call may return (more traps the call).
    /// Default 64 MiB.
    pub max_output: usize,
    /// For a plugin ([`Hub::add_plugin`](crate::Hub::add_plugin)): most
    /// calls of its functions in flight at once. Past it, `Hub::call` and
    /// `HubHandle::try_call` fail with
    /// [`CallError::Busy`](crate::CallError::Busy) and `HubHandle::call`
    /// waits for one to end. Default 1,024.
    pub max_calls_in_flight: usize,
    /// Addresses the guest may bind (TCP listen, UDP bind), each exactly:
    /// `wasmlet run --listen IP:PORT`. Port 0 (any free port) only where
    /// listed as port 0. Default: none (see [`crate::io::net_policy`]).
    pub net_listen: Vec<std::net::SocketAddr>,
    /// Addresses the guest may connect or send to, and names it may
    /// resolve: `wasmlet run --connect CIDR[:PORTS]|HOST:PORT`. Default:
    /// none. Sockets count against `max_descriptors` and close when the
    /// guest ends.
    pub net_connect: Vec<crate::io::net_policy::ConnectRule>,
    /// TLS that the host terminates for the guest, so that keys never
    /// enter the sandbox: listen addresses whose connections are decrypted
    /// (`wasmlet run --listen-tls IP:PORT --cert FILE --key FILE`), and
    /// what client connections trust (`--ca FILE`). Default: no TLS
    /// listeners; clients trust Mozilla's roots. See [`crate::tls`].
    pub tls: crate::io::tls::TlsOptions,
    /// How the guest's green threads execute: each in a store and instance
    /// of its own on its own fiber, or all in one instance. Default:
    /// [`Threads::default`].
    pub threads: Threads,
}

/// How a guest's green threads execute (the README's "Two execution
/// models" says when to pick which, with the measurements).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Threads {
    /// The model the `WASMLET_THREADS` environment variable names (`fibers`
    /// or `compact`), else [`Threads::Fibers`]; a module the compact model
    /// cannot run (see [`Threads::Compact`]) runs with fibers.
    #[default]
    Auto,
    /// Each green thread is its own wasmtime `Store` and `Instance`, running
    /// on its own fiber: the fastest switches and CPU-bound code, about
    /// 25 KB of host memory per waiting green thread.
    Fibers,
    /// All of the guest's green threads run in one `Store` and `Instance`;
    /// a waiting green thread is its wasm frames, saved into its own shadow
    /// stack by Binaryen's Asyncify (applied when the guest is added, and
    /// cached on disk: see the README). A few KB per waiting green thread.
    /// A module the transform cannot handle (one without
    /// `wasm32-wasip1-threads`' shadow-stack layout, or using a WebAssembly
    /// feature it does not know) is refused with the reason.
    Compact,
}

impl Threads {
    /// The model [`Threads::Auto`] stands for here (`WASMLET_THREADS`).
    pub(crate) fn chosen(self) -> Threads {
        match self {
            Threads::Auto => match std::env::var("WASMLET_THREADS").as_deref() {
                Ok("compact") => Threads::Compact,
                _ => Threads::Fibers,
            },
            explicit => explicit,
        }
    }
}

/// Host memory charged to a guest per live green thread (see
/// [`GuestOptions::max_host_memory`]): about 25 KB were measured for a
/// sleeping green thread of a small guest (`bench/run`), more for larger
/// modules.
pub const HOST_BYTES_PER_GREEN_THREAD: u64 = 32 * 1024;

/// Host memory charged to a guest per live green thread in the compact
/// model ([`Threads::Compact`]), instead of [`HOST_BYTES_PER_GREEN_THREAD`]:
/// its scheduling and saved-state records and its waiting host call, with
/// room to spare (about 0.6 KB were measured for a sleeping one,
/// `bench/memory.py`). Its shadow stack and saved frames are guest memory
/// (see [`GuestOptions::max_memory`]); it holds no store, instance or fiber
/// stack.
pub const HOST_BYTES_PER_COMPACT_THREAD: u64 = 1024;

/// Host memory charged to a guest per green thread spawned but not yet
/// started (see [`GuestOptions::max_host_memory`]): its scheduling record,
/// its place in the run queue and its id's entry, with room to spare. It
/// takes no store, instance, fiber stack or shadow stack until it starts.
pub const HOST_BYTES_PER_UNSTARTED_THREAD: u64 = 512;

/// Host memory charged to a guest per TLS session the host keeps for it
/// (a connection accepted on a `--listen-tls` listener, or made by
/// `tls-connect`): rustls' state and its buffers for a 16 KiB record each
/// way, with room to spare (an idle session after one request was measured
/// at 18 KB resident). A session past the guest's
/// [`GuestOptions::max_host_memory`] is refused (`host-memory-full`).
pub const HOST_BYTES_PER_TLS_SESSION: u64 = 48 * 1024;

/// Host memory charged to a guest per pending link (its record, with room
/// to spare).
pub const HOST_BYTES_PER_LINK: u64 = 32;

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            capture_output: false,
            inherit_stdin: false,
            max_green_threads: None,
            net_listen: Vec::new(),
            net_connect: Vec::new(),
            tls: Default::default(),
            max_memory: None,
            time_limit: None,
            max_cpu_time: None,
            max_host_memory: 4 << 30,
            max_descriptors: u32::MAX,
            max_output: 64 << 20,
            max_calls_in_flight: 1024,
            threads: Threads::default(),
        }
    }
}

/// A guest's captured stdout and stderr.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl CapturedOutput {
    /// True if either stream is full.
    pub(crate) fn full(&self, max: usize) -> bool {
        self.stdout.contents().len() >= max || self.stderr.contents().len() >= max
    }

    pub(crate) fn contents(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.stdout.contents().to_vec(),
            self.stderr.contents().to_vec(),
        )
    }
}

impl GuestOptions {
    pub(crate) fn build_wasi(&self) -> Result<(WasiP1Ctx, Option<CapturedOutput>)> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&self.args)
            .monotonic_clock(crate::clock::MonotonicClock);
        for (key, value) in &self.env {
            builder.env(key, value);
        }
        for (host, guest) in &self.dirs {
            builder
                .preopened_dir(host, guest, FsPerms::ReadWrite)
                .with_context(|| format!("opening directory {} for the guest", host.display()))?;
        }
        if self.inherit_stdin {
            builder.inherit_stdin();
        }
        let output = if self.capture_output {
            let output = CapturedOutput {
                stdout: MemoryOutputPipe::new(self.max_output),
                stderr: MemoryOutputPipe::new(self.max_output),
            };
            builder
                .stdout(output.stdout.clone())
                .stderr(output.stderr.clone());
            Some(output)
        } else {
            builder.inherit_stdout().inherit_stderr();
            None
        };
        Ok((builder.build_p1(), output))
    }
}

/// What a live guest uses now (see [`Hub::usage`](crate::Hub::usage)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GuestUsage {
    /// Its green threads alive (main included).
    pub green_threads: usize,
    /// Its linear memory, in bytes.
    pub memory: u64,
    /// Host memory charged to it (see [`GuestOptions::max_host_memory`]).
    pub host_memory: u64,
    /// Spare instances it keeps for its next green threads.
    pub spare_instances: usize,
    /// Sockets, files and directories it has open that it opened itself.
    pub descriptors: u32,
    /// CPU time its green threads have used: every step the hub gives one of
    /// them (from resuming it to getting the hub back) is timed, on the CPU's
    /// time-stamp counter where it is invariant (two reads a step, about
    /// 11 ns each), so a guest that computes in short bursts is charged all
    /// of them. It is wall time while the step runs: time the OS takes the
    /// hub's thread away mid-step counts too. Work the host does for the
    /// guest's calls during the step counts; the hub's own work between
    /// steps does not.
    pub cpu_time: std::time::Duration,
}

/// How a guest ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GuestExit {
    /// The process exit code it stands for: the guest's own (`exit(n)`, 0 when
    /// `main` returns), or non-zero when it failed (134 for a trap in main).
    pub code: i32,
    /// Why it failed, if it did not end on its own.
    pub error: Option<Arc<GuestError>>,
    /// The CPU time its green threads used (see [`GuestUsage::cpu_time`]).
    pub cpu_time: std::time::Duration,
}

impl GuestExit {
    pub(crate) fn code(code: i32) -> GuestExit {
        GuestExit {
            code,
            error: None,
            cpu_time: std::time::Duration::ZERO,
        }
    }

    pub(crate) fn failed(code: i32, error: GuestError) -> GuestExit {
        GuestExit {
            code,
            error: Some(Arc::new(error)),
            cpu_time: std::time::Duration::ZERO,
        }
    }
}

/// Why a guest failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// Its main green thread trapped (a panic in `main` traps too); the
    /// trap's message with its wasm backtrace.
    #[error("the main green thread trapped: {0}")]
    Trap(String),
    /// One of the guest's `std::thread`s trapped (a panic aborts): as in any
    /// wasi-threads program, the whole guest ends. Names the thread; the
    /// trap's message with its wasm backtrace.
    #[error("{0}")]
    StdThreadTrap(String),
    /// Every green thread was blocked with no timer pending: nothing could
    /// ever wake one. Lists each blocked green thread and what it waits for.
    #[error("deadlock: every green thread is blocked and no timer is pending\n{0}")]
    Deadlock(String),
    /// Another green thread killed the main green thread.
    #[error("the main green thread was killed")]
    MainKilled,
    /// The guest went past one of its limits (see [`GuestOptions`]): which,
    /// and its figure.
    #[error("the guest exceeded its {0}")]
    LimitExceeded(String),
    /// The embedder ended the guest ([`Hub::kill_guest`](crate::Hub::kill_guest)
    /// or a [`HubHandle`](crate::HubHandle)), for this reason.
    #[error("killed by the host: {0}")]
    Killed(String),
}

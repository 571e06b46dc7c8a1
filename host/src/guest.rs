//! What a guest starts with (arguments, environment, directories, output)
//! and how it ended.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::error::Context;
use wasmtime::Result;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Names a guest added to a [`Hub`](crate::Hub).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestId(pub(crate) usize);

/// How a guest is started.
///
/// ```
/// let options = wasmlet_host::GuestOptions {
///     args: vec!["hello.wasm".into(), "--verbose".into()],
///     env: vec![("LANG".into(), "C".into())],
///     ..Default::default()
/// };
/// ```
#[derive(Clone, Debug, Default)]
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
    /// Let the guest read the host process's stdin. Off by default: a
    /// plugin has no business reading its embedder's input, and a read
    /// would block the hub's OS thread until input comes. The `wasmlet` CLI
    /// turns it on.
    pub inherit_stdin: bool,
    /// Most green threads of this guest alive at once (under the hub's
    /// `Config::max_green_threads`, which counts every guest's): a spawn
    /// past it traps the spawner, saying so. None: only the hub's limit.
    pub max_green_threads: Option<u32>,
    /// Most bytes of linear memory the guest may grow to (rounded down to
    /// whole 64 KiB pages; never above what the module declares). A guest
    /// whose main green thread fails with its memory at this limit ends
    /// with [`GuestError::LimitExceeded`] and exit code 137. None: the
    /// module's own maximum.
    pub max_memory: Option<u64>,
    /// How long the guest may run, from when it is added: past it, the hub
    /// ends it (within one time slice even while it spins) with
    /// [`GuestError::LimitExceeded`] and exit code 137. None: no limit.
    pub time_limit: Option<std::time::Duration>,
}

/// Most bytes kept of a captured stream.
const CAPTURE_LIMIT: usize = 64 << 20;

/// A guest's captured stdout and stderr.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl CapturedOutput {
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
                stdout: MemoryOutputPipe::new(CAPTURE_LIMIT),
                stderr: MemoryOutputPipe::new(CAPTURE_LIMIT),
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
pub struct GuestUsage {
    /// Its green threads alive (main included).
    pub green_threads: usize,
    /// Its linear memory, in bytes.
    pub memory: u64,
    /// Spare instances it keeps for its next green threads.
    pub spare_instances: usize,
}

/// How a guest ended.
#[derive(Clone, Debug)]
pub struct GuestExit {
    /// The process exit code it stands for: the guest's own (`exit(n)`, 0 when
    /// `main` returns), or non-zero when it failed (134 for a trap in main).
    pub code: i32,
    /// Why it failed, if it did not end on its own.
    pub error: Option<Arc<GuestError>>,
}

impl GuestExit {
    pub(crate) fn code(code: i32) -> GuestExit {
        GuestExit { code, error: None }
    }

    pub(crate) fn failed(code: i32, error: GuestError) -> GuestExit {
        GuestExit {
            code,
            error: Some(Arc::new(error)),
        }
    }
}

/// Why a guest failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// Its main green thread trapped (a panic in `main` traps too); the
    /// trap's message with its wasm backtrace.
    #[error("the main green thread trapped: {0}")]
    Trap(String),
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

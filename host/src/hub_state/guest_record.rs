//! What a hub keeps of each guest, from its options to its exit.

use super::*;

/// One guest of a hub: its wasm side while it runs, then how it ended.
pub(crate) struct GuestRecord {
    pub live: Option<LiveGuest>,
    pub exit: Option<GuestExit>,
    pub output: Option<CapturedOutput>,
    /// Green threads the hub stopped (a refused spawn, say) since the first,
    /// which was logged: a spawn bomb must not flood the log.
    pub unlogged_refusals: u64,
    /// Whether the first refusal was logged.
    pub refusal_logged: bool,
    /// `GuestOptions::max_green_threads`.
    pub max_green_threads: Option<u32>,
    /// `GuestOptions::max_memory`, in whole pages' bytes.
    pub memory_limit: Option<u64>,
    /// Which of its descriptors 0-2 are the host's own streams.
    pub host_stdio: HostStdio,
    /// `GuestOptions::max_host_memory`.
    pub max_host_memory: u64,
    /// Its part of the process's descriptors (capped at
    /// `GuestOptions::max_descriptors`), and the descriptors it opened itself
    /// that are open.
    pub descriptors: DescriptorShare,
    pub opened: rustc_hash::FxHashSet<u32>,
    /// CPU time charged to it, in `crate::cpu_clock` cycles, and
    /// `GuestOptions::max_cpu_time`.
    pub cpu_cycles: u64,
    pub max_cpu_time: Option<Duration>,
    /// Bytes of its green threads' fiber stacks charged to its host memory
    /// (see `crate::stack_charge`).
    pub stack_bytes: u64,
    /// `GuestOptions::max_output` (when its output is captured).
    pub max_output: usize,
    /// Why its latest `try-spawn` that returned 0 refused.
    pub last_refusal: SpawnRefusal,
    /// A plugin: it lives on when its main returns, for the host's calls.
    pub plugin: bool,
    /// What it may reach on the network.
    pub net: NetPolicy,
    /// Whose its name lookups are, on the process's resolver threads.
    pub lookup_owner: crate::resolver::Owner,
    /// Its open sockets.
    pub sockets: Sockets,
}

impl GuestRecord {
    /// CPU time charged to it.
    pub fn cpu_time(&self) -> Duration {
        crate::cpu_clock::to_duration(self.cpu_cycles)
    }

    /// Sockets, files and directories it opened itself and holds.
    pub(crate) fn held_descriptors(&self) -> usize {
        self.opened.len() + self.sockets.len()
    }

    /// A record for a guest that starts with `live`; its limits as
    /// `options` say.
    pub fn new(
        live: LiveGuest,
        output: Option<CapturedOutput>,
        options: &crate::GuestOptions,
    ) -> GuestRecord {
        GuestRecord {
            live: Some(live),
            exit: None,
            output,
            unlogged_refusals: 0,
            refusal_logged: false,
            max_green_threads: options.max_green_threads,
            memory_limit: options
                .max_memory
                .map(|bytes| bytes / (64 * 1024) * (64 * 1024)),
            host_stdio: HostStdio::new(options.inherit_stdin, !options.capture_output),
            max_host_memory: options.max_host_memory,
            descriptors: DescriptorBudget::process().share(options.max_descriptors as usize),
            opened: Default::default(),
            cpu_cycles: 0,
            stack_bytes: 0,
            max_cpu_time: options.max_cpu_time,
            max_output: options.max_output,
            last_refusal: SpawnRefusal::HubFull,
            plugin: false,
            net: NetPolicy::new(options.net_listen.clone(), options.net_connect.clone()),
            lookup_owner: crate::resolver::new_owner(),
            sockets: Sockets::default(),
        }
    }
}

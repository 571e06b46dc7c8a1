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
    /// How it was started: its limits (`max_green_threads`,
    /// `max_host_memory`, `max_cpu_time`, `max_output`, ...) are read from
    /// here, whole, not copied field by field.
    pub options: crate::GuestOptions,
    /// Which of its descriptors 0-2 are the host's own streams.
    pub host_stdio: HostStdio,
    /// Its part of the process's descriptors (capped at
    /// `GuestOptions::max_descriptors`), and the descriptors it opened itself
    /// that are open.
    pub descriptors: DescriptorShare,
    pub opened: rustc_hash::FxHashSet<u32>,
    /// CPU time charged to it, in `crate::guest::cpu_clock` cycles.
    pub cpu_cycles: u64,
    /// Bytes of its green threads' fiber stacks charged to its host memory
    /// (see `crate::execution::stack_charge`).
    pub stack_bytes: u64,
    /// Why its latest `try-spawn` that returned 0 refused.
    pub last_refusal: SpawnRefusal,
    /// A plugin: it lives on when its main returns, for the host's calls.
    pub plugin: bool,
    /// What it may reach on the network.
    pub net: NetPolicy,
    /// Whose its name lookups are, on the process's resolver threads.
    pub lookup_owner: crate::io::resolver::Owner,
    /// Its open sockets.
    pub sockets: Sockets,
}

impl GuestRecord {
    /// CPU time charged to it.
    pub fn cpu_time(&self) -> Duration {
        crate::guest::cpu_clock::to_duration(self.cpu_cycles)
    }

    /// `GuestOptions::max_memory`, in whole pages' bytes.
    pub fn memory_limit(&self) -> Option<u64> {
        self.options
            .max_memory
            .map(|bytes| bytes / (64 * 1024) * (64 * 1024))
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
        options: crate::GuestOptions,
    ) -> GuestRecord {
        GuestRecord {
            live: Some(live),
            exit: None,
            output,
            unlogged_refusals: 0,
            refusal_logged: false,
            host_stdio: HostStdio::new(options.inherit_stdin, !options.capture_output),
            descriptors: DescriptorBudget::process().share(options.max_descriptors as usize),
            opened: Default::default(),
            cpu_cycles: 0,
            stack_bytes: 0,
            last_refusal: SpawnRefusal::HubFull,
            plugin: false,
            net: NetPolicy::new(
                // A TLS listen address is a listen address.
                options
                    .net_listen
                    .iter()
                    .chain(&options.tls.listen)
                    .copied()
                    .collect(),
                options.net_connect.clone(),
            ),
            lookup_owner: crate::io::resolver::new_owner(),
            sockets: Sockets::default(),
            options,
        }
    }
}

impl HubState {
    /// Adds a guest that starts with `live` (its main green thread queued);
    /// it is ended at `time_limit` from now, if one is given.
    pub fn add_guest(
        &mut self,
        live: LiveGuest,
        output: Option<CapturedOutput>,
        options: crate::GuestOptions,
        time_limit: Option<Duration>,
    ) -> GuestKey {
        let key = self.sched.add_guest(ThreadPayload::default());
        debug_assert_eq!(key.0, self.guests.len());
        self.guests.push(GuestRecord::new(live, output, options));
        if let Some(limit) = time_limit {
            if let Some(when) = Instant::now().checked_add(limit) {
                self.time_limits.push(Reverse((when, key, limit)));
            }
        }
        key
    }

    /// Makes the guest a plugin: it lives on when its main returns, for the
    /// host's calls.
    pub fn make_plugin(&mut self, guest: GuestKey) {
        self.guests[guest].plugin = true;
    }

    /// Ends the guest, if it is live, as killed by the host for `reason`.
    pub fn kill_guest(&mut self, guest: GuestKey, reason: String) {
        if self.sched.is_live(guest) {
            self.end_guest(guest, GuestExit::failed(137, GuestError::Killed(reason)));
        }
    }

    /// How the guest ended, once it has.
    pub fn exit_of(&self, guest: GuestKey) -> Option<GuestExit> {
        self.guests.get(guest.0).and_then(|g| g.exit.clone())
    }

    /// What the guest wrote to stdout and stderr, if its options captured
    /// them; with `take`, only once it has ended, and then freed.
    pub fn output_of(&mut self, guest: GuestKey, take: bool) -> Option<(Vec<u8>, Vec<u8>)> {
        let record = self.guests.get_mut(guest.0)?;
        if !take {
            return record.output.as_ref().map(CapturedOutput::contents);
        }
        record.exit.as_ref()?;
        record.output.take().map(|o| o.contents())
    }
}

//! `wasmlet serve`: a long-running host that serves the plugins a manifest
//! names, over HTTP (`http`), with counts for Prometheus (`metrics`).
//!
//! ```text
//!   HTTP request ──► http ──► Service::call ──► an instance with room ──► hub pool
//!   (tokio thread)            (in-flight limit,   (round robin; an ended     (a green
//!                              deadline)           instance is restarted)     thread)
//! ```
//!
//! The [`Service`] is the part without HTTP: an embedder can put it behind
//! any transport. Its rules:
//! - a host at its in-flight limit refuses a call at once
//!   ([`ServeError::HostBusy`]) rather than queue it without bound, so that
//!   a caller can go elsewhere; so does a plugin whose instances are all
//!   at their `max_calls_in_flight`;
//! - every call has a deadline (the caller's, else the manifest's
//!   `call_timeout_ms`): at the deadline its green thread is cancelled;
//! - an instance that has ended (it exited or trapped in `main`) is started
//!   again when a call finds it so, and the call goes to it: a plugin that
//!   crashes does not stop being served;
//! - [`Service::drain`] stops taking calls; [`Service::in_flight`] says
//!   when the last one has ended.

mod http;
pub mod manifest;
mod metrics;
#[cfg(feature = "nats")]
pub mod nats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::error::Context as _;
use wasmtime::Result;

pub use self::http::serve_http;
pub use self::manifest::{Manifest, PluginSource, PluginSpec, ServerSpec};
use self::metrics::{Gauges, InstanceUse, Metrics};
use crate::{CallError, HubPool, PoolGuest, PoolHandle, Program, Runtime};

/// How long a call alone in flight is watched for its result before its
/// task parks (see `Service::call_within`).
const ALONE_SPIN: Duration = Duration::from_micros(30);

/// Why a served call has no output.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The manifest names no such plugin.
    #[error("no plugin named `{0}` is served here")]
    NoSuchPlugin(String),
    /// The host has as many calls in flight as `max_in_flight` allows.
    #[error("the host has as many calls in flight as it may ({0}); try again or elsewhere")]
    HostBusy(usize),
    /// The host is draining before it exits: it takes no new calls.
    #[error("the host is shutting down and takes no new calls")]
    Draining,
    /// The input is larger than the manifest's `max_body_bytes`.
    #[error("the input is larger than the {0} bytes this host takes")]
    InputTooLarge(usize),
    /// No result by the call's deadline; its green thread was cancelled.
    #[error("no result within {0:?}; the call was cancelled")]
    DeadlineExceeded(Duration),
    /// The plugin's answer was an error (see [`CallError`]).
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ServeError {
    /// A short name of the kind, for metrics and error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::NoSuchPlugin(_) => "no_such_plugin",
            ServeError::HostBusy(_) => "host_busy",
            ServeError::Draining => "draining",
            ServeError::DeadlineExceeded(_) => "deadline_exceeded",
            ServeError::InputTooLarge(_) => "body_too_large",
            ServeError::Call(e) => match e {
                CallError::Failed(_) => "failed",
                CallError::Panicked(_) => "panicked",
                CallError::NoSuchFunction(_) => "no_such_function",
                CallError::Trapped(_) => "trapped",
                CallError::Cancelled => "cancelled",
                CallError::GuestEnded(_) => "instance_ended",
                CallError::Refused(_) => "refused",
                CallError::TimedOut => "deadline_exceeded",
                CallError::Busy => "plugin_busy",
            },
        }
    }
}

/// The plugins of a manifest, running on a pool of hubs.
pub struct Service {
    pool: Mutex<Option<HubPool>>,
    handle: PoolHandle,
    plugins: BTreeMap<String, Plugin>,
    max_in_flight: usize,
    max_input: usize,
    call_timeout: Duration,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    metrics: Metrics,
}

/// One served plugin: its program and its instances.
struct Plugin {
    program: Program,
    spec: PluginSpec,
    instances: Mutex<Vec<PoolGuest>>,
    next: AtomicUsize,
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("plugins", &self.plugins.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Loads every plugin of `manifest` (compiled modules come from the
    /// disk cache when they can) and starts its instances on a pool of
    /// hubs.
    ///
    /// # Errors
    /// If a plugin's file cannot be loaded or an instance cannot start; the
    /// message names the plugin. A plugin whose module is an `object` in
    /// NATS needs [`Service::start_with_modules`].
    pub fn start(runtime: &Runtime, manifest: &Manifest) -> Result<Service> {
        Service::start_with_modules(runtime, manifest, &BTreeMap::new())
    }

    /// As [`Service::start`], with the modules of the plugins whose source
    /// is [`PluginSource::Object`], by object name (fetched by the caller,
    /// from NATS' object store).
    ///
    /// # Errors
    /// As [`Service::start`]; also if an object's module is not in
    /// `modules`.
    pub fn start_with_modules(
        runtime: &Runtime,
        manifest: &Manifest,
        modules: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Service> {
        let pool = HubPool::new(runtime, manifest.server.hubs)?;
        let handle = pool.handle();
        let mut plugins = BTreeMap::new();
        for spec in &manifest.plugins {
            let program = match &spec.source {
                PluginSource::Path(path) => Program::from_file(runtime.engine(), path),
                PluginSource::Object(object) => match modules.get(object) {
                    Some(bytes) => Program::from_bytes(runtime.engine(), bytes)
                        .with_context(|| format!("the module of object `{object}`")),
                    None => Err(wasmtime::format_err!(
                        "its module, object `{object}`, was not fetched"
                    )),
                },
            }
            .with_context(|| format!("plugin `{}`", spec.name))?;
            let instances = (0..spec.instances)
                .map(|_| handle.add_plugin(&program, spec.options.clone()))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("starting plugin `{}`", spec.name))?;
            plugins.insert(
                spec.name.clone(),
                Plugin {
                    program,
                    spec: spec.clone(),
                    instances: Mutex::new(instances),
                    next: AtomicUsize::new(0),
                    in_flight: AtomicUsize::new(0),
                },
            );
        }
        Ok(Service {
            pool: Mutex::new(Some(pool)),
            handle,
            plugins,
            max_in_flight: manifest.server.max_in_flight,
            max_input: manifest.server.max_body_bytes,
            call_timeout: manifest.call_timeout(),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            metrics: Metrics::default(),
        })
    }

    /// Calls `plugin`'s `function` with `input` on an instance with room,
    /// within `deadline` (None: the manifest's `call_timeout_ms`, which is
    /// also the most a caller may ask for).
    ///
    /// # Errors
    /// See [`ServeError`]; every outcome is counted in the metrics.
    pub async fn call(
        &self,
        plugin: &str,
        function: &str,
        input: Vec<u8>,
        deadline: Option<Duration>,
    ) -> Result<Vec<u8>, ServeError> {
        let began = Instant::now();
        let Some(served) = self.plugins.get(plugin) else {
            return Err(ServeError::NoSuchPlugin(plugin.to_string()));
        };
        let deadline = deadline.map_or(self.call_timeout, |d| d.min(self.call_timeout));
        let result = self.call_within(served, function, input, deadline).await;
        let known = !matches!(&result, Err(ServeError::Call(CallError::NoSuchFunction(_))));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.metrics
            .call(plugin, function, known, outcome, began.elapsed());
        result
    }

    async fn call_within(
        &self,
        served: &Plugin,
        function: &str,
        input: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, ServeError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(ServeError::Draining);
        }
        if input.len() > self.max_input {
            return Err(ServeError::InputTooLarge(self.max_input));
        }
        let _host = InFlight::take(&self.in_flight, self.max_in_flight).ok_or_else(|| {
            self.metrics.host_busy();
            ServeError::HostBusy(self.max_in_flight)
        })?;
        let _plugin = InFlight::take(&served.in_flight, usize::MAX);
        let pending = self.submit(served, function, input).await?;
        if self.in_flight.load(Ordering::Relaxed) == 1 {
            // Alone in flight: this thread has nothing else to do, so it
            // watches for the result a moment before it parks; a trivial
            // call then comes back without the wake-up of a parked thread
            // (tens of microseconds where an idle CPU halts, as in a VM).
            // Under load, with calls to overlap, no thread spins.
            let until = Instant::now() + ALONE_SPIN;
            while !pending.is_finished() && Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        match tokio::time::timeout(deadline, pending.clone()).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                pending.cancel();
                Err(ServeError::DeadlineExceeded(deadline))
            }
        }
    }

    /// Hands the call to the next instance with room, starting again an
    /// instance that has ended.
    async fn submit(
        &self,
        served: &Plugin,
        function: &str,
        mut input: Vec<u8>,
    ) -> Result<crate::PendingCall, ServeError> {
        let count = served.spec.instances;
        let first = served.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = CallError::Busy;
        for k in 0..count {
            let slot = (first + k) % count;
            let instance = served.instances.lock().unwrap_or_else(|e| e.into_inner())[slot];
            // A refused call's input is gone: each try gets a copy.
            match self.handle.try_call(instance, function, input.clone()) {
                Ok(pending) => return Ok(pending),
                Err(CallError::GuestEnded(_)) => {
                    // It ended (exited, or trapped in main): a fresh one in
                    // its place takes this call.
                    let restarted = self.restart(served, slot, instance).await?;
                    return self
                        .handle
                        .try_call(restarted, function, std::mem::take(&mut input))
                        .map_err(ServeError::Call);
                }
                Err(e @ CallError::Busy) => last_error = e,
                Err(e) => return Err(ServeError::Call(e)),
            }
        }
        Err(ServeError::Call(last_error))
    }

    /// Replaces the ended instance in `slot` (unless another call did
    /// already) and returns the one there now.
    async fn restart(
        &self,
        served: &Plugin,
        slot: usize,
        ended: PoolGuest,
    ) -> Result<PoolGuest, ServeError> {
        let (handle, program, options) = (
            self.handle.clone(),
            served.program.clone(),
            served.spec.options.clone(),
        );
        let fresh = tokio::task::spawn_blocking(move || handle.add_plugin(&program, options))
            .await
            .map_err(|e| ServeError::Call(CallError::Refused(e.to_string())))?
            .map_err(|e| ServeError::Call(CallError::Refused(format!("{e:#}"))))?;
        let mut instances = served.instances.lock().unwrap_or_else(|e| e.into_inner());
        if instances[slot] == ended {
            instances[slot] = fresh;
            self.metrics.restart(&served.spec.name);
            tracing::warn!(
                "plugin `{}`: instance {slot} had ended; started it again",
                served.spec.name
            );
            Ok(fresh)
        } else {
            // Another call restarted it first: this one is not needed.
            let current = instances[slot];
            drop(instances);
            self.handle.kill_guest(fresh, "not needed");
            Ok(current)
        }
    }

    /// Stops taking calls (each new one fails with
    /// [`ServeError::Draining`]); those in flight go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether [`Service::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The served plugins' names.
    pub fn plugins(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }

    /// Every count and gauge in Prometheus' text format. Asks each hub for
    /// its instances' use, so call it off an async executor's threads.
    pub fn metrics_text(&self) -> String {
        let in_flight = self
            .plugins
            .iter()
            .map(|(name, p)| (name.clone(), p.in_flight.load(Ordering::Relaxed)))
            .collect();
        let mut instances = Vec::new();
        for (name, plugin) in &self.plugins {
            let guests = plugin
                .instances
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for (i, guest) in guests.into_iter().enumerate() {
                instances.push(InstanceUse {
                    plugin: name.clone(),
                    instance: i,
                    usage: self.handle.usage(guest, Duration::from_secs(1)),
                });
            }
        }
        self.metrics.render(&Gauges {
            in_flight,
            instances,
            draining: self.is_draining(),
        })
    }

    /// Stops the hubs (their plugins end). Calls still in flight fail.
    pub fn shutdown(&self) {
        if let Some(pool) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pool.shutdown();
        }
    }
}

/// One of at most `most` calls in flight, given back when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn take(count: &'a AtomicUsize, most: usize) -> Option<InFlight<'a>> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(count))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts the service of `manifest` and serves it over HTTP, and over NATS
/// if `[server] nats` is set, until SIGTERM or SIGINT; then drains: no new
/// calls, the calls in flight finish (up to the call timeout), and it
/// returns. Prints `listening on http://ADDR` to stdout once it takes HTTP
/// calls, then `taking calls over NATS as NAME` once it takes NATS calls.
///
/// # Errors
/// If the manifest is bad, a plugin cannot start, the address cannot be
/// bound, or NATS cannot be reached at the start (later it is reconnected
/// to without end).
pub fn run(runtime: &Runtime, manifest: &Manifest) -> Result<()> {
    manifest.check_sources()?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wasmlet-io")
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|&s| s).await;
    };
    tokio.spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let served = match &manifest.server.nats {
        None => {
            let service = Arc::new(Service::start(runtime, manifest)?);
            let listener = tokio.block_on(http::bind(manifest.server.listen))?;
            let served = tokio.block_on(http::serve_http_on(
                service.clone(),
                listener,
                &manifest.server,
                until_stopped(stopped),
            ));
            service.shutdown();
            served
        }
        #[cfg(feature = "nats")]
        Some(url) => {
            let name = manifest
                .server
                .name
                .clone()
                .unwrap_or_else(nats::default_host_name);
            let client = tokio.block_on(nats::connect(url, &name))?;
            let mut modules = BTreeMap::new();
            for spec in &manifest.plugins {
                if let PluginSource::Object(object) = &spec.source {
                    let module = tokio
                        .block_on(crate::remote::fetch_module(&client, object))
                        .with_context(|| format!("plugin `{}`", spec.name))?;
                    modules.insert(object.clone(), module);
                }
            }
            let service = Arc::new(Service::start_with_modules(runtime, manifest, &modules)?);
            let listener = tokio.block_on(http::bind(manifest.server.listen))?;
            let http_addr = format!("http://{}", listener.local_addr()?);
            let served = tokio.block_on(async {
                let (over_http, over_nats) = tokio::join!(
                    http::serve_http_on(
                        service.clone(),
                        listener,
                        &manifest.server,
                        until_stopped(stopped.clone()),
                    ),
                    nats::serve_nats(
                        service.clone(),
                        client,
                        name,
                        http_addr,
                        until_stopped(stopped.clone()),
                    ),
                );
                over_http.and(over_nats)
            });
            service.shutdown();
            served
        }
        #[cfg(not(feature = "nats"))]
        Some(_) => wasmtime::bail!(
            "[server] nats is set, but this build has no NATS support: build with the `nats` feature"
        ),
    };
    served
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: serve until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

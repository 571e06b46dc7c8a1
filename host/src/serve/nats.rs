//! The service over NATS: hosts that serve the same plugin share its calls.
//!
//! Each plugin's calls subject is subscribed in the plugin's queue group
//! (see [`crate::remote::protocol`]), so NATS gives each call to one of the
//! hosts that serve it. The rules:
//! - **stop taking at the limit**: when this host has `max_in_flight` NATS
//!   calls running, it unsubscribes (NATS then gives calls to the others, or
//!   tells the caller "no responders" and the caller tries again), and
//!   subscribes again once it is down to three quarters of it. A call that
//!   was on its way when it unsubscribed is answered `host_busy`, unrun, so
//!   that the caller sends it elsewhere: none is queued without bound;
//! - **deadlines**: a call carries its caller's time left; its green
//!   thread is cancelled when it passes;
//! - **announcements**: the host publishes its [`HostStatus`] each second
//!   and answers status requests, so that `wasmlet status` lists hosts,
//!   plugins and load;
//! - **drain**: on shutdown it unsubscribes, answers the calls still on
//!   their way `draining` (unrun: the caller sends them elsewhere), lets
//!   the calls it took finish, announces that it is gone, and returns;
//! - **reconnects**: the NATS client reconnects and subscribes again by
//!   itself when the server comes back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Message};
use futures_util::StreamExt;
use tokio::sync::watch;
use wasmtime::{format_err, Result};

use super::{ServeError, Service};
use crate::remote::protocol::{
    self, HostStatus, ERROR_HEADER, FUNCTION_HEADER, HOST_HEADER, TIMEOUT_HEADER,
};

/// How often a host announces itself.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// How long a starting host waits for its NATS server to come up (hosts
/// and server are often started together).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Connects a host to NATS at `url`, for good: once connected, it
/// reconnects without end when the server goes away. A server that is not
/// up yet is waited for up to 10 s.
///
/// # Errors
/// If the server cannot be reached by then (the message says where).
pub async fn connect(url: &str, host: &str) -> Result<async_nats::Client> {
    let until = Instant::now() + CONNECT_WAIT;
    let mut told = false;
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name(format!("wasmlet {host}"))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(crate::remote::reconnect_delay)
            .event_callback(|event| async move {
                tracing::info!("nats: {event}");
            })
            .connect(url)
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() >= until => {
                return Err(format_err!(
                    "connecting to NATS at {url}: {e} (is nats-server running there?)"
                ))
            }
            Err(e) => {
                if !told {
                    tracing::warn!("waiting for NATS at {url}: {e}");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// This host's default name: `HOSTNAME-PID`.
pub fn default_host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length, and gethostname writes at
    // most that many bytes.
    let got = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let hostname = if got == 0 {
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..end])
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    } else {
        "host".to_string()
    };
    format!("{hostname}-{}", std::process::id())
}

/// The NATS side of one host.
struct NatsHost {
    service: Arc<Service>,
    nats: async_nats::Client,
    name: String,
    http: String,
    started: Instant,
    /// Which NATS calls it takes.
    admission: Admission,
    /// NATS calls answered.
    answered: AtomicU64,
}

/// The rules of taking NATS calls, free of NATS: at most `max` taken at
/// once; at `max` the host stops taking (its subscriptions go), and it
/// takes again once down to three quarters of `max` (not at once, so that
/// a host at its limit does not unsubscribe and subscribe on every call);
/// once stopping, it takes no more, ever.
///
/// Invariant: `taking` is false whenever `taken == max` or stopping. It may
/// stay false a moment below the resume mark when a take and a finish
/// race; the next finish (there is one while `taken > 0`) sets it right.
struct Admission {
    taken: AtomicUsize,
    max: usize,
    /// Whether the host takes calls now: the takers watch it.
    taking: watch::Sender<bool>,
    /// Set once, on shutdown.
    stopping: watch::Sender<bool>,
}

impl Admission {
    fn new(max: usize) -> Admission {
        Admission {
            taken: AtomicUsize::new(0),
            max: max.max(1),
            taking: watch::Sender::new(true),
            stopping: watch::Sender::new(false),
        }
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Whether it takes calls now.
    fn taking(&self) -> bool {
        *self.taking.borrow() && !self.stopping()
    }

    /// Counts a call in, unless at the limit or stopping.
    fn try_take(&self) -> bool {
        if self.stopping() {
            return false;
        }
        let max = self.max;
        let taken = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(before) => {
                if before + 1 >= max {
                    self.taking
                        .send_if_modified(|t| std::mem::replace(t, false));
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Counts a call out; takes again at the resume mark.
    fn finish(&self) {
        let left = self.taken.fetch_sub(1, Ordering::AcqRel) - 1;
        let resume = (self.max * 3 / 4).min(self.max - 1);
        let stopping = self.stopping();
        self.taking.send_if_modified(|t| {
            if stopping {
                // Wakes the drain, which waits for no calls left.
                return left == 0;
            }
            !*t && left <= resume && {
                *t = true;
                true
            }
        });
    }

    /// Takes no more calls, ever.
    fn stop(&self) {
        self.stopping.send_replace(true);
        self.taking.send_replace(false);
    }
}

/// Serves `service` over NATS as host `name` until `shutdown` resolves, then
/// drains (see the module docs) and returns. `http` is where the host
/// takes HTTP calls, for its announcements. Prints `taking calls over NATS
/// as NAME` once every plugin's subject is subscribed.
///
/// # Errors
/// If the first subscriptions cannot be made.
pub async fn serve_nats(
    service: Arc<Service>,
    nats: async_nats::Client,
    name: String,
    http: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let host = Arc::new(NatsHost {
        service: service.clone(),
        nats: nats.clone(),
        name: name.clone(),
        http,
        started: Instant::now(),
        admission: Admission::new(service.max_in_flight),
        answered: AtomicU64::new(0),
    });
    let mut takers = Vec::new();
    for plugin in service.plugins() {
        let first = subscribe(&nats, plugin).await?;
        takers.push(tokio::spawn(
            host.clone().take_calls(plugin.to_string(), first),
        ));
    }
    let mut status = nats
        .subscribe(protocol::STATUS_SUBJECT)
        .await
        .map_err(|e| format_err!("subscribing to {}: {e}", protocol::STATUS_SUBJECT))?;
    // Subscribed at the server, not only queued to be: callers may come now.
    nats.flush()
        .await
        .map_err(|e| format_err!("NATS flush: {e}"))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "taking calls over NATS as {name}");
        let _ = out.flush();
    }
    tracing::info!("taking calls over NATS as {name}");
    let announcer = {
        let host = host.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(ANNOUNCE_EVERY);
            loop {
                every.tick().await;
                host.announce().await;
            }
        })
    };
    let answerer = {
        let host = host.clone();
        tokio::spawn(async move {
            while let Some(request) = status.next().await {
                if let Some(reply) = request.reply {
                    let body = serde_json::to_vec(&host.status()).unwrap_or_default();
                    let _ = host.nats.publish(reply, body.into()).await;
                }
            }
        })
    };

    shutdown.await;
    host.admission.stop();
    tracing::info!("draining: {} NATS calls in flight", host.admission.taken());
    // Each taker unsubscribes, answers what was on its way, and ends;
    // then the calls taken finish. All of it within the longest a call may
    // take, even with the NATS server gone (an unsubscribe then waits for
    // a reconnection that may never come).
    let most = service.call_timeout + Duration::from_secs(1);
    let mut changed = host.admission.taking.subscribe();
    let aborts: Vec<_> = takers.iter().map(|t| t.abort_handle()).collect();
    let finished = tokio::time::timeout(most, async {
        for taker in takers {
            let _ = taker.await;
        }
        while host.admission.taken() > 0 {
            let _ = changed.changed().await;
        }
    })
    .await;
    if finished.is_err() {
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
        tracing::warn!(
            "drained for {most:?}; {} NATS calls still in flight",
            host.admission.taken()
        );
    }
    announcer.abort();
    answerer.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        host.announce().await;
        let _ = nats.flush().await;
    })
    .await;
    Ok(())
}

async fn subscribe(nats: &async_nats::Client, plugin: &str) -> Result<async_nats::Subscriber> {
    nats.queue_subscribe(
        protocol::call_subject(plugin),
        protocol::queue_group(plugin),
    )
    .await
    .map_err(|e| format_err!("subscribing to the calls of `{plugin}`: {e}"))
}

impl NatsHost {
    fn stopping(&self) -> bool {
        self.admission.stopping()
    }

    fn max(&self) -> usize {
        self.admission.max
    }

    /// Takes `plugin`'s calls while the host has room; unsubscribes when it
    /// has none, and subscribes again when it has.
    async fn take_calls(self: Arc<Self>, plugin: String, first: async_nats::Subscriber) {
        let mut taking = self.admission.taking.subscribe();
        let mut stopping = self.admission.stopping.subscribe();
        let mut next = Some(first);
        loop {
            let mut subscription = match next.take() {
                Some(subscription) => subscription,
                None => {
                    // Wait for room (or the end).
                    tokio::select! {
                        () = async { drop(taking.wait_for(|&t| t).await) } => {}
                        () = async { drop(stopping.wait_for(|&s| s).await) } => {}
                    }
                    if self.stopping() {
                        return;
                    }
                    match subscribe(&self.nats, &plugin).await {
                        Ok(subscription) => subscription,
                        Err(e) => {
                            tracing::warn!("{e:#}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
            };
            let mut unsubscribed = false;
            loop {
                tokio::select! {
                    message = subscription.next() => {
                        let Some(message) = message else { break };
                        if unsubscribed || !self.admission.try_take() {
                            self.refuse(message).await;
                        } else {
                            tokio::spawn(self.clone().run_call(plugin.clone(), message));
                        }
                    }
                    () = async { drop(taking.wait_for(|&t| !t).await) }, if !unsubscribed => {
                        // Full or stopping: no more calls to this host. Those
                        // on their way still come, and are refused unrun.
                        unsubscribed = true;
                        if subscription.drain().await.is_err() {
                            break;
                        }
                    }
                }
            }
            if self.stopping() {
                return;
            }
        }
    }

    /// Answers a call this host will not run: unrun, so that the caller
    /// sends it elsewhere.
    async fn refuse(&self, message: Message) {
        let error = if self.stopping() {
            ServeError::Draining
        } else {
            ServeError::HostBusy(self.max())
        };
        if let Some(reply) = message.reply {
            self.answer(reply, Err(error)).await;
        }
    }

    async fn run_call(self: Arc<Self>, plugin: String, message: Message) {
        let header = |name: &str| protocol::header(&message, name);
        let function = header(FUNCTION_HEADER);
        let deadline = header(TIMEOUT_HEADER)
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.max(1)));
        let result = match function {
            Some(function) => {
                self.service
                    .call(&plugin, &function, message.payload.to_vec(), deadline)
                    .await
            }
            None => Err(ServeError::Call(crate::CallError::NoSuchFunction(format!(
                "(none: the request has no {FUNCTION_HEADER} header)"
            )))),
        };
        if let Some(reply) = message.reply {
            self.answer(reply, result).await;
        }
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.admission.finish();
    }

    async fn answer(&self, reply: async_nats::Subject, result: Result<Vec<u8>, ServeError>) {
        let mut headers = HeaderMap::new();
        headers.insert(HOST_HEADER, self.name.as_str());
        let body = match result {
            Ok(output) => output,
            Err(e) => {
                headers.insert(ERROR_HEADER, e.kind());
                e.to_string().into_bytes()
            }
        };
        if let Err(e) = self
            .nats
            .publish_with_headers(reply, headers, body.into())
            .await
        {
            tracing::warn!("answering a NATS call: {e}");
        }
    }

    fn status(&self) -> HostStatus {
        HostStatus {
            host: self.name.clone(),
            http: self.http.clone(),
            plugins: self.service.plugins().map(str::to_string).collect(),
            in_flight: self.service.in_flight(),
            max_in_flight: self.max(),
            taking: self.admission.taking(),
            draining: self.stopping(),
            calls: self.answered.load(Ordering::Relaxed),
            uptime_s: self.started.elapsed().as_secs(),
        }
    }

    async fn announce(&self) {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let _ = self
            .nats
            .publish(protocol::announce_subject(&self.name), body.into())
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::Admission;

    #[test]
    fn a_full_host_stops_taking_and_takes_again_at_three_quarters() {
        let admission = Admission::new(8);
        for _ in 0..7 {
            assert!(admission.try_take());
            assert!(admission.taking());
        }
        assert!(admission.try_take(), "the eighth");
        assert!(!admission.taking(), "full at 8");
        assert!(!admission.try_take(), "no ninth");
        assert_eq!(admission.taken(), 8);
        admission.finish();
        assert!(!admission.taking(), "7 left: not yet");
        admission.finish();
        assert!(admission.taking(), "6 left: three quarters");
        assert!(admission.try_take());
    }

    #[test]
    fn a_limit_of_one_takes_again_when_empty() {
        let admission = Admission::new(1);
        assert!(admission.try_take());
        assert!(!admission.taking());
        assert!(!admission.try_take());
        admission.finish();
        assert!(admission.taking());
        assert_eq!(admission.taken(), 0);
    }

    #[test]
    fn a_stopping_host_takes_nothing_and_wakes_the_drain_at_zero() {
        let admission = Admission::new(4);
        assert!(admission.try_take());
        assert!(admission.try_take());
        let mut drain = admission.taking.subscribe();
        admission.stop();
        drain.mark_unchanged();
        assert!(!admission.try_take());
        assert!(!admission.taking());
        admission.finish();
        assert!(!drain.has_changed().unwrap(), "one left: not yet");
        admission.finish();
        assert!(drain.has_changed().unwrap(), "none left: the drain wakes");
        assert!(!admission.taking(), "and it never takes again");
        assert!(!admission.try_take());
    }

    #[test]
    fn takes_and_finishes_from_many_threads_keep_the_count() {
        let admission = std::sync::Arc::new(Admission::new(16));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let admission = admission.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if admission.try_take() {
                            assert!(admission.taken() <= 16);
                            admission.finish();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(admission.taken(), 0);
        assert!(admission.taking(), "empty: it takes again");
    }
}

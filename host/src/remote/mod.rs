//! Calling plugins served by `wasmlet serve --nats` hosts, from any process
//! that can reach their NATS server (feature `nats`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), wasmlet_host::remote::RemoteError> {
//! use std::time::Duration;
//! let client = wasmlet_host::remote::Client::connect("nats://127.0.0.1:4222").await?;
//! let output = client
//!     .call("text", "upper", b"hello".to_vec(), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(output, b"HELLO");
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery: at most once
//!
//! NATS gives each call to one host of the plugin's queue group. A call is
//! sent again only when it certainly did not run:
//! - no host took it (NATS says "no responders": none serves the plugin
//!   now, or all that do are at their in-flight limit and have stopped
//!   taking calls);
//! - the host that got it refused it unrun (at its limit, draining, or every
//!   instance of the plugin busy: [`protocol::NOT_RUN`]).
//!
//! Those are tried again, with pauses from 1 ms doubling to 50 ms, until the
//! deadline. A call a host took is never sent twice: if that host dies
//! mid-call, the caller gets [`RemoteError::NoAnswer`] just after its
//! deadline, which says the call may have run. A plugin function that is
//! safe to repeat can be called again by its caller.

pub mod protocol;

use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Request};
use futures_util::StreamExt;

use self::protocol::{HostStatus, ERROR_HEADER, FUNCTION_HEADER, HOST_HEADER, TIMEOUT_HEADER};

/// Why a remote call has no output.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The NATS server could not be reached, or the connection failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// No host took the call before its deadline: none serves the plugin,
    /// or all that do are at their in-flight limit and have stopped taking
    /// calls. The call did not run.
    #[error("no host took the call before its deadline: none serves `{0}`, or all that do are at their in-flight limit (the call did not run)")]
    NoHost(String),
    /// Every host that serves the plugin was at its limit until the
    /// deadline; the call did not run.
    #[error("every host serving `{0}` was at its in-flight limit until the deadline; the call did not run")]
    Busy(String),
    /// The host did not finish the call by its deadline, and cancelled it.
    #[error("no result within {0:?}; the host cancelled the call")]
    DeadlineExceeded(Duration),
    /// No answer at all, even a while after the deadline: the host that
    /// took the call ended or lost its connection mid-call, so the call may
    /// have run.
    #[error("no answer within {0:?}: the host that took the call ended or was cut off mid-call (it may have run)")]
    NoAnswer(Duration),
    /// The host answered with an error: the plugin failed, panicked,
    /// trapped, has no such function, and so on.
    #[error("{host}: {message} ({kind})")]
    Call {
        /// The kind, as `ServeError::kind` names it (`failed`, `panicked`,
        /// `no_such_function`, `instance_ended`, ...).
        kind: String,
        /// What went wrong, as the host says it.
        message: String,
        /// The host that answered.
        host: String,
    },
}

impl RemoteError {
    /// A short name of the kind: a host's error kind, or `nats`, `no_host`,
    /// `busy`, `deadline_exceeded`, `no_answer`.
    pub fn kind(&self) -> &str {
        match self {
            RemoteError::Nats(_) => "nats",
            RemoteError::NoHost(_) => "no_host",
            RemoteError::Busy(_) => "busy",
            RemoteError::DeadlineExceeded(_) => "deadline_exceeded",
            RemoteError::NoAnswer(_) => "no_answer",
            RemoteError::Call { kind, .. } => kind,
        }
    }
}

/// A plugin's answer, with the host that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The function's output.
    pub output: Vec<u8>,
    /// The host that ran it.
    pub host: String,
}

/// A connection to the NATS server that joins the hosts.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
}

impl Client {
    /// Connects to the NATS server at `url` (`nats://HOST:PORT`). Once
    /// connected it reconnects by itself if the server goes away.
    ///
    /// # Errors
    /// If the server cannot be reached now.
    pub async fn connect(url: &str) -> Result<Client, RemoteError> {
        let nats = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            // Requests carry their own deadline (`call`).
            .request_timeout(None)
            .reconnect_delay_callback(reconnect_delay)
            .connect(url)
            .await
            .map_err(|e| RemoteError::Nats(format!("connecting to {url}: {e}")))?;
        Ok(Client { nats })
    }

    /// Wraps a NATS client the embedder already has.
    pub fn from_nats(nats: async_nats::Client) -> Client {
        Client { nats }
    }

    /// The NATS client underneath.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Calls `plugin`'s `function` with `input` on one host that serves it,
    /// within `timeout` (the host cancels the call's green thread when it
    /// passes). See the module docs for when a call is sent again.
    ///
    /// # Errors
    /// See [`RemoteError`].
    pub async fn call(
        &self,
        plugin: &str,
        function: &str,
        input: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RemoteError> {
        self.call_answer(plugin, function, input, timeout)
            .await
            .map(|answer| answer.output)
    }

    /// As [`Client::call`], also saying which host answered.
    ///
    /// # Errors
    /// See [`RemoteError`].
    pub async fn call_answer(
        &self,
        plugin: &str,
        function: &str,
        input: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, RemoteError> {
        let deadline = Instant::now() + timeout;
        let subject = protocol::call_subject(plugin);
        let input = bytes::Bytes::from(input);
        let mut pause = Duration::from_millis(1);
        let mut refused = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(if refused {
                    RemoteError::Busy(plugin.to_string())
                } else {
                    RemoteError::NoHost(plugin.to_string())
                });
            }
            let mut headers = HeaderMap::new();
            headers.insert(FUNCTION_HEADER, function);
            // At least 1: 0 would read as "no deadline" to no one, and a
            // call with under a millisecond left is cancelled at once.
            headers.insert(TIMEOUT_HEADER, left.as_millis().max(1).to_string().as_str());
            // The host cancels at `left` and says so; a little longer here
            // so that its answer, not this timer, tells the caller.
            let grace = Duration::from_millis(25) + left / 20;
            let request = Request::new()
                .headers(headers)
                .payload(input.clone())
                .timeout(Some(left + grace));
            match self.nats.send_request(subject.clone(), request).await {
                Ok(message) => {
                    let header = |name: &str| protocol::header(&message, name);
                    let host = header(HOST_HEADER).unwrap_or_default();
                    let Some(kind) = header(ERROR_HEADER) else {
                        return Ok(Answer {
                            output: message.payload.to_vec(),
                            host,
                        });
                    };
                    if kind == "deadline_exceeded" {
                        return Err(RemoteError::DeadlineExceeded(timeout));
                    }
                    if !protocol::NOT_RUN.contains(&kind.as_str()) {
                        return Err(RemoteError::Call {
                            kind,
                            message: String::from_utf8_lossy(&message.payload).into_owned(),
                            host,
                        });
                    }
                    refused = true;
                }
                Err(e) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => {}
                    async_nats::RequestErrorKind::TimedOut => {
                        return Err(RemoteError::NoAnswer(timeout))
                    }
                    _ => return Err(RemoteError::Nats(format!("calling `{plugin}`: {e}"))),
                },
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Asks every host for its [`HostStatus`] and gathers the answers that
    /// come within `wait`, sorted by host name.
    ///
    /// # Errors
    /// If the request cannot be sent.
    pub async fn status(&self, wait: Duration) -> Result<Vec<HostStatus>, RemoteError> {
        let inbox = self.nats.new_inbox();
        let mut answers = self
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|e| RemoteError::Nats(e.to_string()))?;
        self.nats
            .publish_with_reply(protocol::STATUS_SUBJECT, inbox, bytes::Bytes::new())
            .await
            .map_err(|e| RemoteError::Nats(e.to_string()))?;
        let mut hosts = Vec::new();
        let until = tokio::time::Instant::now() + wait;
        while let Ok(Some(message)) = tokio::time::timeout_at(until, answers.next()).await {
            if let Ok(status) = serde_json::from_slice::<HostStatus>(&message.payload) {
                hosts.push(status);
            }
        }
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(hosts)
    }

    /// Stores `module` in NATS' object store under `name` (replacing what
    /// was there), for hosts whose manifest names it as `object = "NAME"`.
    /// Returns its digest as NATS records it.
    ///
    /// # Errors
    /// If the NATS server has no JetStream (start it with `-js`), or the
    /// store refuses the object.
    pub async fn push(&self, name: &str, module: &[u8]) -> Result<String, RemoteError> {
        let store = plugin_store(&self.nats, true).await?;
        let mut reader = module;
        let info = store
            .put(name, &mut reader)
            .await
            .map_err(|e| RemoteError::Nats(format!("storing `{name}`: {e}")))?;
        Ok(info.digest.unwrap_or_default())
    }
}

/// The pause before reconnect attempt `n`: 0, then from 2 ms doubling to
/// one second (NATS' own default goes to 4 s: a host would then be away
/// that long after its server came back).
pub fn reconnect_delay(attempt: usize) -> Duration {
    match attempt {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(1 << n.min(10)).min(Duration::from_secs(1)),
    }
}

/// The object store of plugin modules; `create`: made if missing.
///
/// # Errors
/// If JetStream is off or the bucket cannot be opened.
pub async fn plugin_store(
    nats: &async_nats::Client,
    create: bool,
) -> Result<async_nats::jetstream::object_store::ObjectStore, RemoteError> {
    let jetstream = async_nats::jetstream::new(nats.clone());
    let opened = if create {
        jetstream
            .create_object_store(async_nats::jetstream::object_store::Config {
                bucket: protocol::PLUGIN_BUCKET.to_string(),
                description: Some("wasmlet plugin modules (wasmlet push)".to_string()),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())
    } else {
        jetstream
            .get_object_store(protocol::PLUGIN_BUCKET)
            .await
            .map_err(|e| e.to_string())
    };
    opened.map_err(|e| {
        RemoteError::Nats(format!(
            "the object store `{}`: {e} (is JetStream on? start nats-server with -js; \
             has a module been pushed with `wasmlet push`?)",
            protocol::PLUGIN_BUCKET
        ))
    })
}

/// Reads the module stored as `name` (see [`Client::push`]).
///
/// # Errors
/// If there is no such object, or the store cannot be read.
pub async fn fetch_module(nats: &async_nats::Client, name: &str) -> Result<Vec<u8>, RemoteError> {
    use tokio::io::AsyncReadExt;
    let store = plugin_store(nats, false).await?;
    let mut object = store.get(name).await.map_err(|e| {
        RemoteError::Nats(format!(
            "no module `{name}` in the object store ({e}): push it with `wasmlet push FILE --name {name}`"
        ))
    })?;
    let mut module = Vec::new();
    object
        .read_to_end(&mut module)
        .await
        .map_err(|e| RemoteError::Nats(format!("reading module `{name}`: {e}")))?;
    Ok(module)
}

//! The `wasmlet serve` manifest: which plugins a host serves, with which
//! limits, and where it listens. TOML:
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"   # where calls come in (HTTP)
//! max_in_flight = 1024        # calls at once; more are refused (503), not queued
//! call_timeout_ms = 30000     # a call's deadline unless the caller sends a shorter one
//! header_timeout_ms = 10000   # a connection that sends its request head slower is cut off
//!
//! nats = "nats://127.0.0.1:4222"  # also take calls over NATS (optional)
//! name = "host-a"             # this host in `wasmlet status` (default: HOSTNAME-PID)
//!
//! [[plugin]]
//! name = "text"                # called as POST /call/text/FUNCTION
//! path = "plugins/text.wasm"   # relative to this file; or, with NATS,
//! # object = "text"           # the module `wasmlet push` stored under this name
//! instances = 2                # copies, spread over the hubs
//! threads = "compact"          # or "fibers" (default: the process's default)
//! max_memory_mib = 64
//! max_cpu_time_s = 3600
//! env = { GREETING = "hello" }
//! dirs = { "/data" = "data" }  # guest path = host path (relative to this file)
//! connect = ["127.0.0.1:5432"]
//! ```
//!
//! Every field but a plugin's `name` and `path` (or `object`) has a default, and an
//! unknown field is an error (a misspelt limit must not be silently
//! ignored). Errors name the file, the plugin and the field, and say what
//! would be accepted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wasmtime::{bail, format_err, Result};

use crate::{ConnectRule, GuestOptions, Threads};

/// A parsed and checked manifest.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Manifest {
    /// The `[server]` table.
    pub server: ServerSpec,
    /// The `[[plugin]]` tables, in file order.
    pub plugins: Vec<PluginSpec>,
}

/// Where and how the host takes calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerSpec {
    /// The HTTP address calls come in on (port 0: any free port).
    pub listen: SocketAddr,
    /// Hubs (threads) the plugins run on; 0: one per core.
    pub hubs: usize,
    /// Calls the host runs at once; a call past it is refused at once (503),
    /// so that a caller can go elsewhere, rather than queued without bound.
    pub max_in_flight: usize,
    /// A call's deadline when its caller sends none (`x-wasmlet-timeout-ms`):
    /// at the deadline the call's green thread is cancelled.
    pub call_timeout_ms: u64,
    /// Largest request body, and so call input, taken over HTTP (413 past
    /// it) or NATS (`body_too_large`).
    pub max_body_bytes: usize,
    /// How long a connection may take to send a request's head: a client
    /// that sends it slowly (slowloris) is cut off then.
    pub header_timeout_ms: u64,
    /// The NATS server to take calls from as well (`nats://HOST:PORT`), in
    /// the queue group of each plugin, with the other hosts that serve it.
    pub nats: Option<String>,
    /// This host's name in announcements and `wasmlet status`; default
    /// `HOSTNAME-PID`.
    pub name: Option<String>,
}

impl Default for ServerSpec {
    fn default() -> ServerSpec {
        ServerSpec {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            hubs: 0,
            max_in_flight: 1024,
            call_timeout_ms: 30_000,
            max_body_bytes: 16 << 20,
            header_timeout_ms: 10_000,
            nats: None,
            name: None,
        }
    }
}

/// One plugin the host serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginSpec {
    /// What callers name it by (`/call/NAME/FUNCTION`).
    pub name: String,
    /// Where its module comes from.
    pub source: PluginSource,
    /// How many instances (guests) serve it; a call goes to one that has
    /// room.
    pub instances: usize,
    /// How each instance is started.
    pub options: GuestOptions,
}

/// Where a plugin's module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginSource {
    /// A `.wasm` file on this host's disk.
    Path(PathBuf),
    /// The module stored under this name in NATS' object store (`wasmlet
    /// push`), so that hosts need no shared disk.
    Object(String),
}

/// A `[[plugin]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginToml {
    name: String,
    path: Option<PathBuf>,
    object: Option<String>,
    #[serde(default = "one")]
    instances: usize,
    threads: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dirs: BTreeMap<String, PathBuf>,
    #[serde(default)]
    listen: Vec<String>,
    #[serde(default)]
    connect: Vec<String>,
    max_memory_mib: Option<u64>,
    max_host_memory_mib: Option<u64>,
    max_cpu_time_s: Option<f64>,
    max_green_threads: Option<u32>,
    max_descriptors: Option<u32>,
    max_calls_in_flight: Option<usize>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestToml {
    #[serde(default)]
    server: ServerSpec,
    #[serde(default, rename = "plugin")]
    plugins: Vec<PluginToml>,
}

/// Most instances of one plugin.
const MOST_INSTANCES: usize = 1024;

impl Manifest {
    /// Reads and checks the manifest at `path`; relative paths in it are
    /// relative to its folder.
    ///
    /// # Errors
    /// If the file cannot be read, is not valid TOML, has a field that is
    /// unknown or of the wrong type, or a value that is out of range; the
    /// message names the file, the plugin and the field.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Manifest> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format_err!("reading the manifest {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(&text, base).map_err(|e| format_err!("{}: {e:#}", path.display()))
    }

    /// Parses and checks manifest text; relative paths are taken from
    /// `base`.
    ///
    /// # Errors
    /// As [`Manifest::from_file`].
    pub fn parse(text: &str, base: &Path) -> Result<Manifest> {
        let parsed: ManifestToml = toml::from_str(text).map_err(|e| format_err!("{e}"))?;
        let server = parsed.server;
        if server.max_in_flight == 0 {
            bail!("[server] max_in_flight must be at least 1");
        }
        if server.call_timeout_ms == 0 {
            bail!("[server] call_timeout_ms must be at least 1");
        }
        if server.header_timeout_ms == 0 {
            bail!("[server] header_timeout_ms must be at least 1");
        }
        if parsed.plugins.is_empty() {
            bail!(
                "no plugins: add a [[plugin]] table with a `name` and the `path` of its .wasm file"
            );
        }
        if let Some(name) = &server.name {
            if !valid_token(name) {
                bail!("[server] name may hold only letters, digits, `-` and `_`");
            }
        }
        let mut plugins = Vec::new();
        for plugin in parsed.plugins {
            let name = plugin.name.clone();
            if plugins.iter().any(|p: &PluginSpec| p.name == name) {
                bail!("two plugins are named `{name}`: each needs its own name");
            }
            plugins.push(
                plugin_spec(plugin, base).map_err(|e| format_err!("plugin `{name}`: {e:#}"))?,
            );
        }
        Ok(Manifest { server, plugins })
    }

    /// Checks what can only be checked once the command line has had its
    /// say: a plugin whose module is an `object` needs a NATS server.
    ///
    /// # Errors
    /// If a plugin's module is an `object` and `[server] nats` is not set.
    pub fn check_sources(&self) -> Result<()> {
        if self.server.nats.is_none() {
            if let Some(p) = self
                .plugins
                .iter()
                .find(|p| matches!(p.source, PluginSource::Object(_)))
            {
                bail!(
                    "plugin `{}`: its module is an `object` in NATS, but no NATS server \
                     is given: set [server] nats or pass --nats URL",
                    p.name
                );
            }
        }
        Ok(())
    }

    /// The call deadline when the caller sends none.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.server.call_timeout_ms)
    }
}

fn plugin_spec(plugin: PluginToml, base: &Path) -> Result<PluginSpec> {
    if !valid_token(&plugin.name) {
        bail!(
            "`name` may hold only letters, digits, `-` and `_` (it is part of a URL \
             and of a NATS subject)"
        );
    }
    if plugin.instances == 0 || plugin.instances > MOST_INSTANCES {
        bail!(
            "`instances` is {}; it must be 1 to {MOST_INSTANCES}",
            plugin.instances
        );
    }
    let (source, program_name) = match (plugin.path, plugin.object) {
        (Some(path), None) => (
            PluginSource::Path(base.join(&path)),
            path.display().to_string(),
        ),
        (None, Some(object)) => {
            if !valid_token(&object) {
                bail!("`object` may hold only letters, digits, `-` and `_`");
            }
            (PluginSource::Object(object.clone()), object)
        }
        (Some(_), Some(_)) => bail!("give `path` or `object`, not both"),
        (None, None) => bail!(
            "missing field `path`: give the .wasm file's `path`, or the `object` \
             it was pushed to NATS as"
        ),
    };
    let mut options = GuestOptions {
        args: std::iter::once(program_name).chain(plugin.args).collect(),
        env: plugin.env.into_iter().collect(),
        dirs: plugin
            .dirs
            .into_iter()
            .map(|(guest, host)| (base.join(host), guest))
            .collect(),
        capture_output: false,
        ..GuestOptions::default()
    };
    options.threads = match plugin.threads.as_deref() {
        None | Some("auto") => Threads::Auto,
        Some("fibers") => Threads::Fibers,
        Some("compact") => Threads::Compact,
        Some(other) => bail!("`threads` is \"{other}\"; it must be \"fibers\" or \"compact\""),
    };
    options.net_listen = plugin
        .listen
        .iter()
        .map(|a| {
            a.parse().map_err(|_| {
                format_err!("`listen` has \"{a}\"; give IP:PORT, e.g. \"127.0.0.1:9000\"")
            })
        })
        .collect::<Result<_>>()?;
    options.net_connect = plugin
        .connect
        .iter()
        .map(|a| {
            a.parse::<ConnectRule>()
                .map_err(|e| format_err!("`connect` has \"{a}\": {e}"))
        })
        .collect::<Result<_>>()?;
    const MIB: u64 = 1 << 20;
    if let Some(mib) = plugin.max_memory_mib {
        options.max_memory = Some(mib.checked_mul(MIB).ok_or_else(|| {
            format_err!("`max_memory_mib` is {mib}: too large (at most 4096 is used)")
        })?);
    }
    if let Some(mib) = plugin.max_host_memory_mib {
        options.max_host_memory = mib
            .checked_mul(MIB)
            .ok_or_else(|| format_err!("`max_host_memory_mib` is {mib}: too large"))?;
    }
    if let Some(seconds) = plugin.max_cpu_time_s {
        options.max_cpu_time = Some(Duration::try_from_secs_f64(seconds).map_err(|_| {
            format_err!("`max_cpu_time_s` is {seconds}; give a positive number of seconds")
        })?);
    }
    if let Some(n) = plugin.max_green_threads {
        options.max_green_threads = Some(n);
    }
    if let Some(n) = plugin.max_descriptors {
        options.max_descriptors = n;
    }
    if let Some(n) = plugin.max_calls_in_flight {
        if n == 0 {
            bail!("`max_calls_in_flight` must be at least 1");
        }
        options.max_calls_in_flight = n;
    }
    Ok(PluginSpec {
        name: plugin.name,
        source,
        instances: plugin.instances,
        options,
    })
}

/// A name that can be one token of a URL path and of a NATS subject.
fn valid_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, Path::new("/srv"))
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn a_full_manifest_becomes_guest_options() {
        let manifest = parse(
            r#"
            [server]
            listen = "127.0.0.1:0"
            max_in_flight = 8
            [[plugin]]
            name = "text"
            path = "plugins/text.wasm"
            instances = 3
            threads = "compact"
            args = ["--verbose"]
            env = { GREETING = "hello" }
            dirs = { "/data" = "data" }
            connect = ["127.0.0.1:5432"]
            listen = ["127.0.0.1:9000"]
            max_memory_mib = 64
            max_cpu_time_s = 1.5
            max_calls_in_flight = 10
            "#,
        )
        .unwrap();
        assert_eq!(manifest.server.max_in_flight, 8);
        assert_eq!(manifest.server.call_timeout_ms, 30_000);
        let text = &manifest.plugins[0];
        assert_eq!(
            text.source,
            PluginSource::Path(PathBuf::from("/srv/plugins/text.wasm"))
        );
        assert_eq!(text.instances, 3);
        let o = &text.options;
        assert_eq!(o.args, ["plugins/text.wasm", "--verbose"]);
        assert_eq!(o.env, [("GREETING".to_string(), "hello".to_string())]);
        assert_eq!(o.dirs, [(PathBuf::from("/srv/data"), "/data".to_string())]);
        assert_eq!(o.threads, Threads::Compact);
        assert_eq!(o.max_memory, Some(64 << 20));
        assert_eq!(o.max_cpu_time, Some(Duration::from_millis(1500)));
        assert_eq!(o.max_calls_in_flight, 10);
        assert_eq!(o.net_connect.len(), 1);
        assert_eq!(
            o.net_listen,
            ["127.0.0.1:9000".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn bad_manifests_say_what_is_wrong_and_where() {
        let plugin = "[[plugin]]\nname = \"p\"\npath = \"p.wasm\"\n";
        for (text, says) in [
            ("", "no plugins"),
            ("[[plugin]]\nname = \"p\"\n", "missing field `path`"),
            (
                &format!("{plugin}max_memory = 64\n"),
                "unknown field `max_memory`",
            ),
            (
                &format!("{plugin}instances = 0\n"),
                "plugin `p`: `instances` is 0",
            ),
            (
                &format!("{plugin}threads = \"green\"\n"),
                "\"fibers\" or \"compact\"",
            ),
            (
                &format!("{plugin}connect = [\"not an address\"]\n"),
                "`connect` has",
            ),
            (
                &format!("{plugin}listen = [\"localhost\"]\n"),
                "give IP:PORT",
            ),
            (
                &format!("{plugin}max_cpu_time_s = -1.0\n"),
                "positive number of seconds",
            ),
            (&format!("{plugin}{plugin}"), "two plugins are named `p`"),
            (
                "[[plugin]]\nname = \"a/b\"\npath = \"p.wasm\"\n",
                "part of a URL",
            ),
            (
                "[[plugin]]\nname = \"a.b\"\npath = \"p.wasm\"\n",
                "NATS subject",
            ),
            (
                "[[plugin]]\nname = \"p\"\nobject = \"p\"\npath = \"p.wasm\"\n",
                "not both",
            ),
            (
                &format!("[server]\nname = \"my host\"\n{plugin}"),
                "[server] name",
            ),
            (
                &format!("[server]\nlisten = \"nowhere\"\n{plugin}"),
                "invalid socket address",
            ),
            (
                &format!("[server]\nmax_in_flight = 0\n{plugin}"),
                "max_in_flight",
            ),
            (&format!("{plugin}instances = \"two\"\n"), "invalid type"),
        ] {
            let got = error(text);
            assert!(got.contains(says), "{text:?}: {got}");
        }
        // TOML's own errors point at the line.
        assert!(error(&format!("{plugin}instances = \n")).contains("line 4"));
    }
}

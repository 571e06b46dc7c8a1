//! What a guest may reach on the network: nothing, unless the embedder (or
//! the CLI's `--listen` / `--connect`) allows it.
//!
//! - A **listen rule** is an exact `IP:PORT` the guest may bind (TCP listen
//!   or UDP bind). Port 0 (any free port) is allowed only by a rule that
//!   says port 0.
//! - A **connect rule** is a `CIDR[:PORTS]` (an address or a network, and a
//!   port, a range `A-B`, or every port if none is given) or a
//!   `HOST:PORT` (a name the guest may resolve through the host; the
//!   addresses it resolves to may then be reached on that port). A UDP
//!   `send_to` counts as a connect.
//!
//! Refusals name the flag (and the `GuestOptions` field) that would allow
//! the operation.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// One `--connect` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectRule {
    /// Addresses in `net`, on ports `ports` (inclusive).
    Net {
        /// The network.
        net: IpNet,
        /// The lowest and highest port, inclusive.
        ports: (u16, u16),
    },
    /// A host name the guest may resolve, and the port it may then reach.
    Host {
        /// The name, as the guest resolves it.
        name: String,
        /// The one port.
        port: u16,
    },
}

/// A rule that could not be read, and why (with the forms that are
/// accepted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{rule}` is not a valid {flag} rule: {why}")]
pub struct BadRule {
    rule: String,
    flag: &'static str,
    why: String,
}

fn bad(rule: &str, flag: &'static str, why: impl Into<String>) -> BadRule {
    BadRule {
        rule: rule.into(),
        flag,
        why: why.into(),
    }
}

/// Parses a `--listen` rule: `IP:PORT` (`[IPv6]:PORT` for IPv6).
///
/// # Errors
/// If it is not an address with a port.
pub fn parse_listen(rule: &str) -> Result<SocketAddr, BadRule> {
    SocketAddr::from_str(rule).map_err(|_| {
        bad(
            rule,
            "--listen",
            "expected IP:PORT, such as 127.0.0.1:8080 or [::1]:8080 (port 0: any free port)",
        )
    })
}

impl FromStr for ConnectRule {
    type Err = BadRule;

    /// `CIDR`, `CIDR:PORT`, `CIDR:A-B`, `IP[:...]`, `[IPv6]...` or
    /// `HOST:PORT`.
    fn from_str(rule: &str) -> Result<ConnectRule, BadRule> {
        let forms = "expected CIDR[:PORTS] (127.0.0.1, 10.0.0.0/8:80, 192.168.0.0/16:8000-8999, \
                     [::1]:443) or HOST:PORT (example.com:443)";
        // The address part, and the ports after its last ':' (for IPv6,
        // after the closing bracket).
        let (addr, ports) = if let Some(rest) = rule.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| bad(rule, "--connect", forms))?;
            match after {
                "" => (inside, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (inside, Some(p)),
                    None => return Err(bad(rule, "--connect", forms)),
                },
            }
        } else if rule.matches(':').count() > 1 {
            // A bare IPv6 address or network, every port.
            (rule, None)
        } else {
            match rule.rsplit_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (rule, None),
            }
        };
        let ports = match ports {
            None => (0, u16::MAX),
            Some(p) => parse_ports(p).ok_or_else(|| bad(rule, "--connect", forms))?,
        };
        if let Ok(net) = IpNet::from_str(addr) {
            return Ok(ConnectRule::Net { net, ports });
        }
        if let Ok(ip) = IpAddr::from_str(addr) {
            return Ok(ConnectRule::Net {
                net: IpNet::from(ip),
                ports,
            });
        }
        let is_name = !addr.is_empty()
            && addr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        match (is_name, ports) {
            (true, (a, b)) if a == b && a != 0 => Ok(ConnectRule::Host {
                name: addr.to_ascii_lowercase(),
                port: a,
            }),
            (true, _) => Err(bad(
                rule,
                "--connect",
                "a host name needs one port: HOST:PORT",
            )),
            (false, _) => Err(bad(rule, "--connect", forms)),
        }
    }
}

fn parse_ports(p: &str) -> Option<(u16, u16)> {
    match p.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => p.parse().ok().map(|a| (a, a)),
    }
}

impl fmt::Display for ConnectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectRule::Net {
                net,
                ports: (0, u16::MAX),
            } => write!(f, "{net}"),
            ConnectRule::Net { net, ports: (a, b) } if a == b => write!(f, "{net}:{a}"),
            ConnectRule::Net { net, ports: (a, b) } => write!(f, "{net}:{a}-{b}"),
            ConnectRule::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// A guest's network capabilities, and the addresses it learned by
/// resolving names its rules allow.
#[derive(Clone, Debug, Default)]
pub struct NetPolicy {
    listen: Vec<SocketAddr>,
    connect: Vec<ConnectRule>,
    /// Addresses resolved from an allowed name, reachable on its port.
    resolved: Vec<SocketAddr>,
}

/// Why the policy refused: the message names the flag that would allow it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl NetPolicy {
    /// The policy of `listen` and `connect` rules.
    pub fn new(listen: Vec<SocketAddr>, connect: Vec<ConnectRule>) -> NetPolicy {
        NetPolicy {
            listen,
            connect,
            resolved: Vec::new(),
        }
    }

    /// True if the guest may do nothing on the network.
    pub fn is_closed(&self) -> bool {
        self.listen.is_empty() && self.connect.is_empty()
    }

    /// May the guest bind `addr` (listen, or a UDP socket)?
    ///
    /// # Errors
    /// [`Denied`], naming the `--listen` rule that would allow it.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), Denied> {
        if self.listen.contains(&addr) {
            return Ok(());
        }
        Err(Denied(format!(
            "binding {addr} is not allowed: run with `--listen {addr}` \
             (GuestOptions::net_listen){}",
            if addr.port() == 0 {
                "; port 0 (any free port) must be allowed as port 0"
            } else {
                ""
            }
        )))
    }

    /// May the guest connect (or send) to `addr`?
    ///
    /// # Errors
    /// [`Denied`], naming the `--connect` rule that would allow it.
    pub fn check_connect(&self, addr: SocketAddr) -> Result<(), Denied> {
        let by_rule = self.connect.iter().any(|rule| match rule {
            ConnectRule::Net { net, ports } => {
                net.contains(&addr.ip()) && (ports.0..=ports.1).contains(&addr.port())
            }
            ConnectRule::Host { .. } => false,
        });
        if by_rule || self.resolved.contains(&addr) {
            return Ok(());
        }
        Err(Denied(format!(
            "connecting to {addr} is not allowed: run with `--connect {addr}` \
             (or a network that holds it, such as `--connect {}/8`; \
             GuestOptions::net_connect)",
            addr.ip()
        )))
    }

    /// May the guest resolve `name`? If so, the port its addresses may be
    /// reached on.
    ///
    /// # Errors
    /// [`Denied`], naming the `--connect HOST:PORT` rule that would allow it.
    pub fn check_resolve(&self, name: &str) -> Result<Vec<u16>, Denied> {
        let name = name.to_ascii_lowercase();
        let ports: Vec<u16> = self
            .connect
            .iter()
            .filter_map(|rule| match rule {
                ConnectRule::Host { name: n, port } if *n == name => Some(*port),
                _ => None,
            })
            .collect();
        if ports.is_empty() {
            return Err(Denied(format!(
                "resolving `{name}` is not allowed: run with `--connect {name}:PORT` \
                 (GuestOptions::net_connect)"
            )));
        }
        Ok(ports)
    }

    /// Records that `addrs` were resolved from an allowed name: reachable
    /// on `ports` from now on.
    pub fn learn(&mut self, addrs: &[IpAddr], ports: &[u16]) {
        for ip in addrs {
            for &port in ports {
                let addr = SocketAddr::new(*ip, port);
                if !self.resolved.contains(&addr) {
                    self.resolved.push(addr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connect_rules_read_networks_ports_and_names() {
        let rule = |s: &str| ConnectRule::from_str(s).unwrap().to_string();
        assert_eq!(rule("127.0.0.1"), "127.0.0.1/32");
        assert_eq!(rule("10.0.0.0/8:80"), "10.0.0.0/8:80");
        assert_eq!(rule("192.168.0.0/16:8000-8999"), "192.168.0.0/16:8000-8999");
        assert_eq!(rule("[::1]:443"), "::1/128:443");
        assert_eq!(rule("::1"), "::1/128");
        assert_eq!(rule("Example.COM:443"), "example.com:443");
        for bad in [
            "",
            "10.0.0.0/33",
            "host",
            "host:1-2",
            "1.2.3.4:9-1",
            "[::1",
            "a b:1",
        ] {
            let error = ConnectRule::from_str(bad).unwrap_err().to_string();
            assert!(error.contains("--connect"), "{bad}: {error}");
        }
        assert!(parse_listen("127.0.0.1")
            .unwrap_err()
            .to_string()
            .contains("IP:PORT"));
    }

    #[test]
    fn nothing_is_reachable_unless_a_rule_allows_it() {
        let closed = NetPolicy::default();
        assert!(closed.is_closed());
        let denied = closed.check_connect(addr("127.0.0.1:80")).unwrap_err();
        assert!(denied.0.contains("--connect 127.0.0.1:80"), "{denied}");
        let denied = closed.check_listen(addr("127.0.0.1:0")).unwrap_err();
        assert!(denied.0.contains("--listen 127.0.0.1:0"), "{denied}");
        assert!(closed.check_resolve("example.com").is_err());

        let rules = ["127.0.0.0/8:8000-8001", "10.1.2.3", "example.com:443"];
        let mut policy = NetPolicy::new(
            vec![addr("127.0.0.1:7000")],
            rules.iter().map(|r| r.parse().unwrap()).collect(),
        );
        assert!(policy.check_listen(addr("127.0.0.1:7000")).is_ok());
        assert!(
            policy.check_listen(addr("127.0.0.1:0")).is_err(),
            "port 0 needs its own rule"
        );
        assert!(policy.check_connect(addr("127.9.9.9:8001")).is_ok());
        assert!(policy.check_connect(addr("127.9.9.9:8002")).is_err());
        assert!(policy.check_connect(addr("10.1.2.3:1")).is_ok());
        assert!(policy.check_connect(addr("93.184.216.34:443")).is_err());
        assert_eq!(policy.check_resolve("EXAMPLE.com").unwrap(), [443]);
        policy.learn(&["93.184.216.34".parse().unwrap()], &[443]);
        assert!(policy.check_connect(addr("93.184.216.34:443")).is_ok());
        assert!(policy.check_connect(addr("93.184.216.34:80")).is_err());
    }
}

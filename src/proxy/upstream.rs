//! Where a connection goes and how the proxy gets there: destinations,
//! name resolution at connect time, and connect errors classified into the
//! recorded error kinds.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::telemetry::ErrorKind;
use crate::telemetry::authority::strip_userinfo;

/// A destination: an address (from SO_ORIGINAL_DST) or a name resolved
/// through DNS each time a connection is made, so a changed address behind a
/// name needs no restart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

impl Dest {
    pub fn port(&self) -> u16 {
        match self {
            Dest::Addr(addr) => addr.port(),
            Dest::Name { port, .. } => *port,
        }
    }

    /// Parses an authority as found in a request (`host:port`, `[v6]:port`, or
    /// a bare host with `default_port`).
    pub fn from_authority(authority: &str, default_port: u16) -> Result<Dest, InvalidDest> {
        // `user:password@` says nothing about where to go (and must not
        // show up in an error).
        let authority = strip_userinfo(authority);
        let invalid = || InvalidDest(authority.to_owned());
        let (host, port) = split_authority(authority).ok_or_else(invalid)?;
        let port = port.unwrap_or(default_port);
        if host.is_empty() || port == 0 || host.contains(['/', ' ', '@', '[', ']']) {
            return Err(invalid());
        }
        if let Ok(ip) = host.parse() {
            return Ok(Dest::Addr(SocketAddr::new(ip, port)));
        }
        if host.contains(':') {
            return Err(invalid());
        }
        Ok(Dest::Name {
            host: host.to_owned(),
            port,
        })
    }
}

/// Splits `host[:port]` or `[v6][:port]`; `None` when the port is not a number.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (authority, None),
        },
    };
    let port = port
        .map(|p| p.parse::<u16>().ok())
        .map_or(Some(None), |p| p.map(Some))?;
    Some((host, port))
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Addr(addr) => addr.fmt(f),
            Dest::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for Dest {
    type Err = InvalidDest;

    /// A `host:port` target; the port is required.
    fn from_str(s: &str) -> Result<Dest, InvalidDest> {
        match split_authority(s) {
            Some((_, Some(_))) => Dest::from_authority(s, 0),
            _ => Err(InvalidDest(s.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid destination '{0}': expected host:port")]
pub struct InvalidDest(pub String);

/// Why connecting upstream failed.
#[derive(Debug, thiserror::Error)]
#[error("{kind} connecting to {dest}: {source}")]
pub struct ConnectError {
    pub kind: ErrorKind,
    pub dest: Dest,
    /// The address that was tried last, if resolution got that far.
    pub addr: Option<SocketAddr>,
    #[source]
    pub source: io::Error,
}

pub type Connected = Result<(TcpStream, SocketAddr), ConnectError>;

/// The addresses this proxy listens on. An upstream that resolves to one
/// of them would be the proxy connecting to itself, forever (a CONNECT to
/// `localhost:15001`, `127.1`, `2130706433`, `[::ffff:127.0.0.1]`, or a
/// target set to the listener): whatever name led there, the address is
/// compared once resolved.
#[derive(Clone, Debug, Default)]
pub struct OwnAddrs(Arc<[SocketAddr]>);

impl OwnAddrs {
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        OwnAddrs(addrs.into_iter().collect())
    }

    /// Whether connecting to `addr` reaches one of these listeners: the
    /// same address, an unspecified address (which connects to this host),
    /// or any of this host's addresses when the listener is on all of them.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.0
            .iter()
            .filter(|own| own.port() == addr.port())
            .any(|own| {
                let own_ip = own.ip().to_canonical();
                own_ip == ip
                    || ip.is_unspecified()
                    || (own_ip.is_unspecified() && (ip.is_loopback() || is_local(ip)))
            })
    }
}

/// Whether `ip` is one of this host's addresses: only those can be bound.
/// Asked only when a port matches a listener's, so rarely.
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Connects to `dest`, trying each resolved address in turn, within `timeout`
/// for the resolution and for each attempt; never to one of `own`.
pub async fn connect(dest: Dest, timeout: Duration, own: OwnAddrs) -> Connected {
    let addrs: Vec<SocketAddr> = match &dest {
        Dest::Addr(addr) => vec![*addr],
        Dest::Name { host, port } => {
            let lookup = tokio::net::lookup_host((host.as_str(), *port));
            let resolved = match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(addrs)) => Ok(addrs.collect()),
                Ok(Err(source)) => Err(source),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "name resolution timed out",
                )),
            };
            match resolved {
                Ok(addrs) => addrs,
                Err(source) => return Err(dns_error(dest, source)),
            }
        }
    };
    let mut last = None;
    for addr in addrs {
        if own.contains(addr) {
            let err = io::Error::other("that is this proxy itself; forwarding would loop");
            return Err(ConnectError {
                kind: ErrorKind::NoDestination,
                dest,
                addr: Some(addr),
                source: err,
            });
        }
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Requests and responses are forwarded as soon as they arrive;
                // batching small writes would only add latency.
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(err)) => last = Some((addr, err)),
            Err(_) => {
                let err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                last = Some((addr, err));
            }
        }
    }
    let (addr, source) = match last {
        Some((addr, err)) => (Some(addr), err),
        None => (
            None,
            io::Error::new(io::ErrorKind::NotFound, "name resolved to no address"),
        ),
    };
    let kind = match source.kind() {
        _ if addr.is_none() => ErrorKind::Dns,
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
        _ => ErrorKind::ConnectError,
    };
    Err(ConnectError {
        kind,
        dest,
        addr,
        source,
    })
}

fn dns_error(dest: Dest, source: io::Error) -> ConnectError {
    ConnectError {
        kind: ErrorKind::Dns,
        dest,
        addr: None,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_names_and_addresses() {
        assert_eq!(
            "web-svc.emojivoto:80".parse::<Dest>().expect("valid"),
            Dest::Name {
                host: "web-svc.emojivoto".into(),
                port: 80
            }
        );
        assert_eq!(
            "127.0.0.1:8080".parse::<Dest>().expect("valid"),
            Dest::Addr("127.0.0.1:8080".parse().expect("literal"))
        );
        assert_eq!(
            "[::1]:8080".parse::<Dest>().expect("valid"),
            Dest::Addr("[::1]:8080".parse().expect("literal"))
        );
        for bad in ["web", "web:", "web:http", ":80", "web:0", "a b:1", "::1"] {
            assert!(bad.parse::<Dest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn authorities_default_their_port() {
        assert_eq!(
            Dest::from_authority("example.com", 80).expect("valid"),
            Dest::Name {
                host: "example.com".into(),
                port: 80
            }
        );
        assert_eq!(Dest::from_authority("[::1]", 80).expect("valid").port(), 80);
    }

    #[tokio::test]
    async fn refused_connect_is_classified() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = connect(
            Dest::Addr(addr),
            Duration::from_secs(5),
            OwnAddrs::default(),
        )
        .await
        .expect_err("nothing listens there");
        assert_eq!(err.kind, ErrorKind::ConnectRefused);
        assert_eq!(err.addr, Some(addr));
    }

    #[tokio::test]
    async fn unresolvable_name_is_a_dns_error() {
        let dest = Dest::Name {
            host: "does-not-exist.invalid".into(),
            port: 80,
        };
        let err = connect(dest, Duration::from_secs(5), OwnAddrs::default())
            .await
            .expect_err("no such name");
        assert_eq!(err.kind, ErrorKind::Dns);
        assert_eq!(err.addr, None);
    }
}

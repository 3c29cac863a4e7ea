//! Published ports: Docker's `-p` syntax, and host-port reservations.
//!
//! `-p [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp]`
//!
//! As Docker: an empty or zero host port (`-p :80`, `-p 0:80`) means a
//! random one, protocols are case-insensitive, and `sctp` parses (publishing
//! it is refused by the engine: the datapath translates TCP and UDP only).
//!
//! Reservations are real: the agent holds a bound socket per published host
//! address, port and protocol (as Docker does), so no host process can take a
//! published port, and a port a host process holds cannot be published.

use std::{
    collections::{BTreeSet, HashMap},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket},
    os::fd::OwnedFd,
};

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// Why a port spec, an `--expose` value or a host-port reservation was
/// refused. Each message is one line naming the offending value.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("unknown protocol {0:?} (tcp, udp or sctp)")]
    UnknownProtocol(String),
    #[error("invalid {what} {input:?}: not a number")]
    NotANumber { what: &'static str, input: String },
    #[error("invalid {what} {port}: must be 1-65535")]
    OutOfRange { what: &'static str, port: u32 },
    #[error("invalid port range {0:?}: expected MIN-MAX")]
    NotARange(String),
    #[error("invalid {what} range {input:?}: end before start")]
    ReversedRange { what: &'static str, input: String },
    /// A `-p` spec with what is wrong with it.
    #[error("invalid port spec {spec:?}: {reason}")]
    Spec { spec: String, reason: String },
    #[error("host port {ip}:{port}/{} is already published", proto.as_str())]
    AlreadyPublished {
        ip: Ipv4Addr,
        port: u16,
        proto: Proto,
    },
    #[error("host port {ip}:{port}/{} is already in use on the host", proto.as_str())]
    InUse {
        ip: Ipv4Addr,
        port: u16,
        proto: Proto,
    },
    #[error("cannot reserve {ip}:{port}/{}", proto.as_str())]
    Reserve {
        ip: Ipv4Addr,
        port: u16,
        proto: Proto,
        #[source]
        source: std::io::Error,
    },
}

impl PortError {
    /// What kind of failure this is for the front ends.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PortError::AlreadyPublished { .. } | PortError::InUse { .. } => ErrorKind::Conflict,
            PortError::Reserve { .. } => ErrorKind::Internal,
            _ => ErrorKind::InvalidArgument,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// `tcp`, `udp` or `sctp`, in any case (Docker lowercases it).
    pub fn parse(s: &str) -> Result<Proto, PortError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(PortError::UnknownProtocol(s.into())),
        }
    }
}

/// One parsed `-p` spec, before random host ports are chosen: a list of
/// (container port, requested host port or None) with a host IP and protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: Option<Ipv4Addr>,
    pub proto: Proto,
    /// Container ports, in order.
    pub container_ports: Vec<u16>,
    /// Requested host ports: empty (all random), one per container port, or a
    /// range to pick from for a single container port (Docker's `8000-8010:80`).
    pub host_ports: HostPorts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPorts {
    Random,
    Exact(Vec<u16>),
    /// Any free port of this inclusive range (single container port).
    OneOf(u16, u16),
}

/// A published port as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    pub fn describe(&self) -> String {
        format!(
            "{}/{} -> {}:{}",
            self.container_port,
            self.proto.as_str(),
            self.host_ip,
            self.host_port
        )
    }
}

/// A port exposed by a container (`--expose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExposedPort {
    pub port: u16,
    pub proto: Proto,
}

fn parse_port(s: &str, what: &'static str) -> Result<u16, PortError> {
    let n: u32 = s.parse().map_err(|_| PortError::NotANumber {
        what,
        input: s.into(),
    })?;
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(PortError::OutOfRange { what, port: n })
}

/// `P` or `P-Q` -> inclusive range.
fn parse_range(s: &str, what: &'static str) -> Result<(u16, u16), PortError> {
    match s.split_once('-') {
        None => {
            let p = parse_port(s, what)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let a = parse_port(a, what)?;
            let b = parse_port(b, what)?;
            if b < a {
                return Err(PortError::ReversedRange {
                    what,
                    input: s.into(),
                });
            }
            Ok((a, b))
        }
    }
}

/// Parse `MIN-MAX` (the agent's `--port-range` and `--nat-port-range`).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), PortError> {
    if !s.contains('-') {
        return Err(PortError::NotARange(s.into()));
    }
    parse_range(s, "port")
}

/// Parse `PORT[-END][/PROTO]` (`--expose`).
pub fn parse_expose(s: &str) -> Result<Vec<ExposedPort>, PortError> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, Proto::parse(proto)?),
        None => (s, Proto::Tcp),
    };
    let (a, b) = parse_range(ports, "port")?;
    Ok((a..=b).map(|port| ExposedPort { port, proto }).collect())
}

/// Parse one `-p` spec.
pub fn parse_spec(spec: &str) -> Result<PortSpec, PortError> {
    let bad = |why: &dyn std::fmt::Display| PortError::Spec {
        spec: spec.into(),
        reason: why.to_string(),
    };
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, Proto::parse(p).map_err(|e| bad(&e))?),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (host_ip, host, ctr) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, if h.is_empty() { None } else { Some(*h) }, *c),
        [ip, h, c] => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| bad(&format!("host IP {ip:?} is not an IPv4 address")))?;
            (Some(ip), if h.is_empty() { None } else { Some(*h) }, *c)
        }
        _ => return Err(bad(&"too many ':'")),
    };
    if ctr.is_empty() {
        return Err(bad(&"no container port"));
    }
    let (c0, c1) = parse_range(ctr, "container port").map_err(|e| bad(&e))?;
    let container_ports: Vec<u16> = (c0..=c1).collect();
    let host_ports = match host {
        // Docker: an empty or zero host port is a random one.
        None | Some("0") => HostPorts::Random,
        Some(h) => {
            let (h0, h1) = parse_range(h, "host port").map_err(|e| bad(&e))?;
            let n_host = (h1 - h0) as usize + 1;
            if n_host == container_ports.len() {
                HostPorts::Exact((h0..=h1).collect())
            } else if container_ports.len() == 1 {
                HostPorts::OneOf(h0, h1)
            } else {
                return Err(bad(&format!(
                    "host port range has {n_host} ports, container port range has {}",
                    container_ports.len()
                )));
            }
        }
    };
    Ok(PortSpec {
        host_ip,
        proto,
        container_ports,
        host_ports,
    })
}

/// Bound sockets that reserve published host ports.
#[derive(Default)]
pub struct Reservations {
    held: HashMap<(Ipv4Addr, u16, Proto), OwnedFd>,
}

impl Reservations {
    /// Bind `ip:port/proto`. Fails if a host process (or another mapping)
    /// holds it.
    pub fn reserve(&mut self, ip: Ipv4Addr, port: u16, proto: Proto) -> Result<(), PortError> {
        if self.held.contains_key(&(ip, port, proto)) {
            return Err(PortError::AlreadyPublished { ip, port, proto });
        }
        let addr = SocketAddrV4::new(ip, port);
        let fd: OwnedFd = match proto {
            Proto::Tcp => bind_tcp(addr).map(OwnedFd::from),
            Proto::Udp => UdpSocket::bind(addr).map(OwnedFd::from),
            Proto::Sctp => Err(std::io::Error::from(std::io::ErrorKind::Unsupported)),
        }
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                PortError::InUse { ip, port, proto }
            } else {
                PortError::Reserve {
                    ip,
                    port,
                    proto,
                    source,
                }
            }
        })?;
        self.held.insert((ip, port, proto), fd);
        Ok(())
    }

    pub fn release(&mut self, ip: Ipv4Addr, port: u16, proto: Proto) {
        self.held.remove(&(ip, port, proto));
    }

    pub fn is_held(&self, ip: Ipv4Addr, port: u16, proto: Proto) -> bool {
        self.held.contains_key(&(ip, port, proto))
    }
}

/// A TCP socket bound but not listening: nobody else can bind the port, and
/// nothing is ever accepted on it (the datapath translates before the stack).
fn bind_tcp(addr: SocketAddrV4) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(addr),
    )
    .map_err(std::io::Error::from)?;
    Ok(TcpListener::from(fd))
}

/// Pick a free random host port from `range` not in `taken`, starting at a
/// random offset.
pub fn pick_port(range: (u16, u16), taken: &BTreeSet<u16>, seed: u32) -> Option<u16> {
    let (lo, hi) = range;
    if hi < lo {
        return None;
    }
    let n = (hi - lo) as u32 + 1;
    (0..n)
        .map(|i| lo + ((seed.wrapping_add(i)) % n) as u16)
        .find(|p| !taken.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        parse_spec(s).unwrap()
    }

    #[test]
    fn container_port_only() {
        let p = spec("80");
        assert_eq!(p.container_ports, vec![80]);
        assert_eq!(p.host_ports, HostPorts::Random);
        assert_eq!(p.proto, Proto::Tcp);
        assert_eq!(p.host_ip, None);
    }

    #[test]
    fn host_and_container() {
        let p = spec("8080:80/udp");
        assert_eq!(p.host_ports, HostPorts::Exact(vec![8080]));
        assert_eq!(p.proto, Proto::Udp);
    }

    #[test]
    fn host_ip_forms() {
        let p = spec("127.0.0.1:8080:80");
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.host_ports, HostPorts::Exact(vec![8080]));
        let p = spec("10.0.0.1::80");
        assert_eq!(p.host_ip, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(p.host_ports, HostPorts::Random);
    }

    #[test]
    fn docker_forms() {
        assert_eq!(spec(":80").host_ports, HostPorts::Random);
        assert_eq!(spec("0:80").host_ports, HostPorts::Random);
        assert_eq!(spec("127.0.0.1:0:80").host_ports, HostPorts::Random);
        assert_eq!(spec("80/TCP").proto, Proto::Tcp);
        assert_eq!(spec("8080:80/Udp").proto, Proto::Udp);
        assert_eq!(spec("80/sctp").proto, Proto::Sctp);
    }

    #[test]
    fn ranges() {
        let p = spec("8000-8002:80-82");
        assert_eq!(p.container_ports, vec![80, 81, 82]);
        assert_eq!(p.host_ports, HostPorts::Exact(vec![8000, 8001, 8002]));
        let p = spec("8000-8010:80");
        assert_eq!(p.host_ports, HostPorts::OneOf(8000, 8010));
        let p = spec("80-81");
        assert_eq!(p.container_ports, vec![80, 81]);
    }

    #[test]
    fn bad_specs() {
        for s in [
            "",
            "0",
            "65536",
            "abc",
            "80/icmp",
            "8000-8001:80-82",
            "1.2.3:80:80",
            "a:b:c:d",
            "90-80",
            "8080:",
            ":80:80:80",
            "80/",
        ] {
            assert!(parse_spec(s).is_err(), "{s:?} should be rejected");
        }
        assert!(parse_spec("80/icmp")
            .unwrap_err()
            .to_string()
            .contains("unknown protocol"));
        assert!(parse_spec("0").unwrap_err().to_string().contains("1-65535"));
        assert!(parse_spec("8000-8001:80-82")
            .unwrap_err()
            .to_string()
            .contains("2 ports, container port range has 3"));
        assert_eq!(
            parse_spec("80/icmp").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn expose() {
        assert_eq!(
            parse_expose("80").unwrap(),
            vec![ExposedPort {
                port: 80,
                proto: Proto::Tcp
            }]
        );
        assert_eq!(parse_expose("53/udp").unwrap()[0].proto, Proto::Udp);
        assert_eq!(parse_expose("80-82").unwrap().len(), 3);
        assert!(parse_expose("0").is_err());
        assert!(parse_expose("80/icmp").is_err());
    }

    #[test]
    fn agent_port_ranges() {
        assert_eq!(parse_port_range("1000-2000").unwrap(), (1000, 2000));
        for bad in ["1000", "0-10", "20-10", "a-b", "1-70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_free_ports() {
        let taken: BTreeSet<u16> = [100, 101].into_iter().collect();
        assert_eq!(pick_port((100, 102), &taken, 0), Some(102));
        assert_eq!(pick_port((100, 101), &taken, 7), None);
        let p = pick_port((1000, 2000), &BTreeSet::new(), 12345).unwrap();
        assert!((1000..=2000).contains(&p));
    }

    #[test]
    fn reservations_conflict() {
        let mut r = Reservations::default();
        // Port 0 would be random; find a free one first.
        let l = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let err = r
            .reserve(Ipv4Addr::LOCALHOST, port, Proto::Udp)
            .unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Conflict);
        drop(l);
        r.reserve(Ipv4Addr::LOCALHOST, port, Proto::Udp).unwrap();
        assert!(UdpSocket::bind(("127.0.0.1", port)).is_err());
        assert!(r.reserve(Ipv4Addr::LOCALHOST, port, Proto::Udp).is_err());
        r.release(Ipv4Addr::LOCALHOST, port, Proto::Udp);
        assert!(UdpSocket::bind(("127.0.0.1", port)).is_ok());
    }
}

//! IPv4 address management (IPAM) for container networks.
//!
//! This module validates network definitions (subnet, optional ip-range,
//! gateway), detects overlapping subnets, allocates container addresses in a
//! round-robin fashion similar to Docker's default IPAM driver, and validates
//! static addresses, object names and MTUs.
//!
//! Everything here is pure: callers keep the set of used addresses and the last
//! allocated address, and pass them in.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// Error type: every variant's Display is a one-line human message that names
/// the problem and the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpamError {
    /// The text is not a valid `a.b.c.d/n` IPv4 network; holds the input.
    InvalidCidr(String),
    /// The network has bits set below its prefix; holds the input.
    HostBitsSet(String),
    /// The gateway does not lie inside the subnet.
    GatewayOutsideSubnet { gateway: Ipv4Addr, subnet: Ipv4Net },
    /// The gateway is the network or the broadcast address of the subnet.
    GatewayReserved { gateway: Ipv4Addr, subnet: Ipv4Net },
    /// The ip-range does not lie inside the subnet.
    RangeOutsideSubnet { range: Ipv4Net, subnet: Ipv4Net },
    /// Prefix > 30: the subnet cannot hold a gateway plus one host.
    SubnetTooSmall(Ipv4Net),
    /// The subnet overlaps the subnet `other` of the network named `network`.
    Overlap {
        subnet: Ipv4Net,
        other: Ipv4Net,
        network: String,
    },
    /// A requested address does not lie inside the subnet.
    IpOutsideSubnet { ip: Ipv4Addr, subnet: Ipv4Net },
    /// A requested address is the gateway.
    IpIsGateway(Ipv4Addr),
    /// A requested address is the network or broadcast address.
    IpReserved(Ipv4Addr),
    /// A requested address is already assigned.
    IpInUse(Ipv4Addr),
    /// The pool (subnet or ip-range) has no free address.
    Exhausted(Ipv4Net),
    /// The text is not a valid IPv4 address; holds the input.
    InvalidIp(String),
    /// A container or network name breaks Docker's naming rule.
    InvalidName { kind: &'static str, name: String },
    /// An MTU outside 68..=65535.
    MtuOutOfRange(u32),
}

impl fmt::Display for IpamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpamError::InvalidCidr(s) => write!(
                f,
                "invalid CIDR {s:?}: expected an IPv4 network such as 10.0.0.0/24 \
                 (four decimal octets, '/', prefix length 0-32)"
            ),
            IpamError::HostBitsSet(s) => {
                write!(f, "subnet {s} has host bits set")?;
                match Ipv4Net::from_str(s) {
                    Ok(net) => write!(f, " (did you mean {}?)", net.trunc()),
                    Err(_) => Ok(()),
                }
            }
            IpamError::GatewayOutsideSubnet { gateway, subnet } => {
                write!(f, "gateway {gateway} is outside subnet {subnet}")
            }
            IpamError::GatewayReserved { gateway, subnet } => {
                let which = if *gateway == subnet.network() {
                    "network"
                } else if *gateway == subnet.broadcast() {
                    "broadcast"
                } else {
                    "network or broadcast"
                };
                write!(
                    f,
                    "gateway {gateway} is the {which} address of subnet {subnet} and cannot be used"
                )
            }
            IpamError::RangeOutsideSubnet { range, subnet } => {
                write!(f, "ip-range {range} is outside subnet {subnet}")
            }
            IpamError::SubnetTooSmall(subnet) => write!(
                f,
                "subnet {subnet} is too small: the prefix must be /30 or shorter \
                 to hold a gateway and at least one host"
            ),
            IpamError::Overlap {
                subnet,
                other,
                network,
            } => write!(
                f,
                "subnet {subnet} overlaps subnet {other} of network {network:?}"
            ),
            IpamError::IpOutsideSubnet { ip, subnet } => {
                write!(f, "IP address {ip} is outside subnet {subnet}")
            }
            IpamError::IpIsGateway(ip) => {
                write!(f, "IP address {ip} is the network's gateway")
            }
            IpamError::IpReserved(ip) => write!(
                f,
                "IP address {ip} is reserved (network or broadcast address of the subnet)"
            ),
            IpamError::IpInUse(ip) => write!(f, "IP address {ip} is already in use"),
            IpamError::Exhausted(pool) => {
                write!(f, "no free IP address left in pool {pool}")
            }
            IpamError::InvalidIp(s) => write!(
                f,
                "invalid IP address {s:?}: expected an IPv4 address such as 10.0.0.2"
            ),
            // {:?} quotes the name and escapes control characters, keeping one line.
            IpamError::InvalidName { kind, name } => write!(
                f,
                "invalid {kind} name {name:?}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]* \
                 and be at most {MAX_NAME_LEN} characters"
            ),
            IpamError::MtuOutOfRange(mtu) => {
                write!(f, "MTU {mtu} out of range ({MIN_MTU}..{MAX_MTU})")
            }
        }
    }
}

impl std::error::Error for IpamError {}

impl IpamError {
    /// What kind of failure this is for the front ends.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            IpamError::Overlap { .. } | IpamError::IpInUse(_) => ErrorKind::Conflict,
            IpamError::Exhausted(_) => ErrorKind::Unavailable,
            _ => ErrorKind::InvalidArgument,
        }
    }
}

/// Parse "a.b.c.d/n" strictly; reject host bits set with HostBitsSet; reject
/// garbage with InvalidCidr.
///
/// Strict means: no surrounding whitespace, exactly one '/', an address that
/// [`parse_ip`] accepts, and a prefix of decimal digits without sign or
/// leading zeros in 0..=32.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, IpamError> {
    let invalid = || IpamError::InvalidCidr(s.to_string());
    let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
    let addr = Ipv4Addr::from_str(addr).map_err(|_| invalid())?;
    let digits_ok = !prefix.is_empty()
        && prefix.len() <= 2
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && !(prefix.len() > 1 && prefix.starts_with('0'));
    if !digits_ok {
        return Err(invalid());
    }
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let net = Ipv4Net::new(addr, prefix).map_err(|_| invalid())?;
    if net.addr() != net.network() {
        return Err(IpamError::HostBitsSet(s.to_string()));
    }
    Ok(net)
}

/// Parse a plain IPv4 address strictly (InvalidIp otherwise).
///
/// Four decimal octets, no leading zeros, no whitespace, no prefix.
pub fn parse_ip(s: &str) -> Result<Ipv4Addr, IpamError> {
    Ipv4Addr::from_str(s).map_err(|_| IpamError::InvalidIp(s.to_string()))
}

/// A validated address pool: the subnet, the optional sub-range addresses are
/// allocated from, and the gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pool {
    pub subnet: Ipv4Net,
    pub range: Option<Ipv4Net>,
    pub gateway: Ipv4Addr,
}

/// True when `net` has bits set below its prefix length.
fn has_host_bits(net: &Ipv4Net) -> bool {
    net.addr() != net.network()
}

impl Pool {
    /// Validate: gateway inside subnet and not network/broadcast; range (if
    /// any) inside subnet (range must also have no host bits set); subnet
    /// prefix <= 30. If gateway is None, use the first host address of the
    /// subnet.
    pub fn new(
        subnet: Ipv4Net,
        range: Option<Ipv4Net>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Pool, IpamError> {
        if has_host_bits(&subnet) {
            return Err(IpamError::HostBitsSet(subnet.to_string()));
        }
        if subnet.prefix_len() > 30 {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        if let Some(range) = range {
            if has_host_bits(&range) {
                return Err(IpamError::HostBitsSet(range.to_string()));
            }
            if !subnet.contains(&range) {
                return Err(IpamError::RangeOutsideSubnet { range, subnet });
            }
        }
        let gateway = match gateway {
            Some(gateway) => {
                if !subnet.contains(&gateway) {
                    return Err(IpamError::GatewayOutsideSubnet { gateway, subnet });
                }
                if gateway == subnet.network() || gateway == subnet.broadcast() {
                    return Err(IpamError::GatewayReserved { gateway, subnet });
                }
                gateway
            }
            // prefix <= 30, so network + 1 is a host address below broadcast.
            None => Ipv4Addr::from(u32::from(subnet.network()) + 1),
        };
        Ok(Pool {
            subnet,
            range,
            gateway,
        })
    }

    /// Ok if `subnet` overlaps none of `others` (name, subnet); Overlap error
    /// naming the first clash.
    pub fn check_overlap<'a>(
        subnet: Ipv4Net,
        others: impl IntoIterator<Item = (&'a str, Ipv4Net)>,
    ) -> Result<(), IpamError> {
        let s = subnet.trunc();
        for (name, other) in others {
            let o = other.trunc();
            if s.contains(&o.network()) || o.contains(&s.network()) {
                return Err(IpamError::Overlap {
                    subnet,
                    other,
                    network: name.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The network addresses are allocated from: the range if set, else the
    /// subnet.
    fn pool_net(&self) -> Ipv4Net {
        self.range.unwrap_or(self.subnet)
    }

    /// Inclusive bounds (as integers) of the allocatable window: the pool
    /// clipped to the subnet (a no-op for a validated pool, but keeps a
    /// hand-built or deserialized pool from handing out foreign addresses).
    /// None when the window is empty.
    fn window(&self) -> Option<(u64, u64)> {
        let pool = self.pool_net();
        let lo = u32::from(pool.network()).max(u32::from(self.subnet.network()));
        let hi = u32::from(pool.broadcast()).min(u32::from(self.subnet.broadcast()));
        (lo <= hi).then_some((u64::from(lo), u64::from(hi)))
    }

    /// Whether `ip` is never allocatable: network/broadcast of the subnet, or
    /// the gateway.
    fn is_reserved(&self, ip: u32) -> bool {
        ip == u32::from(self.subnet.network())
            || ip == u32::from(self.subnet.broadcast())
            || ip == u32::from(self.gateway)
    }

    /// Lowest free address in the inclusive window `[from, to]`.
    ///
    /// Walks candidates upward while a single ordered iterator over the used
    /// addresses inside the window moves along with them, so the cost is
    /// O(log n + number of used addresses passed over), never the size of
    /// the window.
    fn lowest_free(&self, used: &BTreeSet<Ipv4Addr>, from: u64, to: u64) -> Option<Ipv4Addr> {
        if from > to {
            return None;
        }
        // Both bounds come from u32 values, so these conversions cannot fail.
        let from_ip = Ipv4Addr::from(u32::try_from(from).ok()?);
        let to_ip = Ipv4Addr::from(u32::try_from(to).ok()?);
        let mut taken = used
            .range(from_ip..=to_ip)
            .map(|ip| u64::from(u32::from(*ip)));
        let mut next_taken = taken.next();
        let mut candidate = from;
        while candidate <= to {
            while next_taken.is_some_and(|t| t < candidate) {
                next_taken = taken.next();
            }
            // candidate <= to <= u32::MAX
            let c = candidate as u32;
            if next_taken != Some(candidate) && !self.is_reserved(c) {
                return Some(Ipv4Addr::from(c));
            }
            candidate += 1;
        }
        None
    }

    /// Pick a free address: inside range if set else subnet, never the network
    /// address, the broadcast address (of the SUBNET) or the gateway, never one
    /// in `used`. Allocate the lowest free address that is greater than `last`
    /// (round-robin like Docker: if none above `last`, wrap around and take the
    /// lowest free); `last` None => lowest free.
    pub fn allocate(
        &self,
        used: &BTreeSet<Ipv4Addr>,
        last: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let exhausted = || IpamError::Exhausted(self.pool_net());
        let (lo, hi) = self.window().ok_or_else(exhausted)?;
        if let Some(last) = last {
            let start = (u64::from(u32::from(last)) + 1).max(lo);
            if let Some(ip) = self.lowest_free(used, start, hi) {
                return Ok(ip);
            }
        }
        self.lowest_free(used, lo, hi).ok_or_else(exhausted)
    }

    /// Validate a static address: inside SUBNET (static IPs may be outside
    /// ip-range, as in Docker), not network/broadcast, not gateway, not in used.
    pub fn check_static(&self, ip: Ipv4Addr, used: &BTreeSet<Ipv4Addr>) -> Result<(), IpamError> {
        if !self.subnet.contains(&ip) {
            return Err(IpamError::IpOutsideSubnet {
                ip,
                subnet: self.subnet,
            });
        }
        if ip == self.subnet.network() || ip == self.subnet.broadcast() {
            return Err(IpamError::IpReserved(ip));
        }
        if ip == self.gateway {
            return Err(IpamError::IpIsGateway(ip));
        }
        if used.contains(&ip) {
            return Err(IpamError::IpInUse(ip));
        }
        Ok(())
    }

    /// Number of allocatable addresses (for inspect): size of range-or-subnet
    /// minus reserved ones that fall inside it.
    pub fn capacity(&self) -> u64 {
        let Some((lo, hi)) = self.window() else {
            return 0;
        };
        let size = hi - lo + 1;
        let mut reserved = [self.subnet.network(), self.subnet.broadcast(), self.gateway];
        reserved.sort_unstable();
        let mut count = 0u64;
        let mut prev: Option<Ipv4Addr> = None;
        for ip in reserved {
            let v = u64::from(u32::from(ip));
            if prev != Some(ip) && v >= lo && v <= hi {
                count += 1;
            }
            prev = Some(ip);
        }
        size.saturating_sub(count)
    }
}

/// Maximum length accepted by [`validate_name`].
const MAX_NAME_LEN: usize = 64;

/// Docker's rule for container and network names: ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$,
/// max 64 chars here.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), IpamError> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME_LEN {
        return Ok(());
    }
    Err(IpamError::InvalidName {
        kind,
        name: name.into(),
    })
}

/// Smallest MTU accepted (the IPv4 minimum).
const MIN_MTU: u32 = 68;
/// Largest MTU accepted.
const MAX_MTU: u32 = 65535;

/// 68..=65535 inclusive, else MtuOutOfRange ("MTU 12 out of range (68..65535)").
pub fn validate_mtu(mtu: u32) -> Result<(), IpamError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(())
    } else {
        Err(IpamError::MtuOutOfRange(mtu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn set(ips: &[&str]) -> BTreeSet<Ipv4Addr> {
        ips.iter().map(|s| ip(s)).collect()
    }

    fn pool(subnet: &str, range: Option<&str>, gw: Option<&str>) -> Pool {
        Pool::new(net(subnet), range.map(net), gw.map(ip)).unwrap()
    }

    fn assert_one_line(e: &impl fmt::Display) {
        let s = e.to_string();
        assert!(!s.is_empty());
        assert!(!s.contains('\n'), "multi-line message: {s}");
    }

    // ---------- parsing ----------

    #[test]
    fn parse_subnet_accepts_valid() {
        assert_eq!(parse_subnet("10.0.0.0/24").unwrap(), net("10.0.0.0/24"));
        assert_eq!(parse_subnet("172.17.0.0/16").unwrap(), net("172.17.0.0/16"));
        assert_eq!(parse_subnet("0.0.0.0/0").unwrap(), net("0.0.0.0/0"));
        assert_eq!(parse_subnet("10.1.2.3/32").unwrap(), net("10.1.2.3/32"));
        assert_eq!(parse_subnet("10.0.0.0/8").unwrap(), net("10.0.0.0/8"));
    }

    #[test]
    fn parse_subnet_rejects_garbage() {
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "/24",
            "10.0.0/24",
            "10.0.0.0.0/24",
            "256.0.0.0/24",
            "10.0.0.0/33",
            "10.0.0.0/100",
            "10.0.0.0/-1",
            "10.0.0.0/+24",
            "10.0.0.0/024",
            "010.0.0.0/24",
            "10.0.0.0/24/24",
            " 10.0.0.0/24",
            "10.0.0.0/24 ",
            "10.0.0.0 /24",
            "abc",
            "fe80::/64",
            "10.0.0.0/2a",
        ] {
            assert_eq!(
                parse_subnet(bad),
                Err(IpamError::InvalidCidr(bad.to_string())),
                "input {bad:?}"
            );
        }
    }

    #[test]
    fn parse_subnet_host_bits() {
        let e = parse_subnet("10.0.0.1/24").unwrap_err();
        assert_eq!(e, IpamError::HostBitsSet("10.0.0.1/24".into()));
        assert_eq!(
            e.to_string(),
            "subnet 10.0.0.1/24 has host bits set (did you mean 10.0.0.0/24?)"
        );
        assert_eq!(
            parse_subnet("172.17.5.0/16"),
            Err(IpamError::HostBitsSet("172.17.5.0/16".into()))
        );
        assert_eq!(
            parse_subnet("1.0.0.0/0"),
            Err(IpamError::HostBitsSet("1.0.0.0/0".into()))
        );
    }

    #[test]
    fn parse_ip_strict() {
        assert_eq!(parse_ip("10.0.0.2").unwrap(), ip("10.0.0.2"));
        assert_eq!(parse_ip("0.0.0.0").unwrap(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(parse_ip("255.255.255.255").unwrap(), Ipv4Addr::BROADCAST);
        for bad in [
            "",
            "10.0.0",
            "10.0.0.256",
            "10.0.0.1/32",
            "010.0.0.1",
            " 10.0.0.1",
            "10.0.0.1 ",
            "::1",
            "x",
            "10.0.0.-1",
        ] {
            assert_eq!(
                parse_ip(bad),
                Err(IpamError::InvalidIp(bad.to_string())),
                "input {bad:?}"
            );
        }
    }

    #[test]
    fn parse_error_messages() {
        let e = parse_subnet("nope").unwrap_err();
        assert!(e.to_string().starts_with("invalid CIDR \"nope\": "), "{e}");
        let e = parse_ip("1.2.3").unwrap_err();
        assert!(
            e.to_string().starts_with("invalid IP address \"1.2.3\""),
            "{e}"
        );
        // control characters are escaped so the message stays on one line
        let e = parse_subnet("10.0.0.0/24\nx").unwrap_err();
        assert_one_line(&e);
        let e = parse_ip("1.2.3.4\n").unwrap_err();
        assert_one_line(&e);
    }

    // ---------- Pool::new ----------

    #[test]
    fn pool_default_gateway_is_first_host() {
        let p = Pool::new(net("10.0.0.0/24"), None, None).unwrap();
        assert_eq!(p.gateway, ip("10.0.0.1"));
        assert_eq!(p.subnet, net("10.0.0.0/24"));
        assert_eq!(p.range, None);
        let p = Pool::new(net("172.20.0.0/16"), Some(net("172.20.5.0/24")), None).unwrap();
        assert_eq!(p.gateway, ip("172.20.0.1"));
    }

    #[test]
    fn pool_explicit_gateway() {
        let p = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.0.254"))).unwrap();
        assert_eq!(p.gateway, ip("10.0.0.254"));
    }

    #[test]
    fn pool_gateway_outside() {
        let e = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.1.1"))).unwrap_err();
        assert_eq!(
            e,
            IpamError::GatewayOutsideSubnet {
                gateway: ip("10.0.1.1"),
                subnet: net("10.0.0.0/24")
            }
        );
        assert_eq!(
            e.to_string(),
            "gateway 10.0.1.1 is outside subnet 10.0.0.0/24"
        );
    }

    #[test]
    fn pool_gateway_reserved() {
        for gw in ["10.0.0.0", "10.0.0.255"] {
            let e = Pool::new(net("10.0.0.0/24"), None, Some(ip(gw))).unwrap_err();
            assert_eq!(
                e,
                IpamError::GatewayReserved {
                    gateway: ip(gw),
                    subnet: net("10.0.0.0/24")
                }
            );
            let msg = e.to_string();
            assert!(msg.contains(gw) && msg.contains("10.0.0.0/24"), "{msg}");
        }
        let e = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.0.255"))).unwrap_err();
        assert!(e.to_string().contains("broadcast"));
        let e = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.0.0"))).unwrap_err();
        assert!(e.to_string().contains("network address"));
    }

    #[test]
    fn pool_range_outside() {
        let e = Pool::new(net("10.0.0.0/24"), Some(net("10.0.1.0/28")), None).unwrap_err();
        assert_eq!(
            e,
            IpamError::RangeOutsideSubnet {
                range: net("10.0.1.0/28"),
                subnet: net("10.0.0.0/24")
            }
        );
        assert_eq!(
            e.to_string(),
            "ip-range 10.0.1.0/28 is outside subnet 10.0.0.0/24"
        );
        // a range larger than (containing) the subnet is also outside
        let e = Pool::new(net("10.0.0.0/24"), Some(net("10.0.0.0/16")), None).unwrap_err();
        assert!(matches!(e, IpamError::RangeOutsideSubnet { .. }));
    }

    #[test]
    fn pool_range_equal_to_subnet_ok() {
        let p = Pool::new(net("10.0.0.0/24"), Some(net("10.0.0.0/24")), None).unwrap();
        assert_eq!(p.capacity(), 253);
    }

    #[test]
    fn pool_range_host_bits() {
        let range = Ipv4Net::new(ip("10.0.0.5"), 28).unwrap();
        let e = Pool::new(net("10.0.0.0/24"), Some(range), None).unwrap_err();
        assert_eq!(e, IpamError::HostBitsSet("10.0.0.5/28".into()));
        assert_eq!(
            e.to_string(),
            "subnet 10.0.0.5/28 has host bits set (did you mean 10.0.0.0/28?)"
        );
    }

    #[test]
    fn pool_subnet_host_bits() {
        let subnet = Ipv4Net::new(ip("10.0.0.7"), 24).unwrap();
        let e = Pool::new(subnet, None, None).unwrap_err();
        assert_eq!(e, IpamError::HostBitsSet("10.0.0.7/24".into()));
    }

    #[test]
    fn pool_slash30_works() {
        let p = Pool::new(net("192.168.9.4/30"), None, None).unwrap();
        assert_eq!(p.gateway, ip("192.168.9.5"));
        assert_eq!(p.capacity(), 1);
        let used = BTreeSet::new();
        assert_eq!(p.allocate(&used, None).unwrap(), ip("192.168.9.6"));
        let used = set(&["192.168.9.6"]);
        assert_eq!(
            p.allocate(&used, None),
            Err(IpamError::Exhausted(net("192.168.9.4/30")))
        );
    }

    #[test]
    fn pool_slash31_and_slash32_rejected() {
        for s in ["10.0.0.0/31", "10.0.0.0/32"] {
            let e = Pool::new(net(s), None, None).unwrap_err();
            assert_eq!(e, IpamError::SubnetTooSmall(net(s)));
            assert!(e.to_string().contains(s));
        }
        // even with an explicit gateway
        let e = Pool::new(net("10.0.0.0/31"), None, Some(ip("10.0.0.1"))).unwrap_err();
        assert_eq!(e, IpamError::SubnetTooSmall(net("10.0.0.0/31")));
    }

    #[test]
    fn pool_is_serde_and_clone() {
        // Serialize/Deserialize are derived; check the bounds hold (no
        // serializer crate is a dependency of this module).
        fn assert_serde<T: serde::Serialize + for<'de> serde::Deserialize<'de>>() {}
        assert_serde::<Pool>();
        let p = pool("10.0.0.0/24", None, None);
        assert_eq!(p.clone(), p);
    }

    // ---------- overlap ----------

    #[test]
    fn overlap_disjoint_ok() {
        let others = [
            ("a", net("10.0.0.0/24")),
            ("b", net("10.0.2.0/24")),
            ("c", net("192.168.0.0/16")),
        ];
        assert_eq!(Pool::check_overlap(net("10.0.1.0/24"), others), Ok(()));
        assert_eq!(Pool::check_overlap(net("10.0.1.0/24"), []), Ok(()));
        // adjacent but not overlapping
        let others = [("a", net("10.0.0.0/25"))];
        assert_eq!(Pool::check_overlap(net("10.0.0.128/25"), others), Ok(()));
    }

    #[test]
    fn overlap_new_contains_existing() {
        let others = [("ok", net("192.168.0.0/24")), ("db", net("10.0.5.0/24"))];
        let e = Pool::check_overlap(net("10.0.0.0/16"), others).unwrap_err();
        assert_eq!(
            e,
            IpamError::Overlap {
                subnet: net("10.0.0.0/16"),
                other: net("10.0.5.0/24"),
                network: "db".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "subnet 10.0.0.0/16 overlaps subnet 10.0.5.0/24 of network \"db\""
        );
    }

    #[test]
    fn overlap_existing_contains_new() {
        let others = [("big", net("10.0.0.0/8"))];
        let e = Pool::check_overlap(net("10.200.3.0/24"), others).unwrap_err();
        assert_eq!(
            e,
            IpamError::Overlap {
                subnet: net("10.200.3.0/24"),
                other: net("10.0.0.0/8"),
                network: "big".into()
            }
        );
    }

    #[test]
    fn overlap_identical_and_first_clash_reported() {
        let others = [
            ("x", net("172.16.0.0/24")),
            ("first", net("10.0.0.0/24")),
            ("second", net("10.0.0.0/16")),
        ];
        let e = Pool::check_overlap(net("10.0.0.0/24"), others).unwrap_err();
        match e {
            IpamError::Overlap { network, .. } => assert_eq!(network, "first"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn overlap_accepts_owned_names_iterator() {
        let names = [String::from("n1"), String::from("n2")];
        let nets = [net("10.1.0.0/16"), net("10.2.0.0/16")];
        let it = names.iter().map(String::as_str).zip(nets);
        let e = Pool::check_overlap(net("10.2.3.0/24"), it).unwrap_err();
        assert!(matches!(e, IpamError::Overlap { ref network, .. } if network == "n2"));
    }

    // ---------- allocation ----------

    #[test]
    fn allocate_skips_network_and_gateway() {
        let p = pool("10.0.0.0/24", None, None);
        let used = BTreeSet::new();
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.2"));
    }

    #[test]
    fn allocate_lowest_free_in_order() {
        let p = pool("10.0.0.0/24", None, None);
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        for _ in 0..5 {
            let a = p.allocate(&used, None).unwrap();
            used.insert(a);
            got.push(a);
        }
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip)
        );
        // a hole is filled first when last is None
        used.remove(&ip("10.0.0.3"));
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.3"));
    }

    #[test]
    fn allocate_skips_gateway_in_middle() {
        let p = pool("10.0.0.0/24", None, Some("10.0.0.5"));
        let used = set(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.6"));
        // with a custom gateway the first host is allocatable
        assert_eq!(p.allocate(&BTreeSet::new(), None).unwrap(), ip("10.0.0.1"));
    }

    #[test]
    fn allocate_never_broadcast() {
        let p = pool("10.0.0.0/24", None, None);
        let used = BTreeSet::new();
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.253"))).unwrap(),
            ip("10.0.0.254")
        );
        // after .254 it wraps instead of returning .255
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.254"))).unwrap(),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn allocate_round_robin_after_last() {
        let p = pool("10.0.0.0/24", None, None);
        // .3 was released, but round-robin continues after last (.10)
        let used = set(&["10.0.0.2", "10.0.0.4", "10.0.0.11", "10.0.0.12"]);
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.10"))).unwrap(),
            ip("10.0.0.13")
        );
        // last itself may be free again; still pick strictly greater
        let used = BTreeSet::new();
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.7"))).unwrap(),
            ip("10.0.0.8")
        );
    }

    #[test]
    fn allocate_round_robin_sequence() {
        let p = pool("10.0.0.0/29", None, None); // hosts .2..=.6
        let mut used = BTreeSet::new();
        let mut last = None;
        let mut got = Vec::new();
        for _ in 0..5 {
            let a = p.allocate(&used, last).unwrap();
            used.insert(a);
            last = Some(a);
            got.push(a);
        }
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip)
        );
        assert_eq!(
            p.allocate(&used, last),
            Err(IpamError::Exhausted(net("10.0.0.0/29")))
        );
        // release .3 and .5: next after last (.6) wraps to lowest free (.3)
        used.remove(&ip("10.0.0.3"));
        used.remove(&ip("10.0.0.5"));
        let a = p.allocate(&used, last).unwrap();
        assert_eq!(a, ip("10.0.0.3"));
        used.insert(a);
        // then continues after .3 to .5, not back to the lowest
        assert_eq!(p.allocate(&used, Some(a)).unwrap(), ip("10.0.0.5"));
    }

    #[test]
    fn allocate_wraps_when_nothing_above_last() {
        let p = pool("10.0.0.0/24", None, None);
        let mut used: BTreeSet<Ipv4Addr> = (200u32..=254)
            .map(|i| Ipv4Addr::from(u32::from(ip("10.0.0.0")) + i))
            .collect();
        used.insert(ip("10.0.0.2"));
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.199"))).unwrap(),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn allocate_last_outside_pool() {
        let p = pool("10.0.0.0/24", Some("10.0.0.128/25"), None);
        let used = BTreeSet::new();
        // last below the range: start at the range's lowest
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.5"))).unwrap(),
            ip("10.0.0.128")
        );
        // last above the subnet entirely: wrap
        assert_eq!(
            p.allocate(&used, Some(ip("192.168.0.1"))).unwrap(),
            ip("10.0.0.128")
        );
        // last at the maximum address must not overflow
        assert_eq!(
            p.allocate(&used, Some(Ipv4Addr::BROADCAST)).unwrap(),
            ip("10.0.0.128")
        );
    }

    #[test]
    fn allocate_ignores_used_outside_pool() {
        let p = pool("10.0.0.0/24", Some("10.0.0.16/28"), None);
        let used = set(&["10.0.0.2", "10.0.0.3", "10.0.1.16", "9.0.0.1"]);
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.16"));
    }

    #[test]
    fn allocate_within_range() {
        let p = pool("10.0.0.0/16", Some("10.0.5.0/24"), None);
        let used = BTreeSet::new();
        // range network address 10.0.5.0 is not the subnet's, so allocatable
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.5.0"));
        let used = set(&["10.0.5.0", "10.0.5.1"]);
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.5.2"));
        // range's last address 10.0.5.255 is allocatable too (not the subnet broadcast)
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.5.254"))).unwrap(),
            ip("10.0.5.255")
        );
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.5.255"))).unwrap(),
            ip("10.0.5.2")
        );
    }

    #[test]
    fn allocate_range_containing_network_and_gateway() {
        let p = pool("10.0.0.0/24", Some("10.0.0.0/28"), None);
        let used = BTreeSet::new();
        // .0 is the subnet network, .1 the gateway
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.2"));
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.15"))).unwrap(),
            ip("10.0.0.2")
        );
        assert_eq!(p.capacity(), 14);

        // gateway in the middle of the range
        let p = pool("10.0.0.0/24", Some("10.0.0.8/29"), Some("10.0.0.10"));
        let used = set(&["10.0.0.8", "10.0.0.9"]);
        assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.11"));
        assert_eq!(p.capacity(), 7);
    }

    #[test]
    fn allocate_range_containing_broadcast() {
        let p = pool("10.0.0.0/24", Some("10.0.0.240/28"), None);
        let used = BTreeSet::new();
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.253"))).unwrap(),
            ip("10.0.0.254")
        );
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.254"))).unwrap(),
            ip("10.0.0.240")
        );
        assert_eq!(p.capacity(), 15);
    }

    #[test]
    fn allocate_range_that_is_only_reserved() {
        // a /31 range holding just the network address and the gateway
        let p = pool("10.0.0.0/24", Some("10.0.0.0/31"), None);
        assert_eq!(p.capacity(), 0);
        assert_eq!(
            p.allocate(&BTreeSet::new(), None),
            Err(IpamError::Exhausted(net("10.0.0.0/31")))
        );
    }

    #[test]
    fn exhausted_subnet() {
        let p = pool("10.0.0.0/24", None, None);
        let used: BTreeSet<Ipv4Addr> = (2u32..=254)
            .map(|i| Ipv4Addr::from(u32::from(ip("10.0.0.0")) + i))
            .collect();
        let e = p.allocate(&used, None).unwrap_err();
        assert_eq!(e, IpamError::Exhausted(net("10.0.0.0/24")));
        assert_eq!(e.to_string(), "no free IP address left in pool 10.0.0.0/24");
        assert_eq!(
            p.allocate(&used, Some(ip("10.0.0.100"))),
            Err(IpamError::Exhausted(net("10.0.0.0/24")))
        );
    }

    #[test]
    fn exhausted_range() {
        let p = pool("10.0.0.0/16", Some("10.0.1.0/30"), None);
        let used = set(&["10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3"]);
        let e = p.allocate(&used, Some(ip("10.0.1.1"))).unwrap_err();
        assert_eq!(e, IpamError::Exhausted(net("10.0.1.0/30")));
        // plenty of room elsewhere in the subnet does not matter
        assert!(p.check_static(ip("10.0.2.7"), &used).is_ok());
    }

    #[test]
    fn allocate_large_subnet_many_used_is_fast() {
        let p = pool("10.0.0.0/8", None, None);
        let base = u32::from(ip("10.0.0.2"));
        let mut used: BTreeSet<Ipv4Addr> =
            (0..100_000u32).map(|i| Ipv4Addr::from(base + i)).collect();
        let after = Ipv4Addr::from(base + 100_000);
        assert_eq!(p.allocate(&used, None).unwrap(), after);
        assert_eq!(p.allocate(&used, Some(ip("10.0.0.50"))).unwrap(), after);

        // near the top of the /8: wrap around past the contiguous block
        assert_eq!(
            p.allocate(&used, Some(ip("10.255.255.254"))).unwrap(),
            after
        );

        // many successive round-robin allocations stay cheap
        let mut last = Some(after);
        used.insert(after);
        for _ in 0..10_000 {
            let a = p.allocate(&used, last).unwrap();
            assert!(used.insert(a));
            last = Some(a);
        }
        assert_eq!(last, Some(Ipv4Addr::from(base + 110_000)));

        // scattered used addresses (every other one) in a large pool
        let scattered: BTreeSet<Ipv4Addr> = (0..100_000u32)
            .map(|i| Ipv4Addr::from(base + 2 * i))
            .collect();
        assert_eq!(
            p.allocate(&scattered, None).unwrap(),
            Ipv4Addr::from(base + 1)
        );
    }

    #[test]
    fn allocate_whole_ipv4_space_no_overflow() {
        let p = pool("0.0.0.0/0", None, None);
        assert_eq!(p.gateway, ip("0.0.0.1"));
        let used = BTreeSet::new();
        assert_eq!(p.allocate(&used, None).unwrap(), ip("0.0.0.2"));
        assert_eq!(
            p.allocate(&used, Some(ip("255.255.255.253"))).unwrap(),
            ip("255.255.255.254")
        );
        assert_eq!(
            p.allocate(&used, Some(ip("255.255.255.254"))).unwrap(),
            ip("0.0.0.2")
        );
        assert_eq!(p.capacity(), (1u64 << 32) - 3);
    }

    // ---------- static addresses ----------

    #[test]
    fn static_ok_including_outside_range() {
        let p = pool("10.0.0.0/24", Some("10.0.0.128/25"), None);
        let used = set(&["10.0.0.129"]);
        assert_eq!(p.check_static(ip("10.0.0.5"), &used), Ok(()));
        assert_eq!(p.check_static(ip("10.0.0.130"), &used), Ok(()));
        assert_eq!(p.check_static(ip("10.0.0.254"), &used), Ok(()));
    }

    #[test]
    fn static_outside_subnet() {
        let p = pool("10.0.0.0/24", None, None);
        let e = p
            .check_static(ip("10.0.1.5"), &BTreeSet::new())
            .unwrap_err();
        assert_eq!(
            e,
            IpamError::IpOutsideSubnet {
                ip: ip("10.0.1.5"),
                subnet: net("10.0.0.0/24")
            }
        );
        assert_eq!(
            e.to_string(),
            "IP address 10.0.1.5 is outside subnet 10.0.0.0/24"
        );
    }

    #[test]
    fn static_reserved() {
        let p = pool("10.0.0.0/24", None, None);
        for a in ["10.0.0.0", "10.0.0.255"] {
            let e = p.check_static(ip(a), &BTreeSet::new()).unwrap_err();
            assert_eq!(e, IpamError::IpReserved(ip(a)));
            assert!(e.to_string().contains(a));
        }
    }

    #[test]
    fn static_gateway() {
        let p = pool("10.0.0.0/24", None, Some("10.0.0.254"));
        let e = p
            .check_static(ip("10.0.0.254"), &BTreeSet::new())
            .unwrap_err();
        assert_eq!(e, IpamError::IpIsGateway(ip("10.0.0.254")));
        assert!(e.to_string().contains("10.0.0.254"));
        // the default first host is free when the gateway is elsewhere
        assert_eq!(p.check_static(ip("10.0.0.1"), &BTreeSet::new()), Ok(()));
    }

    #[test]
    fn static_in_use() {
        let p = pool("10.0.0.0/24", None, None);
        let used = set(&["10.0.0.7"]);
        let e = p.check_static(ip("10.0.0.7"), &used).unwrap_err();
        assert_eq!(e, IpamError::IpInUse(ip("10.0.0.7")));
        assert_eq!(e.to_string(), "IP address 10.0.0.7 is already in use");
    }

    // ---------- capacity ----------

    #[test]
    fn capacity_subnets() {
        assert_eq!(pool("10.0.0.0/24", None, None).capacity(), 253);
        assert_eq!(pool("10.0.0.0/30", None, None).capacity(), 1);
        assert_eq!(pool("10.0.0.0/29", None, None).capacity(), 5);
        assert_eq!(pool("172.17.0.0/16", None, None).capacity(), 65533);
        assert_eq!(pool("10.0.0.0/8", None, None).capacity(), (1 << 24) - 3);
    }

    #[test]
    fn capacity_ranges() {
        // range away from all reserved addresses
        assert_eq!(
            pool("10.0.0.0/16", Some("10.0.5.0/24"), None).capacity(),
            256
        );
        // range holding the gateway only
        assert_eq!(
            pool("10.0.0.0/16", Some("10.0.5.0/24"), Some("10.0.5.1")).capacity(),
            255
        );
        // range holding network + gateway
        assert_eq!(pool("10.0.0.0/24", Some("10.0.0.0/30"), None).capacity(), 2);
        // range holding the broadcast only
        assert_eq!(
            pool("10.0.0.0/24", Some("10.0.0.252/30"), None).capacity(),
            3
        );
        // single-address range
        assert_eq!(pool("10.0.0.0/24", Some("10.0.0.9/32"), None).capacity(), 1);
    }

    #[test]
    fn capacity_matches_exhaustive_allocation() {
        for (subnet, range, gw) in [
            ("10.0.0.0/28", None, None),
            ("10.0.0.0/28", Some("10.0.0.0/29"), None),
            ("10.0.0.0/28", Some("10.0.0.8/29"), Some("10.0.0.14")),
            ("10.0.0.0/27", Some("10.0.0.16/28"), Some("10.0.0.20")),
        ] {
            let p = pool(subnet, range, gw);
            let mut used = BTreeSet::new();
            let mut last = None;
            while let Ok(a) = p.allocate(&used, last) {
                assert!(p.check_static(a, &BTreeSet::new()).is_ok());
                assert!(used.insert(a), "allocated {a} twice");
                last = Some(a);
            }
            assert_eq!(used.len() as u64, p.capacity(), "{p:?}");
        }
    }

    // ---------- names ----------

    #[test]
    fn name_valid() {
        for n in [
            "a",
            "A",
            "0",
            "web",
            "my-net",
            "my_net.v2",
            "a-",
            "x.y_z-1",
            "9abc",
        ] {
            assert_eq!(validate_name("network", n), Ok(()), "{n}");
        }
        assert_eq!(validate_name("container", &"a".repeat(64)), Ok(()));
    }

    #[test]
    fn name_leading_dash_or_symbol() {
        let e = validate_name("network", "-x").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid network name \"-x\": must match [a-zA-Z0-9][a-zA-Z0-9_.-]* and be at most 64 characters"
        );
        for n in [".x", "_x"] {
            let e = validate_name("container", n).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid container name \"{n}\"")),
                "{e}"
            );
        }
    }

    #[test]
    fn name_too_long() {
        let long = "a".repeat(65);
        let e = validate_name("container", &long).unwrap_err().to_string();
        assert!(e.contains(&long) && e.contains("64"), "{e}");
    }

    #[test]
    fn name_empty() {
        let e = validate_name("network", "").unwrap_err().to_string();
        assert!(e.starts_with("invalid network name \"\":"), "{e}");
    }

    #[test]
    fn name_bad_chars() {
        for n in ["a b", "a/b", "a:b", "é", "a\nb", "a@b", "ab!", "a\u{0}"] {
            let e = validate_name("network", n).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            assert!(e.starts_with("invalid network name "), "{e}");
        }
    }

    // ---------- MTU ----------

    #[test]
    fn mtu_bounds() {
        assert_eq!(validate_mtu(67), Err(IpamError::MtuOutOfRange(67)));
        assert_eq!(validate_mtu(68), Ok(()));
        assert_eq!(validate_mtu(1500), Ok(()));
        assert_eq!(validate_mtu(9000), Ok(()));
        assert_eq!(validate_mtu(65535), Ok(()));
        assert_eq!(validate_mtu(65536), Err(IpamError::MtuOutOfRange(65536)));
        assert_eq!(validate_mtu(12), Err(IpamError::MtuOutOfRange(12)));
        assert!(validate_mtu(0).is_err());
        assert!(validate_mtu(u32::MAX).is_err());
    }

    // ---------- messages ----------

    #[test]
    fn every_error_message_is_one_line_and_names_value() {
        let n = net("10.0.0.0/24");
        let a = ip("10.0.0.9");
        let cases: Vec<(IpamError, &str)> = vec![
            (IpamError::InvalidCidr("x/y".into()), "x/y"),
            (IpamError::HostBitsSet("10.0.0.1/24".into()), "10.0.0.1/24"),
            (IpamError::HostBitsSet("garbage".into()), "garbage"),
            (
                IpamError::GatewayOutsideSubnet {
                    gateway: ip("10.9.9.9"),
                    subnet: n,
                },
                "10.9.9.9",
            ),
            (
                IpamError::GatewayReserved {
                    gateway: ip("10.0.0.0"),
                    subnet: n,
                },
                "10.0.0.0",
            ),
            (
                IpamError::RangeOutsideSubnet {
                    range: net("10.1.0.0/24"),
                    subnet: n,
                },
                "10.1.0.0/24",
            ),
            (IpamError::SubnetTooSmall(net("10.0.0.0/31")), "10.0.0.0/31"),
            (
                IpamError::Overlap {
                    subnet: n,
                    other: net("10.0.0.0/8"),
                    network: "bridge".into(),
                },
                "bridge",
            ),
            (IpamError::IpOutsideSubnet { ip: a, subnet: n }, "10.0.0.9"),
            (IpamError::IpIsGateway(a), "10.0.0.9"),
            (IpamError::IpReserved(a), "10.0.0.9"),
            (IpamError::IpInUse(a), "10.0.0.9"),
            (IpamError::Exhausted(n), "10.0.0.0/24"),
            (IpamError::InvalidIp("1.2.3".into()), "1.2.3"),
        ];
        for (e, needle) in cases {
            assert_one_line(&e);
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            // usable as a boxed std error
            let boxed: Box<dyn std::error::Error> = Box::new(e.clone());
            assert_eq!(boxed.to_string(), e.to_string());
        }
        assert_eq!(
            IpamError::HostBitsSet("garbage".into()).to_string(),
            "subnet garbage has host bits set"
        );
    }
}

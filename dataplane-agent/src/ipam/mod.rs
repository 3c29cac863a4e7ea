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

pub mod v6;

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
fn has_host_bits(net: Ipv4Net) -> bool {
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
        if has_host_bits(subnet) {
            return Err(IpamError::HostBitsSet(subnet.to_string()));
        }
        if subnet.prefix_len() > 30 {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        if let Some(range) = range {
            if has_host_bits(range) {
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
mod tests;

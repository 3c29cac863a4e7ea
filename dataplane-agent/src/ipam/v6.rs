//! IPv6 address management for dual-stack networks (`network create
//! --ipv6`): parsing and validating the IPv6 subnet, gateway and ip-range,
//! the default IPv6 subnets (`fd00:dead:N::/64`), overlap checks, and
//! allocation and validation of container addresses (`--ip6`).
//!
//! Everything here is pure, as in the IPv4 side: callers pass the used
//! addresses in. Errors are the agent's one-line [`Error`]s.

use std::{collections::BTreeSet, net::Ipv6Addr, str::FromStr};

use ipnet::Ipv6Net;

use crate::{error::Error, model::Ipv6Pool};

/// Longest IPv6 prefix a network may have: room for a gateway and hosts.
pub const MAX_PREFIX6: u8 = 126;

/// Base of the default IPv6 subnets: `--ipv6` without an IPv6 `--subnet`
/// takes the first free `fd00:dead:N::/64` (N = 1, 2, ...), a ULA range
/// (masqueraded by default).
pub const DEFAULT_POOL6_BASE: [u16; 2] = [0xfd00, 0xdead];

/// Com.docker option choosing NAT or routing for IPv6.
pub const OPT_GATEWAY_MODE6: &str = "com.docker.network.bridge.gateway_mode_ipv6";

fn bad(m: String) -> Error {
    Error::InvalidArgument(m)
}

/// Parse an IPv6 CIDR strictly (no host bits, prefix 0..=128).
pub fn parse_subnet6(s: &str) -> Result<Ipv6Net, Error> {
    let invalid = || {
        bad(format!(
            "invalid IPv6 CIDR {s:?}: expected an IPv6 network such as fd00:1::/64"
        ))
    };
    let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
    let addr = Ipv6Addr::from_str(addr).map_err(|_| invalid())?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let net = Ipv6Net::new(addr, prefix).map_err(|_| invalid())?;
    if net.addr() != net.network() {
        return Err(bad(format!(
            "IPv6 subnet {s} has host bits set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Parse a plain IPv6 address.
pub fn parse_ip6(s: &str) -> Result<Ipv6Addr, Error> {
    Ipv6Addr::from_str(s).map_err(|_| {
        bad(format!(
            "invalid IPv6 address {s:?}: expected an address such as fd00:1::10"
        ))
    })
}

/// Whether `s` is written as an IPv6 address or network (has a colon).
pub fn is_v6_text(s: &str) -> bool {
    s.contains(':')
}

/// ULA subnets (fd00::/8, and fc00::/7 as a whole) are masqueraded by
/// default; global ones are routed.
pub fn is_ula(net: Ipv6Net) -> bool {
    (net.network().segments()[0] & 0xfe00) == 0xfc00
}

/// Whether masquerading is on: the `gateway_mode_ipv6` option
/// (`nat`/`nat-unprotected` or `routed`), else by the kind of subnet.
pub fn masquerade_for(subnet: Ipv6Net, mode: Option<&str>) -> Result<bool, Error> {
    match mode {
        None => Ok(is_ula(subnet)),
        Some("nat" | "nat-unprotected") => Ok(true),
        Some("routed") => Ok(false),
        Some(v) => Err(bad(format!(
            "option {OPT_GATEWAY_MODE6}={v:?}: expected nat or routed"
        ))),
    }
}

impl Ipv6Pool {
    /// Validate a network's IPv6 side: prefix /126 or shorter, gateway
    /// (default: the subnet's first address) inside the subnet and not its
    /// subnet-router anycast address, ip-range inside the subnet.
    pub fn new(
        subnet: Ipv6Net,
        range: Option<Ipv6Net>,
        gateway: Option<Ipv6Addr>,
        masquerade: bool,
    ) -> Result<Ipv6Pool, Error> {
        if subnet.prefix_len() > MAX_PREFIX6 {
            return Err(bad(format!(
                "IPv6 subnet {subnet} is too small: the prefix must be /{MAX_PREFIX6} or shorter"
            )));
        }
        if let Some(r) = range {
            if !subnet.contains(&r) {
                return Err(bad(format!("IPv6 ip-range {r} is outside subnet {subnet}")));
            }
        }
        let gateway = match gateway {
            Some(g) => g,
            None => add(subnet.network(), 1),
        };
        if !subnet.contains(&gateway) {
            return Err(bad(format!(
                "IPv6 gateway {gateway} is outside subnet {subnet}"
            )));
        }
        if gateway == subnet.network() {
            return Err(bad(format!(
                "IPv6 gateway {gateway} is the subnet-router anycast address of {subnet} and cannot be used"
            )));
        }
        Ok(Ipv6Pool {
            subnet: subnet.network(),
            prefix_len: subnet.prefix_len(),
            gateway,
            ip_range: range.map(|r| (r.network(), r.prefix_len())),
            last_ip: None,
            masquerade,
        })
    }

    /// The subnet as a network.
    pub fn net(&self) -> Ipv6Net {
        Ipv6Net::new(self.subnet, self.prefix_len).unwrap_or_default()
    }

    /// The ip-range as a network, if any.
    pub fn range_net(&self) -> Option<Ipv6Net> {
        self.ip_range.and_then(|(a, p)| Ipv6Net::new(a, p).ok())
    }

    /// Check a requested address (`--ip6`).
    pub fn check_static(&self, ip: Ipv6Addr, used: &BTreeSet<Ipv6Addr>) -> Result<(), Error> {
        let net = self.net();
        if !net.contains(&ip) {
            return Err(bad(format!("IPv6 address {ip} is outside subnet {net}")));
        }
        if ip == self.gateway {
            return Err(bad(format!("IPv6 address {ip} is the network's gateway")));
        }
        if ip == net.network() {
            return Err(bad(format!(
                "IPv6 address {ip} is reserved (subnet-router anycast address of {net})"
            )));
        }
        if used.contains(&ip) {
            return Err(Error::Conflict(format!(
                "IPv6 address {ip} is already in use"
            )));
        }
        Ok(())
    }

    /// The lowest free address of the ip-range (or subnet), as Docker.
    pub fn allocate(&self, used: &BTreeSet<Ipv6Addr>) -> Result<Ipv6Addr, Error> {
        let pool = self.range_net().unwrap_or_else(|| self.net());
        let first = u128::from(pool.network()).max(u128::from(self.subnet) + 1);
        let last = u128::from(pool.broadcast());
        // At most used + 2 candidates are taken: the loop is short.
        let mut a = first;
        while a <= last {
            let ip = Ipv6Addr::from(a);
            if ip != self.gateway && !used.contains(&ip) {
                return Ok(ip);
            }
            a += 1;
        }
        Err(Error::Unavailable(format!(
            "no free IPv6 address left in pool {pool}"
        )))
    }
}

fn add(ip: Ipv6Addr, n: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(ip).wrapping_add(n))
}

/// Refuse an IPv6 subnet that overlaps another network's.
pub fn check_overlap6<'a>(
    subnet: Ipv6Net,
    others: impl IntoIterator<Item = (&'a str, Ipv6Net)>,
) -> Result<(), Error> {
    for (name, o) in others {
        if o.contains(&subnet) || subnet.contains(&o) {
            return Err(Error::Conflict(format!(
                "IPv6 subnet {subnet} overlaps subnet {o} of network {name:?}"
            )));
        }
    }
    Ok(())
}

/// The first default IPv6 subnet (`fd00:dead:N::/64`, N >= 1) that
/// overlaps none of `taken`.
pub fn default_subnet6(taken: &[Ipv6Net]) -> Result<Ipv6Net, Error> {
    (1..=u16::MAX)
        .filter_map(|n| {
            let [a, b] = DEFAULT_POOL6_BASE;
            Ipv6Net::new(Ipv6Addr::new(a, b, n, 0, 0, 0, 0, 0), 64).ok()
        })
        .find(|s| !taken.iter().any(|t| t.contains(s) || s.contains(t)))
        .ok_or_else(|| {
            Error::Unavailable("no free default IPv6 subnet left; pass an IPv6 --subnet".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_validates() {
        assert_eq!(parse_subnet6("fd00:1::/64").unwrap(), net("fd00:1::/64"));
        assert!(parse_subnet6("fd00:1::1/64")
            .unwrap_err()
            .to_string()
            .contains("did you mean fd00:1::/64"));
        for bad in [
            "fd00::/129",
            "fd00::",
            "10.0.0.0/24",
            "fd00::/+4",
            " fd00::/64",
        ] {
            assert!(parse_subnet6(bad).is_err(), "{bad}");
        }
        assert!(parse_ip6("fd00::10").is_ok());
        assert!(parse_ip6("10.0.0.1").is_err());
        let p = Ipv6Pool::new(net("fd00:1::/64"), None, None, true).unwrap();
        assert_eq!(p.gateway, "fd00:1::1".parse::<Ipv6Addr>().unwrap());
        assert!(Ipv6Pool::new(
            net("fd00:1::/64"),
            None,
            Some("fd00:2::1".parse().unwrap()),
            true
        )
        .is_err());
        assert!(Ipv6Pool::new(
            net("fd00:1::/64"),
            None,
            Some("fd00:1::".parse().unwrap()),
            true
        )
        .is_err());
        assert!(Ipv6Pool::new(net("fd00:1::/64"), Some(net("fd00:2::/80")), None, true).is_err());
        assert!(Ipv6Pool::new(net("fd00:1::/127"), None, None, true).is_err());
    }

    #[test]
    fn allocates_lowest_free_and_checks_static() {
        let p = Ipv6Pool::new(net("fd00:1::/64"), None, None, true).unwrap();
        let mut used = BTreeSet::new();
        let a = p.allocate(&used).unwrap();
        assert_eq!(a, "fd00:1::2".parse::<Ipv6Addr>().unwrap());
        used.insert(a);
        assert_eq!(p.allocate(&used).unwrap().to_string(), "fd00:1::3");
        assert!(p.check_static(a, &used).is_err());
        assert!(p.check_static(p.gateway, &used).is_err());
        assert!(p.check_static("fd00:2::5".parse().unwrap(), &used).is_err());
        assert!(p.check_static("fd00:1::".parse().unwrap(), &used).is_err());
        assert!(p.check_static("fd00:1::99".parse().unwrap(), &used).is_ok());
        let r =
            Ipv6Pool::new(net("fd00:1::/64"), Some(net("fd00:1::100/127")), None, true).unwrap();
        let mut used = BTreeSet::new();
        used.insert(r.allocate(&used).unwrap());
        used.insert(r.allocate(&used).unwrap());
        assert!(r.allocate(&used).is_err());
    }

    #[test]
    fn masquerade_follows_the_subnet_kind_and_option() {
        assert!(masquerade_for(net("fd00:1::/64"), None).unwrap());
        assert!(!masquerade_for(net("2001:db8::/64"), None).unwrap());
        assert!(!masquerade_for(net("fd00:1::/64"), Some("routed")).unwrap());
        assert!(masquerade_for(net("2001:db8::/64"), Some("nat")).unwrap());
        assert!(masquerade_for(net("2001:db8::/64"), Some("bridge")).is_err());
    }

    #[test]
    fn default_subnets_skip_taken_ones() {
        let first = default_subnet6(&[]).unwrap();
        assert_eq!(first, net("fd00:dead:1::/64"));
        assert_eq!(
            default_subnet6(&[first, net("fd00:dead:2::/64")]).unwrap(),
            net("fd00:dead:3::/64")
        );
        assert!(check_overlap6(net("fd00:dead:1::/80"), [("a", first)]).is_err());
        assert!(check_overlap6(net("fd00:dead:9::/64"), [("a", first)]).is_ok());
    }
}

//! Dual-stack cluster networks (`network create --driver overlay --ipv6
//! --subnet V4 --subnet V6`): the IPv6 side of a cluster network.
//!
//! IPv6 addresses are derived from the IPv4 ones, not allocated: an
//! endpoint's IPv6 address is the network's IPv6 prefix with the endpoint's
//! IPv4 host part (its offset in the IPv4 subnet) as interface id, and the
//! IPv6 gateway is the first host address, as the IPv4 gateway is. IPv4
//! addresses are unique in the cluster (per-node blocks, endpoints written
//! create-if-absent by one etcd transaction), so the IPv6 ones are too, with
//! no second set of blocks and nothing more to claim in etcd; the IPv6
//! subnet only needs room for the IPv4 host part. Endpoints announce the
//! address in their record (`EndpointRecord::ip6`), and a receiver accepts
//! only the address the rule gives (a record from a confused node cannot
//! claim another endpoint's IPv6 address).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::keys::NetworkRecord;

/// Longest IPv6 prefix of a cluster network: room for the gateway and
/// hosts, as for bridge networks.
pub const MAX_PREFIX6: u8 = 126;

/// Why an IPv6 subnet cannot go with an IPv4 one (a one-line message), or
/// `None` when it can: the IPv6 host part must hold every IPv4 host part.
pub fn check_subnet6(subnet: Ipv4Net, subnet6: Ipv6Net) -> Option<String> {
    let host_bits = 32 - subnet.prefix_len();
    let room = 128 - subnet6.prefix_len();
    if subnet6.prefix_len() > MAX_PREFIX6 || room < host_bits {
        return Some(format!(
            "IPv6 subnet {subnet6} is too small for {subnet}: a cluster network's IPv6 addresses carry the IPv4 host part, so it needs at most /{}",
            (128 - host_bits).min(u32::from(MAX_PREFIX6) as u8)
        ));
    }
    if subnet6.addr() != subnet6.network() {
        return Some(format!(
            "IPv6 subnet {subnet6} has host bits set (did you mean {}?)",
            subnet6.trunc()
        ));
    }
    None
}

/// The IPv6 address of IPv4 address `ip` of `subnet` on `subnet6`.
pub fn derive(subnet: Ipv4Net, subnet6: Ipv6Net, ip: Ipv4Addr) -> Ipv6Addr {
    let host = u32::from(ip) & !u32::from(subnet.netmask());
    Ipv6Addr::from(u128::from(subnet6.network()) | u128::from(host))
}

/// The IPv6 address of `ip` on a cluster network, if it is dual stack.
pub fn ip6_of(net: &NetworkRecord, ip: Ipv4Addr) -> Option<Ipv6Addr> {
    net.subnet6.map(|s6| derive(net.subnet, s6, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_carry_the_ipv4_host_part() {
        let v4: Ipv4Net = "10.90.0.0/16".parse().unwrap();
        let v6: Ipv6Net = "fd00:90::/64".parse().unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            derive(v4, v6, ip("10.90.0.1")),
            "fd00:90::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            derive(v4, v6, ip("10.90.1.70")),
            "fd00:90::146".parse::<Ipv6Addr>().unwrap()
        );
        // Distinct IPv4 addresses, distinct IPv6 ones, at the smallest
        // allowed IPv6 subnet too.
        let tight: Ipv6Net = "fd00:90::/112".parse().unwrap();
        assert_eq!(check_subnet6(v4, tight), None);
        assert_ne!(
            derive(v4, tight, ip("10.90.255.254")),
            derive(v4, tight, ip("10.90.0.254"))
        );
    }

    #[test]
    fn small_or_unaligned_subnets_are_refused_in_one_line() {
        let v4: Ipv4Net = "10.90.0.0/24".parse().unwrap();
        let e = check_subnet6(v4, "fd00:90::/121".parse().unwrap()).unwrap();
        assert!(e.contains("needs at most /120"), "{e}");
        assert!(!e.contains('\n'));
        assert!(check_subnet6(v4, "fd00:90::/120".parse().unwrap()).is_none());
        let v4: Ipv4Net = "10.90.0.0/30".parse().unwrap();
        assert!(check_subnet6(v4, "fd00:90::/127".parse().unwrap()).is_some());
        let e = check_subnet6(v4, "fd00:90::1/64".parse().unwrap()).unwrap();
        assert!(e.contains("host bits"), "{e}");
    }
}

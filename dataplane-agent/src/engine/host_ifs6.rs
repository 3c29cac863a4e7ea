//! The host's IPv6 side for the north-south datapath: its global and ULA
//! addresses (`DP_HOST_IPS6`: what `[::]` publishes on, and sources no
//! packet from outside may claim), the address each served host interface
//! (the uplink and `host_ifs`) masquerades IPv6 to (`DP_HOST_IFS6`), and
//! the published ports on IPv6 (`published_ports6`). Synced on every
//! reconcile pass and on address events, like the IPv4 side.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
};

use anyhow::Result;
use dataplane_common::{Endpoint6Key, HostIf6};
use futures::TryStreamExt;
use rtnetlink::packet_route::{address::AddressAttribute, AddressFamily};

use super::{published_ports6, Inner};
use crate::datapath::Nat6Want;

/// An address that can be a masquerade source or a published address:
/// not loopback, link-local, multicast or unspecified.
fn usable(ip: Ipv6Addr) -> bool {
    let s0 = ip.segments()[0];
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || (s0 & 0xffc0) == 0xfe80)
}

/// The host's usable IPv6 addresses, by interface index, in the kernel's order.
async fn addresses6(g: &Inner) -> Result<Vec<(u32, Ipv6Addr)>> {
    let addrs: Vec<_> = g.host.address().get().execute().try_collect().await?;
    Ok(addrs
        .iter()
        .filter(|a| a.header.family == AddressFamily::Inet6)
        .flat_map(|a| {
            a.attributes.iter().filter_map(move |x| match x {
                AddressAttribute::Address(IpAddr::V6(ip)) if usable(*ip) => {
                    Some((a.header.index, *ip))
                }
                _ => None,
            })
        })
        .collect())
}

/// What the IPv6 north-south maps should hold.
pub(crate) async fn want(g: &Inner) -> Result<Nat6Want> {
    let addrs = addresses6(g).await?;
    let served: Vec<u32> = g
        .host_ifs
        .iter()
        .chain(g.uplink.iter())
        .map(|u| u.index)
        .collect();
    let mut host_ifs6 = HashMap::new();
    for (index, ip) in &addrs {
        if served.contains(index) {
            host_ifs6
                .entry(*index)
                .or_insert(HostIf6 { ip: ip.octets() });
        }
    }
    Ok(Nat6Want {
        ports6: published_ports6::entries(g),
        host_ips6: addrs
            .iter()
            .map(|(_, ip)| (Endpoint6Key { ip: ip.octets() }, 1))
            .collect(),
        host_ifs6,
    })
}

/// Converge the IPv6 north-south maps; returns how many entries changed.
pub(crate) async fn sync(g: &mut Inner) -> Result<usize> {
    let want = want(g).await?;
    g.dp.nat6_maps()?.sync(&want)
}

/// Converge `DP_PORTS6` only (no address dump: for hosts without a
/// dual-stack network, where it empties the map).
pub(crate) fn sync_ports(g: &mut Inner) -> Result<usize> {
    g.dp.nat6_maps()?.sync_ports(&published_ports6::entries(g))
}

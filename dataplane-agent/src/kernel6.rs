//! The IPv6 side of the kernel objects (dual stack), through netlink and
//! per-interface sysctls: an endpoint's IPv6 address (no DAD) and default
//! route inside its namespace, IPv6 on its host-side veth with a /128 route
//! to it, and the networks' IPv6 gateways as /128s on `dp0`.

use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    net::{IpAddr, Ipv6Addr},
    path::Path,
};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use nix::{
    errno::Errno,
    sched::{setns, CloneFlags},
};
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressFlags},
        route::{RouteAddress, RouteAttribute, RouteHeader, RouteScope},
        AddressFamily,
    },
    Handle, RouteMessageBuilder,
};

use crate::{
    kernel::{ensure_gateway_dev, is_errno, netdev_by_name, set_sysctl, GATEWAY_DEV},
    model::Endpoint,
};

/// `disable_ipv6` of `ifname` in the calling thread's namespace.
fn set_ipv6_enabled(ifname: &str, on: bool) -> Result<()> {
    set_sysctl(
        &format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        if on { "0" } else { "1" },
    )
}

/// Enable IPv6 on `ifname` inside the namespace bound at `netns` (sysctls
/// are per namespace: written from a thread that entered it).
fn enable_ipv6_in(netns: &Path, ifname: &str) -> Result<()> {
    let ns = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    let ifname = ifname.to_string();
    std::thread::spawn(move || -> Result<()> {
        setns(&ns, CloneFlags::CLONE_NEWNET).context("setns")?;
        set_ipv6_enabled(&ifname, true)
    })
    .join()
    .map_err(|_| anyhow!("netns thread panicked"))?
}

/// Host-side veth of a dual-stack endpoint: IPv6 on (the veth of an
/// IPv4-only endpoint keeps it off).
pub fn prepare_host_if6(name: &str) -> Result<()> {
    set_ipv6_enabled(name, true)?;
    // bpf_fib_lookup() refuses to route IPv6 for devices with forwarding
    // off (`dp_egress6`: masquerade and routed networks).
    set_sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/forwarding"), "1")
}

/// Add `ip/plen` to interface `index` without duplicate address detection
/// (`nodad`: the agent's IPAM owns the subnet).
async fn add_address_nodad(h: &Handle, index: u32, ip: Ipv6Addr, plen: u8) -> Result<()> {
    let mut req = h.address().add(index, IpAddr::V6(ip), plen).replace();
    req.message_mut()
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    req.execute()
        .await
        .with_context(|| format!("adding {ip}/{plen}"))
}

/// The IPv6 side of a dual-stack endpoint (after its IPv4 side): IPv6 on
/// the container interface, its address (nodad), the default route via
/// the IPv6 gateway when the endpoint carries the default route, and the
/// host's /128 route to it.
pub async fn configure_endpoint6(
    host: &Handle,
    netns: &Path,
    ns: &Handle,
    ep: &Endpoint,
    container_index: u32,
    host_index: u32,
) -> Result<()> {
    let Some(ip6) = ep.ip6 else {
        return Ok(());
    };
    prepare_host_if6(&ep.host_interface)?;
    enable_ipv6_in(netns, &ep.interface)?;
    add_address_nodad(ns, container_index, ip6, ep.prefix_len6).await?;
    if let (true, Some(gw)) = (ep.default_route, ep.gateway6) {
        let r = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gw)
            .output_interface(container_index)
            .build();
        ns.route()
            .add(r)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding IPv6 default route via {gw}"))?;
    }
    add_host_route6(host, ip6, host_index, ep.gateway6).await
}

/// The host's /128 route to a container's IPv6 address through its host
/// veth, from the IPv6 gateway address (so replies come back through the
/// datapath); without it if the kernel refuses the source.
pub async fn add_host_route6(
    host: &Handle,
    ip: Ipv6Addr,
    host_index: u32,
    src: Option<Ipv6Addr>,
) -> Result<()> {
    let route = |src: Option<Ipv6Addr>| {
        let b = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(ip, 128)
            .output_interface(host_index)
            .scope(RouteScope::Link);
        match src {
            Some(s) => b.pref_source(s).build(),
            None => b.build(),
        }
    };
    match host.route().add(route(src)).replace().execute().await {
        Err(e) if src.is_some() && is_errno(&e, Errno::EINVAL) => host
            .route()
            .add(route(None))
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding host route to {ip}")),
        r => r.with_context(|| format!("adding host route to {ip}")),
    }
}

/// The /128 routes of the host's main table: destination -> output ifindex.
pub async fn host_routes128(h: &Handle) -> Result<HashMap<Ipv6Addr, u32>> {
    crate::kernel::host_routes_of(
        h,
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
        128,
        |a| match a {
            RouteAddress::Inet6(ip) => Some(*ip),
            _ => None,
        },
    )
    .await
}

/// Give the host a network's IPv6 gateway, as a /128 on `dp0` (nodad).
pub async fn add_gateway6(h: &Handle, gw: Ipv6Addr) -> Result<()> {
    let idx = ensure_gateway_dev(h).await?;
    set_ipv6_enabled(GATEWAY_DEV, true)?;
    add_address_nodad(h, idx, gw, 128)
        .await
        .with_context(|| format!("adding IPv6 gateway address {gw}"))
}

/// The IPv6 gateways on `dp0` (global addresses; link-local ones are the
/// kernel's).
pub async fn gateways6(h: &Handle) -> Result<BTreeSet<Ipv6Addr>> {
    let Some(l) = netdev_by_name(h, GATEWAY_DEV).await? else {
        return Ok(BTreeSet::new());
    };
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(l.index)
        .execute()
        .try_collect()
        .await?;
    Ok(addrs
        .iter()
        .filter(|a| a.header.family == AddressFamily::Inet6)
        .flat_map(|a| a.attributes.iter())
        .filter_map(|x| match x {
            AddressAttribute::Address(IpAddr::V6(ip)) if !is_link_local(*ip) => Some(*ip),
            _ => None,
        })
        .collect())
}

fn is_link_local(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

pub async fn del_gateway6(h: &Handle, gw: Ipv6Addr) -> Result<()> {
    crate::kernel::del_gateway_ip(h, IpAddr::V6(gw)).await
}

/// Make `ifname` carry the IPv6 default route (via `gateway`) inside a
/// namespace (the default route moved to a dual-stack endpoint).
pub async fn set_default_route6(netns: &Path, ifname: &str, gateway: Ipv6Addr) -> Result<()> {
    let ns = crate::kernel::handle_in_netns(netns)?;
    let l = netdev_by_name(&ns, ifname)
        .await?
        .ok_or_else(|| anyhow!("{ifname} missing in the container"))?;
    let r = RouteMessageBuilder::<Ipv6Addr>::new()
        .gateway(gateway)
        .output_interface(l.index)
        .build();
    ns.route()
        .add(r)
        .replace()
        .execute()
        .await
        .with_context(|| format!("adding IPv6 default route via {gateway}"))?;
    Ok(())
}

/// The IPv6 networks the host uses: the prefixes of its main table's routes
/// and of its global addresses (link-local and multicast left out), so that
/// a network's IPv6 subnet does not take them over.
pub async fn host_networks6(h: &Handle) -> Result<Vec<ipnet::Ipv6Net>> {
    let keep = |ip: Ipv6Addr| !is_link_local(ip) && !ip.is_multicast() && !ip.is_loopback();
    let mut out = Vec::new();
    let mut routes = h
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute();
    while let Some(rt) = routes.try_next().await? {
        let len = rt.header.destination_prefix_length;
        if len == 0 || rt.header.table != RouteHeader::RT_TABLE_MAIN {
            continue;
        }
        for a in &rt.attributes {
            if let RouteAttribute::Destination(RouteAddress::Inet6(ip)) = a {
                if let (true, Ok(n)) = (keep(*ip), ipnet::Ipv6Net::new(*ip, len)) {
                    out.push(n.trunc());
                }
            }
        }
    }
    let addrs: Vec<_> = h.address().get().execute().try_collect().await?;
    for a in addrs
        .iter()
        .filter(|a| a.header.family == AddressFamily::Inet6)
    {
        for x in &a.attributes {
            if let AddressAttribute::Address(IpAddr::V6(ip)) = x {
                if let (true, Ok(n)) = (keep(*ip), ipnet::Ipv6Net::new(*ip, a.header.prefix_len)) {
                    out.push(n.trunc());
                }
            }
        }
    }
    Ok(out)
}

//! Kernel objects other than BPF: network namespaces, veth pairs, addresses
//! and routes, all through netlink (rtnetlink) and syscalls. Nothing here
//! shells out.

use std::{
    collections::HashMap,
    fs::File,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use futures::TryStreamExt;
use nix::{
    errno::Errno,
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
};
use rtnetlink::{
    packet_route::{
        address::AddressAttribute,
        link::{InfoData, InfoVeth, LinkAttribute, LinkMessage},
        route::{RouteAddress, RouteAttribute, RouteHeader, RouteScope},
        AddressFamily,
    },
    Handle, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::model::Endpoint;

/// Holder of the networks' gateway addresses in the host namespace (a veth
/// pair whose peer stays in the host, like Cilium's cilium_host/cilium_net:
/// no Linux bridge is involved, it only owns addresses).
pub const GATEWAY_DEV: &str = "dp0";
const GATEWAY_PEER: &str = "dp0p";

pub fn is_errno(e: &rtnetlink::Error, errno: Errno) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -(errno as i32))
}

#[derive(Debug, Clone)]
pub struct NetdevInfo {
    pub index: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// A virtual device (veth, bridge, vxlan, ...): it has a link kind.
    pub is_virtual: bool,
    /// How an XDP program is attached (`XDP_ATTACHED_*`: 0 none, 1 driver,
    /// 2 generic, 3 offload, 4 several).
    pub xdp_attached: u8,
}

fn link_info(m: &LinkMessage) -> NetdevInfo {
    let mut info = NetdevInfo {
        index: m.header.index,
        mac: [0; 6],
        mtu: 0,
        is_virtual: false,
        xdp_attached: 0,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Address(mac) if mac.len() == 6 => info.mac.copy_from_slice(mac),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::LinkInfo(infos) => {
                info.is_virtual = infos
                    .iter()
                    .any(|i| matches!(i, rtnetlink::packet_route::link::LinkInfo::Kind(_)));
            }
            LinkAttribute::Xdp(xdp) => {
                for x in xdp {
                    use rtnetlink::packet_route::link::{LinkXdp, XdpAttached};
                    if let LinkXdp::Attached(a) = x {
                        info.xdp_attached = match a {
                            XdpAttached::None => 0,
                            XdpAttached::Driver => 1,
                            XdpAttached::SocketBuffer => 2,
                            XdpAttached::Hardware => 3,
                            XdpAttached::Multiple => 4,
                            XdpAttached::Other(v) => *v,
                            _ => 0xff,
                        };
                    }
                }
            }
            _ => {}
        }
    }
    info
}

pub async fn netdev_by_name(h: &Handle, name: &str) -> Result<Option<NetdevInfo>> {
    match h.link().get().match_name(name).execute().try_next().await {
        Ok(m) => Ok(m.as_ref().map(link_info)),
        Err(e) if is_errno(&e, Errno::ENODEV) => Ok(None),
        Err(e) => Err(anyhow!(e).context(format!("looking up link {name}"))),
    }
}

pub async fn netdev_names(h: &Handle) -> Result<Vec<(u32, String)>> {
    let links: Vec<LinkMessage> = h.link().get().execute().try_collect().await?;
    Ok(links
        .iter()
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some((m.header.index, n.clone())),
                _ => None,
            })
        })
        .collect())
}

/// Every interface (netdev) of the namespace of `h`, by name (one netlink dump).
pub async fn netdevs(h: &Handle) -> Result<HashMap<String, NetdevInfo>> {
    let msgs: Vec<LinkMessage> = h.link().get().execute().try_collect().await?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some((n.clone(), link_info(m))),
                _ => None,
            })
        })
        .collect())
}

/// The /32 routes of the main table: destination -> output interface.
pub async fn host_routes32(h: &Handle) -> Result<HashMap<Ipv4Addr, u32>> {
    host_routes_of(
        h,
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        32,
        |a| match a {
            RouteAddress::Inet(ip) => Some(*ip),
            _ => None,
        },
    )
    .await
}

/// The host routes (prefix `len`) of the main table that a dump with
/// `query` (one address family) lists: destination -> output interface.
pub(crate) async fn host_routes_of<A: Eq + std::hash::Hash>(
    h: &Handle,
    query: rtnetlink::packet_route::route::RouteMessage,
    len: u8,
    dst_of: fn(&RouteAddress) -> Option<A>,
) -> Result<HashMap<A, u32>> {
    let mut out = HashMap::new();
    let mut routes = h.route().get(query).execute();
    while let Some(rt) = routes.try_next().await? {
        if rt.header.destination_prefix_length != len
            || rt.header.table != RouteHeader::RT_TABLE_MAIN
        {
            continue;
        }
        let mut dst = None;
        let mut oif = 0;
        for a in &rt.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = dst_of(d),
                RouteAttribute::Oif(i) => oif = *i,
                _ => {}
            }
        }
        if let Some(ip) = dst {
            out.insert(ip, oif);
        }
    }
    Ok(out)
}

/// The host's /32 route to a container through its host-side veth.
/// The host's traffic to the container leaves from the gateway address, so
/// that replies come back through the datapath; on a `lan` network the
/// gateway is the LAN's router, not an address of the host (the kernel
/// refuses it as a source), and the host's own LAN address is used.
pub async fn add_host_route(host: &Handle, ep: &Endpoint, host_ifindex: u32) -> Result<()> {
    let route = |src: Option<Ipv4Addr>| {
        let b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ep.ip, 32)
            .output_interface(host_ifindex)
            .scope(RouteScope::Link);
        match src {
            Some(s) => b.pref_source(s).build(),
            None => b.build(),
        }
    };
    match host
        .route()
        .add(route(Some(ep.gateway)))
        .replace()
        .execute()
        .await
    {
        Err(e) if is_errno(&e, Errno::EINVAL) => host
            .route()
            .add(route(None))
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding host route to {}", ep.ip)),
        r => r.with_context(|| format!("adding host route to {}", ep.ip)),
    }
}

/// A netlink handle in the namespace bound at `path`. The socket is created on
/// a throwaway thread that entered the namespace, never on a runtime worker.
pub fn handle_in_netns(path: &Path) -> Result<Handle> {
    let rt = tokio::runtime::Handle::current();
    let ns = File::open(path).with_context(|| format!("opening netns {}", path.display()))?;
    let (conn, handle) = std::thread::spawn(move || -> Result<_> {
        setns(&ns, CloneFlags::CLONE_NEWNET).context("setns")?;
        let _g = rt.enter();
        let (conn, handle, _) = rtnetlink::new_connection()?;
        Ok((conn, handle))
    })
    .join()
    .map_err(|_| anyhow!("netns thread panicked"))??;
    tokio::spawn(conn);
    Ok(handle)
}

pub fn host_handle() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Create a new network namespace and bind-mount it at `path`.
pub fn create_netns(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let p = path.to_path_buf();
    let res = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        // Containers are IPv4-only (the datapath drops IPv6 from them): no
        // IPv6 on the interfaces created in here from now on (lo keeps ::1),
        // as Docker does on IPv4-only networks. Absent without IPv6 support.
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context("bind-mounting the new netns")?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("netns thread panicked"))?;
    if let Err(e) = res {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Bind-mount the calling process's own namespace at `path` (the host's).
pub fn bind_own_netns(path: &Path) -> Result<()> {
    if is_netns_mount(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    mount(
        Some("/proc/self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting the host netns at {}", path.display()))
}

/// Whether `path` is a bound network namespace (and not a plain file).
pub fn is_netns_mount(path: &Path) -> bool {
    match nix::sys::statfs::statfs(path) {
        Ok(st) => st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC,
        Err(_) => false,
    }
}

pub fn delete_netns(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
        Err(e) => return Err(anyhow!(e).context(format!("unmounting {}", path.display()))),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Bring `lo` up inside a namespace.
pub async fn netns_lo_up(ns: &Handle) -> Result<()> {
    let lo = netdev_by_name(ns, "lo")
        .await?
        .ok_or_else(|| anyhow!("no lo in namespace"))?;
    ns.link()
        .set(LinkUnspec::new_with_index(lo.index).up().build())
        .execute()
        .await?;
    Ok(())
}

pub fn set_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value} to {path}"))
}

/// Set up the per-interface sysctls of a host-side veth.
fn prepare_host_if(name: &str) -> Result<()> {
    // bpf_fib_lookup() refuses to route for devices with forwarding off.
    set_sysctl(&format!("/proc/sys/net/ipv4/conf/{name}/forwarding"), "1")?;
    // No IPv6 on the host-side veths of IPv4-only endpoints (dual-stack
    // ones turn it on again: `kernel6::configure_endpoint6`).
    let _ = set_sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    Ok(())
}

/// Ensure the gateway holder device exists and is up; returns its ifindex.
pub async fn ensure_gateway_dev(h: &Handle) -> Result<u32> {
    if let Some(l) = netdev_by_name(h, GATEWAY_DEV).await? {
        return Ok(l.index);
    }
    let msg = LinkVeth::new(GATEWAY_DEV, GATEWAY_PEER).up().build();
    h.link()
        .add(msg)
        .execute()
        .await
        .context("creating the gateway device")?;
    if let Some(p) = netdev_by_name(h, GATEWAY_PEER).await? {
        h.link()
            .set(LinkUnspec::new_with_index(p.index).up().build())
            .execute()
            .await?;
    }
    let l = netdev_by_name(h, GATEWAY_DEV)
        .await?
        .ok_or_else(|| anyhow!("gateway device vanished"))?;
    Ok(l.index)
}

pub async fn delete_gateway_dev(h: &Handle) -> Result<()> {
    if let Some(l) = netdev_by_name(h, GATEWAY_DEV).await? {
        h.link().del(l.index).execute().await?;
    }
    Ok(())
}

/// Give the host the gateway address of a network (as a /32: containers are
/// reached through per-endpoint /32 routes, the subnet itself has no route).
pub async fn add_gateway(h: &Handle, gw: Ipv4Addr) -> Result<()> {
    let idx = ensure_gateway_dev(h).await?;
    h.address()
        .add(idx, IpAddr::V4(gw), 32)
        .replace()
        .execute()
        .await
        .with_context(|| format!("adding gateway address {gw}"))
}

pub async fn del_gateway(h: &Handle, gw: Ipv4Addr) -> Result<()> {
    del_gateway_ip(h, IpAddr::V4(gw)).await
}

/// Remove a network's gateway address (either family) from `dp0`.
pub(crate) async fn del_gateway_ip(h: &Handle, gw: IpAddr) -> Result<()> {
    let family = if gw.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let Some(l) = netdev_by_name(h, GATEWAY_DEV).await? else {
        return Ok(());
    };
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(l.index)
        .execute()
        .try_collect()
        .await?;
    for a in addrs {
        if a.header.family != family {
            continue;
        }
        // IPv4 names the interface's own address `Local`, IPv6 `Address`.
        let is_gw = a.attributes.iter().any(|x| {
            matches!(x, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == gw)
        });
        if is_gw {
            h.address().del(a).execute().await?;
        }
    }
    Ok(())
}

/// Create one endpoint: the veth pair, the container side in `netns` with its
/// MAC, address, MTU and (optionally) default route, and the host side with a
/// /32 route to the container. On error, whatever was created is removed.
pub async fn create_endpoint(host: &Handle, netns: &Path, ep: &Endpoint) -> Result<NetdevInfo> {
    if netdev_by_name(host, &ep.host_interface).await?.is_some() {
        bail!("host interface {} already exists", ep.host_interface);
    }
    let ns_file = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    let peer = LinkUnspec::new_with_name(&ep.interface)
        .setns_by_fd(ns_file.as_raw_fd())
        .mtu(ep.mtu)
        .address(ep.mac.to_vec())
        .build();
    let msg = LinkVeth::new(&ep.host_interface, &ep.interface)
        .mtu(ep.mtu)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    host.link()
        .add(msg)
        .execute()
        .await
        .with_context(|| format!("creating veth {}", ep.host_interface))?;
    drop(ns_file);
    match configure_endpoint(host, netns, ep).await {
        Ok(info) => Ok(info),
        Err(e) => {
            let _ = delete_netdev(host, &ep.host_interface).await;
            Err(e)
        }
    }
}

async fn configure_endpoint(host: &Handle, netns: &Path, ep: &Endpoint) -> Result<NetdevInfo> {
    let hl = netdev_by_name(host, &ep.host_interface)
        .await?
        .ok_or_else(|| anyhow!("veth {} vanished", ep.host_interface))?;
    prepare_host_if(&ep.host_interface)?;

    let ns = handle_in_netns(netns)?;
    let cl = netdev_by_name(&ns, &ep.interface)
        .await?
        .ok_or_else(|| anyhow!("{} missing in the container", ep.interface))?;
    ns.address()
        .add(cl.index, IpAddr::V4(ep.ip), ep.prefix_len)
        .replace()
        .execute()
        .await
        .with_context(|| format!("adding {}/{} to {}", ep.ip, ep.prefix_len, ep.interface))?;
    ns.link()
        .set(LinkUnspec::new_with_index(cl.index).up().build())
        .execute()
        .await?;
    if ep.default_route {
        let r = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(ep.gateway)
            .output_interface(cl.index)
            .build();
        ns.route()
            .add(r)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding default route via {}", ep.gateway))?;
    }
    add_host_route(host, ep, hl.index).await?;
    crate::kernel6::configure_endpoint6(host, netns, &ns, ep, cl.index, hl.index).await?;
    Ok(hl)
}

/// Make `ifname` carry the default route (via `gateway`) inside a namespace.
pub async fn set_default_route(netns: &Path, ifname: &str, gateway: Ipv4Addr) -> Result<()> {
    let ns = handle_in_netns(netns)?;
    let l = netdev_by_name(&ns, ifname)
        .await?
        .ok_or_else(|| anyhow!("{ifname} missing in the container"))?;
    let r = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(l.index)
        .build();
    ns.route().add(r).replace().execute().await?;
    Ok(())
}

pub async fn delete_netdev(h: &Handle, name: &str) -> Result<()> {
    if let Some(l) = netdev_by_name(h, name).await? {
        match h.link().del(l.index).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, Errno::ENODEV) => {}
            Err(e) => return Err(anyhow!(e).context(format!("deleting {name}"))),
        }
    }
    Ok(())
}

/// The uplink: its name, ifindex and first IPv4 address.
#[derive(Debug, Clone)]
pub struct Uplink {
    pub name: String,
    pub index: u32,
    pub ip: Option<Ipv4Addr>,
    /// veth, bond, vxlan... rather than a NIC.
    pub is_virtual: bool,
    /// `XDP_ATTACHED_*` when it was read (see `NetdevInfo`).
    pub xdp_attached: u8,
}

/// Find the uplink: the named interface, or the one of the default route.
pub async fn find_uplink(h: &Handle, name: Option<&str>) -> Result<Option<Uplink>> {
    let index = if let Some(n) = name {
        match netdev_by_name(h, n).await? {
            Some(l) => l.index,
            None => bail!("uplink interface {n} does not exist"),
        }
    } else {
        let mut routes = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut oif = None;
        while let Some(rt) = routes.try_next().await? {
            if rt.header.destination_prefix_length == 0
                && rt.header.table == RouteHeader::RT_TABLE_MAIN
            {
                oif = rt.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                if oif.is_some() {
                    break;
                }
            }
        }
        match oif {
            Some(i) => i,
            None => return Ok(None),
        }
    };
    let names = netdev_names(h).await?;
    let name = names
        .into_iter()
        .find(|(i, _)| *i == index)
        .map(|(_, n)| n)
        .ok_or_else(|| anyhow!("uplink ifindex {index} vanished"))?;
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await?;
    let ip = addrs.iter().find_map(|a| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        })
    });
    let dev = netdev_by_name(h, &name).await?;
    Ok(Some(Uplink {
        name,
        index,
        ip,
        is_virtual: dev.as_ref().is_some_and(|l| l.is_virtual),
        xdp_attached: dev.as_ref().map_or(0, |l| l.xdp_attached),
    }))
}

/// Every host interface with an IPv4 address (its first), except loopback
/// and the agent's own devices (`dp0` and its peer, the VXLAN device).
pub async fn host_interfaces(h: &Handle) -> Result<Vec<Uplink>> {
    let links: Vec<LinkMessage> = h.link().get().execute().try_collect().await?;
    let addrs: Vec<_> = h.address().get().execute().try_collect().await?;
    let mut out = Vec::new();
    for l in &links {
        let info = link_info(l);
        let index = l.header.index;
        let Some(name) = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        }) else {
            continue;
        };
        if matches!(
            name.as_str(),
            "lo" | GATEWAY_DEV | GATEWAY_PEER | crate::vxlan::VXLAN_DEV
        ) || crate::engine::p2p_host_ifname_id(&name).is_some()
        {
            // The agent's own devices; a point-to-point link's host end
            // carries no program.
            continue;
        }
        let ip = addrs
            .iter()
            .filter(|a| a.header.index == index)
            .find_map(|a| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            });
        if let Some(ip) = ip {
            out.push(Uplink {
                name,
                index,
                ip: Some(ip),
                is_virtual: info.is_virtual,
                xdp_attached: info.xdp_attached,
            });
        }
    }
    Ok(out)
}

/// Prefixes the host already uses: routed destinations (not the default
/// route) and its addresses with their prefix lengths.
pub async fn host_networks(h: &Handle) -> Result<Vec<ipnet::Ipv4Net>> {
    let mut out = Vec::new();
    let mut routes = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(rt) = routes.try_next().await? {
        let len = rt.header.destination_prefix_length;
        if len == 0 || rt.header.table != RouteHeader::RT_TABLE_MAIN {
            continue;
        }
        for a in &rt.attributes {
            if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = a {
                if let Ok(n) = ipnet::Ipv4Net::new(*ip, len) {
                    out.push(n.trunc());
                }
            }
        }
    }
    let addrs: Vec<_> = h.address().get().execute().try_collect().await?;
    for a in &addrs {
        for x in &a.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip)) = x {
                if let Ok(n) = ipnet::Ipv4Net::new(*ip, a.header.prefix_len) {
                    out.push(n.trunc());
                }
            }
        }
    }
    Ok(out)
}

/// The IPv4 addresses of one interface, with their prefix length.
pub async fn interface_addresses(h: &Handle, index: u32) -> Result<Vec<ipnet::Ipv4Net>> {
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await?;
    Ok(addrs
        .iter()
        .filter(|a| a.header.index == index)
        .flat_map(|a| {
            a.attributes.iter().filter_map(|x| match x {
                AddressAttribute::Local(IpAddr::V4(ip)) => {
                    ipnet::Ipv4Net::new(*ip, a.header.prefix_len).ok()
                }
                _ => None,
            })
        })
        .collect())
}

/// Every IPv4 address of the host namespace.
pub async fn host_addresses(h: &Handle) -> Result<Vec<Ipv4Addr>> {
    let addrs: Vec<_> = h.address().get().execute().try_collect().await?;
    Ok(addrs
        .iter()
        .flat_map(|a| {
            a.attributes.iter().filter_map(|x| match x {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        })
        .collect())
}

/// The host's ephemeral port range (net.ipv4.ip_local_port_range).
pub fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// The system's cgroup v2 mount, if any (unified or hybrid hierarchy).
pub fn cgroup2_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
}

/// Cookie of the calling thread's network namespace (SO_NETNS_COOKIE).
pub fn netns_cookie() -> Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes passed
    // and outlive the call; the socket is open.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(anyhow!(std::io::Error::last_os_error()).context("SO_NETNS_COOKIE"));
    }
    Ok(cookie)
}

pub fn netns_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("netns").join(name)
}

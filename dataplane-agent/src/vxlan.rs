//! The host's VXLAN device for overlay networks, over netlink: one device in
//! external (collect_md) mode, learning off, no FDB entries and no VNI of its
//! own: the eBPF programs set and read the tunnel key (VNI, remote node) per
//! packet. Plus one route per overlay subnet through it, so that the stack
//! answers "fragmentation needed" for packets too big for the underlay.

use std::net::Ipv4Addr;

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use nix::errno::Errno;
use rtnetlink::{
    packet_route::{
        link::InfoVxlan,
        route::{RouteAttribute, RouteMessage},
    },
    Handle, LinkMessageBuilder, LinkUnspec, LinkVxlan, RouteMessageBuilder,
};

use crate::kernel::{self, is_errno};

/// Name of the VXLAN device (not `dp` + 8 hex digits: the reconciler's
/// collector of stale veths never touches it).
pub const VXLAN_DEV: &str = "dpvxlan0";

/// VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Errors a user can act on, as one line each.
#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error("VXLAN port {0} is in use by another socket or device of this host (choose another with --vxlan-port)")]
    PortInUse(u16),
}

/// Creates the device if it is missing (or re-creates it when its UDP port
/// differs), sets its MTU and brings it up. Returns its ifindex.
pub async fn ensure(h: &Handle, port: u16, mtu: u32) -> Result<u32> {
    if let Some(l) = kernel::netdev_by_name(h, VXLAN_DEV).await? {
        if device_port(h, l.index).await? == Some(port) {
            if l.mtu != mtu {
                h.link()
                    .set(LinkUnspec::new_with_index(l.index).mtu(mtu).build())
                    .execute()
                    .await
                    .context("setting the VXLAN device's MTU")?;
            }
            up(h, l.index, port).await?;
            return Ok(l.index);
        }
        h.link().del(l.index).execute().await?;
    }
    let msg = LinkMessageBuilder::<LinkVxlan>::new(VXLAN_DEV)
        .append_info_data(InfoVxlan::CollectMetadata(true))
        .append_info_data(InfoVxlan::Learning(false))
        .append_info_data(InfoVxlan::Port(port))
        .mtu(mtu)
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .context("creating the VXLAN device")?;
    let l = kernel::netdev_by_name(h, VXLAN_DEV)
        .await?
        .ok_or_else(|| anyhow!("VXLAN device vanished"))?;
    if let Err(e) = up(h, l.index, port).await {
        let _ = h.link().del(l.index).execute().await;
        return Err(e);
    }
    // Containers are IPv4-only, and so is the overlay.
    let _ = kernel::set_sysctl(
        &format!("/proc/sys/net/ipv6/conf/{VXLAN_DEV}/disable_ipv6"),
        "1",
    );
    Ok(l.index)
}

/// Bringing the device up opens its UDP socket: that is where a taken port
/// shows.
async fn up(h: &Handle, index: u32, port: u16) -> Result<()> {
    match h
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, Errno::EADDRINUSE) => Err(VxlanError::PortInUse(port).into()),
        Err(e) => Err(anyhow!(e).context("bringing the VXLAN device up")),
    }
}

/// The UDP port of the VXLAN device `index`, if it is one.
async fn device_port(h: &Handle, index: u32) -> Result<Option<u16>> {
    use rtnetlink::packet_route::link::{InfoData, LinkAttribute, LinkInfo};
    let Some(m) = h
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await?
    else {
        return Ok(None);
    };
    for a in &m.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos {
                if let LinkInfo::Data(InfoData::Vxlan(v)) = i {
                    for x in v {
                        if let InfoVxlan::Port(p) = x {
                            return Ok(Some(*p));
                        }
                    }
                }
            }
        }
    }
    Ok(None)
}

/// Deletes the device (and with it its routes), if present.
pub async fn delete(h: &Handle) -> Result<()> {
    if let Some(l) = kernel::netdev_by_name(h, VXLAN_DEV).await? {
        h.link().del(l.index).execute().await?;
    }
    Ok(())
}

/// The overlay subnets routed through the device.
pub async fn routes(h: &Handle, index: u32) -> Result<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    let mut s = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(rt) = s.try_next().await? {
        if let Some(net) = subnet_via(&rt, index) {
            out.push(net);
        }
    }
    Ok(out)
}

fn subnet_via(rt: &RouteMessage, index: u32) -> Option<Ipv4Net> {
    use rtnetlink::packet_route::route::RouteAddress;
    let oif = rt
        .attributes
        .iter()
        .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index));
    if !oif {
        return None;
    }
    rt.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Ipv4Net::new(*ip, rt.header.destination_prefix_length).ok()
        }
        _ => None,
    })
}

pub async fn add_route(h: &Handle, index: u32, subnet: Ipv4Net) -> Result<()> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(subnet.network(), subnet.prefix_len())
        .output_interface(index)
        .build();
    match h.route().add(msg).replace().execute().await {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow!(e).context(format!("routing {subnet} to the VXLAN device"))),
    }
}

pub async fn del_route(h: &Handle, index: u32, subnet: Ipv4Net) -> Result<()> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(subnet.network(), subnet.prefix_len())
        .output_interface(index)
        .build();
    match h.route().del(msg).execute().await {
        Err(e) if !is_errno(&e, Errno::ESRCH) => Err(anyhow!(e)),
        _ => Ok(()),
    }
}

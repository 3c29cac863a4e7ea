//! Every host interface with an IPv4 address is served like the uplink:
//! traffic the route lookup sends out of it is masqueraded to its address
//! (`DP_HOST_IFS`), and it carries the uplink programs (`xdp_uplink`,
//! `from_uplink`: published ports on every host address, the same
//! protection against direct access, loopback and spoofed sources). The
//! list follows the kernel: it is refreshed with the host's addresses
//! (netlink address events and every reconcile pass), and the reconciler
//! attaches and detaches the programs as interfaces come and go. Which
//! programs an interface carries follows `--uplink-mode` (`UplinkMode`):
//! `xdp_uplink` + `from_uplink`, or `tc_uplink` alone.

use anyhow::Result;
use dataplane_common::prog_names;
use tracing::info;

use super::{Inner, UplinkMode};
use crate::kernel;

/// Every program an interface may carry in some mode.
const UPLINK_PROGS: [&str; 3] = [
    prog_names::FROM_UPLINK,
    prog_names::XDP_UPLINK,
    prog_names::TC_UPLINK,
];

/// Read the host's interfaces, write `DP_HOST_IFS` and the links the
/// reconciler must keep.
pub(crate) async fn refresh(g: &mut Inner) -> Result<()> {
    let ifs = kernel::host_interfaces(&g.host).await?;
    let want: Vec<(u32, [u8; 4])> = ifs
        .iter()
        .filter_map(|u| u.ip.map(|ip| (u.index, ip.octets())))
        .collect();
    if let Some(m) = g.host_if_map.as_mut() {
        m.sync(&want)?;
    }
    let names = |v: &[kernel::Uplink]| v.iter().map(|u| u.name.clone()).collect::<Vec<_>>();
    if names(&ifs) != names(&g.host_ifs) {
        info!(interfaces = ?names(&ifs), "host interfaces served");
    }
    g.host_ifs = ifs;
    set_links(g);
    Ok(())
}

/// The uplink programs' links: on the uplink and on every host interface.
pub(crate) fn set_links(g: &mut Inner) {
    let mut keep: Vec<String> = g.host_ifs.iter().map(|u| u.name.clone()).collect();
    if let Some(u) = &g.uplink {
        keep.push(u.name.clone());
    }
    g.fixed_links
        .retain(|(p, i)| !UPLINK_PROGS.contains(&p.as_str()) || keep.contains(i));
    for name in keep {
        let progs = mode(g, &name).programs();
        // A program of another mode goes (the plan detaches its link).
        g.fixed_links.retain(|(p, i)| {
            *i != name || !UPLINK_PROGS.contains(&p.as_str()) || progs.contains(&p.as_str())
        });
        for p in progs {
            g.fixed_links.insert(((*p).to_string(), name.clone()));
        }
    }
}

/// How XDP is attached to `ifname` as last read (`XDP_ATTACHED_*`).
pub(crate) fn xdp_attached(g: &Inner, ifname: &str) -> u8 {
    g.host_ifs
        .iter()
        .chain(g.uplink.iter())
        .find(|u| u.name == ifname)
        .map_or(0, |u| u.xdp_attached)
}

/// The uplink mode of `ifname`: `--uplink-mode`, `auto` resolved by whether
/// it is a virtual device.
pub(crate) fn mode(g: &Inner, ifname: &str) -> UplinkMode {
    let is_virtual = g
        .host_ifs
        .iter()
        .chain(g.uplink.iter())
        .find(|u| u.name == ifname)
        .is_some_and(|u| u.is_virtual);
    g.uplink_mode.resolve(is_virtual)
}

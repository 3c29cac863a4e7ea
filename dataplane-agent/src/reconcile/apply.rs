//! Applying one step of a plan to the kernel and the maps.

use anyhow::{anyhow, Result};
use dataplane_common::prog_names;

use super::plan::Step;

/// `IFLA_XDP_ATTACHED` values.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
use crate::{
    datapath, endpoint_progs,
    engine::{endpoint_info, Engine, Inner, UplinkMode},
    kernel,
};

impl Engine {
    pub(super) async fn apply(&self, g: &mut Inner, step: &Step) -> Result<()> {
        match step {
            Step::AddGateway(ip) => kernel::add_gateway(&g.host, *ip).await?,
            Step::UpsertNetwork(id, info) => g.dp.upsert_network(*id, *info)?,
            Step::RemoveNetwork(id) => g.dp.remove_network(*id),
            Step::CreateNetns(name) => {
                let ns = self.netns_path(name);
                // A plain file or a dead mount where the namespace should be.
                kernel::delete_netns(&ns)?;
                kernel::create_netns(&ns)?;
                let h = kernel::handle_in_netns(&ns)?;
                kernel::netns_lo_up(&h).await?;
            }
            Step::DeleteNetns(name) => kernel::delete_netns(&self.netns_path(name))?,
            Step::CreateEndpoint {
                container,
                endpoint,
            } => {
                let ns = self.netns_path(container);
                let net = g
                    .networks
                    .get(&endpoint.network)
                    .ok_or_else(|| anyhow!("network {} vanished", endpoint.network))?;
                let link = kernel::create_endpoint(&g.host, &ns, endpoint).await?;
                g.dp.upsert_endpoint(endpoint_info(endpoint, Some(net), &link))?;
                g.ifindexes
                    .insert(endpoint.host_interface.clone(), link.index);
                // The old link died with the old interface.
                endpoint_progs::detach(&mut g.dp, &endpoint.host_interface);
                endpoint_progs::attach(&mut g.dp, &endpoint.host_interface)?;
            }
            Step::DeleteVeth(name) => kernel::delete_netdev(&g.host, name).await?,
            Step::UpsertEndpoint(info) => g.dp.upsert_endpoint(*info)?,
            Step::RemoveEndpoint(ip) => {
                g.dp.remove_endpoint(*ip);
                g.dp.purge_ct(*ip);
            }
            Step::RemoveIfEndpoint(i) => g.dp.remove_if_endpoint(*i),
            Step::AddHostRoute { endpoint, ifindex } => {
                kernel::add_host_route(&g.host, endpoint, *ifindex).await?;
            }
            Step::Attach { prog, ifname } => {
                if !g.dp.bpf_link_attached(prog, ifname) {
                    // Unpinned or detached: a new link replaces it.
                    g.dp.detach(prog, ifname);
                }
                if ifname == "cgroup" {
                    let cg = self
                        .cfg
                        .cgroup
                        .clone()
                        .or_else(kernel::cgroup2_mount)
                        .ok_or_else(|| anyhow!("no cgroup2 mount"))?;
                    g.dp.attach_cgroup(&cg)?;
                } else if let Some(at) = endpoint_progs::attach_type(prog) {
                    g.dp.attach_tc(prog, ifname, at)?;
                } else {
                    attach_uplink(g, prog, ifname)?;
                }
            }
            Step::Detach { prog, ifname } => g.dp.detach(prog, ifname),
            Step::AddPorts(entries) => g.dp.add_ports(entries)?,
            Step::RemovePorts(keys) => g.dp.remove_ports(keys)?,
            Step::CollectExternal(name) => self.drop_external(g, name).await?,
            Step::CollectAttached(name) => self.drop_attached(g, name).await?,
        }
        Ok(())
    }
}

/// Attach an uplink program (TC, or XDP in the interface's mode).
pub(super) fn attach_uplink(g: &mut Inner, prog: &str, ifname: &str) -> Result<()> {
    if prog == prog_names::XDP_UPLINK {
        let generic = crate::engine::host_ifs::mode(g, ifname) == UplinkMode::XdpGeneric;
        // A pinned link keeps the attach mode it was made with (swapping
        // its program does not change it): after a switch between
        // xdp-native and xdp-generic it is made anew.
        let other = if generic {
            XDP_ATTACHED_DRV
        } else {
            XDP_ATTACHED_SKB
        };
        if crate::engine::host_ifs::xdp_attached(g, ifname) == other {
            tracing::info!(%ifname, "XDP attach mode changes: the link is made anew");
            g.dp.detach(prog, ifname);
        }
        let mode = if generic {
            datapath::XdpMode::Skb
        } else {
            datapath::XdpMode::Default
        };
        g.dp.attach_xdp(ifname, mode)
    } else {
        g.dp.attach(prog, ifname)
    }
}

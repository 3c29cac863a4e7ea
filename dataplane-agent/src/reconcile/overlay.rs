//! The reconciler's overlay pass (only with `--cluster-store`): the VXLAN
//! device and its program, the local networks of the cluster networks, one
//! route per overlay subnet through the device, this node's endpoint
//! records in etcd (re-published or withdrawn after an etcd outage or a
//! crash) and the overlay maps, all from the current cluster view. On
//! dual-stack cluster networks, remote endpoints that announce the IPv6
//! address the network's rule gives them (`cluster::dual`) get
//! `DP_ENDPOINTS6` entries too (written by the IPv6 pass that follows).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use dataplane_common::{
    prog_names, Endpoint6Key, EndpointInfo, OverlayConfig, OverlayNode, RemoteEndpoint, RemoteKey,
    EP_F_REMOTE, MAX_ENDPOINTS, MAX_REMOTE_ENDPOINTS,
};
use ipnet::Ipv4Net;
use tracing::{info, warn};

use super::Pass;
use crate::{
    cluster,
    datapath::OverlayWant,
    engine::{ipv6, node_key, overlay_withdraw, Engine, Inner},
    kernel, model, vxlan,
};

/// A local endpoint of an overlay network: container, MAC, IPv6 address.
type Local = (String, [u8; 6], Option<Ipv6Addr>);

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl Engine {
    /// One overlay pass; returns the number of changes made.
    pub(super) async fn converge_overlay(&self, g: &mut Inner, pass: Pass) -> Result<usize> {
        let Some(ov) = g.overlay.as_ref() else {
            return Ok(0);
        };
        let (port, mtu) = (ov.port, ov.mtu);
        let me = ov.node_name().to_string();
        let watching = ov.watch.watching();
        let view = ov.watch.snapshot();
        let mut changes = 0;

        // The device and its program (the plan re-attaches a lost link).
        let ifindex = vxlan::ensure(&g.host, port, mtu).await?;
        let link = (
            prog_names::FROM_OVERLAY.to_string(),
            vxlan::VXLAN_DEV.to_string(),
        );
        if pass == Pass::Start {
            g.dp.attach(prog_names::FROM_OVERLAY, vxlan::VXLAN_DEV)?;
        }
        g.fixed_links.insert(link);

        // Local networks of the cluster networks.
        if view.synced {
            for rec in view.networks().values() {
                if !g.networks.contains_key(&rec.name) {
                    match self.materialize(g, rec).await {
                        Ok(()) => changes += 1,
                        Err(e) => {
                            warn!(network = %rec.name, "materialising the overlay network: {e:#}");
                        }
                    }
                }
            }
            let used: BTreeSet<&str> = g
                .containers
                .values()
                .flat_map(|c| c.endpoints.iter().map(|e| e.network.as_str()))
                .collect();
            let gone: Vec<model::Network> = g
                .networks
                .values()
                .filter(|n| {
                    n.driver == "overlay"
                        && !view.networks().contains_key(&n.name)
                        && !used.contains(n.name.as_str())
                })
                .cloned()
                .collect();
            for n in gone {
                g.store.apply(crate::store::Change {
                    del_networks: vec![&n.name],
                    ..Default::default()
                })?;
                g.dp.remove_network(n.id);
                ipv6::remove_network6(g, &n).await;
                if !g
                    .networks
                    .values()
                    .any(|o| o.name != n.name && o.pool.gateway == n.pool.gateway)
                {
                    let _ = kernel::del_gateway(&g.host, n.pool.gateway).await;
                }
                g.networks.remove(&n.name);
                if let Some(ov) = g.overlay.as_ref() {
                    ov.cluster.forget_network(&n.name).await;
                }
                info!(network = %n.name, "overlay network removed from the cluster");
                changes += 1;
            }
        }

        // One route per overlay subnet (the stack's MTU check).
        let want_routes: BTreeSet<Ipv4Net> = g
            .networks
            .values()
            .filter(|n| n.driver == "overlay")
            .map(|n| n.pool.subnet)
            .collect();
        let have_routes: BTreeSet<Ipv4Net> =
            vxlan::routes(&g.host, ifindex).await?.into_iter().collect();
        for s in want_routes.difference(&have_routes) {
            vxlan::add_route(&g.host, ifindex, *s).await?;
            changes += 1;
        }
        for s in have_routes.difference(&want_routes) {
            vxlan::del_route(&g.host, ifindex, *s).await?;
            changes += 1;
        }

        // This node's endpoint records in etcd.
        let mut local: BTreeMap<(String, Ipv4Addr), Local> = BTreeMap::new();
        for c in g.containers.values() {
            for e in &c.endpoints {
                if g.networks
                    .get(&e.network)
                    .is_some_and(|n| n.driver == "overlay")
                {
                    local.insert((e.network.clone(), e.ip), (c.name.clone(), e.mac, e.ip6));
                }
            }
        }
        if view.synced && watching {
            if let Some(ov) = g.overlay.as_ref() {
                for w in view.node_endpoints(&me) {
                    let k = (w.record.network.clone(), w.record.ip);
                    if !local.contains_key(&k) {
                        info!(network = %k.0, ip = %k.1, "withdrawing a stale endpoint of this node");
                        if let Err(e) = overlay_withdraw(ov, &k.0, k.1).await {
                            warn!("withdrawing {}: {e}", k.1);
                        }
                        changes += 1;
                    }
                }
                let mut reclaimed: BTreeSet<&str> = BTreeSet::new();
                for ((net, ip), (container, mac, ip6)) in &local {
                    if view.written_endpoint(net, *ip).is_none() {
                        // Missing from etcd: if the other nodes reaped this
                        // one (a partition longer than the grace period),
                        // its address blocks went too; claim them again
                        // before anyone hands out their addresses.
                        if reclaimed.insert(net.as_str()) {
                            match ov.cluster.reclaim_blocks(net).await {
                                Ok(lost) => {
                                    for b in lost {
                                        warn!(network = %net, block = %b, "address block claimed by another node while this node was away: no more addresses from it here, and its endpoints here may clash");
                                    }
                                }
                                Err(e) => warn!("re-claiming the address blocks of {net}: {e}"),
                            }
                        }
                        info!(network = %net, %ip, "publishing an endpoint of this node");
                        let mac = model::fmt_mac(mac);
                        if let Err(e) = ov
                            .cluster
                            .create_endpoint6(net, *ip, *ip6, &mac, container)
                            .await
                        {
                            warn!("publishing {ip}: {e}");
                        }
                        changes += 1;
                    }
                }
            }
        }

        // Addresses allocated for endpoints that were never made go back.
        if let Some(ov) = g.overlay.as_ref() {
            for n in g.networks.values().filter(|n| n.driver == "overlay") {
                let used: BTreeSet<Ipv4Addr> = local
                    .keys()
                    .filter(|(net, _)| *net == n.name)
                    .map(|(_, ip)| *ip)
                    .collect();
                ov.cluster.sync_used(&n.name, &used).await;
            }
        }

        // The maps.
        let mut want = OverlayWant {
            config: OverlayConfig {
                vxlan_ifindex: ifindex,
                mtu,
            },
            ..Default::default()
        };
        for (name, st) in view.nodes() {
            if *name == me {
                continue;
            }
            if let Some(r) = &st.record {
                let key = node_key(name);
                want.nodes.insert(
                    key,
                    OverlayNode {
                        addr: r.address.octets(),
                    },
                );
                want.peers.insert(r.address.octets(), key);
            }
        }
        let mut vni_of: HashMap<&str, u32> = HashMap::new();
        let mut ip6_of: HashMap<RemoteKey, Ipv6Addr> = HashMap::new();
        for rec in view.networks().values() {
            if let Some(n) = g.networks.get(&rec.name).filter(|n| n.driver == "overlay") {
                want.vnis.insert(rec.vni, n.id);
                vni_of.insert(rec.name.as_str(), rec.vni);
            }
        }
        for ep in view.endpoints() {
            if ep.node == me {
                continue;
            }
            let (Some(net), Some(vni), Some(mac)) = (
                g.networks.get(&ep.network),
                vni_of.get(ep.network.as_str()),
                parse_mac(&ep.mac),
            ) else {
                continue;
            };
            let key = RemoteKey {
                net_id: net.id,
                ip: ep.ip.octets(),
            };
            let info = EndpointInfo {
                ifindex: 0,
                net_id: net.id,
                ip: ep.ip.octets(),
                mac,
                host_mac: [0; 6],
                flags: EP_F_REMOTE,
                _pad: [0; 2],
            };
            let remote = RemoteEndpoint {
                node: node_key(&ep.node),
                vni: *vni,
            };
            if let Some(ip6) = remote_ip6(&view, g, ep) {
                ip6_of.insert(key, ip6);
            }
            want.remote.insert(key, (info, remote));
        }
        let unloaded = fit_to_maps(g, &mut want);
        let remote6: HashMap<Endpoint6Key, EndpointInfo> = want
            .remote
            .iter()
            .filter_map(|(k, (info, _))| {
                ip6_of
                    .get(k)
                    .map(|ip6| (Endpoint6Key { ip: ip6.octets() }, *info))
            })
            .collect();
        if let Some(ov) = g.overlay.as_mut() {
            if unloaded != ov.unloaded {
                if unloaded > 0 {
                    warn!(
                        loaded = want.remote.len(),
                        unloaded,
                        "the cluster has more remote endpoints than the maps hold: \
                         those of networks with no container here are left out first"
                    );
                } else {
                    info!("every remote endpoint of the cluster fits the maps again");
                }
                ov.unloaded = unloaded;
            }
            changes += ov.maps.sync(&want)?;
        }
        changes += sync_remote6(g, remote6);
        Ok(changes)
    }
}

/// Writes the changes of the remote endpoints' `DP_ENDPOINTS6` entries at
/// once (the IPv6 pass that follows keeps them, as `Overlay::remote6`, and
/// would otherwise report them as repairs); returns how many changed.
fn sync_remote6(g: &mut Inner, remote6: HashMap<Endpoint6Key, EndpointInfo>) -> usize {
    let Some(ov) = g.overlay.as_mut() else {
        return 0;
    };
    let old = std::mem::replace(&mut ov.remote6, remote6);
    let mut n = 0;
    for k in old.keys().filter(|k| !ov.remote6.contains_key(k)) {
        let _ = g.dp.ip6.endpoints6.remove(k);
        n += 1;
    }
    for (k, v) in &ov.remote6 {
        if old.get(k) != Some(v) {
            if let Err(e) = g.dp.ip6.endpoints6.insert(k, v, 0) {
                warn!("writing a remote endpoint's IPv6 entry: {e}");
            }
            n += 1;
        }
    }
    n
}

/// The IPv6 address a remote endpoint of a dual-stack network announces,
/// if it is the one the network's rule gives its IPv4 address (anything
/// else is ignored: the endpoint stays reachable over IPv4 only).
fn remote_ip6(
    view: &cluster::ClusterView,
    g: &Inner,
    ep: &cluster::EndpointRecord,
) -> Option<Ipv6Addr> {
    let ip6 = ep.ip6?;
    g.networks.get(&ep.network)?.ipv6.as_ref()?;
    let rec = view.networks().get(&ep.network)?;
    if cluster::dual::ip6_of(rec, ep.ip) == Some(ip6) {
        Some(ip6)
    } else {
        tracing::debug!(network = %ep.network, ip = %ep.ip, %ip6, node = %ep.node, "a remote endpoint announces an IPv6 address the network's rule does not give it: ignored");
        None
    }
}

/// Keeps the remote endpoints within the maps' room (`DP_OV_REMOTE`, and
/// `DP_ENDPOINTS` shared with the local endpoints), so that a cluster larger
/// than the maps degrades instead of failing every pass: endpoints of
/// networks that have a container on this node first, then by network and
/// address. Returns how many were left out.
fn fit_to_maps(g: &Inner, want: &mut OverlayWant) -> usize {
    let local: usize = g.containers.values().map(|c| c.endpoints.len()).sum();
    let room = (MAX_REMOTE_ENDPOINTS as usize).min((MAX_ENDPOINTS as usize).saturating_sub(local));
    if want.remote.len() <= room {
        return 0;
    }
    let used: BTreeSet<u32> = g
        .containers
        .values()
        .flat_map(|c| c.endpoints.iter())
        .filter_map(|e| g.networks.get(&e.network).map(|n| n.id))
        .collect();
    let mut keys: Vec<RemoteKey> = want.remote.keys().copied().collect();
    keys.sort_unstable_by_key(|k| (!used.contains(&k.net_id), k.net_id, k.ip));
    let out = keys.len() - room;
    for k in &keys[room..] {
        want.remote.remove(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:42:0a:5a:00:02"),
            Some([2, 0x42, 10, 0x5a, 0, 2])
        );
        assert_eq!(parse_mac("02:42"), None);
        assert_eq!(parse_mac("02:42:0a:5a:00:02:07"), None);
    }
}

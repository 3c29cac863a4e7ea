//! Endpoints whose network namespace the agent does not own: Docker's
//! sandboxes (the network plugin, [`crate::docker`]).
//!
//! Such an endpoint is a container of mode [`NetworkMode::External`] with
//! one endpoint. Its life follows libnetwork's calls:
//!
//! 1. created: the address is reserved (the endpoint is in the desired
//!    state), nothing exists in the kernel; the mode's sandbox key is empty;
//! 2. joined: the agent creates the veth pair in the host namespace (the
//!    container side named `dc` + the host side's 8 hex digits, with the
//!    endpoint's MAC and MTU), writes the maps and attaches the programs to
//!    the host side; Docker moves the container side into its sandbox,
//!    renames it and gives it the address and routes; the mode records the
//!    sandbox key;
//! 3. left: the veth and the map entries are removed (back to 1);
//! 4. deleted: the container is removed.
//!
//! The reconciler treats them like the agent's own endpoints (maps, routes,
//! programs are repaired) except that it never creates a namespace or veth
//! for them: a joined endpoint whose veth is gone lost its sandbox (the
//! container stopped while the agent or dockerd was down), and it collects
//! it ([`crate::reconcile::Step::CollectExternal`]).

use super::*;
use crate::endpoint_progs;
use rtnetlink::{
    packet_route::link::{InfoData, InfoVeth},
    LinkUnspec, LinkVeth,
};

/// What a joined endpoint tells Docker.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    /// The container side of the veth, in the host namespace.
    pub interface: String,
    /// The network's gateway, unless the network is internal.
    pub gateway: Option<Ipv4Addr>,
}

/// The container-side name of an external endpoint's veth, as long as it is
/// in the host namespace: `dc` + the host side's hex digits.
pub(crate) fn external_peer_name(host_interface: &str) -> String {
    format!("dc{}", host_interface.get(2..).unwrap_or_default())
}

impl Engine {
    /// Add an external endpoint `name` on `network` with `ip` (Docker's IPAM
    /// chose it) and `mac` (generated from the address when none is given).
    /// Nothing is created in the kernel until [`Engine::join_external`].
    pub async fn create_external_endpoint(
        &self,
        name: &str,
        network: &str,
        ip: Ipv4Addr,
        mac: Option<[u8; 6]>,
    ) -> ApiResult<Endpoint> {
        ipam::validate_name("container", name)?;
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if let Some(c) = g.containers.get(name) {
            return match c.endpoints.first() {
                Some(ep) if c.network_mode == NetworkMode::External(String::new()) => {
                    Ok(ep.clone())
                }
                _ => Err(Error::Conflict(format!("container {name} already exists"))),
            };
        }
        let net = g
            .networks
            .get(network)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("network {network} not found")))?;
        let mut c = Container {
            id: name.to_string(),
            name: name.to_string(),
            network_mode: NetworkMode::External(String::new()),
            hostname: None,
            endpoints: Vec::new(),
            ports: Vec::new(),
            expose: Vec::new(),
            links: Vec::new(),
            dns: crate::dns::files::DnsConfig::default(),
        };
        let (mut ep, net_after) = Self::plan_endpoint(g, &net, &c, Some(ip), None)?;
        ep.interface = external_peer_name(&ep.host_interface);
        if let Some(m) = mac {
            ep.mac = m;
        }
        // Docker sets the routes in its sandbox (the gateway from Join).
        ep.default_route = false;
        c.endpoints.push(ep.clone());
        g.store.apply(Change {
            put_containers: vec![&c],
            put_networks: vec![&net_after],
            ..Default::default()
        })?;
        g.networks.insert(net_after.name.clone(), net_after);
        g.containers.insert(c.name.clone(), c);
        info!(container = name, network, %ip, "external endpoint created");
        Ok(ep)
    }

    /// Create the veth pair of external endpoint `name` in the host
    /// namespace and plumb it (maps, programs, host route); `sandbox` is
    /// where Docker will move the container side. Idempotent.
    pub async fn join_external(&self, name: &str, sandbox: &str) -> ApiResult<JoinInfo> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let mut c = external(g, name)?.clone();
        let ep = c
            .endpoints
            .first()
            .cloned()
            .ok_or_else(|| Error::Internal(anyhow!("endpoint {name} has no address")))?;
        let net = g
            .networks
            .get(&ep.network)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("network {} not found", ep.network)))?;
        let info = JoinInfo {
            interface: ep.interface.clone(),
            gateway: (!net.internal).then_some(ep.gateway),
        };
        let joined = c.network_mode != NetworkMode::External(String::new());
        if joined
            && kernel::netdev_by_name(&g.host, &ep.host_interface)
                .await?
                .is_some()
        {
            return Ok(info);
        }
        let res = async {
            let link = create_external_veth(&g.host, &ep).await?;
            g.ifindexes.insert(ep.host_interface.clone(), link.index);
            g.dp.upsert_endpoint(endpoint_info(&ep, Some(&net), &link))?;
            endpoint_progs::attach(&mut g.dp, &ep.host_interface)?;
            // An overlay endpoint is known to the other nodes once joined.
            self.overlay_publish(g, Path::new(name), &ep).await?;
            c.network_mode = NetworkMode::External(sandbox.to_string());
            g.store.apply(Change {
                put_containers: vec![&c],
                ..Default::default()
            })
        }
        .await;
        if let Err(e) = res {
            self.unplumb_endpoint(g, &ep).await;
            return Err(e.into());
        }
        after_commit("add_ports", g.dp.add_ports(&port_entries(&c)));
        g.containers.insert(c.name.clone(), c);
        self.request_reconcile();
        info!(container = name, sandbox, veth = %ep.host_interface, "external endpoint joined");
        Ok(info)
    }

    /// Undo [`Engine::join_external`]: the veth and its map entries go, the
    /// address stays reserved. An unknown endpoint is not an error (the
    /// reconciler may have collected it).
    pub async fn leave_external(&self, name: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let Some(c) = g.containers.get(name).cloned() else {
            return Ok(());
        };
        let mut c2 = c.clone();
        c2.network_mode = NetworkMode::External(String::new());
        g.store.apply(Change {
            put_containers: vec![&c2],
            ..Default::default()
        })?;
        after_commit("remove_ports", g.dp.remove_ports(&port_keys(&c)));
        // An overlay endpoint stays published while it exists (the
        // reconciler keeps this node's endpoints in etcd): its traffic is
        // dropped here until it joins again.
        for ep in &c.endpoints {
            self.unplumb_endpoint(g, ep).await;
            g.dp.purge_ct(ep.ip.octets());
        }
        g.containers.insert(c2.name.clone(), c2);
        self.request_reconcile();
        info!(container = name, "external endpoint left");
        Ok(())
    }

    /// Publish `specs` for external endpoint `name` (replacing what it
    /// published before). Returns the mappings with the host ports chosen.
    pub async fn publish_external(
        &self,
        name: &str,
        specs: &[ports::PortSpec],
    ) -> ApiResult<Vec<PortMapping>> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let mut c = external(g, name)?.clone();
        if c.endpoints.iter().any(|e| {
            g.networks
                .get(&e.network)
                .is_some_and(|n| n.internal && !specs.is_empty())
        }) {
            return Err(bad(format!(
                "cannot publish ports of a container on internal network {}",
                c.endpoints[0].network
            )));
        }
        let old = std::mem::take(&mut c.ports);
        after_commit(
            "remove_ports",
            g.dp.remove_ports(&old.iter().map(port_key).collect::<Vec<_>>()),
        );
        release_ports(g, &old);
        let res = async {
            let default_ip =
                self.default_host_ip(c.endpoints.first().and_then(|e| g.networks.get(&e.network)));
            let new = self.reserve_ports(g, specs, default_ip).await?;
            c.ports = new;
            g.store.apply(Change {
                put_containers: vec![&c],
                ..Default::default()
            })?;
            ApiResult::Ok(())
        }
        .await;
        if let Err(e) = res {
            release_ports(g, &c.ports);
            c.ports = Vec::new();
            let _ = g.store.apply(Change {
                put_containers: vec![&c],
                ..Default::default()
            });
            g.containers.insert(c.name.clone(), c);
            return Err(e);
        }
        if c.network_mode != NetworkMode::External(String::new()) {
            after_commit("add_ports", g.dp.add_ports(&port_entries(&c)));
        }
        let out = c.ports.clone();
        g.containers.insert(c.name.clone(), c);
        self.request_reconcile();
        info!(
            container = name,
            ports = out.len(),
            "external endpoint published ports"
        );
        Ok(out)
    }

    /// Remove external endpoint `name` (veth, maps, ports, address). An
    /// unknown endpoint is not an error.
    pub async fn delete_external(&self, name: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        if !g.containers.contains_key(name) {
            return Ok(());
        }
        external(&g, name)?;
        self.drop_external(&mut g, name).await?;
        self.request_reconcile();
        info!(container = name, "external endpoint deleted");
        Ok(())
    }

    /// Remove an external endpoint under the engine's lock (also the
    /// reconciler's collection of endpoints whose sandbox is gone).
    pub(crate) async fn drop_external(&self, g: &mut Inner, name: &str) -> Result<()> {
        let Some(c) = g.containers.get(name).cloned() else {
            return Ok(());
        };
        g.store.apply(Change {
            del_containers: vec![name],
            ..Default::default()
        })?;
        after_commit("remove_ports", g.dp.remove_ports(&port_keys(&c)));
        release_ports(g, &c.ports);
        for ep in &c.endpoints {
            withdraw_overlay_endpoint(g, ep).await;
            self.unplumb_endpoint(g, ep).await;
            g.dp.purge_ct(ep.ip.octets());
        }
        g.containers.remove(name);
        Ok(())
    }
}

impl Engine {
    /// An address for a Docker endpoint on overlay network `network` (the
    /// plugin's IPAM driver asks): from this node's IPAM blocks in the
    /// cluster, or `ip` itself (`--ip`; etcd refuses a duplicate when the
    /// endpoint is published at Join).
    pub async fn external_overlay_address(
        &self,
        network: &str,
        ip: Option<Ipv4Addr>,
    ) -> ApiResult<Ipv4Addr> {
        let g = self.inner.lock().await;
        let net = g
            .networks
            .get(network)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("network {network} not found")))?;
        if net.driver != "overlay" {
            return Err(bad(format!("network {network} is not an overlay network")));
        }
        self.overlay_address(&g, &net, ip)
            .await?
            .ok_or_else(|| Error::Internal(anyhow!("no address for network {network}")))
    }

    /// Give an address of [`Engine::external_overlay_address`] back.
    pub async fn release_external_overlay_address(&self, network: &str, ip: Ipv4Addr) {
        let g = self.inner.lock().await;
        if let Some(ov) = g.overlay.as_ref() {
            ov.cluster.release_address(network, ip).await;
        }
    }
}

/// Withdraw an external endpoint of an overlay network from the cluster
/// (its address stays reserved: Docker's IPAM releases it).
async fn withdraw_overlay_endpoint(g: &Inner, ep: &Endpoint) {
    let Some(ov) = g.overlay.as_ref() else {
        return;
    };
    if g.networks
        .get(&ep.network)
        .is_none_or(|n| n.driver != "overlay")
    {
        return;
    }
    if let Err(e) = overlay_withdraw(ov, &ep.network, ep.ip).await {
        warn!(network = %ep.network, ip = %ep.ip, "withdrawing the endpoint from the cluster: {e}");
    }
}

fn external<'a>(g: &'a Inner, name: &str) -> ApiResult<&'a Container> {
    let c = g
        .containers
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("endpoint {name} not found")))?;
    if !matches!(c.network_mode, NetworkMode::External(_)) {
        return Err(bad(format!("container {name} is not an external endpoint")));
    }
    Ok(c)
}

/// The veth pair of an external endpoint, both sides in the host namespace,
/// the container side with the endpoint's MAC; the host side up with a /32
/// route to the endpoint's address. Nothing is left on error.
async fn create_external_veth(host: &Handle, ep: &Endpoint) -> Result<kernel::NetdevInfo> {
    for n in [&ep.host_interface, &ep.interface] {
        // Left by an interrupted join: not in use by anyone.
        kernel::delete_netdev(host, n).await?;
    }
    let peer = LinkUnspec::new_with_name(&ep.interface)
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
    let res = async {
        let hl = kernel::netdev_by_name(host, &ep.host_interface)
            .await?
            .ok_or_else(|| anyhow!("veth {} vanished", ep.host_interface))?;
        kernel::set_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/forwarding", ep.host_interface),
            "1",
        )?;
        for n in [&ep.host_interface, &ep.interface] {
            let _ = kernel::set_sysctl(&format!("/proc/sys/net/ipv6/conf/{n}/disable_ipv6"), "1");
        }
        kernel::add_host_route(host, ep, hl.index).await?;
        Ok(hl)
    }
    .await;
    if res.is_err() {
        let _ = kernel::delete_netdev(host, &ep.host_interface).await;
    }
    res
}

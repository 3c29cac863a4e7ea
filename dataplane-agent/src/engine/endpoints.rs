//! Endpoints: a container's attachment to a network (a veth pair, its
//! address, its `DP_ENDPOINTS` entry and TC program): planning, plumbing,
//! connect and disconnect.

use super::*;
use crate::endpoint_progs;

impl Engine {
    /// Choose the address, interface names and MAC of a new endpoint of `c` on
    /// `net`; returns it with the network's updated IPAM cursor.
    pub(super) fn plan_endpoint(
        g: &Inner,
        net: &Network,
        c: &Container,
        ip: Option<Ipv4Addr>,
    ) -> ApiResult<(Endpoint, Network)> {
        let used: BTreeSet<Ipv4Addr> = g
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network == net.name)
            .map(|e| e.ip)
            .collect();
        let ip = match ip {
            Some(ip) => {
                net.pool.check_static(ip, &used)?;
                ip
            }
            None => net.pool.allocate(&used, net.last_ip)?,
        };
        let taken: BTreeSet<&str> = c.endpoints.iter().map(|e| e.interface.as_str()).collect();
        // One more name than the container has endpoints: one is free.
        let ifname = (0..=c.endpoints.len())
            .map(|i| format!("eth{i}"))
            .find(|n| !taken.contains(n.as_str()))
            .unwrap_or_else(|| format!("eth{}", c.endpoints.len()));
        let host_names: BTreeSet<&str> = g
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| e.host_interface.as_str()))
            .collect();
        let host_interface = loop {
            let n = format!("dp{:08x}", rand::random::<u32>());
            if !host_names.contains(n.as_str()) {
                break n;
            }
        };
        let default_route = !net.internal && !c.endpoints.iter().any(|e| e.default_route);
        let ep = Endpoint {
            network: net.name.clone(),
            interface: ifname,
            host_interface,
            ip,
            prefix_len: net.pool.subnet.prefix_len(),
            mac: mac_for_ip(ip),
            gateway: net.pool.gateway,
            mtu: net.mtu,
            default_route,
            aliases: Vec::new(),
        };
        let mut n2 = net.clone();
        n2.last_ip = Some(ip);
        Ok((ep, n2))
    }

    pub(crate) async fn plumb_endpoint(
        &self,
        g: &mut Inner,
        ns: &Path,
        ep: &Endpoint,
    ) -> Result<()> {
        let net_id = g
            .networks
            .get(&ep.network)
            .map(|n| n.id)
            .ok_or_else(|| anyhow!("network {} vanished", ep.network))?;
        let link = kernel::create_endpoint(&g.host, ns, ep).await?;
        g.dp.upsert_endpoint(endpoint_info(ep, net_id, &link))?;
        endpoint_progs::attach(&mut g.dp, &ep.host_interface)?;
        g.ifindexes.insert(ep.host_interface.clone(), link.index);
        Ok(())
    }

    pub(crate) async fn unplumb_endpoint(&self, g: &mut Inner, ep: &Endpoint) {
        endpoint_progs::detach(&mut g.dp, &ep.host_interface);
        g.dp.remove_endpoint(ep.ip.octets());
        if let Some(idx) = g.ifindexes.remove(&ep.host_interface) {
            g.dp.remove_if_endpoint(idx);
        }
        if let Err(e) = kernel::delete_netdev(&g.host, &ep.host_interface).await {
            warn!("removing {}: {e:#}", ep.host_interface);
        }
    }

    pub async fn connect(&self, network: &str, req: ConnectRequest) -> ApiResult<ContainerView> {
        let ip = req.ip.as_deref().map(ipam::parse_ip).transpose()?;
        validate_aliases(Some(network), &req.aliases)?;
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let net = g
            .networks
            .get(network)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("network {network} not found")))?;
        let mut c = g
            .containers
            .get(&req.container)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {} not found", req.container)))?;
        if c.network_mode != NetworkMode::Bridge {
            return Err(bad(format!(
                "container {} uses network mode {}; it cannot be connected to networks",
                c.name,
                c.network_mode.describe()
            )));
        }
        if c.endpoints.iter().any(|e| e.network == network) {
            return Err(Error::Conflict(format!(
                "container {} is already connected to network {network}",
                c.name
            )));
        }
        let (mut ep, net_after) = Self::plan_endpoint(g, &net, &c, ip)?;
        ep.aliases.clone_from(&req.aliases);
        let ns = self.netns_path(&c.name);
        c.endpoints.push(ep.clone());
        let res = async {
            self.plumb_endpoint(g, &ns, &ep).await?;
            g.store.apply(Change {
                put_containers: vec![&c],
                put_networks: vec![&net_after],
                ..Default::default()
            })
        }
        .await;
        if let Err(e) = res {
            self.unplumb_endpoint(g, &ep).await;
            return Err(e.into());
        }
        g.networks.insert(net_after.name.clone(), net_after);
        g.containers.insert(c.name.clone(), c.clone());
        // Published ports lead to the first endpoint, which may be this one.
        after_commit("add_ports", g.dp.add_ports(&port_entries(&c)));
        let links = link_policy_keys(&g.containers, &g.networks);
        after_commit("sync_link_policy", g.dp.sync_link_policy(&links));
        self.sync_names(g).await;
        self.request_reconcile();
        info!(container = %c.name, network, ip = %ep.ip, "connected");
        Ok(self.container_view(g, &c))
    }

    pub async fn disconnect(&self, network: &str, container: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if !g.networks.contains_key(network) {
            return Err(Error::NotFound(format!("network {network} not found")));
        }
        let mut c = g
            .containers
            .get(container)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {container} not found")))?;
        let pos = c
            .endpoints
            .iter()
            .position(|e| e.network == network)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "container {container} is not connected to network {network}"
                ))
            })?;
        let ep = c.endpoints.remove(pos);
        // Like Docker, the default route moves to another endpoint whose
        // network has a way out.
        let successor = if ep.default_route {
            c.endpoints
                .iter()
                .position(|e| g.networks.get(&e.network).is_some_and(|n| !n.internal))
        } else {
            None
        };
        if let Some(i) = successor {
            c.endpoints[i].default_route = true;
        }
        g.store.apply(Change {
            put_containers: vec![&c],
            ..Default::default()
        })?;
        self.unplumb_endpoint(g, &ep).await;
        g.dp.purge_ct(ep.ip.octets());
        if let Some(i) = successor {
            let next = &c.endpoints[i];
            if let Err(e) =
                kernel::set_default_route(&self.netns_path(&c.name), &next.interface, next.gateway)
                    .await
            {
                warn!(
                    container,
                    "moving the default route to {}: {e:#}", next.interface
                );
            }
        }
        // Published ports follow the first endpoint left, or are withdrawn
        // (never left pointing at an address IPAM may hand out again).
        if c.endpoints.is_empty() {
            let keys = port_keys(&c);
            after_commit("remove_ports", g.dp.remove_ports(&keys));
        } else {
            after_commit("add_ports", g.dp.add_ports(&port_entries(&c)));
        }
        g.containers.insert(c.name.clone(), c);
        let links = link_policy_keys(&g.containers, &g.networks);
        after_commit("sync_link_policy", g.dp.sync_link_policy(&links));
        self.sync_names(g).await;
        self.request_reconcile();
        info!(container, network, "disconnected");
        Ok(())
    }
}

pub(crate) fn endpoint_info(ep: &Endpoint, net_id: u32, link: &kernel::NetdevInfo) -> EndpointInfo {
    EndpointInfo {
        ifindex: link.index,
        net_id,
        ip: ep.ip.octets(),
        mac: ep.mac,
        host_mac: link.mac,
        flags: 0,
        _pad: [0; 2],
    }
}

/// Host-side veth names the agent generates: `dp` + 8 hex digits.
pub fn is_endpoint_ifname(name: &str) -> bool {
    name.len() == 10 && name.starts_with("dp") && name[2..].chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names() {
        assert!(is_endpoint_ifname("dp0a1b2c3d"));
        assert!(!is_endpoint_ifname("dp0"));
        assert!(!is_endpoint_ifname("dp0p"));
        assert!(!is_endpoint_ifname("eth0"));
    }
}

//! Endpoints: a container's attachment to a network (a veth pair, its
//! address, its `DP_ENDPOINTS` entry and TC program): planning, plumbing,
//! connect and disconnect.

use super::*;
use crate::endpoint_progs;
use dataplane_common::endpoint_net_flags;

impl Engine {
    /// Choose the address, interface names and MAC of a new endpoint of `c` on
    /// `net`; returns it with the network's updated IPAM cursor.
    pub(super) fn plan_endpoint(
        g: &Inner,
        net: &Network,
        c: &Container,
        ip: Option<Ipv4Addr>,
        ip6: Option<std::net::Ipv6Addr>,
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
            // Docker hands out the lowest free address (a removed
            // container's comes back).
            None => net.pool.allocate(&used, None)?,
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
            ip6: None,
            prefix_len6: 0,
            gateway6: None,
        };
        let mut ep = ep;
        let mut n2 = net.clone();
        n2.last_ip = Some(ip);
        super::ipv6::plan_endpoint6(g, net, ip6, &mut ep, &mut n2)?;
        Ok((ep, n2))
    }

    pub(crate) async fn plumb_endpoint(
        &self,
        g: &mut Inner,
        ns: &Path,
        ep: &Endpoint,
    ) -> Result<()> {
        let net = g
            .networks
            .get(&ep.network)
            .ok_or_else(|| anyhow!("network {} vanished", ep.network))?;
        let link = kernel::create_endpoint(&g.host, ns, ep).await?;
        let info = endpoint_info(ep, Some(net), &link);
        g.dp.upsert_endpoint(info)?;
        super::ipv6::add_endpoint6(g, ep, info)?;
        endpoint_progs::attach(&mut g.dp, &ep.host_interface)?;
        g.ifindexes.insert(ep.host_interface.clone(), link.index);
        self.overlay_publish(g, ns, ep).await?;
        Ok(())
    }

    pub(crate) async fn unplumb_endpoint(&self, g: &mut Inner, ep: &Endpoint) {
        self.overlay_unpublish(g, ep).await;
        endpoint_progs::detach(&mut g.dp, &ep.host_interface);
        super::ipv6::remove_endpoint6(g, ep);
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
        if super::networks::PREDEFINED.contains(&network) {
            // Docker's words.
            return Err(bad(format!(
                "container cannot be connected to {network} network"
            )));
        }
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
        if !matches!(
            c.network_mode,
            NetworkMode::Bridge | NetworkMode::Attached(_)
        ) {
            return Err(bad(format!(
                "container {} uses network mode {}; it cannot be connected to networks",
                c.name,
                c.network_mode.describe()
            )));
        }
        if let Some(ip) = ip {
            super::containers::check_static_ip_allowed(&net, ip)?;
        }
        let ip6 = super::ipv6::parse_static(Some(&net), req.ip6.as_deref())?;
        if c.endpoints.iter().any(|e| e.network == network) {
            return Err(Error::Conflict(format!(
                "container {} is already connected to network {network}",
                c.name
            )));
        }
        let ip = self.overlay_address(g, &net, ip).await?;
        let (mut ep, net_after) = Self::plan_endpoint(g, &net, &c, ip, ip6)?;
        ep.aliases.clone_from(&req.aliases);
        super::attached::apply_connect_options(&c, &req, &mut ep)?;
        let ns = self.netns_path(&c.name);
        c.endpoints.push(ep.clone());
        // Docker's rule picks the endpoint of the default route anew: the new
        // one may take it (its route replaces the old one when plumbed).
        let moved = choose_default_route(&mut c.endpoints, &g.networks);
        if let Some(last) = c.endpoints.last() {
            ep.default_route = last.default_route;
        }
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
            if moved {
                self.restore_default_route(g, &c.name).await;
            }
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
        if super::networks::PREDEFINED.contains(&network) {
            return Err(bad(format!(
                "container cannot be disconnected from {network} network"
            )));
        }
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
        // Like Docker, the default route moves to the endpoint its rule
        // picks among those left.
        let successor = if choose_default_route(&mut c.endpoints, &g.networks) {
            c.endpoints.iter().position(|e| e.default_route)
        } else {
            None
        };
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
            if let Some(gw6) = next.gateway6.filter(|_| next.ip6.is_some()) {
                let ns = self.netns_path(&c.name);
                if let Err(e) = crate::kernel6::set_default_route6(&ns, &next.interface, gw6).await
                {
                    warn!(container, "moving the IPv6 default route: {e:#}");
                }
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

impl Engine {
    /// Put the default route back on the endpoint the stored state says
    /// carries it (after a failed connect moved it).
    async fn restore_default_route(&self, g: &Inner, container: &str) {
        let Some(e) = g
            .containers
            .get(container)
            .and_then(|c| c.endpoints.iter().find(|e| e.default_route))
        else {
            return;
        };
        if let Err(err) =
            kernel::set_default_route(&self.netns_path(container), &e.interface, e.gateway).await
        {
            warn!(container, "restoring the default route: {err:#}");
        }
    }
}

/// Docker's choice of the endpoint that carries a container's default route
/// (libnetwork's gateway endpoint): endpoints ordered by priority (all equal
/// here), then networks that are not internal first, then network name; the
/// first one, if its network is not internal. Sets `default_route` on it
/// alone; true when the choice changed.
pub(crate) fn choose_default_route(
    endpoints: &mut [Endpoint],
    networks: &BTreeMap<String, Network>,
) -> bool {
    let before = endpoints.iter().position(|e| e.default_route);
    let after = endpoints
        .iter()
        .enumerate()
        .filter(|(_, e)| networks.get(&e.network).is_some_and(|n| !n.internal))
        .min_by(|(_, a), (_, b)| a.network.cmp(&b.network))
        .map(|(i, _)| i);
    for (i, e) in endpoints.iter_mut().enumerate() {
        e.default_route = Some(i) == after;
    }
    before != after
}

/// The datapath's entry for `ep` on `net` (None: the network is gone, the
/// entry has network 0 and no policy). The network's policy flags travel in
/// the entry, so the container-to-container path needs no network lookup.
pub(crate) fn endpoint_info(
    ep: &Endpoint,
    net: Option<&Network>,
    link: &kernel::NetdevInfo,
) -> EndpointInfo {
    EndpointInfo {
        ifindex: link.index,
        net_id: net.map_or(0, |n| n.id),
        ip: ep.ip.octets(),
        mac: ep.mac,
        host_mac: link.mac,
        flags: net.map_or(0, |n| endpoint_net_flags(network_info(n).flags)),
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

    fn net(name: &str, internal: bool) -> (String, Network) {
        let n = Network {
            id: 1,
            name: name.into(),
            driver: "bridge".into(),
            pool: Pool::new("10.9.0.0/24".parse().unwrap(), None, None).unwrap(),
            mtu: 1500,
            internal,
            icc: true,
            last_ip: None,
            builtin: false,
            user_subnet: true,
            masquerade: true,
            host_binding: None,
            parent: None,
            ipv6: None,
        };
        (name.into(), n)
    }

    fn ep(network: &str, default_route: bool) -> Endpoint {
        Endpoint {
            network: network.into(),
            interface: "eth0".into(),
            host_interface: "dp00000000".into(),
            ip: Ipv4Addr::new(10, 9, 0, 2),
            prefix_len: 24,
            mac: [0; 6],
            gateway: Ipv4Addr::new(10, 9, 0, 1),
            mtu: 1500,
            default_route,
            aliases: Vec::new(),
            ip6: None,
            prefix_len6: 0,
            gateway6: None,
        }
    }

    #[test]
    fn default_route_by_dockers_rule() {
        let nets: BTreeMap<String, Network> =
            [net("u1", false), net("aa", false), net("0int", true)]
                .into_iter()
                .collect();
        let mut eps = vec![ep("u1", true), ep("aa", false)];
        assert!(choose_default_route(&mut eps, &nets));
        assert!(!eps[0].default_route && eps[1].default_route);
        assert!(!choose_default_route(&mut eps, &nets));
        // An internal network never takes it, whatever its name.
        let mut eps = vec![ep("u1", true), ep("0int", false)];
        assert!(!choose_default_route(&mut eps, &nets));
        assert!(eps[0].default_route);
        let mut eps = vec![ep("0int", false)];
        assert!(!choose_default_route(&mut eps, &nets));
        assert!(!eps[0].default_route);
    }

    #[test]
    fn endpoint_names() {
        assert!(is_endpoint_ifname("dp0a1b2c3d"));
        assert!(!is_endpoint_ifname("dp0"));
        assert!(!is_endpoint_ifname("dp0p"));
        assert!(!is_endpoint_ifname("eth0"));
    }
}

//! Network verbs (create, remove, list, inspect), their views and the
//! network's `DP_NETWORKS` value.

use super::*;

/// Pools user-defined networks get a subnet from, in order (as Docker's defaults).
fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let a = (18..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok());
    let c = (0..16).filter_map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).ok());
    a.chain(c)
}

impl Engine {
    pub async fn create_network(&self, req: NetworkCreate) -> ApiResult<NetworkView> {
        ipam::validate_name("network", &req.name)?;
        if matches!(req.name.as_str(), "host" | "none") || req.name.starts_with("container:") {
            return Err(bad(format!("network name {:?} is reserved", req.name)));
        }
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver == "overlay" {
            return self.create_overlay_network(req).await;
        }
        if driver != "bridge" {
            return Err(bad(format!(
                "unsupported driver {driver:?} (supported: bridge, overlay)"
            )));
        }
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        ipam::validate_mtu(mtu)?;
        let subnet = req.subnet.as_deref().map(ipam::parse_subnet).transpose()?;
        let gateway = req.gateway.as_deref().map(ipam::parse_ip).transpose()?;
        let range = req
            .ip_range
            .as_deref()
            .map(ipam::parse_subnet)
            .transpose()?;
        if subnet.is_none() && (gateway.is_some() || range.is_some()) {
            return Err(bad("--gateway and --ip-range need --subnet"));
        }

        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if g.networks.contains_key(&req.name) {
            return Err(Error::Conflict(format!(
                "network {} already exists",
                req.name
            )));
        }
        let others: Vec<(String, Ipv4Net)> = g
            .networks
            .values()
            .map(|n| (n.name.clone(), n.pool.subnet))
            .collect();
        let subnet = match subnet {
            Some(s) => {
                Pool::check_overlap(s, others.iter().map(|(n, s)| (n.as_str(), *s)))?;
                s
            }
            None => {
                // Like Docker: never a pool the host already routes or uses.
                let host_nets = kernel::host_networks(&g.host).await?;
                default_pools().find(|s| {
                    Pool::check_overlap(*s, others.iter().map(|(n, s)| (n.as_str(), *s))).is_ok()
                        && !host_nets.iter().any(|h| h.contains(s) || s.contains(h))
                })
            }
            .ok_or_else(|| bad("no free subnet left in the default pools; pass --subnet"))?,
        };
        let pool = Pool::new(subnet, range, gateway)?;
        let id = g.networks.values().map(|n| n.id).max().unwrap_or(0) + 1;
        let net = Network {
            id,
            name: req.name.clone(),
            driver,
            pool,
            mtu,
            internal: req.internal,
            icc: req.icc.unwrap_or(true),
            last_ip: None,
            builtin: false,
        };
        // Kernel, then store.
        kernel::add_gateway(&g.host, net.pool.gateway).await?;
        let res = g.dp.upsert_network(id, network_info(&net)).and_then(|()| {
            g.store.apply(Change {
                put_networks: vec![&net],
                ..Default::default()
            })
        });
        if let Err(e) = res {
            g.dp.remove_network(id);
            let _ = kernel::del_gateway(&g.host, net.pool.gateway).await;
            return Err(e.into());
        }
        self.request_reconcile();
        info!(network = %net.name, subnet = %net.pool.subnet, "network created");
        g.networks.insert(net.name.clone(), net.clone());
        Ok(Self::network_view(g, &net))
    }

    pub async fn remove_network(&self, name: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let net = g
            .networks
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("network {name} not found")))?;
        if net.builtin {
            return Err(bad(format!("the default network {name} cannot be removed")));
        }
        let users: Vec<String> = g
            .containers
            .values()
            .filter(|c| c.endpoints.iter().any(|e| e.network == name))
            .map(|c| c.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "network {name} has active endpoints (containers: {})",
                users.join(", ")
            )));
        }
        if net.driver == "overlay" {
            self.remove_overlay_network_in_cluster(g, name).await?;
        }
        g.store.apply(Change {
            del_networks: vec![name],
            ..Default::default()
        })?;
        g.dp.remove_network(net.id);
        let shared_gw = g
            .networks
            .values()
            .any(|n| n.name != name && n.pool.gateway == net.pool.gateway);
        if !shared_gw {
            after_commit(
                "removing the gateway address",
                kernel::del_gateway(&g.host, net.pool.gateway).await,
            );
        }
        g.networks.remove(name);
        self.request_reconcile();
        info!(network = %name, "network removed");
        Ok(())
    }

    pub async fn list_networks(&self) -> Vec<NetworkView> {
        let g = self.inner.lock().await;
        g.networks
            .values()
            .map(|n| Self::network_view(&g, n))
            .collect()
    }

    pub async fn inspect_network(&self, name: &str) -> ApiResult<NetworkView> {
        let g = self.inner.lock().await;
        let n = g
            .networks
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("network {name} not found")))?;
        Ok(Self::network_view(&g, n))
    }

    pub(super) fn network_view(g: &Inner, n: &Network) -> NetworkView {
        let mut members = Vec::new();
        let mut drops: BTreeMap<String, u64> = BTreeMap::new();
        for c in g.containers.values() {
            for e in c.endpoints.iter().filter(|e| e.network == n.name) {
                members.push(NetworkMember {
                    container: c.name.clone(),
                    ip: e.ip,
                    mac: fmt_mac(&e.mac),
                });
                if let Some(s) = g
                    .ifindexes
                    .get(&e.host_interface)
                    .and_then(|i| g.dp.endpoint_stats(*i))
                {
                    for r in DropReason::ALL {
                        *drops.entry(r.name().into()).or_default() += s.drops[r as usize];
                    }
                }
            }
        }
        NetworkView {
            id: n.id,
            name: n.name.clone(),
            driver: n.driver.clone(),
            subnet: n.pool.subnet,
            gateway: n.pool.gateway,
            ip_range: n.pool.range,
            mtu: n.mtu,
            internal: n.internal,
            icc: n.icc,
            containers: members,
            drops,
        }
    }
}

pub(crate) fn network_info(n: &Network) -> NetworkInfo {
    let mut flags = 0;
    if n.internal {
        flags |= NET_F_INTERNAL;
    }
    if !n.icc {
        flags |= NET_F_NO_ICC;
    }
    NetworkInfo {
        gateway: n.pool.gateway.octets(),
        subnet: n.pool.subnet.network().octets(),
        prefix_len: n.pool.subnet.prefix_len() as u32,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pools_do_not_overlap_docker0() {
        let docker0: Ipv4Net = "172.17.0.0/16".parse().unwrap();
        assert!(default_pools().all(|p| !p.contains(&docker0.network())));
    }
}

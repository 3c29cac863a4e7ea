//! Network verbs (create, remove, list, inspect), their views and the
//! network's `DP_NETWORKS` value.

use super::*;

/// Network drivers `network create` accepts.
pub(crate) const SUPPORTED_DRIVERS: &[&str] = &["bridge", "overlay", LAN_DRIVER];

/// Docker's predefined networks besides the default bridge.
pub(crate) const PREDEFINED: [&str; 2] = ["host", "none"];

/// Docker's bridge driver options (`-o KEY=VALUE`) this agent implements.
pub(crate) const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
pub(crate) const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub(crate) const OPT_MASQ: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub(crate) const OPT_HOST_IP: &str = "com.docker.network.bridge.host_binding_ipv4";

/// What a network's options (`-o`) and flags (`--icc`, `--mtu`) say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NetOptions {
    pub icc: bool,
    pub mtu: u32,
    pub masquerade: bool,
    pub host_binding: Option<Ipv4Addr>,
}

fn parse_bool_opt(key: &str, v: &str) -> ApiResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Ok(true),
        "false" | "0" | "f" => Ok(false),
        _ => Err(bad(format!("option {key}={v:?}: expected true or false"))),
    }
}

/// Interpret `-o` options together with `--icc`/`--mtu` (which must agree
/// with them when both are given). Other `com.docker.network.*` options are
/// accepted and ignored, as Docker's bridge driver ignores options it does not
/// know; any other key is refused.
pub(crate) fn net_options(req: &NetworkCreate) -> ApiResult<NetOptions> {
    let mut icc = req.icc;
    let mut mtu = req.mtu;
    let mut masquerade = true;
    let mut host_binding = None;
    for (k, v) in &req.options {
        match k.as_str() {
            OPT_ICC => {
                let b = parse_bool_opt(k, v)?;
                if icc.is_some_and(|i| i != b) {
                    return Err(bad(format!("--icc and -o {k}={v} disagree")));
                }
                icc = Some(b);
            }
            OPT_MTU => {
                let m: u32 = v
                    .parse()
                    .map_err(|_| bad(format!("option {k}={v:?}: not a number")))?;
                if mtu.is_some_and(|x| x != m) {
                    return Err(bad(format!("--mtu and -o {k}={v} disagree")));
                }
                mtu = Some(m);
            }
            OPT_MASQ => masquerade = parse_bool_opt(k, v)?,
            // Checked with the IPv6 side (`ipv6::parse_request`).
            crate::ipam::v6::OPT_GATEWAY_MODE6 => {}
            OPT_HOST_IP => {
                host_binding =
                    Some(ipam::parse_ip(v).map_err(|e| bad(format!("option {k}: {e}")))?);
            }
            _ if k.starts_with("com.docker.network.") => {
                warn!(option = %k, "network option not implemented; ignored");
            }
            _ => return Err(bad(format!("unknown network option {k:?}"))),
        }
    }
    let mtu = mtu.unwrap_or(DEFAULT_MTU);
    ipam::validate_mtu(mtu)?;
    Ok(NetOptions {
        icc: icc.unwrap_or(true),
        mtu,
        masquerade,
        host_binding,
    })
}

impl Engine {
    pub async fn create_network(&self, req: NetworkCreate) -> ApiResult<NetworkView> {
        self.create_network_as(req, false).await
    }

    /// Create a network; `builtin` for the default bridge (made at start).
    pub(crate) async fn create_network_as(
        &self,
        req: NetworkCreate,
        builtin: bool,
    ) -> ApiResult<NetworkView> {
        ipam::validate_name("network", &req.name)?;
        if PREDEFINED.contains(&req.name.as_str()) {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        if req.name.starts_with("container:") {
            return Err(bad(format!("network name {:?} is reserved", req.name)));
        }
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if req.ipv6 && driver != "bridge" {
            return Err(bad(format!(
                "--ipv6 is not supported by driver {driver:?} (only bridge networks are dual stack)"
            )));
        }
        let mut req = req;
        let v6 = super::ipv6::parse_request(&mut req)?;
        if driver == "overlay" {
            return self.create_overlay_network(req).await;
        }
        if driver == LAN_DRIVER {
            return self.create_lan_network(req).await;
        }
        if req.parent.is_some() {
            return Err(bad("--parent is only for --driver lan"));
        }
        if !SUPPORTED_DRIVERS.contains(&driver.as_str()) {
            return Err(bad(format!(
                "unsupported driver {driver:?} (supported: {})",
                SUPPORTED_DRIVERS.join(", ")
            )));
        }
        let opts = net_options(&req)?;
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
                "network with name {} already exists",
                req.name
            )));
        }
        let others: Vec<(String, Ipv4Net)> = g
            .networks
            .values()
            .map(|n| (n.name.clone(), n.pool.subnet))
            .collect();
        let user_subnet = subnet.is_some() && !builtin;
        let subnet = match subnet {
            Some(s) => {
                Pool::check_overlap(s, others.iter().map(|(n, s)| (n.as_str(), *s)))?;
                if !builtin {
                    // Docker does not check this; a subnet over the host's own
                    // addresses or routes takes the host off its network.
                    let ours: Vec<Ipv4Net> = others.iter().map(|(_, s)| *s).collect();
                    let host_nets = kernel::host_networks(&g.host).await?;
                    if let Some(h) = host_nets.iter().find(|h| {
                        (h.contains(&s) || s.contains(*h)) && !ours.iter().any(|o| o.contains(*h))
                    }) {
                        return Err(Error::Conflict(format!(
                            "subnet {s} overlaps {h}, an address or route of this host"
                        )));
                    }
                }
                s
            }
            None => {
                // Like Docker: never a pool the host already routes or uses,
                // and pools handed out in sequence (after the last one given
                // to a network, wrapping around), not lowest-free.
                let host_nets = kernel::host_networks(&g.host).await?;
                let pools: Vec<Ipv4Net> = self.cfg.defaults.pool_subnets();
                let last = g
                    .networks
                    .values()
                    .filter(|n| !n.user_subnet && !n.builtin)
                    .max_by_key(|n| n.id)
                    .and_then(|n| pools.iter().position(|p| *p == n.pool.subnet));
                let start = last.map_or(0, |i| i + 1);
                (0..pools.len())
                    .map(|i| pools[(start + i) % pools.len()])
                    .find(|s| {
                        Pool::check_overlap(*s, others.iter().map(|(n, s)| (n.as_str(), *s)))
                            .is_ok()
                            && !host_nets.iter().any(|h| h.contains(s) || s.contains(h))
                    })
            }
            .ok_or_else(|| {
                bad("no free subnet left in the default address pools; pass --subnet")
            })?,
        };
        let pool = Pool::new(subnet, range, gateway)?;
        let ipv6 = super::ipv6::plan_pool(g, v6, builtin).await?;
        let id = g.networks.values().map(|n| n.id).max().unwrap_or(0) + 1;
        let net = Network {
            id,
            name: req.name.clone(),
            driver,
            pool,
            mtu: opts.mtu,
            internal: req.internal,
            icc: opts.icc,
            last_ip: None,
            builtin,
            user_subnet,
            masquerade: opts.masquerade,
            host_binding: opts.host_binding,
            parent: None,
            ipv6,
        };
        // Kernel, then store.
        kernel::add_gateway(&g.host, net.pool.gateway).await?;
        let res = match super::ipv6::add_network6(g, &net).await {
            Ok(()) => g.dp.upsert_network(id, network_info(&net)).and_then(|()| {
                g.store.apply(Change {
                    put_networks: vec![&net],
                    ..Default::default()
                })
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            super::ipv6::remove_network6(g, &net).await;
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
        self.remove_network_locked(&mut g, name, false).await
    }

    /// Remove a network with the engine's lock held; `builtin_too` lets the
    /// start-up re-create the default network.
    pub(crate) async fn remove_network_locked(
        &self,
        g: &mut Inner,
        name: &str,
        builtin_too: bool,
    ) -> ApiResult<()> {
        if PREDEFINED.contains(&name) {
            return Err(bad(format!(
                "{name} is a pre-defined network and cannot be removed"
            )));
        }
        let net = g
            .networks
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("network {name} not found")))?;
        if net.builtin && !builtin_too {
            return Err(bad(format!(
                "{name} is a pre-defined network and cannot be removed"
            )));
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
        super::ipv6::remove_network6(g, &net).await;
        let shared_gw = g
            .networks
            .values()
            .any(|n| n.name != name && n.pool.gateway == net.pool.gateway);
        // A `lan` network's gateway is the LAN's router: never ours to remove.
        if !shared_gw && net.driver != LAN_DRIVER {
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
        let mut v: Vec<NetworkView> = g
            .networks
            .values()
            .map(|n| Self::network_view(&g, n))
            .collect();
        v.extend(PREDEFINED.iter().map(|p| Self::predefined_view(&g, p)));
        v
    }

    pub async fn inspect_network(&self, name: &str) -> ApiResult<NetworkView> {
        let g = self.inner.lock().await;
        if PREDEFINED.contains(&name) {
            return Ok(Self::predefined_view(&g, name));
        }
        let n = g
            .networks
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("network {name} not found")))?;
        Ok(Self::network_view(&g, n))
    }

    /// `host` or `none`: no subnet; its members are the containers in that
    /// network mode.
    fn predefined_view(g: &Inner, name: &str) -> NetworkView {
        let (id, driver, mode) = if name == "host" {
            (0, "host", NetworkMode::Host)
        } else {
            (0, "null", NetworkMode::None)
        };
        NetworkView {
            id,
            name: name.into(),
            driver: driver.into(),
            subnet: None,
            gateway: None,
            ip_range: None,
            mtu: 0,
            internal: false,
            icc: false,
            masquerade: false,
            host_binding_ipv4: None,
            parent: None,
            containers: g
                .containers
                .values()
                .filter(|c| c.network_mode == mode)
                .map(|c| NetworkMember {
                    container: c.name.clone(),
                    ip: None,
                    mac: None,
                    ip6: None,
                })
                .collect(),
            drops: BTreeMap::new(),
            enable_ipv6: false,
            ipam: IpamView::default(),
            gateway_mode_ipv6: None,
        }
    }

    pub(super) fn network_view(g: &Inner, n: &Network) -> NetworkView {
        let mut members = Vec::new();
        let mut drops: BTreeMap<String, u64> = BTreeMap::new();
        for c in g.containers.values() {
            for e in c.endpoints.iter().filter(|e| e.network == n.name) {
                members.push(NetworkMember {
                    container: c.name.clone(),
                    ip: Some(e.ip),
                    mac: Some(fmt_mac(&e.mac)),
                    ip6: e.ip6,
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
        let mut v = NetworkView {
            id: n.id,
            name: n.name.clone(),
            driver: n.driver.clone(),
            subnet: Some(n.pool.subnet),
            gateway: Some(n.pool.gateway),
            ip_range: n.pool.range,
            mtu: n.mtu,
            internal: n.internal,
            icc: n.icc,
            masquerade: n.masquerade,
            host_binding_ipv4: n.host_binding,
            parent: n.parent.clone(),
            containers: members,
            drops,
            enable_ipv6: false,
            ipam: IpamView::default(),
            gateway_mode_ipv6: None,
        };
        super::ipv6::fill_view(n, &mut v);
        v
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
    if !n.masquerade {
        flags |= NET_F_NO_MASQ;
    }
    if n.driver == LAN_DRIVER {
        flags |= NET_F_LAN;
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

    fn req(opts: &[(&str, &str)]) -> NetworkCreate {
        NetworkCreate {
            name: "n".into(),
            options: opts
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn docker_options() {
        let o = net_options(&req(&[
            (OPT_ICC, "false"),
            (OPT_MTU, "1400"),
            (OPT_MASQ, "false"),
            (OPT_HOST_IP, "127.0.0.1"),
            ("com.docker.network.bridge.name", "br0"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            NetOptions {
                icc: false,
                mtu: 1400,
                masquerade: false,
                host_binding: Some(Ipv4Addr::LOCALHOST),
            }
        );
        let d = net_options(&req(&[])).unwrap();
        assert!(d.icc && d.masquerade && d.mtu == DEFAULT_MTU && d.host_binding.is_none());
        assert!(net_options(&req(&[(OPT_MTU, "20")])).is_err());
        assert!(net_options(&req(&[(OPT_MASQ, "maybe")])).is_err());
        assert!(net_options(&req(&[(OPT_HOST_IP, "::1")])).is_err());
        assert!(net_options(&req(&[("foo", "bar")])).is_err());
        let mut r = req(&[(OPT_ICC, "false")]);
        r.icc = Some(true);
        assert!(net_options(&r)
            .unwrap_err()
            .to_string()
            .contains("disagree"));
        r.icc = Some(false);
        assert!(!net_options(&r).unwrap().icc);
    }
}

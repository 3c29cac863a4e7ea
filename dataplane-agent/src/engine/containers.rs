//! Container verbs (create, remove, list, inspect) and their views. A
//! container is a network namespace owned by the agent (or the host's, or
//! another container's, by network mode).

use super::*;

impl Engine {
    pub async fn create_container(&self, mut req: ContainerCreate) -> ApiResult<ContainerView> {
        validate_container_name(&req.name)?;
        self.cfg.defaults.apply_to(&mut req);
        if let Some(h) = &req.hostname {
            validate_hostname(h)?;
        }
        let (mut mode, net_name) =
            NetworkMode::parse(req.network.as_deref().unwrap_or(DEFAULT_NETWORK));
        if matches!(mode, NetworkMode::Container(_)) {
            // Docker's words.
            if req.hostname.is_some() {
                return Err(bad("conflicting options: hostname and the network mode"));
            }
            if !req.expose.is_empty() {
                return Err(bad(
                    "conflicting options: port exposing and the container type network mode",
                ));
            }
            if !req.publish.is_empty() || req.publish_all {
                return Err(bad(
                    "conflicting options: port publishing and the container type network mode",
                ));
            }
        }
        let ip = req.ip.as_deref().map(ipam::parse_ip).transpose()?;
        if (ip.is_some() || req.ip6.is_some()) && mode != NetworkMode::Bridge {
            return Err(bad(format!(
                "--ip needs a network; network mode {} has no address of its own",
                mode.describe()
            )));
        }
        let mut expose = BTreeSet::new();
        for e in &req.expose {
            expose.extend(ports::parse_expose(e).map_err(|e| bad(format!("--expose: {e}")))?);
        }
        let specs = req
            .publish
            .iter()
            .map(|s| ports::parse_spec(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if (!specs.is_empty() || (req.publish_all && !expose.is_empty()))
            && mode != NetworkMode::Bridge
        {
            return Err(bad(format!(
                "cannot publish ports with network mode {}",
                mode.describe()
            )));
        }
        let links = req
            .links
            .iter()
            .map(|l| parse_legacy_link(l))
            .collect::<ApiResult<Vec<_>>>()?;
        let dns = parse_dns_flags(&req, &mode)?;
        validate_aliases(net_name.as_deref(), &req.network_aliases)?;

        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if g.containers.contains_key(&req.name) {
            return Err(Error::Conflict(format!(
                "container {} already exists",
                req.name
            )));
        }
        if let NetworkMode::Container(target) = &mode {
            let t = g
                .containers
                .get(target)
                .ok_or_else(|| Error::NotFound(format!("container {target} not found")))?;
            // Joining B, which itself joined A, is joining A's namespace
            // (as Docker): recorded as A's, whose namespace it is.
            if let NetworkMode::Container(root) = &t.network_mode {
                mode = NetworkMode::Container(root.clone());
            }
        }
        let net = match &net_name {
            Some(n) => Some(
                g.networks
                    .get(n)
                    .cloned()
                    .ok_or_else(|| Error::NotFound(format!("network {n} not found")))?,
            ),
            None => None,
        };
        for l in &links {
            let t = g.containers.get(&l.name).ok_or_else(|| {
                Error::NotFound(format!("--link: container {} not found", l.name))
            })?;
            let shares = net_name
                .as_ref()
                .is_some_and(|n| t.endpoints.iter().any(|e| &e.network == n));
            if !shares {
                return Err(bad(format!(
                    "--link: container {} is not on network {}",
                    l.name,
                    net_name.as_deref().unwrap_or(&mode.describe())
                )));
            }
        }
        if let (Some(ip), Some(net)) = (ip, &net) {
            check_static_ip_allowed(net, ip)?;
        }
        let ip6 = super::ipv6::parse_static(net.as_ref(), req.ip6.as_deref())?;
        let id = random_id();
        // Docker's default hostname: the short container id (own namespaces).
        let hostname = match (&req.hostname, &mode) {
            (Some(h), _) => Some(h.clone()),
            (None, NetworkMode::Bridge | NetworkMode::None) => Some(id[..12].to_string()),
            (None, _) => None,
        };
        let mut c = Container {
            id,
            name: req.name.clone(),
            network_mode: mode.clone(),
            hostname,
            endpoints: Vec::new(),
            ports: Vec::new(),
            expose: expose.iter().copied().collect(),
            links,
            dns,
        };
        if let Some(net) = &net {
            if net.internal && (!specs.is_empty() || (req.publish_all && !expose.is_empty())) {
                return Err(bad(format!(
                    "cannot publish ports of a container on internal network {}",
                    net.name
                )));
            }
        }
        let mut net_after = None;
        if let Some(net) = &net {
            let ip = self.overlay_address(g, net, ip).await?;
            let (mut ep, n2) = Self::plan_endpoint(g, net, &c, ip, ip6)?;
            ep.aliases.clone_from(&req.network_aliases);
            c.endpoints.push(ep);
            net_after = Some(n2);
        }
        // Host ports are reserved (bound) here: the last check that can fail
        // on bad input. Released again if anything below fails.
        let mut wanted: Vec<ports::PortSpec> = specs;
        if req.publish_all {
            // An exposed port an explicit -p already maps is published once
            // (the explicit mapping wins), as Docker.
            let mapped: BTreeSet<(u16, Proto)> = wanted
                .iter()
                .flat_map(|s| s.container_ports.iter().map(move |p| (*p, s.proto)))
                .collect();
            for e in expose
                .iter()
                .filter(|e| !mapped.contains(&(e.port, e.proto)))
            {
                wanted.push(ports::PortSpec {
                    host_ip: None,
                    proto: e.proto,
                    container_ports: vec![e.port],
                    host_ports: HostPorts::Random,
                });
            }
        }
        let default_ip = self.default_host_ip(net.as_ref());
        c.ports = self.reserve_ports(g, &wanted, default_ip).await?;

        // Kernel.
        let ns = self.netns_path(&c.name);
        if matches!(mode, NetworkMode::Bridge | NetworkMode::None) {
            if ns.exists() {
                // Left over by a crash: not in the desired state, safe to drop.
                kernel::delete_netns(&ns)?;
            }
            kernel::create_netns(&ns)?;
            let setup = async {
                let h = kernel::handle_in_netns(&ns)?;
                kernel::netns_lo_up(&h).await?;
                for ep in &c.endpoints {
                    self.plumb_endpoint(g, &ns, ep).await?;
                }
                g.dp.add_ports(&port_entries(&c))?;
                let nets: Vec<&Network> = net_after.iter().collect();
                g.store.apply(Change {
                    put_containers: vec![&c],
                    put_networks: nets,
                    ..Default::default()
                })
            }
            .await;
            if let Err(e) = setup {
                let keys = port_keys(&c);
                let _ = g.dp.remove_ports(&keys);
                release_ports(g, &c.ports);
                for ep in &c.endpoints {
                    self.unplumb_endpoint(g, ep).await;
                }
                let _ = kernel::delete_netns(&ns);
                return Err(e.into());
            }
        } else {
            g.store.apply(Change {
                put_containers: vec![&c],
                ..Default::default()
            })?;
        }
        if let Some(n) = net_after {
            g.networks.insert(n.name.clone(), n);
        }
        g.containers.insert(c.name.clone(), c.clone());
        // The new container may be the target of existing links too.
        let links = link_policy_keys(&g.containers, &g.networks);
        after_commit("sync_link_policy", g.dp.sync_link_policy(&links));
        self.sync_names(g).await;
        self.request_reconcile();
        info!(container = %c.name, mode = %mode.describe(), ports = c.ports.len(), "container created");
        Ok(self.container_view(g, &c))
    }

    pub async fn remove_container(&self, name: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let c = g
            .containers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {name} not found")))?;
        let sharers: Vec<String> = g
            .containers
            .values()
            .filter(|o| o.network_mode == NetworkMode::Container(name.to_string()))
            .map(|o| o.name.clone())
            .collect();
        if !sharers.is_empty() {
            return Err(Error::Conflict(format!(
                "container {name} is in use: {} share its network namespace; remove them first",
                sharers.join(", ")
            )));
        }
        let links: Vec<String> = Self::p2p_views_of(g, name)
            .into_iter()
            .map(|l| l.name)
            .collect();
        if !links.is_empty() {
            return Err(Error::Conflict(format!(
                "container {name} is an end of p2p links {}: remove them first (dataplane p2p rm)",
                links.join(", ")
            )));
        }
        g.store.apply(Change {
            del_containers: vec![name],
            ..Default::default()
        })?;
        let keys = port_keys(&c);
        after_commit("remove_ports", g.dp.remove_ports(&keys));
        release_ports(g, &c.ports);
        for ep in &c.endpoints {
            self.unplumb_endpoint(g, ep).await;
            g.dp.purge_ct(ep.ip.octets());
        }
        // An attached namespace's mount is only our bind: unmounting it
        // gives the namespace back.
        if matches!(
            c.network_mode,
            NetworkMode::Bridge | NetworkMode::None | NetworkMode::Attached(_)
        ) {
            after_commit("delete_netns", kernel::delete_netns(&self.netns_path(name)));
        }
        g.containers.remove(name);
        let links = link_policy_keys(&g.containers, &g.networks);
        after_commit("sync_link_policy", g.dp.sync_link_policy(&links));
        self.sync_names(g).await;
        self.request_reconcile();
        info!(container = %name, "container removed");
        Ok(())
    }

    pub async fn list_containers(&self) -> Vec<ContainerView> {
        let g = self.inner.lock().await;
        g.containers
            .values()
            .map(|c| self.container_view(&g, c))
            .collect()
    }

    pub async fn inspect_container(&self, name: &str) -> ApiResult<ContainerView> {
        let g = self.inner.lock().await;
        let c = g
            .containers
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("container {name} not found")))?;
        Ok(self.container_view(&g, c))
    }

    pub(super) fn container_view(&self, g: &Inner, c: &Container) -> ContainerView {
        // A container sharing another's namespace shows that one's endpoints.
        let (netns, eps) = match &c.network_mode {
            NetworkMode::Host => (self.host_netns_path(), Vec::new()),
            NetworkMode::Container(t) => match g.containers.get(t) {
                Some(tc) if tc.network_mode == NetworkMode::Host => {
                    (self.host_netns_path(), Vec::new())
                }
                Some(tc) => (self.netns_path(t), tc.endpoints.clone()),
                None => (self.netns_path(t), Vec::new()),
            },
            // Docker's sandbox (empty until joined).
            NetworkMode::External(sandbox) => (PathBuf::from(sandbox), c.endpoints.clone()),
            _ => (self.netns_path(&c.name), c.endpoints.clone()),
        };
        let endpoints = eps
            .iter()
            .map(|e| {
                let mut v = EndpointView {
                    network: e.network.clone(),
                    interface: e.interface.clone(),
                    host_interface: e.host_interface.clone(),
                    ip: e.ip,
                    prefix_len: e.prefix_len,
                    mac: fmt_mac(&e.mac),
                    gateway: e.gateway,
                    mtu: e.mtu,
                    aliases: e.aliases.clone(),
                    counters: g
                        .ifindexes
                        .get(&e.host_interface)
                        .and_then(|i| g.dp.endpoint_stats(*i))
                        .map(|s| CountersView {
                            tx_packets: s.tx_packets,
                            tx_bytes: s.tx_bytes,
                            rx_packets: s.rx_packets,
                            rx_bytes: s.rx_bytes,
                            drops: DropReason::ALL
                                .iter()
                                .map(|r| (r.name().to_string(), s.drops[*r as usize]))
                                .collect(),
                        }),
                    global_ipv6_address: String::new(),
                    global_ipv6_prefix_len: 0,
                    ipv6_gateway: String::new(),
                };
                super::ipv6::fill_endpoint_view(e, &mut v);
                v
            })
            .collect();
        ContainerView {
            id: c.id.clone(),
            name: c.name.clone(),
            network_mode: c.network_mode.describe(),
            hostname: match &c.network_mode {
                NetworkMode::Container(t) => g.containers.get(t).and_then(|t| t.hostname.clone()),
                _ => c.hostname.clone(),
            },
            netns: netns.display().to_string(),
            endpoints,
            ports: c.ports.clone(),
            expose: c.expose.clone(),
            links: c.links.clone(),
            p2p: Self::p2p_views_of(g, &c.name),
            dns: c.dns.clone(),
            embedded_dns: c.network_mode == NetworkMode::Bridge
                && c.endpoints.iter().any(|e| has_embedded_dns(&e.network)),
            files_dir: {
                let d = crate::dns::files::container_dir(&self.cfg.run_dir, &c.name);
                d.is_dir().then(|| d.display().to_string())
            },
            owner: match &c.network_mode {
                NetworkMode::Attached(a) => Some(a.owner.clone()),
                _ => None,
            },
        }
    }
}

pub(super) fn random_id() -> String {
    use std::fmt::Write;
    (0..4).fold(String::new(), |mut s, _| {
        let _ = write!(s, "{:016x}", rand::random::<u64>());
        s
    })
}

/// Longest container name: its namespace is a file named after it.
const MAX_CONTAINER_NAME: usize = 200;

/// Docker's rule for container names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, except
/// that one character is accepted (existing setups and tests use such names;
/// README "Differences from Docker"). Docker has no length limit; here the
/// name of the namespace file sets one.
pub(super) fn validate_container_name(name: &str) -> ApiResult<()> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && name.len() <= MAX_CONTAINER_NAME {
        return Ok(());
    }
    Err(bad(format!(
        "invalid container name {name:?}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]* \
         and be at most {MAX_CONTAINER_NAME} characters"
    )))
}

/// Docker grants `--ip` only on networks whose subnet the user configured.
pub(crate) fn check_static_ip_allowed(net: &Network, ip: Ipv4Addr) -> ApiResult<()> {
    if net.builtin {
        return Err(bad(format!(
            "--ip {ip}: user specified IP address is supported on user defined networks only"
        )));
    }
    if !net.user_subnet {
        return Err(bad(format!(
            "--ip {ip}: user specified IP address is supported only when connecting to networks with user configured subnets"
        )));
    }
    Ok(())
}

fn validate_hostname(h: &str) -> ApiResult<()> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid hostname {h:?}: letters, digits, '-' and '.', at most 63 characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_as_docker() {
        assert!(validate_container_name("ab").is_ok());
        assert!(validate_container_name("a").is_ok());
        assert!(validate_container_name("").is_err());
        assert!(validate_container_name(&"a".repeat(100)).is_ok());
        assert!(validate_container_name("_ab").is_err());
        assert!(validate_container_name("a b").is_err());
    }

    #[test]
    fn hostnames() {
        assert!(validate_hostname("web-1.local").is_ok());
        assert!(validate_hostname("-x").is_err());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("a b").is_err());
    }
}

//! Names (embedded DNS): the engine's side of [`crate::dns`].
//!
//! [`Engine::sync_names`] runs after every committed change of containers
//! or endpoints (create, rm, connect, disconnect) and at the end of every
//! reconcile pass (so also at start). It is a reconciliation of its own,
//! from the desired state: it publishes the zone (every container's
//! endpoints on user-defined networks, their aliases, `--link` aliases),
//! writes each container's hosts / resolv.conf / hostname (unchanged files
//! are not rewritten), removes the files of containers that are gone,
//! starts the resolvers that should run, restarts those whose task died or
//! whose namespace was recreated (the reconciler recreates a deleted one)
//! or whose upstreams changed (the host's resolv.conf is read every pass),
//! and stops the others. The `DnsManager` only starts and stops what it is
//! told: the supervision is here, driven by the reconciler's timer.

use std::net::IpAddr;

use tracing::debug;

use super::*;
use crate::dns::{
    self,
    files::{
        self, container_dir, hostname_content, hosts_content, read_host_resolv,
        resolv_conf_content, ContainerFiles, DnsConfig, HostResolv, HostsLink, HostsSpec,
        ResolvMode,
    },
    Health, Upstream, Zone, ZoneContainer, ZoneEndpoint, ZoneLink,
};

/// Whether a network has embedded DNS: every user-defined network; the
/// default `bridge` has none (as in Docker).
pub(crate) fn has_embedded_dns(network: &str) -> bool {
    network != DEFAULT_NETWORK
}

/// The container whose namespace `c` lives in (itself, or the target of
/// `container:NAME`); `None` for the host's namespace.
fn namespace_owner<'a>(g: &'a Inner, c: &'a Container) -> Option<&'a Container> {
    match &c.network_mode {
        // Docker's sandboxes have Docker's own resolver and files.
        // Attached namespaces keep their owner's resolver and files.
        NetworkMode::Host | NetworkMode::External(_) | NetworkMode::Attached(_) => None,
        NetworkMode::Container(t) => g
            .containers
            .get(t)
            .filter(|t| matches!(t.network_mode, NetworkMode::Bridge | NetworkMode::None)),
        NetworkMode::Bridge | NetworkMode::None => Some(c),
    }
}

fn uses_embedded_dns(c: &Container) -> bool {
    c.endpoints.iter().any(|e| has_embedded_dns(&e.network))
}

/// The zone: containers with their own namespace and their endpoints on
/// networks with embedded DNS.
pub(crate) fn zone_of(containers: &BTreeMap<String, Container>) -> Zone {
    let zc: Vec<ZoneContainer> = containers
        .values()
        .filter(|c| {
            matches!(
                c.network_mode,
                NetworkMode::Bridge | NetworkMode::Attached(_)
            )
        })
        .map(|c| ZoneContainer {
            name: c.name.clone(),
            id: c.id.clone(),
            endpoints: c
                .endpoints
                .iter()
                .filter(|e| has_embedded_dns(&e.network))
                .map(|e| ZoneEndpoint {
                    network: e.network.clone(),
                    ip: e.ip,
                    aliases: e.aliases.clone(),
                    ip6: e.ip6,
                })
                .collect(),
            links: c
                .links
                .iter()
                .map(|l| ZoneLink {
                    target: l.name.clone(),
                    alias: l.alias.clone(),
                })
                .collect(),
        })
        .collect();
    Zone::new(&zc)
}

/// The hostname a container sees: `--hostname`, else its short id (Docker's).
fn hostname_of(c: &Container) -> String {
    c.hostname
        .clone()
        .unwrap_or_else(|| c.id.chars().take(dns::zone::SHORT_ID_LEN).collect())
}

/// A container's three files; `None` for the host's namespace (it reads
/// the host's own files).
fn container_files(g: &Inner, c: &Container, host: &HostResolv) -> Result<Option<ContainerFiles>> {
    let Some(owner) = namespace_owner(g, c) else {
        return Ok(None);
    };
    let embedded = uses_embedded_dns(owner);
    let mode = if embedded {
        ResolvMode::Embedded
    } else {
        ResolvMode::Direct
    };
    let first = owner.endpoints.first();
    let default_gw = g.networks.get(DEFAULT_NETWORK).map(|n| n.pool.gateway);
    // On the default bridge, `--link` aliases are host entries.
    let links: Vec<HostsLink> = if embedded {
        Vec::new()
    } else {
        owner
            .links
            .iter()
            .filter_map(|l| {
                let t = g.containers.get(&l.name)?;
                let ep = t
                    .endpoints
                    .iter()
                    .find(|e| owner.endpoints.iter().any(|o| o.network == e.network))?;
                Some(HostsLink {
                    ip: ep.ip,
                    alias: l.alias.clone(),
                    target_name: t.name.clone(),
                    target_id: t.id.clone(),
                })
            })
            .collect()
    };
    let hostname = hostname_of(c);
    let hosts = hosts_content(&HostsSpec {
        hostname: &hostname,
        ip: first.map(|e| e.ip),
        extra_hosts: &c.dns.extra_hosts,
        gateway: first.map(|e| e.gateway).or(default_gw),
        links: &links,
    })?;
    Ok(Some(ContainerFiles {
        hosts,
        resolv_conf: resolv_conf_content(mode, &owner.dns, host),
        hostname: hostname_content(&hostname),
    }))
}

impl Engine {
    fn host_resolv(&self) -> HostResolv {
        read_host_resolv(&self.cfg.resolv_conf).unwrap_or_else(|e| {
            warn!("reading the host's resolver settings: {e:#}");
            HostResolv::default()
        })
    }

    /// Make names, files and resolvers match the desired state (see the
    /// module doc). Failures are logged and retried at the next pass.
    pub(crate) async fn sync_names(&self, g: &Inner) {
        let host = self.host_resolv();
        self.dns.set_zone(zone_of(&g.containers));

        let root = self.cfg.run_dir.join("containers");
        for c in g.containers.values() {
            let dir = container_dir(&self.cfg.run_dir, &c.name);
            let r = match container_files(g, c, &host) {
                Ok(Some(f)) => f.write(&dir),
                Ok(None) => files::remove_dir(&dir),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                warn!(container = %c.name, "resolver files: {e:#}");
            }
        }
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !g.containers.contains_key(&name) {
                    if let Err(e) = files::remove_dir(&e.path()) {
                        warn!("{e:#}");
                    }
                }
            }
        }

        let want: BTreeMap<&str, Vec<Upstream>> = g
            .containers
            .values()
            .filter(|c| c.network_mode == NetworkMode::Bridge && uses_embedded_dns(c))
            .map(|c| (c.name.as_str(), files::upstreams(&c.dns, &host)))
            .collect();
        let running = self.dns.status().await;
        for r in &running {
            if !want.contains_key(r.container.as_str()) {
                self.dns.stop(&r.container).await;
                debug!(container = %r.container, "dns: resolver stopped");
            }
        }
        for (name, ups) in want {
            let ns = self.netns_path(name);
            let cur = running.iter().find(|r| r.container == name);
            if let Some(r) = cur {
                if r.health == Health::Serving && r.upstreams == ups && r.netns == ns {
                    continue;
                }
                if r.health != Health::Serving {
                    info!(container = %name, health = ?r.health, "dns: restarting the resolver");
                }
            }
            if let Err(e) = self.dns.start(name, &ns, ups).await {
                warn!(container = %name, "dns: starting the resolver (retried): {e:#}");
            }
        }
    }

    /// Stop every resolver (agent shutdown).
    pub async fn stop_resolvers(&self) {
        self.dns.stop_all().await;
    }
}

/// Validate `--network-alias` / `--alias` values for a container on
/// `network`; aliases need a network with embedded DNS.
pub(crate) fn validate_aliases(network: Option<&str>, aliases: &[String]) -> ApiResult<()> {
    if aliases.is_empty() {
        return Ok(());
    }
    if !network.is_some_and(has_embedded_dns) {
        return Err(bad(
            "network-scoped aliases are supported only for containers on user-defined networks",
        ));
    }
    for a in aliases {
        files::validate_alias(a).map_err(|e| bad(format!("{e:#}")))?;
    }
    Ok(())
}

/// Validate the DNS flags of `container create` (one-line errors).
pub(crate) fn parse_dns_flags(req: &ContainerCreate, mode: &NetworkMode) -> ApiResult<DnsConfig> {
    let cfg = DnsConfig::parse(&req.dns, &req.dns_search, &req.dns_options, &req.add_hosts)
        .map_err(|e| bad(format!("{e:#}")))?;
    let dns_flags = !(cfg.servers.is_empty() && cfg.search.is_empty() && cfg.options.is_empty());
    if dns_flags && matches!(mode, NetworkMode::Container(_)) {
        return Err(bad(format!(
            "conflicting options: --dns/--dns-search/--dns-option and the network mode {}",
            mode.describe()
        )));
    }
    // IPv6 servers are allowed in resolv.conf; the embedded resolver asks them
    // only if the container has IPv6, which it has not: say so at once.
    if cfg.servers.iter().any(IpAddr::is_ipv6) {
        return Err(bad(
            "--dns: IPv6 servers are not supported (containers are IPv4-only)",
        ));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, mode: NetworkMode, nets: &[(&str, [u8; 4])]) -> Container {
        Container {
            id: format!("{name:0<64}"),
            name: name.into(),
            network_mode: mode,
            hostname: None,
            endpoints: nets
                .iter()
                .map(|(n, ip)| {
                    let ip = Ipv4Addr::from(*ip);
                    Endpoint {
                        network: (*n).into(),
                        interface: "eth0".into(),
                        host_interface: "dp00000000".into(),
                        ip,
                        prefix_len: 24,
                        mac: mac_for_ip(ip),
                        gateway: Ipv4Addr::new(ip.octets()[0], ip.octets()[1], ip.octets()[2], 1),
                        mtu: 1500,
                        default_route: true,
                        aliases: vec!["www".into()],
                        ip6: None,
                        prefix_len6: 0,
                        gateway6: None,
                    }
                })
                .collect(),
            ports: Vec::new(),
            expose: Vec::new(),
            links: Vec::new(),
            dns: DnsConfig::default(),
        }
    }

    #[test]
    fn zone_leaves_out_the_default_bridge_and_shared_namespaces() {
        let mut cs = BTreeMap::new();
        for c in [
            container("web", NetworkMode::Bridge, &[("app", [10, 1, 0, 2])]),
            container("old", NetworkMode::Bridge, &[("bridge", [172, 17, 0, 2])]),
            container("side", NetworkMode::Container("web".into()), &[]),
            container(
                "asker",
                NetworkMode::Bridge,
                &[("app", [10, 1, 0, 3]), ("bridge", [172, 17, 0, 3])],
            ),
        ] {
            cs.insert(c.name.clone(), c);
        }
        let z = zone_of(&cs);
        assert_eq!(z.len(), 3, "side shares web's namespace: no entry");
        assert_eq!(
            z.lookup("asker", "web"),
            dns::zone::Answer::Local(vec![Ipv4Addr::new(10, 1, 0, 2)])
        );
        assert_eq!(z.lookup("asker", "old"), dns::zone::Answer::NotLocal);
        assert_eq!(z.lookup("old", "asker"), dns::zone::Answer::NotLocal);
        assert!(matches!(
            z.lookup("asker", "www"),
            dns::zone::Answer::Local(v) if v.len() == 2
        ));
    }

    #[test]
    fn aliases_need_a_user_network_and_valid_labels() {
        let a = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert!(validate_aliases(Some("app"), &a(&["www", "api.v1"])).is_ok());
        assert!(validate_aliases(Some("bridge"), &[]).is_ok());
        let e = validate_aliases(Some("bridge"), &a(&["www"])).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        let e = validate_aliases(Some("app"), &a(&["bad alias"])).unwrap_err();
        assert!(e.to_string().contains("--network-alias"), "{e}");
        assert!(validate_aliases(None, &a(&["www"])).is_err());
    }

    #[test]
    fn dns_flags_are_validated() {
        let req = ContainerCreate {
            dns: vec!["10.0.0.53".into()],
            ..Default::default()
        };
        assert!(parse_dns_flags(&req, &NetworkMode::Bridge).is_ok());
        assert!(parse_dns_flags(&req, &NetworkMode::Container("x".into())).is_err());
        let bad_dns = ContainerCreate {
            dns: vec!["10.0.0".into()],
            ..Default::default()
        };
        let e = parse_dns_flags(&bad_dns, &NetworkMode::Bridge).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        let no_addr = ContainerCreate {
            add_hosts: vec!["printer".into()],
            ..Default::default()
        };
        assert!(parse_dns_flags(&no_addr, &NetworkMode::Bridge).is_err());
    }
}

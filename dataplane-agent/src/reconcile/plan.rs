//! The plan: the steps that take the kernel from what is observed to what
//! the desired state asks for. Pure (no kernel access), so it is tested
//! without a kernel.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::Ipv4Addr,
};

use dataplane_common::{EndpointInfo, NetworkInfo, PortKey, PortTarget};

use super::observe::Observed;
use crate::{
    endpoint_progs,
    engine::{endpoint_info, is_endpoint_ifname, network_info, LAN_DRIVER},
    model::{Container, Endpoint, Network, NetworkMode},
};

/// What the agent wants to exist.
pub struct Desired<'a> {
    pub networks: &'a BTreeMap<String, Network>,
    pub containers: &'a BTreeMap<String, Container>,
    /// Links of the uplink and socket programs: (program, interface or
    /// `cgroup`).
    pub fixed_links: BTreeSet<(String, String)>,
    /// `DP_PORTS` as it should be (mappings whose host port is held).
    pub ports: HashMap<PortKey, PortTarget>,
    /// Re-attach every link even when it is in place (start: the new
    /// programs replace the pinned ones).
    pub replace_programs: bool,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    AddGateway(Ipv4Addr),
    UpsertNetwork(u32, NetworkInfo),
    RemoveNetwork(u32),
    /// A container's namespace mount is missing: create it (its endpoints
    /// follow).
    CreateNetns(String),
    /// A namespace mount no container owns (left by a crash).
    DeleteNetns(String),
    /// The host-side veth of an endpoint is missing: create the pair.
    CreateEndpoint {
        container: String,
        endpoint: Endpoint,
    },
    /// A host-side veth no endpoint owns.
    DeleteVeth(String),
    /// The endpoint's map entries are missing or wrong.
    UpsertEndpoint(EndpointInfo),
    RemoveEndpoint([u8; 4]),
    RemoveIfEndpoint(u32),
    /// The host's /32 route to a container is missing or wrong.
    AddHostRoute {
        endpoint: Endpoint,
        ifindex: u32,
    },
    /// Attach (or re-attach) a program where it belongs.
    Attach {
        prog: String,
        ifname: String,
    },
    /// Remove a pinned link nothing asks for.
    Detach {
        prog: String,
        ifname: String,
    },
    AddPorts(Vec<(PortKey, PortTarget)>),
    RemovePorts(Vec<PortKey>),
    /// A joined external endpoint (Docker sandbox) whose veth is gone: its
    /// sandbox died while the agent or dockerd was down. Removed.
    CollectExternal(String),
    /// An attached namespace that is gone (its process exited, its path
    /// names another namespace or nothing, or the agent's bind was lost).
    /// Removed.
    CollectAttached(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AddGateway(ip) => write!(f, "add gateway address {ip}"),
            Step::UpsertNetwork(id, _) => write!(f, "write network {id} to DP_NETWORKS"),
            Step::RemoveNetwork(id) => write!(f, "remove network {id} from DP_NETWORKS"),
            Step::CreateNetns(c) => write!(f, "recreate the network namespace of {c}"),
            Step::DeleteNetns(n) => write!(f, "remove stray namespace mount {n}"),
            Step::CreateEndpoint {
                container,
                endpoint,
            } => write!(
                f,
                "recreate endpoint {} of {container} ({})",
                endpoint.host_interface, endpoint.ip
            ),
            Step::DeleteVeth(n) => write!(f, "remove orphaned veth {n}"),
            Step::UpsertEndpoint(i) => {
                write!(f, "write endpoint {} to DP_ENDPOINTS", Ipv4Addr::from(i.ip))
            }
            Step::RemoveEndpoint(ip) => write!(
                f,
                "remove stale endpoint {} from DP_ENDPOINTS",
                Ipv4Addr::from(*ip)
            ),
            Step::RemoveIfEndpoint(i) => {
                write!(f, "remove stale ifindex {i} from DP_IF_ENDPOINTS")
            }
            Step::AddHostRoute { endpoint, .. } => write!(
                f,
                "restore the host route to {} via {}",
                endpoint.ip, endpoint.host_interface
            ),
            Step::Attach { prog, ifname } => write!(f, "attach {prog} to {ifname}"),
            Step::Detach { prog, ifname } => write!(f, "remove stale link {prog}@{ifname}"),
            Step::AddPorts(v) => write!(f, "write {} published ports to DP_PORTS", v.len()),
            Step::RemovePorts(v) => {
                write!(f, "remove {} stale published ports from DP_PORTS", v.len())
            }
            Step::CollectExternal(c) => {
                write!(f, "remove external endpoint {c}: its sandbox is gone")
            }
            Step::CollectAttached(c) => {
                write!(f, "remove attached container {c}: its namespace is gone")
            }
        }
    }
}

/// Whether a container has a namespace of its own (not the host's or
/// another container's).
pub fn owns_netns(c: &Container) -> bool {
    matches!(c.network_mode, NetworkMode::Bridge | NetworkMode::None)
}

/// The steps that make `obs` match `want`, in an order that works: networks,
/// namespaces, endpoints (maps before programs: the program drops what it
/// does not know), then what is stale.
pub fn plan(want: &Desired<'_>, obs: &Observed) -> Vec<Step> {
    let mut steps = Vec::new();
    for n in want.networks.values() {
        // A `lan` network's gateway is the LAN's router, not the host's.
        if n.driver != LAN_DRIVER && !obs.addresses.contains(&n.pool.gateway) {
            steps.push(Step::AddGateway(n.pool.gateway));
        }
        let info = network_info(n);
        if obs.networks.get(&n.id) != Some(&info) {
            steps.push(Step::UpsertNetwork(n.id, info));
        }
    }
    let net_ids: BTreeSet<u32> = want.networks.values().map(|n| n.id).collect();
    for id in obs.networks.keys() {
        if !net_ids.contains(id) {
            steps.push(Step::RemoveNetwork(*id));
        }
    }

    let mut want_links = want.fixed_links.clone();
    let mut want_ips = BTreeSet::new();
    let mut want_ifs = BTreeSet::new();
    let mut want_veths = BTreeSet::new();
    let mut want_netns = BTreeSet::new();
    for c in want.containers.values() {
        if matches!(c.network_mode, NetworkMode::Attached(_)) {
            // Its mount is the agent's bind: never a namespace to recreate.
            want_netns.insert(c.name.clone());
            if obs.netns_files.get(&c.name) != Some(&true) || obs.attached_gone.contains(&c.name) {
                // Collecting removes its veths, entries and links: not
                // leftovers for this pass to remove again.
                for ep in &c.endpoints {
                    want_veths.insert(ep.host_interface.clone());
                    want_ips.insert(ep.ip.octets());
                    want_links.extend(endpoint_progs::links(&ep.host_interface));
                    if let Some(d) = obs.netdevs.get(&ep.host_interface) {
                        want_ifs.insert(d.index);
                    }
                }
                steps.push(Step::CollectAttached(c.name.clone()));
                continue;
            }
        }
        let netns_lost = owns_netns(c) && obs.netns_files.get(&c.name) != Some(&true);
        if owns_netns(c) {
            want_netns.insert(c.name.clone());
            if netns_lost {
                steps.push(Step::CreateNetns(c.name.clone()));
            }
        }
        match &c.network_mode {
            // Created, not joined: only an address so far (and its veth
            // must not be taken for a leftover while a join makes it).
            NetworkMode::External(sandbox) if sandbox.is_empty() => {
                want_veths.extend(c.endpoints.iter().map(|e| e.host_interface.clone()));
                continue;
            }
            NetworkMode::External(_)
                if c.endpoints
                    .iter()
                    .any(|e| !obs.netdevs.contains_key(&e.host_interface)) =>
            {
                steps.push(Step::CollectExternal(c.name.clone()));
                continue;
            }
            _ => {}
        }
        for ep in &c.endpoints {
            want_ips.insert(ep.ip.octets());
            want_veths.insert(ep.host_interface.clone());
            let links: Vec<(String, String)> = endpoint_progs::links(&ep.host_interface).collect();
            want_links.extend(links.iter().cloned());
            let netdev = obs.netdevs.get(&ep.host_interface).filter(|_| !netns_lost);
            let Some(netdev) = netdev else {
                if netns_lost && obs.netdevs.contains_key(&ep.host_interface) {
                    steps.push(Step::DeleteVeth(ep.host_interface.clone()));
                }
                // Creating the pair also writes its entries and attaches.
                steps.push(Step::CreateEndpoint {
                    container: c.name.clone(),
                    endpoint: ep.clone(),
                });
                continue;
            };
            want_ifs.insert(netdev.index);
            let info = endpoint_info(ep, want.networks.get(&ep.network), netdev);
            if obs.endpoints.get(&info.ip) != Some(&info)
                || obs.if_endpoints.get(&netdev.index) != Some(&info)
            {
                steps.push(Step::UpsertEndpoint(info));
            }
            if obs.routes32.get(&ep.ip) != Some(&netdev.index) {
                steps.push(Step::AddHostRoute {
                    endpoint: ep.clone(),
                    ifindex: netdev.index,
                });
            }
            for link in links {
                if want.replace_programs || obs.bpf_links.get(&link) != Some(&true) {
                    steps.push(Step::Attach {
                        prog: link.0,
                        ifname: link.1,
                    });
                }
            }
        }
    }
    for (prog, ifname) in &want.fixed_links {
        let key = (prog.clone(), ifname.clone());
        if obs.bpf_links.get(&key) != Some(&true) && !want.replace_programs {
            steps.push(Step::Attach {
                prog: prog.clone(),
                ifname: ifname.clone(),
            });
        }
    }

    let mut add: Vec<(PortKey, PortTarget)> = want
        .ports
        .iter()
        .filter(|(k, t)| obs.ports.get(k) != Some(t))
        .map(|(k, t)| (*k, *t))
        .collect();
    add.sort_unstable_by_key(|(k, _)| *k);
    if !add.is_empty() {
        steps.push(Step::AddPorts(add));
    }

    // Stale objects last: what nothing in the desired state owns.
    let mut stale_ports: Vec<PortKey> = obs
        .ports
        .keys()
        .filter(|k| !want.ports.contains_key(k))
        .copied()
        .collect();
    stale_ports.sort_unstable();
    if !stale_ports.is_empty() {
        steps.push(Step::RemovePorts(stale_ports));
    }
    let mut stale_ips: Vec<[u8; 4]> = obs
        .endpoints
        .iter()
        // Remote endpoints (overlay) are synced from the cluster view.
        .filter(|(ip, info)| {
            !want_ips.contains(*ip) && info.flags & dataplane_common::EP_F_REMOTE == 0
        })
        .map(|(ip, _)| *ip)
        .collect();
    stale_ips.sort_unstable();
    steps.extend(stale_ips.into_iter().map(Step::RemoveEndpoint));
    let mut stale_ifs: Vec<u32> = obs
        .if_endpoints
        .keys()
        .filter(|i| !want_ifs.contains(*i))
        .copied()
        .collect();
    stale_ifs.sort_unstable();
    steps.extend(stale_ifs.into_iter().map(Step::RemoveIfEndpoint));
    let mut stale_links: Vec<&(String, String)> = obs
        .bpf_links
        .keys()
        .filter(|l| !want_links.contains(*l))
        .collect();
    stale_links.sort_unstable();
    steps.extend(stale_links.into_iter().map(|(p, i)| Step::Detach {
        prog: p.clone(),
        ifname: i.clone(),
    }));
    let mut stale_veths: Vec<&String> = obs
        .netdevs
        .keys()
        .filter(|n| is_endpoint_ifname(n) && !want_veths.contains(*n))
        .collect();
    stale_veths.sort_unstable();
    steps.extend(stale_veths.into_iter().map(|n| Step::DeleteVeth(n.clone())));
    steps.extend(
        obs.netns_files
            .keys()
            .filter(|n| !want_netns.contains(*n))
            .map(|n| Step::DeleteNetns(n.clone())),
    );
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ipam::Pool, kernel::NetdevInfo, model::mac_for_ip};
    use dataplane_common::prog_names;

    fn network() -> Network {
        Network {
            id: 1,
            name: "n".into(),
            driver: "bridge".into(),
            pool: Pool::new("10.9.0.0/24".parse().unwrap(), None, None).unwrap(),
            mtu: 1500,
            internal: false,
            icc: true,
            last_ip: None,
            builtin: false,
            user_subnet: true,
            masquerade: true,
            host_binding: None,
            parent: None,
            ipv6: None,
        }
    }

    fn container(net: &Network) -> Container {
        let ip = Ipv4Addr::new(10, 9, 0, 2);
        Container {
            id: "0".repeat(64),
            name: "c".into(),
            network_mode: NetworkMode::Bridge,
            hostname: None,
            endpoints: vec![Endpoint {
                network: net.name.clone(),
                interface: "eth0".into(),
                host_interface: "dp0000000a".into(),
                ip,
                prefix_len: 24,
                mac: mac_for_ip(ip),
                gateway: net.pool.gateway,
                mtu: 1500,
                default_route: true,
                aliases: Vec::new(),
                ip6: None,
                prefix_len6: 0,
                gateway6: None,
            }],
            ports: Vec::new(),
            expose: Vec::new(),
            links: Vec::new(),
            dns: crate::dns::files::DnsConfig::default(),
        }
    }

    /// The kernel as a pass would leave it for `c` on `net`.
    fn converged(net: &Network, c: &Container) -> Observed {
        let ep = &c.endpoints[0];
        let dev = NetdevInfo {
            index: 7,
            mac: [2, 0, 0, 0, 0, 7],
            mtu: 1500,
            is_virtual: true,
            xdp_attached: 0,
        };
        let info = endpoint_info(ep, Some(net), &dev);
        let mut obs = Observed::default();
        obs.netdevs.insert(ep.host_interface.clone(), dev);
        obs.routes32.insert(ep.ip, 7);
        obs.addresses.insert(net.pool.gateway);
        obs.netns_files.insert(c.name.clone(), true);
        for link in endpoint_progs::links(&ep.host_interface) {
            obs.bpf_links.insert(link, true);
        }
        obs.endpoints.insert(info.ip, info);
        obs.if_endpoints.insert(7, info);
        obs.networks.insert(net.id, network_info(net));
        obs
    }

    fn desired<'a>(
        nets: &'a BTreeMap<String, Network>,
        ctrs: &'a BTreeMap<String, Container>,
    ) -> Desired<'a> {
        Desired {
            networks: nets,
            containers: ctrs,
            fixed_links: BTreeSet::new(),
            ports: HashMap::new(),
            replace_programs: false,
        }
    }

    #[test]
    fn a_converged_kernel_needs_no_step() {
        let net = network();
        let c = container(&net);
        let obs = converged(&net, &c);
        let nets = BTreeMap::from([(net.name.clone(), net)]);
        let ctrs = BTreeMap::from([(c.name.clone(), c)]);
        assert_eq!(plan(&desired(&nets, &ctrs), &obs), Vec::new());
    }

    #[test]
    fn external_endpoints_are_never_recreated_but_collected() {
        let net = network();
        let mut c = container(&net);
        c.network_mode = NetworkMode::External("/var/run/docker/netns/x".into());
        let mut obs = converged(&net, &c);
        obs.netns_files.clear();
        let nets = BTreeMap::from([(net.name.clone(), net.clone())]);
        let ctrs = BTreeMap::from([(c.name.clone(), c.clone())]);
        // Joined, veth in place: like the agent's own (no namespace wanted).
        assert_eq!(plan(&desired(&nets, &ctrs), &obs), Vec::new());
        // Its veth died with the sandbox: collected, not recreated.
        let mut gone = obs.clone();
        gone.netdevs.clear();
        let steps = plan(&desired(&nets, &ctrs), &gone);
        assert_eq!(steps[0], Step::CollectExternal(c.name.clone()), "{steps:?}");
        assert!(!steps
            .iter()
            .any(|s| matches!(s, Step::CreateEndpoint { .. })));
        // Created, not joined: nothing to do, and a veth being joined is
        // not a leftover.
        c.network_mode = NetworkMode::External(String::new());
        let ctrs = BTreeMap::from([(c.name.clone(), c.clone())]);
        let mut bare = Observed::default();
        bare.addresses.insert(net.pool.gateway);
        bare.networks.insert(net.id, network_info(&net));
        bare.netdevs.insert(
            c.endpoints[0].host_interface.clone(),
            obs.netdevs[&c.endpoints[0].host_interface].clone(),
        );
        assert_eq!(plan(&desired(&nets, &ctrs), &bare), Vec::new());
    }

    #[test]
    fn attached_namespaces_are_repaired_never_recreated_and_collected_when_gone() {
        let net = network();
        let mut c = container(&net);
        c.network_mode = NetworkMode::Attached(crate::model::Attachment {
            source: "/run/netns/x".into(),
            pid: None,
            pid_start: None,
            ns_dev: 4,
            ns_ino: 4_026_532_000,
            owner: "cli".into(),
            runtime_holds_ports: false,
        });
        let obs = converged(&net, &c);
        let nets = BTreeMap::from([(net.name.clone(), net.clone())]);
        let ctrs = BTreeMap::from([(c.name.clone(), c.clone())]);
        // Its bind is the agent's: kept, not a stray mount.
        assert_eq!(plan(&desired(&nets, &ctrs), &obs), Vec::new());
        // A veth deleted behind the agent's back is re-created in it.
        let mut no_veth = obs.clone();
        no_veth.netdevs.clear();
        let steps = plan(&desired(&nets, &ctrs), &no_veth);
        assert!(
            matches!(&steps[0], Step::CreateEndpoint { container, .. } if *container == c.name),
            "{steps:?}"
        );
        // The namespace is gone (or the bind lost): collected, never a new
        // namespace of the agent's own.
        let mut gone = obs.clone();
        gone.attached_gone.insert(c.name.clone());
        let mut lost = obs;
        lost.netns_files.clear();
        for o in [gone, lost] {
            let steps = plan(&desired(&nets, &ctrs), &o);
            assert_eq!(steps, vec![Step::CollectAttached(c.name.clone())]);
        }
    }

    #[test]
    fn tampering_is_planned_back() {
        let net = network();
        let c = container(&net);
        let ep = c.endpoints[0].clone();
        let mut obs = converged(&net, &c);
        obs.routes32.clear();
        obs.endpoints.clear();
        obs.bpf_links.insert(
            (prog_names::FROM_CONTAINER.into(), ep.host_interface.clone()),
            false,
        );
        let nets = BTreeMap::from([(net.name.clone(), net)]);
        let ctrs = BTreeMap::from([(c.name.clone(), c)]);
        let steps = plan(&desired(&nets, &ctrs), &obs);
        assert!(matches!(steps[0], Step::UpsertEndpoint(i) if i.ip == ep.ip.octets()));
        assert_eq!(
            steps[1],
            Step::AddHostRoute {
                endpoint: ep.clone(),
                ifindex: 7
            }
        );
        assert_eq!(
            steps[2],
            Step::Attach {
                prog: prog_names::FROM_CONTAINER.into(),
                ifname: ep.host_interface.clone()
            }
        );
        assert_eq!(steps.len(), 3, "{steps:?}");
    }

    #[test]
    fn a_lost_veth_is_recreated_and_a_lost_namespace_takes_its_endpoints() {
        let net = network();
        let c = container(&net);
        let mut obs = converged(&net, &c);
        obs.netdevs.clear();
        let nets = BTreeMap::from([(net.name.clone(), net.clone())]);
        let ctrs = BTreeMap::from([(c.name.clone(), c.clone())]);
        let steps = plan(&desired(&nets, &ctrs), &obs);
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::CreateEndpoint { container, .. } if container == "c")));
        let mut obs = converged(&net, &c);
        obs.netns_files.clear();
        let steps = plan(&desired(&nets, &ctrs), &obs);
        assert_eq!(steps[0], Step::CreateNetns("c".into()));
        assert_eq!(steps[1], Step::DeleteVeth("dp0000000a".into()));
        assert!(matches!(steps[2], Step::CreateEndpoint { .. }));
    }

    #[test]
    fn only_the_agents_leftovers_are_collected() {
        let nets = BTreeMap::new();
        let ctrs = BTreeMap::new();
        let mut obs = Observed::default();
        obs.netns_files.insert("stray".into(), true);
        for (n, i) in [("dp0badbeef", 3), ("eth0", 4), ("dp0", 5)] {
            obs.netdevs.insert(
                n.into(),
                NetdevInfo {
                    index: i,
                    mac: [0; 6],
                    mtu: 1500,
                    is_virtual: true,
                    xdp_attached: 0,
                },
            );
        }
        obs.bpf_links.insert(
            (prog_names::FROM_CONTAINER.into(), "dp0badbeef".into()),
            true,
        );
        let steps = plan(&desired(&nets, &ctrs), &obs);
        assert_eq!(
            steps,
            vec![
                Step::Detach {
                    prog: prog_names::FROM_CONTAINER.into(),
                    ifname: "dp0badbeef".into()
                },
                Step::DeleteVeth("dp0badbeef".into()),
                Step::DeleteNetns("stray".into()),
            ]
        );
    }
}

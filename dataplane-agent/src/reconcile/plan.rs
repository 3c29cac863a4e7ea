//! The plan: the steps that take the kernel from what is observed to what
//! the desired state asks for. Pure (no kernel access), so it is tested
//! without a kernel.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::Ipv4Addr,
};

use dataplane_common::{prog_names, EndpointInfo, NetworkInfo, PortKey, PortTarget};

use super::observe::Observed;
use crate::{
    engine::{endpoint_info, is_endpoint_ifname, network_info},
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
        if !obs.addresses.contains(&n.pool.gateway) {
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
        let netns_lost = owns_netns(c) && obs.netns_files.get(&c.name) != Some(&true);
        if owns_netns(c) {
            want_netns.insert(c.name.clone());
            if netns_lost {
                steps.push(Step::CreateNetns(c.name.clone()));
            }
        }
        for ep in &c.endpoints {
            want_ips.insert(ep.ip.octets());
            want_veths.insert(ep.host_interface.clone());
            let link = (
                prog_names::FROM_CONTAINER.to_string(),
                ep.host_interface.clone(),
            );
            want_links.insert(link.clone());
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
            let net_id = want.networks.get(&ep.network).map_or(0, |n| n.id);
            let info = endpoint_info(ep, net_id, netdev);
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
            if want.replace_programs || obs.bpf_links.get(&link) != Some(&true) {
                steps.push(Step::Attach {
                    prog: link.0,
                    ifname: link.1,
                });
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
        .keys()
        .filter(|ip| !want_ips.contains(*ip))
        .copied()
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

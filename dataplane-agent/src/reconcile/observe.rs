//! What the kernel has now: interfaces, /32 routes and addresses of the
//! host namespace, namespace mounts in the run directory, pinned links and
//! the entries of the agent's maps. Read in a handful of dumps, so that a
//! pass that changes nothing stays cheap.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
    path::Path,
};

use anyhow::Result;
use dataplane_common::{EndpointInfo, NetworkInfo, PortKey, PortTarget};

use crate::{datapath::Datapath, kernel};

/// A snapshot of the kernel objects the agent may own.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Interfaces of the host namespace, by name.
    pub netdevs: HashMap<String, kernel::NetdevInfo>,
    /// /32 routes of the host's main table: destination -> output ifindex.
    pub routes32: HashMap<Ipv4Addr, u32>,
    /// IPv4 addresses of the host namespace.
    pub addresses: BTreeSet<Ipv4Addr>,
    /// Names under `<run-dir>/netns/`, and whether each is a namespace mount.
    pub netns_files: BTreeMap<String, bool>,
    /// Pinned bpf_links as (program, interface or `cgroup`), and whether each
    /// is still attached.
    pub bpf_links: HashMap<(String, String), bool>,
    pub endpoints: HashMap<[u8; 4], EndpointInfo>,
    pub if_endpoints: HashMap<u32, EndpointInfo>,
    pub networks: HashMap<u32, NetworkInfo>,
    pub ports: HashMap<PortKey, PortTarget>,
    /// Attached containers whose namespace is gone (filled in by the
    /// caller, which has the desired state: `engine::attached_gone`).
    pub attached_gone: BTreeSet<String>,
}

impl Observed {
    pub async fn read(host: &rtnetlink::Handle, dp: &Datapath, netns_dir: &Path) -> Result<Self> {
        let netdevs = kernel::netdevs(host).await?;
        let routes32 = kernel::host_routes32(host).await?;
        let addresses = kernel::host_addresses(host).await?.into_iter().collect();
        let mut netns_files = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(netns_dir) {
            for e in rd.flatten() {
                if let Some(name) = e.file_name().to_str() {
                    netns_files.insert(name.to_string(), kernel::is_netns_mount(&e.path()));
                }
            }
        }
        let bpf_links = dp
            .pinned_bpf_links()
            .into_iter()
            .map(|(p, i)| {
                let attached = dp.bpf_link_attached(&p, &i);
                ((p, i), attached)
            })
            .collect();
        Ok(Observed {
            netdevs,
            routes32,
            addresses,
            netns_files,
            bpf_links,
            endpoints: dp.endpoints(),
            if_endpoints: dp.if_endpoints(),
            networks: dp.networks(),
            ports: dp.port_entries(),
            attached_gone: BTreeSet::new(),
        })
    }
}

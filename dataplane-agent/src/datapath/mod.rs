//! The eBPF datapath as the agent sees it: loading the object with its maps
//! pinned under the agent's bpffs root, attaching programs with pinned TCX
//! links (so forwarding survives the agent), and keeping the maps in sync.
//!
//! Layout under the bpffs root:
//! - `maps/<MAP>`: every map, by name (see `dataplane_common::map_names`).
//! - `links/<program>@<ifname>`: one pinned link per attachment.
//!
//! Files: `mod.rs` (loading, map updates), `bpf_links.rs` (attaching
//! programs through pinned bpf_links), `gc.rs` (flow expiry), `syscall.rs`
//! (bpf() commands aya 0.14 lacks).

mod bpf_links;
mod gc;
mod gc6;
mod host_ifs;
mod ip6;
mod lan;
mod nat6;
mod overlay;
mod syscall;

pub use host_ifs::HostIfMap;
pub use ip6::{Ip6Maps, Ip6Want};
pub use overlay::{OverlayMaps, OverlayWant};

pub use gc::{monotonic_ns, Gc};
pub use gc6::Gc6;
pub use nat6::{Nat6Maps, Nat6Want};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};
use syscall::{map_batch, map_lookup_all, BPF_MAP_DELETE_BATCH, BPF_MAP_UPDATE_BATCH};

use anyhow::{anyhow, Context, Result};
use std::os::fd::{AsFd, AsRawFd, FromRawFd};

pub use aya::programs::XdpMode;

use aya::{
    maps::{Array, HashMap, IterableMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{
        links::{CgroupAttachMode, FdLink, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
        CgroupSockAddr, SchedClassifier, TcAttachType, Xdp,
    },
    Ebpf, EbpfLoader,
};
use dataplane_common::{
    map_names, prog_names, Config, CtEntry, DropReason, EndpointInfo, EndpointKey, EndpointStats,
    FlowKey, HostInfo, LinkKey, NatEntry, NetworkInfo, PortKey, PortTarget, SockKey, SockOrig,
    DROP_REASONS, EP_STATS_SLOTS, NAT_F_CLOSING, NAT_F_REPLIED,
};
use tracing::{debug, info, warn};

static OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dataplane-ebpf"));

/// The compiled eBPF object (ELF with BTF), for tools and tests.
pub fn object() -> &'static [u8] {
    OBJ
}

/// Masquerade entries idle for longer than this are removed (seconds).
pub const NAT_TIMEOUT_TCP: u64 = 3600;
pub const NAT_TIMEOUT_TCP_CLOSING: u64 = 10;
pub const NAT_TIMEOUT_UDP: u64 = 60;
pub const NAT_TIMEOUT_ICMP: u64 = 30;
/// Flows that never saw a reply (unanswered SYNs, UDP probes).
pub const NAT_TIMEOUT_UNREPLIED: u64 = 30;

pub struct Datapath {
    ebpf: Ebpf,
    root: PathBuf,
    endpoints: HashMap<MapData, EndpointKey, EndpointInfo>,
    if_endpoints: HashMap<MapData, u32, EndpointInfo>,
    networks: HashMap<MapData, u32, NetworkInfo>,
    config: Array<MapData, Config>,
    nat_out: HashMap<MapData, FlowKey, NatEntry>,
    nat_in: HashMap<MapData, FlowKey, NatEntry>,
    ep_stats: PerCpuHashMap<MapData, u32, EndpointStats>,
    ep_stats_ix: PerCpuArray<MapData, EndpointStats>,
    drops: PerCpuArray<MapData, u64>,
    ports: HashMap<MapData, PortKey, PortTarget>,
    ct: HashMap<MapData, FlowKey, CtEntry>,
    host_ips: HashMap<MapData, EndpointKey, u32>,
    host: Array<MapData, HostInfo>,
    links: HashMap<MapData, LinkKey, u32>,
    policy_ct: HashMap<MapData, FlowKey, u64>,
    sock_nat: HashMap<MapData, SockKey, SockOrig>,
    /// The IPv6 maps (dual stack).
    pub ip6: Ip6Maps,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &str,
) -> Result<T> {
    let m = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the object"))?;
    T::try_from(m).with_context(|| format!("map {name} has an unexpected type"))
}

impl Datapath {
    /// Load the programs; maps already pinned under `root` are reused, the
    /// others are created and pinned.
    pub fn load(root: &Path) -> Result<Datapath> {
        let maps_dir = root.join("maps");
        std::fs::create_dir_all(&maps_dir)?;
        std::fs::create_dir_all(root.join("links"))?;
        drop_incompatible_pins(&maps_dir)?;
        let mut loader = EbpfLoader::new();
        let mut paths = Vec::new();
        for name in map_names::ALL
            .iter()
            .copied()
            .chain(dataplane_common::overlay_map_names::ALL)
            .chain(dataplane_common::lan_map_names::ALL)
            .chain(dataplane_common::monitor_map_names::ALL)
            .chain(dataplane_common::frag_map_names::ALL)
            .chain(dataplane_common::host_if_map_names::ALL)
            .chain(dataplane_common::ip6_map_names::ALL)
            .chain(dataplane_common::nat6_map_names::ALL)
            .chain(["AYA_LOGS"])
        {
            paths.push((name, maps_dir.join(name)));
        }
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        // Records below this level are not even produced in the kernel.
        let verbose = std::env::var("DATAPLANE_LOG")
            .is_ok_and(|v| v.contains("debug") || v.contains("trace"));
        let level = if verbose {
            aya_log::Level::Debug
        } else {
            aya_log::Level::Warn
        } as u8;
        loader.override_global(aya_log::LEVEL, &level, false);
        let mut ebpf = loader.load(OBJ).context("loading the eBPF object")?;
        for name in [
            prog_names::FROM_CONTAINER,
            prog_names::TO_CONTAINER,
            prog_names::FROM_UPLINK,
            prog_names::TC_UPLINK,
            prog_names::FROM_OVERLAY,
        ] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading program {name} (verifier)"))?;
        }
        {
            let name = prog_names::XDP_UPLINK;
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading program {name} (verifier)"))?;
        }
        for name in [
            prog_names::SOCK_CONNECT4,
            prog_names::SOCK_SENDMSG4,
            prog_names::SOCK_RECVMSG4,
            dataplane_common::nat6_prog_names::SOCK_CONNECT6,
            dataplane_common::nat6_prog_names::SOCK_SENDMSG6,
            dataplane_common::nat6_prog_names::SOCK_RECVMSG6,
        ] {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading program {name} (verifier)"))?;
        }
        ip6::load_calls(&mut ebpf)?;
        Ok(Datapath {
            ip6: Ip6Maps::take(&mut ebpf)?,
            ports: take(&mut ebpf, map_names::PORTS)?,
            ct: take(&mut ebpf, map_names::CT)?,
            host_ips: take(&mut ebpf, map_names::HOST_IPS)?,
            host: take(&mut ebpf, map_names::HOST)?,
            links: take(&mut ebpf, map_names::LINKS)?,
            policy_ct: take(&mut ebpf, map_names::POLICY_CT)?,
            sock_nat: take(&mut ebpf, map_names::SOCK_NAT)?,
            endpoints: take(&mut ebpf, map_names::ENDPOINTS)?,
            if_endpoints: take(&mut ebpf, map_names::IF_ENDPOINTS)?,
            networks: take(&mut ebpf, map_names::NETWORKS)?,
            config: take(&mut ebpf, map_names::CONFIG)?,
            nat_out: take(&mut ebpf, map_names::NAT_OUT)?,
            nat_in: take(&mut ebpf, map_names::NAT_IN)?,
            ep_stats: take(&mut ebpf, map_names::EP_STATS)?,
            ep_stats_ix: take(&mut ebpf, map_names::EP_STATS_IX)?,
            drops: take(&mut ebpf, map_names::DROPS)?,
            root: root.to_path_buf(),
            ebpf,
        })
    }

    /// Forward log records of the programs (aya-log) into `tracing`.
    pub fn spawn_logger(&mut self) {
        match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Err(e) => warn!("no eBPF log forwarding: {e}"),
            Ok(logger) => {
                #[expect(
                    deprecated,
                    reason = "aya-log 0.3 has no non-deprecated way to get the logger's fd"
                )]
                let fd =
                    tokio::io::unix::AsyncFd::with_interest(logger, tokio::io::Interest::READABLE);
                match fd {
                    Err(e) => warn!("no eBPF log forwarding: {e}"),
                    Ok(mut fd) => {
                        tokio::spawn(async move {
                            loop {
                                let Ok(mut guard) = fd.readable_mut().await else {
                                    return;
                                };
                                guard.get_inner_mut().flush();
                                guard.clear_ready();
                            }
                        });
                    }
                }
            }
        }
    }

    pub fn set_config(&mut self, cfg: Config) -> Result<()> {
        self.config.set(0, cfg, 0)?;
        Ok(())
    }

    pub fn upsert_network(&mut self, id: u32, info: NetworkInfo) -> Result<()> {
        self.networks.insert(id, info, 0)?;
        Ok(())
    }

    pub fn remove_network(&mut self, id: u32) {
        let _ = self.networks.remove(&id);
    }

    pub fn network_ids(&self) -> Vec<u32> {
        self.networks.keys().filter_map(Result::ok).collect()
    }

    pub fn upsert_endpoint(&mut self, info: EndpointInfo) -> Result<()> {
        if self.ep_stats.get(&info.ifindex, 0).is_err() {
            // A new endpoint: its counters start at zero, also in the array
            // slot an earlier interface with this ifindex may have used.
            let zero = || -> Result<PerCpuValues<EndpointStats>> {
                Ok(PerCpuValues::try_from(vec![
                    EndpointStats::default();
                    aya::util::nr_cpus()
                        .map_err(|(_, e)| e)?
                ])?)
            };
            if info.ifindex < EP_STATS_SLOTS {
                self.ep_stats_ix.set(info.ifindex, zero()?, 0)?;
            }
            self.ep_stats.insert(info.ifindex, zero()?, 0)?;
        }
        self.if_endpoints.insert(info.ifindex, info, 0)?;
        self.endpoints
            .insert(EndpointKey { ip: info.ip }, info, 0)?;
        Ok(())
    }

    pub fn remove_endpoint(&mut self, ip: [u8; 4]) {
        if let Ok(info) = self.endpoints.get(&EndpointKey { ip }, 0) {
            let _ = self.if_endpoints.remove(&info.ifindex);
            let _ = self.ep_stats.remove(&info.ifindex);
        }
        let _ = self.endpoints.remove(&EndpointKey { ip });
        // Flows of the endpoint are gone too.
        self.purge_nat(ip);
    }

    /// The `DP_ENDPOINTS` entries, by container IPv4.
    pub fn endpoints(&self) -> std::collections::HashMap<[u8; 4], EndpointInfo> {
        self.endpoints
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k.ip, v))
            .collect()
    }

    /// The `DP_IF_ENDPOINTS` entries, by host-side ifindex.
    pub fn if_endpoints(&self) -> std::collections::HashMap<u32, EndpointInfo> {
        self.if_endpoints.iter().filter_map(Result::ok).collect()
    }

    /// The `DP_NETWORKS` entries.
    pub fn networks(&self) -> std::collections::HashMap<u32, NetworkInfo> {
        self.networks.iter().filter_map(Result::ok).collect()
    }

    /// The `DP_PORTS` entries.
    pub fn port_entries(&self) -> std::collections::HashMap<PortKey, PortTarget> {
        match map_lookup_all::<PortKey, PortTarget>(self.ports.map(), 4096) {
            Ok(v) => v.into_iter().collect(),
            Err(e) => {
                debug!("batch lookup of DP_PORTS failed ({e:#}), walking it");
                self.ports.iter().filter_map(Result::ok).collect()
            }
        }
    }

    pub fn endpoint_ips(&self) -> Vec<[u8; 4]> {
        self.endpoints
            .keys()
            .filter_map(Result::ok)
            .map(|k| k.ip)
            .collect()
    }

    pub fn if_endpoint_indexes(&self) -> Vec<u32> {
        self.if_endpoints.keys().filter_map(Result::ok).collect()
    }

    pub fn remove_if_endpoint(&mut self, ifindex: u32) {
        let _ = self.if_endpoints.remove(&ifindex);
        let _ = self.ep_stats.remove(&ifindex);
    }

    /// Counters of one endpoint, summed over CPUs.
    pub fn endpoint_stats(&self, ifindex: u32) -> Option<EndpointStats> {
        let per_cpu = self.ep_stats.get(&ifindex, 0).ok()?;
        let per_cpu = if ifindex < EP_STATS_SLOTS {
            self.ep_stats_ix.get(&ifindex, 0).ok()?
        } else {
            per_cpu
        };
        let mut sum = EndpointStats::default();
        for s in per_cpu.iter() {
            sum.tx_packets += s.tx_packets;
            sum.tx_bytes += s.tx_bytes;
            sum.rx_packets += s.rx_packets;
            sum.rx_bytes += s.rx_bytes;
            for i in 0..DROP_REASONS {
                sum.drops[i] += s.drops[i];
            }
        }
        Some(sum)
    }

    /// Global drop counters by reason name.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in DropReason::ALL {
            let v: u64 = self.drops.get(&(r as u32), 0).map_or(0, |v| v.iter().sum());
            out.insert(r.name().to_string(), v);
        }
        out
    }

    /// Remove every masquerade entry of the container address `ip`.
    fn purge_nat(&mut self, ip: [u8; 4]) {
        let dead_in: Vec<FlowKey> = self
            .nat_in
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.addr == ip)
            .map(|(k, _)| k)
            .collect();
        for k in dead_in {
            let _ = self.nat_in.remove(&k);
        }
        let dead_out: Vec<FlowKey> = self
            .nat_out
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.src == ip)
            .collect();
        for k in dead_out {
            let _ = self.nat_out.remove(&k);
        }
    }

    pub fn set_host(&mut self, info: HostInfo) -> Result<()> {
        self.host.set(0, info, 0)?;
        Ok(())
    }

    /// Make DP_HOST_IPS exactly `ips`.
    pub fn sync_host_ips(&mut self, ips: &[[u8; 4]]) -> Result<()> {
        let want: std::collections::BTreeSet<[u8; 4]> = ips.iter().copied().collect();
        let have: Vec<EndpointKey> = self.host_ips.keys().filter_map(Result::ok).collect();
        for k in &have {
            if !want.contains(&k.ip) {
                let _ = self.host_ips.remove(k);
            }
        }
        for ip in want {
            if !have.iter().any(|k| k.ip == ip) {
                self.host_ips.insert(EndpointKey { ip }, 1, 0)?;
            }
        }
        Ok(())
    }

    /// Publish ports in one batched map update.
    pub fn add_ports(&mut self, entries: &[(PortKey, PortTarget)]) -> Result<()> {
        let keys: Vec<PortKey> = entries.iter().map(|(k, _)| *k).collect();
        let vals: Vec<PortTarget> = entries.iter().map(|(_, v)| *v).collect();
        map_batch(self.ports.map(), BPF_MAP_UPDATE_BATCH, &keys, Some(&vals))
            .context("publishing ports (batched map update)")
    }

    /// Unpublish ports in one batched map delete.
    pub fn remove_ports(&mut self, keys: &[PortKey]) -> Result<()> {
        // Missing keys make the batch stop early; delete what exists.
        let present: Vec<PortKey> = keys
            .iter()
            .copied()
            .filter(|k| self.ports.get(k, 0).is_ok())
            .collect();
        map_batch::<PortKey, PortTarget>(self.ports.map(), BPF_MAP_DELETE_BATCH, &present, None)
            .context("unpublishing ports (batched map delete)")
    }

    pub fn port_keys(&self) -> Vec<PortKey> {
        self.ports.keys().filter_map(Result::ok).collect()
    }

    /// Make DP_LINKS exactly `want`; connections of removed links are cut.
    pub fn sync_link_policy(&mut self, want: &std::collections::BTreeSet<LinkKey>) -> Result<()> {
        let have: Vec<LinkKey> = self.links.keys().filter_map(Result::ok).collect();
        for k in &have {
            if !want.contains(k) {
                let _ = self.links.remove(k);
                // Replies of connections the link allowed are no longer allowed.
                let dead: Vec<FlowKey> = self
                    .policy_ct
                    .keys()
                    .filter_map(Result::ok)
                    .filter(|f| {
                        (f.src == k.dst && f.dst == k.src) || (f.src == k.src && f.dst == k.dst)
                    })
                    .collect();
                for f in dead {
                    let _ = self.policy_ct.remove(&f);
                }
            }
        }
        for k in want {
            if !have.contains(k) {
                self.links.insert(*k, 1, 0)?;
            }
        }
        Ok(())
    }

    /// Forget translated flows to or from `ip` (a removed container).
    pub fn purge_ct(&mut self, ip: [u8; 4]) {
        let dead: Vec<FlowKey> = self
            .ct
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| k.src == ip || k.dst == ip || v.src == ip || v.dst == ip)
            .map(|(k, _)| k)
            .collect();
        for k in dead {
            let _ = self.ct.remove(&k);
        }
    }

    pub fn sock_nat_len(&self) -> usize {
        self.sock_nat.keys().count()
    }

    pub fn nat_flows(&self) -> usize {
        self.nat_out.keys().count()
    }
}

/// A pinned map whose key, value or size differs from the object's
/// definition (an agent upgrade changed it) would be reused silently by the
/// loader: remove such pins so that the map is created anew.
fn drop_incompatible_pins(maps_dir: &Path) -> Result<()> {
    let obj = aya_obj::Object::parse(OBJ).context("parsing the eBPF object")?;
    for (name, def) in &obj.maps {
        let path = maps_dir.join(name);
        if !path.exists() {
            continue;
        }
        let same = aya::maps::MapInfo::from_pin(&path).is_ok_and(|i| {
            i.key_size() == def.key_size()
                && i.value_size() == def.value_size()
                && i.max_entries() == def.max_entries()
        });
        if !same {
            warn!(map = %name, "pinned map has another layout (agent upgrade?): recreating it, its entries are lost");
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale pin {}", path.display()))?;
        }
    }
    Ok(())
}

/// Remove what the agent pinned under the root: its links (which detaches
/// the programs) and its maps, then the directories if nothing else is there.
/// Nothing else under the root is touched.
pub fn remove_pins(root: &Path) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(root.join("links")) {
        for e in rd.flatten() {
            if let Ok(p) = PinnedLink::from_pin(e.path()) {
                let _ = p.unpin();
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut ours: Vec<&str> = map_names::ALL.to_vec();
    ours.extend(dataplane_common::overlay_map_names::ALL);
    ours.extend(dataplane_common::lan_map_names::ALL);
    ours.extend(dataplane_common::monitor_map_names::ALL);
    ours.extend(dataplane_common::frag_map_names::ALL);
    ours.extend(dataplane_common::host_if_map_names::ALL);
    ours.extend(dataplane_common::ip6_map_names::ALL);
    ours.extend(dataplane_common::nat6_map_names::ALL);
    ours.push("AYA_LOGS");
    for name in ours {
        let _ = std::fs::remove_file(root.join("maps").join(name));
    }
    for dir in [root.join("links"), root.join("maps"), root.to_path_buf()] {
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                warn!("leaving {}: {e}", dir.display());
            }
        }
    }
    info!(root = %root.display(), "removed pinned maps and links");
    Ok(())
}

/// The bpffs root must be a directory of its own, never a bpffs mount's root
/// shared with other software (e.g. /sys/fs/bpf itself).
pub fn check_bpffs_root(root: &Path) -> Result<()> {
    let norm: PathBuf = root.components().collect();
    if norm == Path::new("/sys/fs/bpf") || norm == Path::new("/") {
        anyhow::bail!(
            "--bpffs {} is shared with other software; use a directory of its own such as /sys/fs/bpf/dataplane",
            root.display()
        );
    }
    Ok(())
}

//! The engine: the agent's core, independent of its front ends.
//!
//! Every mutation runs under one lock and follows the same order: validate
//! (nothing touched yet), change the kernel (undone on any error), then commit
//! the desired state to the store in one transaction (kernel undone if that
//! fails). A rejected request therefore changes nothing.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{anyhow, Context, Result};
use dataplane_common::{
    prog_names, Config, DropReason, EndpointInfo, HostInfo, LinkKey, NetworkInfo, PortKey,
    PortTarget, NET_F_INTERNAL, NET_F_NO_ICC,
};
use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::{
    datapath::{self, Datapath},
    ipam::{self, Pool},
    kernel::{self, Uplink},
    model::*,
    ports::{self, HostPorts, PortMapping, Proto, Reservations},
    store::{Change, Store},
};

/// Agent settings (the daemon's flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub bpffs: PathBuf,
    pub uplink: Option<String>,
    pub bip: String,
    pub nat_port_range: Option<(u16, u16)>,
    /// Range random published host ports come from (default: the host's
    /// ephemeral port range, as Docker).
    pub port_range: Option<(u16, u16)>,
    /// cgroup v2 directory the socket programs are attached to (default:
    /// the system's cgroup2 mount).
    pub cgroup: Option<PathBuf>,
    pub xdp_mode: XdpModeChoice,
}

/// How the XDP program is attached to the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpModeChoice {
    /// Native on NICs; generic on virtual devices. Native XDP on a veth makes
    /// its peer drop TSO/GSO (veth_fix_features) and copies every packet into
    /// an XDP buffer, which costs more than it saves; generic XDP keeps the
    /// peer's offloads.
    Auto,
    Native,
    Generic,
}

/// An error for the API's caller: what was wrong, with the matching HTTP status.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Internal(anyhow::Error),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Conflict(m) => {
                f.write_str(m)
            }
            ApiError::Internal(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl From<ipam::IpamError> for ApiError {
    fn from(e: ipam::IpamError) -> Self {
        match e {
            ipam::IpamError::Overlap { .. } | ipam::IpamError::IpInUse(_) => {
                ApiError::Conflict(e.to_string())
            }
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

pub struct Engine {
    inner: Mutex<Inner>,
    cfg: AgentConfig,
}

struct Inner {
    networks: BTreeMap<String, Network>,
    containers: BTreeMap<String, Container>,
    store: Store,
    host: Handle,
    dp: Datapath,
    uplink: Option<Uplink>,
    nat_range: (u16, u16),
    /// Runtime ifindex of each host-side veth (not persisted: it changes when
    /// an interface is recreated).
    ifindexes: HashMap<String, u32>,
    /// Sockets holding the published host ports.
    reservations: Reservations,
    port_range: (u16, u16),
}

/// Pools user-defined networks get a subnet from, in order (as Docker's defaults).
fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let a = (18..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).unwrap());
    let c = (0..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).unwrap());
    a.chain(c)
}

/// Masquerade ports: above the host's ephemeral range when there is room.
pub fn default_nat_range((lo, hi): (u16, u16)) -> (u16, u16) {
    if hi <= 65535 - 1024 {
        (hi + 1, 65535)
    } else if lo >= 2048 {
        (1024, lo - 1)
    } else {
        (61000, 65535)
    }
}

fn is_bpffs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
        .unwrap_or(false)
}

fn mount_bpf_at(p: &Path) -> Result<()> {
    nix::mount::mount(
        Some("bpf"),
        p,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting bpffs at {}", p.display()))
}

/// Make sure `path` is a directory on a bpffs: mount the system's bpffs at
/// /sys/fs/bpf when that is missing (as systemd does), or one at `path`.
fn mount_bpffs(path: &Path) -> Result<()> {
    let sys = Path::new("/sys/fs/bpf");
    if std::fs::create_dir_all(path).is_err() && path.starts_with(sys) && !is_bpffs(sys) {
        mount_bpf_at(sys)?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    if !is_bpffs(path) {
        mount_bpf_at(path)?;
    }
    Ok(())
}

impl Engine {
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    pub fn host_netns_path(&self) -> PathBuf {
        self.cfg.run_dir.join("host.netns")
    }

    fn netns_path(&self, name: &str) -> PathBuf {
        kernel::netns_path(&self.cfg.run_dir, name)
    }

    /// Start: open the store, load (or re-adopt) the datapath and reconcile
    /// the kernel with the desired state.
    pub async fn start(cfg: AgentConfig) -> Result<Arc<Engine>> {
        datapath::check_bpffs_root(&cfg.bpffs)?;
        std::fs::create_dir_all(&cfg.state_dir)?;
        std::fs::create_dir_all(cfg.run_dir.join("netns"))?;
        mount_bpffs(&cfg.bpffs)?;
        let store = Store::open(&cfg.state_dir.join("state.redb"))?;
        let (networks, containers) = store.load()?;
        let host = kernel::host_handle()?;
        kernel::bind_own_netns(&cfg.run_dir.join("host.netns"))?;
        let mut dp = Datapath::load(&cfg.bpffs)?;
        dp.spawn_logger();
        let uplink = kernel::find_uplink(&host, cfg.uplink.as_deref()).await?;
        let nat_range = cfg
            .nat_port_range
            .unwrap_or_else(|| default_nat_range(kernel::local_port_range()));
        let port_range = cfg.port_range.unwrap_or_else(kernel::local_port_range);
        if port_range.0 <= nat_range.1 && nat_range.0 <= port_range.1 {
            anyhow::bail!(
                "the published port range {}-{} overlaps the masquerade port range {}-{}",
                port_range.0,
                port_range.1,
                nat_range.0,
                nat_range.1
            );
        }
        let engine = Arc::new(Engine {
            inner: Mutex::new(Inner {
                networks,
                containers,
                store,
                host,
                dp,
                uplink,
                nat_range,
                ifindexes: HashMap::new(),
                reservations: Reservations::default(),
                port_range,
            }),
            cfg,
        });
        engine.bootstrap().await?;
        engine.reconcile().await?;
        Ok(engine)
    }

    /// Create the default network on first start.
    async fn bootstrap(&self) -> Result<()> {
        let exists = self
            .inner
            .lock()
            .await
            .networks
            .contains_key(DEFAULT_NETWORK);
        if exists {
            return Ok(());
        }
        let (gw, subnet) = parse_bip(&self.cfg.bip)?;
        self.create_network(NetworkCreate {
            name: DEFAULT_NETWORK.into(),
            subnet: Some(subnet.to_string()),
            gateway: Some(gw.to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("creating the default network: {e}"))?;
        let mut g = self.inner.lock().await;
        if let Some(n) = g.networks.get_mut(DEFAULT_NETWORK) {
            n.builtin = true;
            let n = n.clone();
            g.store.apply(Change {
                put_networks: vec![&n],
                ..Default::default()
            })?;
        }
        Ok(())
    }

    /// Make the kernel match the desired state: recreate what is missing,
    /// re-adopt what is pinned, remove what is stale.
    pub async fn reconcile(&self) -> Result<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let cfg = datapath_config(g);
        g.dp.set_config(cfg)?;
        g.dp.set_host(HostInfo {
            netns_cookie: kernel::netns_cookie()?,
        })?;
        refresh_host_ips(g).await?;
        let mut want_links: BTreeSet<(String, String)> = BTreeSet::new();
        match self.cfg.cgroup.clone().or_else(kernel::cgroup2_mount) {
            Some(cg) => match g.dp.attach_cgroup(&cg) {
                Ok(()) => {
                    for p in [
                        prog_names::SOCK_CONNECT4,
                        prog_names::SOCK_SENDMSG4,
                        prog_names::SOCK_RECVMSG4,
                    ] {
                        want_links.insert((p.into(), "cgroup".into()));
                    }
                }
                Err(e) => {
                    warn!("published ports will not be reachable from the host itself: {e:#}")
                }
            },
            None => warn!(
                "no cgroup2 mount: published ports will not be reachable from the host itself"
            ),
        }
        if let Some(u) = &g.uplink {
            g.dp.attach(prog_names::FROM_UPLINK, &u.name)?;
            let mode = match (self.cfg.xdp_mode, u.is_virtual) {
                (XdpModeChoice::Native, _) | (XdpModeChoice::Auto, false) => {
                    datapath::XdpMode::Default
                }
                (XdpModeChoice::Generic, _) | (XdpModeChoice::Auto, true) => datapath::XdpMode::Skb,
            };
            g.dp.attach_xdp(&u.name, mode)?;
            want_links.insert((prog_names::FROM_UPLINK.into(), u.name.clone()));
            want_links.insert((prog_names::XDP_UPLINK.into(), u.name.clone()));
            info!(uplink = %u.name, ip = ?u.ip, "uplink");
        } else {
            warn!("no uplink: containers have no outbound path");
        }
        let nets: Vec<Network> = g.networks.values().cloned().collect();
        let mut want_nets = BTreeSet::new();
        for n in &nets {
            kernel::add_gateway(&g.host, n.pool.gateway).await?;
            g.dp.upsert_network(n.id, network_info(n))?;
            want_nets.insert(n.id);
        }
        for id in g.dp.network_ids() {
            if !want_nets.contains(&id) {
                g.dp.remove_network(id);
            }
        }
        let containers: Vec<Container> = g.containers.values().cloned().collect();
        let mut want_ips = BTreeSet::new();
        let mut want_ifs = BTreeSet::new();
        for c in &containers {
            let ns = self.netns_path(&c.name);
            if matches!(c.mode, NetMode::Bridge | NetMode::None) && !kernel::is_netns_mount(&ns) {
                info!(container = %c.name, "recreating network namespace");
                kernel::create_netns(&ns)?;
                let h = kernel::handle_in_netns(&ns)?;
                kernel::netns_lo_up(&h).await?;
            }
            for ep in &c.endpoints {
                let net_id = g.networks.get(&ep.network).map(|n| n.id).unwrap_or(0);
                let link = match kernel::link_by_name(&g.host, &ep.host_ifname).await? {
                    Some(l) => l,
                    None => {
                        info!(container = %c.name, ifname = %ep.ifname, "recreating endpoint");
                        kernel::create_endpoint(&g.host, &ns, ep).await?
                    }
                };
                // Maps first: the program drops what it does not know.
                g.dp.upsert_endpoint(endpoint_info(ep, net_id, &link))?;
                crate::endpoint_progs::attach(&mut g.dp, &ep.host_ifname)?;
                g.ifindexes.insert(ep.host_ifname.clone(), link.index);
                want_ips.insert(ep.ip.octets());
                want_ifs.insert(link.index);
                want_links.extend(crate::endpoint_progs::links(&ep.host_ifname));
            }
        }
        for ip in g.dp.endpoint_ips() {
            if !want_ips.contains(&ip) {
                g.dp.remove_endpoint(ip);
                g.dp.purge_ct(ip);
            }
        }
        // Published ports: hold the host ports again, and make the map match.
        let mut want_ports = Vec::new();
        for c in &containers {
            let mut lost = BTreeSet::new();
            for m in &c.ports {
                if !g.reservations.is_held(m.host_ip, m.host_port, m.proto) {
                    if let Err(e) = g.reservations.reserve(m.host_ip, m.host_port, m.proto) {
                        // A host process took it while the agent was down:
                        // do not steal its traffic.
                        warn!(container = %c.name, "not publishing {}: {e}", m.describe());
                        lost.insert(*m);
                    }
                }
            }
            want_ports.extend(
                port_entries(c)
                    .into_iter()
                    .zip(&c.ports)
                    .filter(|(_, m)| !lost.contains(*m))
                    .map(|(e, _)| e),
            );
        }
        let want_keys: BTreeSet<PortKey> = want_ports.iter().map(|(k, _)| *k).collect();
        let stale: Vec<PortKey> =
            g.dp.port_keys()
                .into_iter()
                .filter(|k| !want_keys.contains(k))
                .collect();
        g.dp.remove_ports(&stale)?;
        g.dp.add_ports(&want_ports)?;
        let links = link_keys(&g.containers, &g.networks);
        g.dp.sync_links(&links)?;
        for idx in g.dp.if_endpoint_indexes() {
            if !want_ifs.contains(&idx) {
                g.dp.remove_if_endpoint(idx);
            }
        }
        for (p, i) in g.dp.pinned_links() {
            if !want_links.contains(&(p.clone(), i.clone())) {
                info!(prog = %p, ifname = %i, "removing stale link");
                g.dp.detach(&p, &i);
            }
        }
        // Orphaned host-side veths (a crash between kernel change and commit).
        let wanted: BTreeSet<String> = containers
            .iter()
            .flat_map(|c| c.endpoints.iter().map(|e| e.host_ifname.clone()))
            .collect();
        for (_, name) in kernel::link_names(&g.host).await? {
            if is_endpoint_ifname(&name) && !wanted.contains(&name) {
                info!(ifname = %name, "removing orphaned veth");
                kernel::delete_link(&g.host, &name).await?;
            }
        }
        Ok(())
    }

    /// Remove every kernel object the agent made (namespaces, veths, gateway
    /// device, pinned maps and links). Desired state is kept unless `purge`.
    pub async fn cleanup(cfg: &AgentConfig, purge: bool) -> Result<()> {
        datapath::check_bpffs_root(&cfg.bpffs)?;
        let host = kernel::host_handle()?;
        let store_path = cfg.state_dir.join("state.redb");
        if store_path.exists() {
            let store = Store::open(&store_path)?;
            let (_, containers) = store.load()?;
            drop(store);
            for c in containers.values() {
                for ep in &c.endpoints {
                    kernel::delete_link(&host, &ep.host_ifname).await?;
                }
            }
        }
        for (_, name) in kernel::link_names(&host).await? {
            if is_endpoint_ifname(&name) {
                kernel::delete_link(&host, &name).await?;
            }
        }
        if let Ok(rd) = std::fs::read_dir(cfg.run_dir.join("netns")) {
            for e in rd.flatten() {
                kernel::delete_netns(&e.path())?;
            }
        }
        kernel::delete_netns(&cfg.run_dir.join("host.netns"))?;
        kernel::delete_gateway_dev(&host).await?;
        // A bpffs the agent mounted at its root goes too (unmounting a
        // directory that is not a mount point fails harmlessly).
        let mounted_here = cfg
            .bpffs
            .parent()
            .is_some_and(|p| is_bpffs(&cfg.bpffs) && !is_bpffs(p));
        datapath::remove_pins(&cfg.bpffs)?;
        if mounted_here && nix::mount::umount2(&cfg.bpffs, nix::mount::MntFlags::MNT_DETACH).is_ok()
        {
            let _ = std::fs::remove_dir(&cfg.bpffs);
        }
        if purge {
            let _ = std::fs::remove_file(&store_path);
        }
        let _ = std::fs::remove_file(cfg.run_dir.join("dataplane.sock"));
        Ok(())
    }

    // ---------------------------------------------------------------- networks

    pub async fn create_network(&self, req: NetworkCreate) -> ApiResult<NetworkView> {
        ipam::validate_name("network", &req.name).map_err(bad)?;
        if matches!(req.name.as_str(), "host" | "none") || req.name.starts_with("container:") {
            return Err(bad(format!("network name {:?} is reserved", req.name)));
        }
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(bad(format!(
                "unsupported driver {driver:?} (supported: bridge)"
            )));
        }
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        ipam::validate_mtu(mtu).map_err(bad)?;
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
            return Err(ApiError::Conflict(format!(
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
        let res = g.dp.upsert_network(id, network_info(&net)).and_then(|_| {
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
        info!(network = %net.name, subnet = %net.pool.subnet, "network created");
        g.networks.insert(net.name.clone(), net.clone());
        Ok(self.network_view(g, &net))
    }

    pub async fn remove_network(&self, name: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let net = g
            .networks
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("network {name} not found")))?;
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
            return Err(ApiError::Conflict(format!(
                "network {name} has active endpoints (containers: {})",
                users.join(", ")
            )));
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
        info!(network = %name, "network removed");
        Ok(())
    }

    pub async fn list_networks(&self) -> Vec<NetworkView> {
        let g = self.inner.lock().await;
        g.networks
            .values()
            .map(|n| self.network_view(&g, n))
            .collect()
    }

    pub async fn inspect_network(&self, name: &str) -> ApiResult<NetworkView> {
        let g = self.inner.lock().await;
        let n = g
            .networks
            .get(name)
            .ok_or_else(|| ApiError::NotFound(format!("network {name} not found")))?;
        Ok(self.network_view(&g, n))
    }

    fn network_view(&self, g: &Inner, n: &Network) -> NetworkView {
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
                    .get(&e.host_ifname)
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

    // -------------------------------------------------------------- containers

    pub async fn create_container(&self, req: ContainerCreate) -> ApiResult<ContainerView> {
        ipam::validate_name("container", &req.name).map_err(bad)?;
        if let Some(h) = &req.hostname {
            validate_hostname(h).map_err(bad)?;
        }
        let (mode, net_name) = NetMode::parse(req.network.as_deref().unwrap_or(DEFAULT_NETWORK));
        let ip = req.ip.as_deref().map(ipam::parse_ip).transpose()?;
        if ip.is_some() && mode != NetMode::Bridge {
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
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(bad)?;
        if (!specs.is_empty() || (req.publish_all && !expose.is_empty())) && mode != NetMode::Bridge
        {
            return Err(bad(format!(
                "cannot publish ports with network mode {}",
                mode.describe()
            )));
        }
        let links = req
            .links
            .iter()
            .map(|l| parse_link(l))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(bad)?;

        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if g.containers.contains_key(&req.name) {
            return Err(ApiError::Conflict(format!(
                "container {} already exists",
                req.name
            )));
        }
        if let NetMode::Container(target) = &mode {
            let t = g
                .containers
                .get(target)
                .ok_or_else(|| ApiError::NotFound(format!("container {target} not found")))?;
            if let NetMode::Container(_) = t.mode {
                return Err(bad(format!(
                    "container {target} itself shares another container's namespace; join that one"
                )));
            }
        }
        let net = match &net_name {
            Some(n) => Some(
                g.networks
                    .get(n)
                    .cloned()
                    .ok_or_else(|| ApiError::NotFound(format!("network {n} not found")))?,
            ),
            None => None,
        };
        for l in &links {
            let t = g.containers.get(&l.name).ok_or_else(|| {
                ApiError::NotFound(format!("--link: container {} not found", l.name))
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
        let mut c = Container {
            id: random_id(),
            name: req.name.clone(),
            mode: mode.clone(),
            hostname: req.hostname.clone(),
            endpoints: Vec::new(),
            ports: Vec::new(),
            expose: expose.iter().copied().collect(),
            links,
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
            let (ep, n2) = self.plan_endpoint(g, net, &c, ip)?;
            c.endpoints.push(ep);
            net_after = Some(n2);
        }
        // Host ports are reserved (bound) here: the last check that can fail
        // on bad input. Released again if anything below fails.
        let mut wanted: Vec<ports::PortSpec> = specs;
        if req.publish_all {
            for e in &expose {
                wanted.push(ports::PortSpec {
                    host_ip: None,
                    proto: e.proto,
                    container_ports: vec![e.port],
                    host_ports: HostPorts::Random,
                });
            }
        }
        c.ports = self.reserve_ports(g, &wanted).await?;

        // Kernel.
        let ns = self.netns_path(&c.name);
        if matches!(mode, NetMode::Bridge | NetMode::None) {
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
        let links = link_keys(&g.containers, &g.networks);
        after_commit("sync_links", g.dp.sync_links(&links));
        info!(container = %c.name, mode = %mode.describe(), ports = c.ports.len(), "container created");
        Ok(self.container_view(g, &c))
    }

    /// Choose the address, interface names and MAC of a new endpoint of `c` on
    /// `net`; returns it with the network's updated IPAM cursor.
    fn plan_endpoint(
        &self,
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
        let taken: BTreeSet<&str> = c.endpoints.iter().map(|e| e.ifname.as_str()).collect();
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !taken.contains(n.as_str()))
            .unwrap();
        let host_names: BTreeSet<&str> = g
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| e.host_ifname.as_str()))
            .collect();
        let host_ifname = loop {
            let n = format!("dp{:08x}", rand::random::<u32>());
            if !host_names.contains(n.as_str()) {
                break n;
            }
        };
        let default_route = !net.internal && !c.endpoints.iter().any(|e| e.default_route);
        let ep = Endpoint {
            network: net.name.clone(),
            ifname,
            host_ifname,
            ip,
            prefix_len: net.pool.subnet.prefix_len(),
            mac: mac_for_ip(ip),
            gateway: net.pool.gateway,
            mtu: net.mtu,
            default_route,
        };
        let mut n2 = net.clone();
        n2.last_ip = Some(ip);
        Ok((ep, n2))
    }

    async fn plumb_endpoint(&self, g: &mut Inner, ns: &Path, ep: &Endpoint) -> Result<()> {
        let net_id = g
            .networks
            .get(&ep.network)
            .map(|n| n.id)
            .ok_or_else(|| anyhow!("network {} vanished", ep.network))?;
        let link = kernel::create_endpoint(&g.host, ns, ep).await?;
        g.dp.upsert_endpoint(endpoint_info(ep, net_id, &link))?;
        crate::endpoint_progs::attach(&mut g.dp, &ep.host_ifname)?;
        g.ifindexes.insert(ep.host_ifname.clone(), link.index);
        Ok(())
    }

    async fn unplumb_endpoint(&self, g: &mut Inner, ep: &Endpoint) {
        crate::endpoint_progs::detach(&mut g.dp, &ep.host_ifname);
        g.dp.remove_endpoint(ep.ip.octets());
        if let Some(idx) = g.ifindexes.remove(&ep.host_ifname) {
            g.dp.remove_if_endpoint(idx);
        }
        if let Err(e) = kernel::delete_link(&g.host, &ep.host_ifname).await {
            warn!("removing {}: {e:#}", ep.host_ifname);
        }
    }

    pub async fn remove_container(&self, name: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let c = g
            .containers
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("container {name} not found")))?;
        let sharers: Vec<String> = g
            .containers
            .values()
            .filter(|o| o.mode == NetMode::Container(name.to_string()))
            .map(|o| o.name.clone())
            .collect();
        if !sharers.is_empty() {
            return Err(ApiError::Conflict(format!(
                "container {name} is in use: {} share its network namespace; remove them first",
                sharers.join(", ")
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
        if matches!(c.mode, NetMode::Bridge | NetMode::None) {
            after_commit("delete_netns", kernel::delete_netns(&self.netns_path(name)));
        }
        g.containers.remove(name);
        let links = link_keys(&g.containers, &g.networks);
        after_commit("sync_links", g.dp.sync_links(&links));
        info!(container = %name, "container removed");
        Ok(())
    }

    pub async fn connect(&self, network: &str, req: ConnectRequest) -> ApiResult<ContainerView> {
        let ip = req.ip.as_deref().map(ipam::parse_ip).transpose()?;
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let net = g
            .networks
            .get(network)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("network {network} not found")))?;
        let mut c =
            g.containers.get(&req.container).cloned().ok_or_else(|| {
                ApiError::NotFound(format!("container {} not found", req.container))
            })?;
        if c.mode != NetMode::Bridge {
            return Err(bad(format!(
                "container {} uses network mode {}; it cannot be connected to networks",
                c.name,
                c.mode.describe()
            )));
        }
        if c.endpoints.iter().any(|e| e.network == network) {
            return Err(ApiError::Conflict(format!(
                "container {} is already connected to network {network}",
                c.name
            )));
        }
        let (ep, net_after) = self.plan_endpoint(g, &net, &c, ip)?;
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
        let links = link_keys(&g.containers, &g.networks);
        after_commit("sync_links", g.dp.sync_links(&links));
        info!(container = %c.name, network, ip = %ep.ip, "connected");
        Ok(self.container_view(g, &c))
    }

    pub async fn disconnect(&self, network: &str, container: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if !g.networks.contains_key(network) {
            return Err(ApiError::NotFound(format!("network {network} not found")));
        }
        let mut c = g
            .containers
            .get(container)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("container {container} not found")))?;
        let pos = c
            .endpoints
            .iter()
            .position(|e| e.network == network)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
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
                kernel::set_default_route(&self.netns_path(&c.name), &next.ifname, next.gateway)
                    .await
            {
                warn!(
                    container,
                    "moving the default route to {}: {e:#}", next.ifname
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
        let links = link_keys(&g.containers, &g.networks);
        after_commit("sync_links", g.dp.sync_links(&links));
        info!(container, network, "disconnected");
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
            .ok_or_else(|| ApiError::NotFound(format!("container {name} not found")))?;
        Ok(self.container_view(&g, c))
    }

    fn container_view(&self, g: &Inner, c: &Container) -> ContainerView {
        // A container sharing another's namespace shows that one's endpoints.
        let (netns, eps) = match &c.mode {
            NetMode::Host => (self.host_netns_path(), Vec::new()),
            NetMode::Container(t) => match g.containers.get(t) {
                Some(tc) if tc.mode == NetMode::Host => (self.host_netns_path(), Vec::new()),
                Some(tc) => (self.netns_path(t), tc.endpoints.clone()),
                None => (self.netns_path(t), Vec::new()),
            },
            _ => (self.netns_path(&c.name), c.endpoints.clone()),
        };
        let endpoints = eps
            .iter()
            .map(|e| EndpointView {
                network: e.network.clone(),
                interface: e.ifname.clone(),
                host_interface: e.host_ifname.clone(),
                ip: e.ip,
                prefix_len: e.prefix_len,
                mac: fmt_mac(&e.mac),
                gateway: e.gateway,
                mtu: e.mtu,
                counters: g
                    .ifindexes
                    .get(&e.host_ifname)
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
            })
            .collect();
        ContainerView {
            id: c.id.clone(),
            name: c.name.clone(),
            network_mode: c.mode.describe(),
            hostname: c.hostname.clone(),
            netns: netns.display().to_string(),
            endpoints,
            ports: c.ports.clone(),
            expose: c.expose.clone(),
            links: c.links.clone(),
        }
    }

    /// Choose and reserve host ports for `specs`. Nothing stays reserved if
    /// any of them fails.
    async fn reserve_ports(
        &self,
        g: &mut Inner,
        specs: &[ports::PortSpec],
    ) -> ApiResult<Vec<PortMapping>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let host_ips = kernel::host_addresses(&g.host).await?;
        let mut out: Vec<PortMapping> = Vec::new();
        // (proto, port) -> (host ip, owner) of every published port: O(1)
        // conflict checks, also for ranges of thousands of ports.
        let mut published: HashMap<(Proto, u16), Vec<(Ipv4Addr, String)>> = HashMap::new();
        for c in g.containers.values() {
            for m in &c.ports {
                published
                    .entry((m.proto, m.host_port))
                    .or_default()
                    .push((m.host_ip, c.name.clone()));
            }
        }
        let res = (|| -> ApiResult<()> {
            for spec in specs {
                let host_ip = spec.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                if !host_ip.is_unspecified()
                    && !host_ip.is_loopback()
                    && !host_ips.contains(&host_ip)
                {
                    return Err(bad(format!(
                        "host IP {host_ip} is not an address of this host"
                    )));
                }
                for (i, cport) in spec.container_ports.iter().enumerate() {
                    let taken =
                        |p: u16, published: &HashMap<(Proto, u16), Vec<(Ipv4Addr, String)>>| {
                            published.get(&(spec.proto, p)).and_then(|v| {
                                v.iter()
                                    .find(|(ip, _)| {
                                        *ip == host_ip
                                            || ip.is_unspecified()
                                            || host_ip.is_unspecified()
                                    })
                                    .map(|(_, owner)| owner.clone())
                            })
                        };
                    let hport = match &spec.host_ports {
                        HostPorts::Exact(v) => {
                            let p = v[i];
                            if (g.nat_range.0..=g.nat_range.1).contains(&p) {
                                return Err(bad(format!(
                                    "host port {p} is in the masquerade port range {}-{}",
                                    g.nat_range.0, g.nat_range.1
                                )));
                            }
                            if let Some(owner) = taken(p, &published) {
                                return Err(ApiError::Conflict(format!(
                                    "host port {host_ip}:{p}/{} is already published by {owner}",
                                    spec.proto.as_str()
                                )));
                            }
                            g.reservations
                                .reserve(host_ip, p, spec.proto)
                                .map_err(ApiError::Conflict)?;
                            p
                        }
                        HostPorts::Random | HostPorts::OneOf(..) => {
                            let range = match spec.host_ports {
                                HostPorts::OneOf(a, b) => (a, b),
                                _ => g.port_range,
                            };
                            let mut skip: BTreeSet<u16> = BTreeSet::new();
                            let seed = rand::random::<u32>();
                            loop {
                                let Some(p) = ports::pick_port(range, &skip, seed) else {
                                    return Err(ApiError::Conflict(format!(
                                        "no free host port left in {}-{} for {cport}/{}",
                                        range.0,
                                        range.1,
                                        spec.proto.as_str()
                                    )));
                                };
                                skip.insert(p);
                                if taken(p, &published).is_some()
                                    || (g.nat_range.0..=g.nat_range.1).contains(&p)
                                {
                                    continue;
                                }
                                if g.reservations.reserve(host_ip, p, spec.proto).is_ok() {
                                    break p;
                                }
                            }
                        }
                    };
                    published
                        .entry((spec.proto, hport))
                        .or_default()
                        .push((host_ip, "this container".into()));
                    out.push(PortMapping {
                        host_ip,
                        host_port: hport,
                        container_port: *cport,
                        proto: spec.proto,
                    });
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            release_ports(g, &out);
            return Err(e);
        }
        Ok(out)
    }

    pub async fn info(&self) -> AgentInfo {
        let g = self.inner.lock().await;
        AgentInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            uplink: g.uplink.as_ref().map(|u| u.name.clone()),
            uplink_ip: g.uplink.as_ref().and_then(|u| u.ip),
            bpffs: self.cfg.bpffs.display().to_string(),
            host_netns: self.host_netns_path().display().to_string(),
            nat_port_range: g.nat_range,
        }
    }

    pub async fn drops(&self) -> BTreeMap<String, u64> {
        self.inner.lock().await.dp.drops()
    }

    /// Follow the host's IPv4 addresses as they change (netlink address
    /// events), so that ports published on 0.0.0.0 serve a new address at
    /// once.
    pub fn watch_addresses(self: &Arc<Self>) -> Result<()> {
        use futures::StreamExt;
        let (conn, _handle, mut events) =
            rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Ipv4Ifaddr])?;
        tokio::spawn(conn);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            while events.next().await.is_some() {
                let mut g = engine.inner.lock().await;
                if let Err(e) = refresh_host_ips(&mut g).await {
                    warn!("refreshing host addresses: {e:#}");
                }
            }
        });
        Ok(())
    }

    /// Follow the host's addresses (in case an address event was missed).
    pub async fn refresh_addresses(&self) {
        let mut g = self.inner.lock().await;
        if let Err(e) = refresh_host_ips(&mut g).await {
            warn!("refreshing host addresses: {e:#}");
        }
    }

    /// Expire idle flows on a thread of its own (not holding the engine).
    pub fn spawn_flow_gc(&self) -> Result<()> {
        let mut gc = datapath::Gc::open(&self.cfg.bpffs)?;
        std::thread::Builder::new()
            .name("flow-gc".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(10));
                let n = gc.run();
                if n > 0 {
                    tracing::debug!(expired = n, "flow garbage collection");
                }
            })?;
        Ok(())
    }
}

/// Steps after the desired state was committed: the change stands, so a
/// failure is logged (and repaired by the next reconcile) instead of being
/// reported as if nothing had happened.
fn after_commit(what: &str, r: Result<()>) {
    if let Err(e) = r {
        warn!("{what} after a committed change failed (reconciled at the next start): {e:#}");
    }
}

async fn refresh_host_ips(g: &mut Inner) -> Result<()> {
    let ips: Vec<[u8; 4]> = kernel::host_addresses(&g.host)
        .await?
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .map(|ip| ip.octets())
        .collect();
    g.dp.sync_host_ips(&ips)?;
    // The masquerade address follows the uplink's (DHCP renumbering).
    if let Some(u) = &g.uplink {
        if let Some(now) = kernel::find_uplink(&g.host, Some(&u.name)).await? {
            if now.ip != u.ip {
                info!(uplink = %now.name, ip = ?now.ip, "uplink address changed");
                g.uplink = Some(now);
                let cfg = datapath_config(g);
                g.dp.set_config(cfg)?;
            }
        }
    }
    Ok(())
}

fn datapath_config(g: &Inner) -> Config {
    let (lo, hi) = g.nat_range;
    Config {
        uplink_ifindex: g.uplink.as_ref().map(|u| u.index).unwrap_or(0),
        uplink_ip: g
            .uplink
            .as_ref()
            .and_then(|u| u.ip)
            .map(|i| i.octets())
            .unwrap_or_default(),
        nat_port_min: lo,
        nat_port_max: hi,
        _pad: 0,
    }
}

fn release_ports(g: &mut Inner, mappings: &[PortMapping]) {
    for m in mappings {
        g.reservations.release(m.host_ip, m.host_port, m.proto);
    }
}

fn port_key(m: &PortMapping) -> PortKey {
    PortKey {
        ip: m.host_ip.octets(),
        port: m.host_port,
        proto: m.proto.number(),
        _pad: 0,
    }
}

/// DP_PORTS keys of a container's mappings (whether or not it has an
/// endpoint to lead them to).
fn port_keys(c: &Container) -> Vec<PortKey> {
    c.ports.iter().map(port_key).collect()
}

/// DP_PORTS entries of a container: its mappings, to its first endpoint.
fn port_entries(c: &Container) -> Vec<(PortKey, PortTarget)> {
    let Some(ep) = c.endpoints.first() else {
        return Vec::new();
    };
    c.ports
        .iter()
        .map(|m| {
            (
                port_key(m),
                PortTarget {
                    ip: ep.ip.octets(),
                    port: m.container_port,
                    _pad: 0,
                },
            )
        })
        .collect()
}

/// DP_LINKS from the model: for every link, on every network the two share,
/// the linked container's exposed ports (and the container ports it
/// publishes) are open to the linking one.
fn link_keys(
    containers: &BTreeMap<String, Container>,
    networks: &BTreeMap<String, Network>,
) -> BTreeSet<LinkKey> {
    let mut out = BTreeSet::new();
    for c in containers.values() {
        for l in &c.links {
            let Some(t) = containers.get(&l.name) else {
                continue;
            };
            let mut open: BTreeSet<(u16, Proto)> =
                t.expose.iter().map(|e| (e.port, e.proto)).collect();
            open.extend(t.ports.iter().map(|m| (m.container_port, m.proto)));
            // Links matter only where icc is off: elsewhere all is allowed.
            let no_icc = |n: &str| networks.get(n).is_some_and(|n| !n.icc);
            for a in c.endpoints.iter().filter(|a| no_icc(&a.network)) {
                for b in t.endpoints.iter().filter(|b| b.network == a.network) {
                    let (src, dst) = (a.ip.octets(), b.ip.octets());
                    out.insert(LinkKey {
                        src,
                        dst,
                        port: 0,
                        proto: 0,
                        _pad: 0,
                    });
                    for (port, proto) in &open {
                        out.insert(LinkKey {
                            src,
                            dst,
                            port: *port,
                            proto: proto.number(),
                            _pad: 0,
                        });
                    }
                }
            }
        }
    }
    out
}

/// `NAME[:ALIAS]`.
fn parse_link(s: &str) -> std::result::Result<LinkSpec, String> {
    let (name, alias) = match s.split_once(':') {
        Some((n, a)) => (n, a),
        None => (s, s),
    };
    ipam::validate_name("container", name).map_err(|e| format!("--link: {e}"))?;
    if alias.is_empty() {
        return Err(format!("--link {s:?}: empty alias"));
    }
    Ok(LinkSpec {
        name: name.into(),
        alias: alias.into(),
    })
}

fn network_info(n: &Network) -> NetworkInfo {
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

fn endpoint_info(ep: &Endpoint, net_id: u32, link: &kernel::LinkInfo) -> EndpointInfo {
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

fn random_id() -> String {
    (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect()
}

/// `--bip`: the default network's gateway address with its prefix, e.g. 172.17.0.1/16.
pub fn parse_bip(bip: &str) -> Result<(Ipv4Addr, Ipv4Net)> {
    let net: Ipv4Net = bip.parse().map_err(|_| {
        anyhow!("invalid --bip {bip:?}: expected gateway/prefix, e.g. 172.17.0.1/16")
    })?;
    Ok((net.addr(), net.trunc()))
}

fn validate_hostname(h: &str) -> std::result::Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid hostname {h:?}: letters, digits, '-' and '.', at most 63 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_range_avoids_ephemeral_ports() {
        assert_eq!(default_nat_range((32768, 60999)), (61000, 65535));
        assert_eq!(default_nat_range((32768, 65535)), (1024, 32767));
        assert_eq!(default_nat_range((1024, 65535)), (61000, 65535));
    }

    #[test]
    fn bip_parsing() {
        let (gw, net) = parse_bip("172.17.0.1/16").unwrap();
        assert_eq!(gw, Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(net.to_string(), "172.17.0.0/16");
        assert!(parse_bip("172.17.0.1").is_err());
    }

    #[test]
    fn endpoint_names() {
        assert!(is_endpoint_ifname("dp0a1b2c3d"));
        assert!(!is_endpoint_ifname("dp0"));
        assert!(!is_endpoint_ifname("dp0p"));
        assert!(!is_endpoint_ifname("eth0"));
    }

    #[test]
    fn hostnames() {
        assert!(validate_hostname("web-1.local").is_ok());
        assert!(validate_hostname("-x").is_err());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("a b").is_err());
    }

    #[test]
    fn default_pools_do_not_overlap_docker0() {
        let docker0: Ipv4Net = "172.17.0.0/16".parse().unwrap();
        assert!(default_pools().all(|p| !p.contains(&docker0.network())));
    }
}

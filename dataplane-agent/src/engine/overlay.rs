//! Overlay networks (driver `overlay`): the agent's side of the cluster.
//!
//! With `--cluster-store` the agent registers its node in etcd, watches the
//! cluster ([`crate::cluster`]) and owns one VXLAN device ([`crate::vxlan`]).
//! A cluster network is created by one etcd transaction from any node; every
//! node then materialises it as a local [`Network`] (driver `overlay`, its
//! own local id, the gateway on `dp0`, the overlay MTU) in the reconciler's
//! overlay pass (`reconcile/overlay.rs`), which also keeps the overlay maps
//! in line with the cluster view. Addresses come from the node's IPAM blocks;
//! endpoints are published to etcd when they are plumbed and withdrawn when
//! they are removed (and re-synced by the reconciler after an etcd outage).

use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::{
    cluster::{
        self, networks::NetworkSpec, node::Registration, Cluster, ClusterConfig, ClusterError,
        ClusterEvent, WatchConfig, WatchHandle,
    },
    datapath::OverlayMaps,
    vxlan,
};

/// The `--cluster-*` flags of the agent.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `etcd://HOST:PORT[,HOST:PORT...]`.
    pub store: String,
    /// Underlay address (default: the uplink's).
    pub advertise: Option<Ipv4Addr>,
    /// Node name (default: the host name).
    pub node_name: Option<String>,
    pub vxlan_port: u16,
}

/// One line of `node ls`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeView {
    pub name: String,
    pub address: Option<Ipv4Addr>,
    pub state: String,
    pub endpoints: usize,
    /// This agent's own node.
    pub local: bool,
}

/// The overlay state of a running agent.
pub(crate) struct Overlay {
    pub(crate) cluster: Cluster,
    /// Keeps the node's lease alive (dropped: the lease expires).
    _registration: Registration,
    pub(crate) watch: WatchHandle,
    events: Option<mpsc::Receiver<ClusterEvent>>,
    pub(crate) maps: OverlayMaps,
    pub(crate) port: u16,
    /// Default MTU of overlay endpoints: the uplink's minus the VXLAN overhead.
    pub(crate) mtu: u32,
    /// Remote endpoints left out of the maps for want of room (last pass).
    pub(crate) unloaded: usize,
}

/// Stable key of a node in `DP_OV_NODES` (FNV-1a of its name, never 0): the
/// same on every start, so pinned entries stay valid across restarts.
pub(crate) fn node_key(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

pub(crate) fn cluster_error(e: ClusterError) -> Error {
    match e {
        ClusterError::NoClusterStore
        | ClusterError::InvalidName(_)
        | ClusterError::InvalidStore { .. }
        | ClusterError::VniOutOfRange(_)
        | ClusterError::SubnetTooSmall(_) => Error::InvalidArgument(e.to_string()),
        ClusterError::NoSuchNetwork(_) => Error::NotFound(e.to_string()),
        ClusterError::NetworkExists(_)
        | ClusterError::VniInUse { .. }
        | ClusterError::SubnetOverlap { .. }
        | ClusterError::NetworkInUse { .. }
        | ClusterError::AddressInUse { .. }
        | ClusterError::EndpointChanged { .. }
        | ClusterError::NodeAlive(_)
        | ClusterError::Contention(_) => Error::Conflict(e.to_string()),
        ClusterError::Unreachable { .. }
        | ClusterError::Timeout { .. }
        | ClusterError::NetworkFull(_)
        | ClusterError::NoFreeVni => Error::Unavailable(e.to_string()),
        other => Error::Internal(anyhow::Error::new(other)),
    }
}

impl Overlay {
    /// Joins the cluster: connects (an unreachable store is an error), makes
    /// the VXLAN device (a taken port is an error), registers the node and
    /// waits for the first full view.
    pub(crate) async fn start(
        opts: &ClusterOptions,
        host: &Handle,
        uplink: Option<&Uplink>,
        bpffs: &Path,
    ) -> Result<Overlay> {
        let advertise = opts
            .advertise
            .or_else(|| uplink.and_then(|u| u.ip))
            .ok_or_else(|| {
                anyhow!("--cluster-advertise is needed: the uplink has no IPv4 address")
            })?;
        let name = match &opts.node_name {
            Some(n) => n.clone(),
            None => cluster::default_node_name()?,
        };
        let mut cc = ClusterConfig::new(&opts.store, &name, advertise)?;
        cc.vxlan_port = opts.vxlan_port;
        let cluster = Cluster::connect(cc).await?;
        let uplink_mtu = match uplink {
            Some(u) => kernel::netdev_by_name(host, &u.name)
                .await?
                .map_or(DEFAULT_MTU, |l| l.mtu),
            None => DEFAULT_MTU,
        };
        let mtu = uplink_mtu.saturating_sub(vxlan::VXLAN_OVERHEAD).max(68);
        vxlan::ensure(host, opts.vxlan_port, mtu).await?;
        let registration = cluster.register_node().await?;
        let (tx, rx) = mpsc::channel(4096);
        let mut watch = cluster::spawn_watcher(cluster.clone(), WatchConfig::default(), Some(tx));
        // The store answered (connect probes it); listing a large cluster
        // (100k endpoints) takes seconds, so the deadline is generous.
        if !watch.wait_until(Duration::from_mins(1), |v| v.synced).await {
            anyhow::bail!("the cluster store did not list its state within 60s");
        }
        let maps = OverlayMaps::open(bpffs)?;
        info!(node = %name, %advertise, port = opts.vxlan_port, mtu, "joined the cluster");
        Ok(Overlay {
            cluster,
            _registration: registration,
            watch,
            events: Some(rx),
            maps,
            port: opts.vxlan_port,
            mtu,
            unloaded: 0,
        })
    }

    pub(crate) fn node_name(&self) -> &str {
        self.cluster.node_name()
    }
}

impl Engine {
    /// Every change of the cluster view asks the reconciler for a pass (the
    /// pass syncs the maps from the view).
    pub(crate) async fn spawn_overlay_events(self: &Arc<Self>) {
        let rx = self
            .inner
            .lock()
            .await
            .overlay
            .as_mut()
            .and_then(|o| o.events.take());
        let Some(mut rx) = rx else {
            return;
        };
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                tracing::debug!(?ev, "cluster event");
                engine.request_reconcile();
            }
        });
    }

    /// `network create --driver overlay`: one etcd transaction, then the
    /// network is materialised here at once (and on the other nodes by
    /// their watchers).
    pub(crate) async fn create_overlay_network(
        &self,
        req: NetworkCreate,
    ) -> ApiResult<NetworkView> {
        if req.gateway.is_some() || req.ip_range.is_some() {
            return Err(bad(
                "--gateway and --ip-range are not supported with --driver overlay",
            ));
        }
        if let Some(mtu) = req.mtu {
            ipam::validate_mtu(mtu)?;
        }
        let subnet = req
            .subnet
            .as_deref()
            .map(ipam::parse_subnet)
            .transpose()?
            .ok_or_else(|| bad("--driver overlay needs --subnet"))?;
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let Some(ov) = g.overlay.as_ref() else {
            return Err(cluster_error(ClusterError::NoClusterStore));
        };
        if g.networks.contains_key(&req.name) {
            return Err(Error::Conflict(format!(
                "network {} already exists",
                req.name
            )));
        }
        Pool::check_overlap(
            subnet,
            g.networks
                .values()
                .map(|n| (n.name.as_str(), n.pool.subnet)),
        )?;
        let mut options = BTreeMap::new();
        if req.internal {
            options.insert("internal".to_string(), "true".to_string());
        }
        if req.icc == Some(false) {
            options.insert("icc".to_string(), "false".to_string());
        }
        if let Some(mtu) = req.mtu {
            options.insert("mtu".to_string(), mtu.to_string());
        }
        let spec = NetworkSpec {
            name: req.name.clone(),
            subnet,
            vni: None,
            options,
        };
        let record = ov
            .cluster
            .create_network(&spec)
            .await
            .map_err(cluster_error)?;
        info!(network = %record.name, vni = record.vni, subnet = %record.subnet, "overlay network created in the cluster");
        self.materialize(g, &record).await?;
        self.request_reconcile();
        let net = g
            .networks
            .get(&req.name)
            .cloned()
            .ok_or_else(|| Error::Internal(anyhow!("network {} vanished", req.name)))?;
        Ok(Self::network_view(g, &net))
    }

    /// `network rm` of an overlay network: deleted in etcd first (refused
    /// while any node has endpoints on it).
    pub(crate) async fn remove_overlay_network_in_cluster(
        &self,
        g: &Inner,
        name: &str,
    ) -> ApiResult<()> {
        let Some(ov) = g.overlay.as_ref() else {
            return Err(cluster_error(ClusterError::NoClusterStore));
        };
        match ov.cluster.delete_network(name).await {
            Ok(()) | Err(ClusterError::NoSuchNetwork(_)) => Ok(()),
            Err(e) => Err(cluster_error(e)),
        }
    }

    /// The local network of a cluster network (created if missing).
    pub(crate) async fn materialize(
        &self,
        g: &mut Inner,
        record: &cluster::NetworkRecord,
    ) -> Result<()> {
        if g.networks.contains_key(&record.name) {
            return Ok(());
        }
        let clash = Pool::check_overlap(
            record.subnet,
            g.networks
                .values()
                .map(|n| (n.name.as_str(), n.pool.subnet)),
        );
        if let Err(e) = clash {
            warn!(network = %record.name, "cluster network not usable on this node: {e}");
            return Ok(());
        }
        let default_mtu = g.overlay.as_ref().map_or(DEFAULT_MTU, |o| o.mtu);
        let opt = |k: &str| record.options.get(k).map(String::as_str);
        let net = Network {
            id: g.networks.values().map(|n| n.id).max().unwrap_or(0) + 1,
            name: record.name.clone(),
            driver: "overlay".into(),
            pool: Pool::new(record.subnet, None, Some(record.gateway))?,
            mtu: opt("mtu")
                .and_then(|m| m.parse().ok())
                .unwrap_or(default_mtu),
            internal: opt("internal") == Some("true"),
            icc: opt("icc") != Some("false"),
            last_ip: None,
            builtin: false,
            // Overlay subnets are always given at create time.
            user_subnet: true,
            masquerade: opt("masquerade") != Some("false"),
            host_binding: None,
            parent: None,
            ipv6: None,
        };
        kernel::add_gateway(&g.host, net.pool.gateway).await?;
        g.dp.upsert_network(net.id, network_info(&net))?;
        g.store.apply(Change {
            put_networks: vec![&net],
            ..Default::default()
        })?;
        info!(network = %net.name, id = net.id, vni = record.vni, "overlay network materialised");
        g.networks.insert(net.name.clone(), net);
        Ok(())
    }

    /// The address of a new endpoint: for an overlay network from this
    /// node's IPAM blocks (a static `--ip` is checked by etcd when the
    /// endpoint is published); for any other network unchanged.
    pub(crate) async fn overlay_address(
        &self,
        g: &Inner,
        net: &Network,
        ip: Option<Ipv4Addr>,
    ) -> ApiResult<Option<Ipv4Addr>> {
        if net.driver != "overlay" || ip.is_some() {
            return Ok(ip);
        }
        let Some(ov) = g.overlay.as_ref() else {
            return Err(cluster_error(ClusterError::NoClusterStore));
        };
        let ip = ov
            .cluster
            .allocate_address(&net.name)
            .await
            .map_err(cluster_error)?;
        Ok(Some(ip))
    }

    /// Publishes an overlay endpoint to etcd (after it was plumbed).
    pub(crate) async fn overlay_publish(&self, g: &Inner, ns: &Path, ep: &Endpoint) -> Result<()> {
        let Some(ov) = g.overlay.as_ref() else {
            return Ok(());
        };
        if g.networks
            .get(&ep.network)
            .is_none_or(|n| n.driver != "overlay")
        {
            return Ok(());
        }
        let container = ns
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match ov
            .cluster
            .create_endpoint(&ep.network, ep.ip, &fmt_mac(&ep.mac), &container)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                ov.cluster.release_address(&ep.network, ep.ip).await;
                Err(cluster_error(e).into())
            }
        }
    }

    /// Withdraws an overlay endpoint from etcd and gives its address back
    /// (the reconciler retries the withdrawal while etcd is away).
    pub(crate) async fn overlay_unpublish(&self, g: &Inner, ep: &Endpoint) {
        let Some(ov) = g.overlay.as_ref() else {
            return;
        };
        if g.networks
            .get(&ep.network)
            .is_none_or(|n| n.driver != "overlay")
        {
            return;
        }
        if let Err(e) = withdraw(ov, &ep.network, ep.ip).await {
            warn!(network = %ep.network, ip = %ep.ip, "withdrawing the endpoint from the cluster (retried): {e}");
        }
        ov.cluster.release_address(&ep.network, ep.ip).await;
    }

    /// `node ls`.
    pub async fn list_nodes(&self) -> ApiResult<Vec<NodeView>> {
        let g = self.inner.lock().await;
        let Some(ov) = g.overlay.as_ref() else {
            return Err(cluster_error(ClusterError::NoClusterStore));
        };
        let me = ov.node_name().to_string();
        Ok(ov.watch.with_view(|v| {
            v.node_summaries()
                .into_iter()
                .map(|n| NodeView {
                    local: n.name == me,
                    state: if n.alive { "up".into() } else { "down".into() },
                    name: n.name,
                    address: n.address,
                    endpoints: n.endpoints,
                })
                .collect()
        }))
    }
}

/// Deletes this node's endpoint record of `(network, ip)` if etcd has one.
pub(crate) async fn withdraw(
    ov: &Overlay,
    network: &str,
    ip: Ipv4Addr,
) -> Result<(), ClusterError> {
    let Some(written) = ov.watch.with_view(|v| v.written_endpoint(network, ip)) else {
        return Ok(());
    };
    if written.record.node != ov.node_name() {
        return Ok(());
    }
    match ov.cluster.delete_endpoint(&written).await {
        Ok(()) | Err(ClusterError::EndpointChanged { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_are_stable_and_never_zero() {
        assert_eq!(node_key("h1"), node_key("h1"));
        assert_ne!(node_key("h1"), node_key("h2"));
        assert_ne!(node_key(""), 0);
    }
}

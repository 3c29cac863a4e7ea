//! The engine: the agent's model of networks and containers and the verbs
//! that change it, independent of its front ends (API, CLI, plugins).
//!
//! Every verb runs under one lock and follows the same order: validate
//! (nothing touched yet), change the kernel (undone on any error), then commit
//! the desired state to the store in one transaction (kernel undone if that
//! fails). A rejected request therefore changes nothing. After a change the
//! verb asks the reconciler ([`crate::reconcile`]) to converge: whatever a
//! step after the commit missed, or anything changed behind the agent's back,
//! is repaired there.
//!
//! One file per concern, each an `impl Engine` block over [`Inner`]:
//!
//! | file | owns |
//! |---|---|
//! | `lifecycle.rs` | start (bpffs, store, datapath), the default network, `--cleanup` |
//! | `networks.rs` | network verbs and views, the `DP_NETWORKS` value |
//! | `containers.rs` | container verbs and views |
//! | `endpoints.rs` | endpoint planning and plumbing, connect/disconnect |
//! | `published_ports.rs` | published ports: reservations, `DP_PORTS` entries |
//! | `link_policy.rs` | Docker's `--link` policy: `DP_LINKS` entries |
//! | `names.rs` | names (embedded DNS): zone, resolver files, resolvers per namespace |
//! | `external.rs` | endpoints in namespaces the agent does not own (Docker's sandboxes) |
//! | `attached.rs` | namespaces someone else made, adopted by path or pid (`container attach`, CNI) |
//! | `host_ifs.rs` | every host interface with an IPv4 address served like the uplink: `DP_HOST_IFS`, its program links |

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{anyhow, bail, Context, Result};
use dataplane_common::{
    prog_names, Config, DropReason, EndpointInfo, LinkKey, NetworkInfo, PortKey, PortTarget,
    NET_F_INTERNAL, NET_F_LAN, NET_F_NO_ICC, NET_F_NO_MASQ,
};
use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::{
    datapath::{self, Datapath},
    error::Error,
    ipam::{self, Pool},
    kernel::{self, Uplink},
    model::*,
    ports::{self, HostPorts, PortMapping, Proto, Reservations},
    store::{Change, Store},
};

mod attached;
mod containers;
mod daemon_options;
mod endpoints;
mod external;
pub(crate) mod host_ifs;
pub(crate) mod host_ifs6;
pub(crate) mod ipv6;
mod lan;
mod lifecycle;
mod link_policy;
mod names;
mod networks;
mod overlay;
mod p2p;
mod published_ports;
mod published_ports6;

pub(crate) use self::{
    attached::{attached_gone, runtime_holds_ports},
    endpoints::*,
    lan::LAN_DRIVER,
    link_policy::*,
    names::*,
    networks::*,
    published_ports::*,
};
pub use daemon_options::{AddressPool, DaemonDefaults};
pub use endpoints::is_endpoint_ifname;
pub use external::JoinInfo;
pub(crate) use overlay::{node_key, withdraw as overlay_withdraw};
pub use overlay::{ClusterOptions, NodeView};
pub(crate) use p2p::p2p_host_ifname_id;

/// Agent settings (the daemon's flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub bpffs: PathBuf,
    pub uplink: Option<String>,
    pub bip: String,
    /// Inter-container communication on the default bridge (dockerd's
    /// `--icc`; applied when the default bridge is first made).
    pub icc: bool,
    pub nat_port_range: Option<(u16, u16)>,
    /// Range random published host ports come from (default: the host's
    /// ephemeral port range, as Docker).
    pub port_range: Option<(u16, u16)>,
    /// cgroup v2 directory the socket programs are attached to (default:
    /// the system's cgroup2 mount).
    pub cgroup: Option<PathBuf>,
    pub uplink_mode: UplinkMode,
    /// `--cluster-store` and friends: overlay networks (None: host-local only).
    pub cluster: Option<ClusterOptions>,
    /// The host's resolver settings (`--resolv-conf`, default
    /// /etc/resolv.conf): upstreams of the embedded resolver, servers of
    /// containers on the default bridge.
    pub resolv_conf: PathBuf,
    /// Daemon-wide defaults (`--mtu`, `--fixed-cidr`, `--ip-masq`, `--ip`,
    /// `--dns`, `--dns-search`, `--default-address-pool`).
    pub defaults: DaemonDefaults,
}

/// Where the uplink's early work (direct-access, loopback and spoofing
/// drops, published-port translation) runs, on the uplink and on every
/// other host interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkMode {
    /// Native XDP on NICs; TC (`Tcx`) on virtual devices. Native XDP on a
    /// veth makes its peer drop TSO/GSO (veth_fix_features) and copies every
    /// packet into an XDP buffer; generic XDP runs after the skb exists and
    /// copies cloned or non-linear skbs into fresh pages: both cost more than
    /// the one TC program (see README, "XDP mode").
    Auto,
    /// `dp_xdp_uplink` in native (driver) mode, then `dp_from_uplink` at TC.
    XdpNative,
    /// `dp_xdp_uplink` in generic (skb) mode, then `dp_from_uplink` at TC.
    XdpGeneric,
    /// One TC ingress program, `dp_tc_uplink`, doing both.
    Tcx,
}

impl UplinkMode {
    /// The mode an interface gets: `Auto` resolved by the kind of device.
    #[must_use]
    pub fn resolve(self, is_virtual: bool) -> UplinkMode {
        match (self, is_virtual) {
            (UplinkMode::Auto, true) => UplinkMode::Tcx,
            (UplinkMode::Auto, false) => UplinkMode::XdpNative,
            (m, _) => m,
        }
    }

    /// The programs an interface in this (resolved) mode carries.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            UplinkMode::Tcx => &[prog_names::TC_UPLINK],
            _ => &[prog_names::FROM_UPLINK, prog_names::XDP_UPLINK],
        }
    }
}

type ApiResult<T> = crate::error::Result<T>;

fn bad(m: impl Into<String>) -> Error {
    Error::invalid(m)
}

pub struct Engine {
    pub(crate) inner: Mutex<Inner>,
    /// Wakes the reconciler ([`crate::reconcile`]).
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) cfg: AgentConfig,
    /// The resolvers on 127.0.0.11 ([`names`] drives them).
    pub(crate) dns: crate::dns::DnsManager,
}

/// The engine's state: the desired state (networks, containers, persisted in
/// the store) and the handles that realise it.
pub(crate) struct Inner {
    pub(crate) networks: BTreeMap<String, Network>,
    pub(crate) containers: BTreeMap<String, Container>,
    pub(crate) store: Store,
    pub(crate) host: Handle,
    pub(crate) dp: Datapath,
    pub(crate) uplink: Option<Uplink>,
    pub(crate) nat_range: (u16, u16),
    /// Runtime ifindex of each host-side veth (not persisted: it changes when
    /// an interface is recreated).
    pub(crate) ifindexes: HashMap<String, u32>,
    /// Sockets holding the published host ports.
    pub(crate) reservations: Reservations,
    pub(crate) port_range: (u16, u16),
    /// Links of the uplink and socket programs made at start: (program,
    /// interface or `cgroup`).
    pub(crate) fixed_links: BTreeSet<(String, String)>,
    /// The cluster and the VXLAN device (with `--cluster-store`).
    pub(crate) overlay: Option<overlay::Overlay>,
    /// Point-to-point links, by name (persisted).
    pub(crate) p2p: BTreeMap<String, crate::model::P2pLink>,
    /// Host interfaces with an IPv4 address, served like the uplink.
    pub(crate) host_ifs: Vec<Uplink>,
    /// `DP_HOST_IFS` (None only if its pin could not be opened).
    pub(crate) host_if_map: Option<datapath::HostIfMap>,
    /// `--uplink-mode` (a copy of the config's, for the link bookkeeping).
    pub(crate) uplink_mode: UplinkMode,
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

/// `--bip`: the default network's gateway address with its prefix, e.g. 172.17.0.1/16.
pub fn parse_bip(bip: &str) -> Result<(Ipv4Addr, Ipv4Net)> {
    let net: Ipv4Net = bip.parse().map_err(|_| {
        anyhow!("invalid --bip {bip:?}: expected gateway/prefix, e.g. 172.17.0.1/16")
    })?;
    Ok((net.addr(), net.trunc()))
}

impl Engine {
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    pub fn host_netns_path(&self) -> PathBuf {
        self.cfg.run_dir.join("host.netns")
    }

    pub(crate) fn netns_path(&self, name: &str) -> PathBuf {
        kernel::netns_path(&self.cfg.run_dir, name)
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
        let (conn, _handle, mut events) = rtnetlink::new_multicast_connection(&[
            rtnetlink::MulticastGroup::Ipv4Ifaddr,
            rtnetlink::MulticastGroup::Ipv6Ifaddr,
        ])?;
        tokio::spawn(conn);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            while events.next().await.is_some() {
                let mut g = engine.inner.lock().await;
                if let Err(e) = refresh_host_ips(&mut g).await {
                    warn!("refreshing host addresses: {e:#}");
                }
                drop(g);
                // An interface may have gained its first address: the
                // reconciler attaches its programs.
                engine.wake.notify_one();
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
        let mut gc6 = datapath::Gc6::open(&self.cfg.bpffs)?;
        std::thread::Builder::new()
            .name("flow-gc".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(10));
                let n = gc.run() + gc6.run();
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
        warn!("{what} after a committed change failed (the reconciler retries): {e:#}");
    }
}

pub(crate) async fn refresh_host_ips(g: &mut Inner) -> Result<()> {
    let ips: Vec<[u8; 4]> = kernel::host_addresses(&g.host)
        .await?
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .map(|ip| ip.octets())
        .collect();
    g.dp.sync_host_ips(&ips)?;
    host_ifs::refresh(g).await?;
    host_ifs6::sync(g).await?;
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

pub(crate) fn datapath_config(g: &Inner) -> Config {
    let (lo, hi) = g.nat_range;
    Config {
        uplink_ifindex: g.uplink.as_ref().map_or(0, |u| u.index),
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
}

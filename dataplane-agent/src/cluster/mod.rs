//! Cluster state in etcd for multi-host (overlay) networks: nodes, cluster
//! networks, IPAM blocks and endpoints; list + watch + resync into a local
//! [`ClusterView`].
//!
//! - [`keys`]: the key schema and the JSON records (the one place).
//! - [`client`]: [`Cluster`]: connection, timeouts, paginated listing.
//! - [`node`]: node registration under a lease with keep-alive.
//! - [`networks`]: network create/delete by transaction (name, VNI unique,
//!   subnets never overlapping).
//! - [`ipam`]: per-node address blocks claimed by transaction; addresses are
//!   then allocated locally (no etcd round trip, works while etcd is away).
//! - [`dual`]: dual-stack networks (IPv6 addresses derived from the IPv4
//!   ones).
//! - [`endpoints`]: create-if-absent, delete-if-unchanged.
//! - [`view`] and [`watch`]: the in-memory view, its change events and the
//!   watcher that keeps it converged (re-list + mark and sweep on compaction
//!   or a broken watch, liveness from leases, grace before removal).
//!
//! The engine uses a [`WatchHandle`]: `view()` for a consistent snapshot,
//! `events` for ordered [`ClusterEvent`]s to apply to maps.

pub mod client;
pub mod dual;
pub mod endpoints;
mod error;
pub mod ipam;
pub mod keys;
pub mod networks;
pub mod node;
pub mod view;
pub mod watch;

use std::net::Ipv4Addr;
use std::time::Duration;

pub use client::Cluster;
pub use error::ClusterError;
pub use keys::{BlockRecord, EndpointRecord, Keys, NetworkRecord, NodeRecord};
pub use view::{ClusterEvent, ClusterView, NodeState};
pub use watch::{resume_watcher, spawn_watcher, WatchConfig, WatchHandle};

/// Default VXLAN UDP port (IANA).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// How an agent joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd client URLs, e.g. `http://192.0.2.254:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix, default [`keys::DEFAULT_PREFIX`].
    pub prefix: String,
    pub node_name: String,
    /// Underlay address other nodes send VXLAN to.
    pub advertise: Ipv4Addr,
    pub vxlan_port: u16,
    /// Lease TTL of the node's liveness key.
    pub lease_ttl: Duration,
    /// Deadline of one etcd request (and of connecting).
    pub op_timeout: Duration,
}

impl ClusterConfig {
    pub fn new(store: &str, node_name: &str, advertise: Ipv4Addr) -> Result<Self, ClusterError> {
        if !keys::valid_name(node_name) {
            return Err(ClusterError::InvalidName(node_name.to_string()));
        }
        Ok(ClusterConfig {
            endpoints: parse_store_url(store)?,
            prefix: keys::DEFAULT_PREFIX.to_string(),
            node_name: node_name.to_string(),
            advertise,
            vxlan_port: DEFAULT_VXLAN_PORT,
            lease_ttl: Duration::from_secs(10),
            op_timeout: Duration::from_secs(5),
        })
    }
}

/// `--node-name`'s default: the host name.
pub fn default_node_name() -> Result<String, ClusterError> {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    if keys::valid_name(&name) {
        Ok(name)
    } else {
        Err(ClusterError::InvalidName(name))
    }
}

/// Parses `--cluster-store`: `etcd://HOST:PORT[,HOST:PORT...]` (each item may
/// repeat the `etcd://` scheme) into etcd client URLs (`http://HOST:PORT`).
pub fn parse_store_url(url: &str) -> Result<Vec<String>, ClusterError> {
    let bad = |reason: &str| ClusterError::InvalidStore {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| bad("expected etcd://HOST:PORT[,HOST:PORT...]"))?;
    let mut out = Vec::new();
    for item in rest.split(',') {
        let item = item.trim();
        let item = item.strip_prefix("etcd://").unwrap_or(item);
        let item = item.trim_end_matches('/');
        if item.is_empty() {
            return Err(bad("empty endpoint"));
        }
        let (host, port) = item
            .rsplit_once(':')
            .ok_or_else(|| bad("every endpoint needs a port (HOST:PORT)"))?;
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(bad("bad host"));
        }
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("bad port"))?;
        out.push(format!("http://{host}:{port}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_defaults_to_the_host_name() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(default_node_name().unwrap(), host.trim());
    }

    #[test]
    fn store_url_accepts_several_endpoints() {
        assert_eq!(
            parse_store_url("etcd://192.0.2.254:2379,etcd://192.0.2.253:2379,h3:2379").unwrap(),
            vec![
                "http://192.0.2.254:2379",
                "http://192.0.2.253:2379",
                "http://h3:2379"
            ]
        );
    }

    #[test]
    fn store_url_rejects_bad_input_in_one_line() {
        for bad in [
            "192.0.2.1:2379",
            "http://x:1",
            "etcd://",
            "etcd://h",
            "etcd://h:0",
            "etcd://h:x",
            "etcd://h:1,",
        ] {
            let e = parse_store_url(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid cluster store"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}

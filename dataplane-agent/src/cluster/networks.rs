//! Cluster networks: created and deleted by one etcd transaction each, so two
//! hosts can never create the same name or VNI, nor overlapping subnets.
//!
//! Create reads every network at revision R, checks locally, then commits
//! only if no network key changed after R (a compare on the whole
//! `networks/` range) and the name and VNI keys are absent. A lost race is
//! re-read and re-checked, so the loser gets the precise error.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use ipnet::{Ipv4Net, Ipv6Net};

use super::keys::{decode, encode, valid_name, KeyKind, NetworkRecord, RECORD_VERSION};
use super::{Cluster, ClusterError};

/// First VNI handed out when none is requested (low VNIs are left to
/// hand-made VXLAN setups).
pub const FIRST_AUTO_VNI: u32 = 4096;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Default prefix length of per-node IPAM blocks.
pub const DEFAULT_BLOCK_LEN: u8 = 26;
const MAX_TRIES: usize = 32;

/// What `network create --driver overlay` asks for.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: Ipv4Net,
    pub vni: Option<u32>,
    pub options: BTreeMap<String, String>,
    /// Dual stack: the IPv6 subnet (see [`super::dual`]).
    pub subnet6: Option<Ipv6Net>,
}

impl Cluster {
    /// Every cluster network, with the revision it was read at.
    pub async fn networks(&self) -> Result<(i64, Vec<NetworkRecord>), ClusterError> {
        let (rev, kvs) = self.list_as("read networks", &self.keys.networks()).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            if let Some(KeyKind::Network(_)) = self.keys.parse(&kv.key) {
                out.push(decode::<NetworkRecord>(&kv.key, &kv.value)?);
            }
        }
        Ok((rev, out))
    }

    /// One network by name.
    pub async fn network(&self, name: &str) -> Result<NetworkRecord, ClusterError> {
        let key = self.keys.network(name);
        match self.get("read network", &key).await? {
            Some(kv) => decode(&key, &kv.value),
            None => Err(ClusterError::NoSuchNetwork(name.to_string())),
        }
    }

    /// Creates a cluster network; exactly one of several concurrent creators
    /// of the same name, VNI or overlapping subnet wins.
    pub async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkRecord, ClusterError> {
        if !valid_name(&spec.name) {
            return Err(ClusterError::InvalidName(spec.name.clone()));
        }
        let subnet = spec.subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(ClusterError::SubnetTooSmall(subnet));
        }
        let subnet6 = spec.subnet6.map(|s| s.trunc());
        if let Some(s6) = spec.subnet6 {
            if let Some(reason) = super::dual::check_subnet6(subnet, s6) {
                return Err(ClusterError::BadSubnet6(reason));
            }
        }
        if let Some(v) = spec.vni {
            if v == 0 || v > MAX_VNI {
                return Err(ClusterError::VniOutOfRange(v));
            }
        }
        for _ in 0..MAX_TRIES {
            let (rev, existing) = self.networks().await?;
            let vni = check_new_network(spec, subnet, &existing)?;
            let record = NetworkRecord {
                version: RECORD_VERSION,
                name: spec.name.clone(),
                vni,
                subnet,
                gateway: first_host(subnet),
                block_len: DEFAULT_BLOCK_LEN.max(subnet.prefix_len()),
                options: spec.options.clone(),
                subnet6,
                gateway6: subnet6.map(|s6| super::dual::derive(subnet, s6, first_host(subnet))),
            };
            let name_key = self.keys.network(&spec.name);
            let vni_key = self.keys.vni(vni);
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(self.keys.networks(), CompareOp::Less, rev + 1)
                        .with_prefix(),
                    Compare::version(name_key.clone(), CompareOp::Equal, 0),
                    Compare::version(vni_key.clone(), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(name_key, encode(&record)?, None),
                    TxnOp::put(vni_key, encode(&spec.name)?, None),
                ]);
            if self.txn("create network", txn).await?.succeeded() {
                return Ok(record);
            }
            // Someone else changed the networks: read again; the checks
            // above now name the conflict if there is one.
        }
        Err(ClusterError::Contention("create network"))
    }

    /// Deletes a network with its VNI and blocks, only if it has no
    /// endpoints left (checked in the same transaction).
    pub async fn delete_network(&self, name: &str) -> Result<(), ClusterError> {
        let key = self.keys.network(name);
        for _ in 0..MAX_TRIES {
            let Some(kv) = self.get("read network", &key).await? else {
                return Err(ClusterError::NoSuchNetwork(name.to_string()));
            };
            let record: NetworkRecord = decode(&key, &kv.value)?;
            let eps = self.keys.endpoints(name);
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision),
                    Compare::version(eps.clone(), CompareOp::Equal, 0).with_prefix(),
                ])
                .and_then([
                    TxnOp::delete(key.clone(), None),
                    TxnOp::delete(self.keys.vni(record.vni), None),
                    TxnOp::delete(
                        self.keys.blocks(name),
                        Some(DeleteOptions::new().with_prefix()),
                    ),
                ]);
            if self.txn("delete network", txn).await?.succeeded() {
                self.ipam.lock().await.forget_network(name);
                return Ok(());
            }
            let (_, left) = self.list(&eps).await?;
            if !left.is_empty() {
                return Err(ClusterError::NetworkInUse {
                    network: name.to_string(),
                    count: left.len(),
                });
            }
        }
        Err(ClusterError::Contention("delete network"))
    }
}

/// Checks a new network against the existing ones; returns its VNI.
fn check_new_network(
    spec: &NetworkSpec,
    subnet: Ipv4Net,
    existing: &[NetworkRecord],
) -> Result<u32, ClusterError> {
    if existing.iter().any(|n| n.name == spec.name) {
        return Err(ClusterError::NetworkExists(spec.name.clone()));
    }
    if let Some(other) = existing
        .iter()
        .find(|n| n.subnet.contains(&subnet.network()) || subnet.contains(&n.subnet.network()))
    {
        return Err(ClusterError::SubnetOverlap {
            subnet,
            other: other.subnet,
            network: other.name.clone(),
        });
    }
    if let Some(s6) = spec.subnet6 {
        if let Some((other, n)) = existing
            .iter()
            .filter_map(|n| n.subnet6.map(|o| (o, n)))
            .find(|(o, _)| o.contains(&s6.network()) || s6.contains(&o.network()))
        {
            return Err(ClusterError::Subnet6Overlap {
                subnet: s6,
                other,
                network: n.name.clone(),
            });
        }
    }
    match spec.vni {
        Some(vni) => match existing.iter().find(|n| n.vni == vni) {
            Some(n) => Err(ClusterError::VniInUse {
                vni,
                network: n.name.clone(),
            }),
            None => Ok(vni),
        },
        None => (FIRST_AUTO_VNI..=MAX_VNI)
            .find(|v| existing.iter().all(|n| n.vni != *v))
            .ok_or(ClusterError::NoFreeVni),
    }
}

/// The network's gateway: its first host address.
pub(crate) fn first_host(subnet: Ipv4Net) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, subnet: &str, vni: u32) -> NetworkRecord {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        NetworkRecord {
            version: 1,
            name: name.into(),
            vni,
            subnet,
            gateway: first_host(subnet),
            block_len: 26,
            options: BTreeMap::new(),
            subnet6: None,
            gateway6: None,
        }
    }

    fn spec(name: &str, subnet: &str, vni: Option<u32>) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: subnet.parse().unwrap(),
            vni,
            options: BTreeMap::new(),
            subnet6: None,
        }
    }

    #[test]
    fn new_network_is_checked_against_existing_ones() {
        let existing = [
            rec("a", "10.90.0.0/16", 4096),
            rec("b", "10.91.0.0/24", 4097),
        ];
        let s = spec("c", "10.92.0.0/24", None);
        assert_eq!(check_new_network(&s, s.subnet, &existing).unwrap(), 4098);
        let s = spec("a", "10.99.0.0/24", None);
        assert!(matches!(
            check_new_network(&s, s.subnet, &existing),
            Err(ClusterError::NetworkExists(_))
        ));
        let s = spec("c", "10.90.5.0/24", None);
        let e = check_new_network(&s, s.subnet, &existing).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 10.90.5.0/24 overlaps 10.90.0.0/16 of cluster network a"
        );
        let s = spec("c", "10.0.0.0/8", None);
        assert!(matches!(
            check_new_network(&s, s.subnet, &existing),
            Err(ClusterError::SubnetOverlap { .. })
        ));
        let mut dual = rec("d", "10.94.0.0/24", 4099);
        dual.subnet6 = Some("fd00:94::/64".parse().unwrap());
        let existing6 = [dual];
        let mut s = spec("e", "10.95.0.0/24", None);
        s.subnet6 = Some("fd00:94::/80".parse().unwrap());
        let e = check_new_network(&s, s.subnet, &existing6).unwrap_err();
        assert_eq!(
            e.to_string(),
            "IPv6 subnet fd00:94::/80 overlaps fd00:94::/64 of cluster network d"
        );
        s.subnet6 = Some("fd00:95::/64".parse().unwrap());
        assert!(check_new_network(&s, s.subnet, &existing6).is_ok());
        let s = spec("c", "10.93.0.0/24", Some(4097));
        assert!(matches!(
            check_new_network(&s, s.subnet, &existing),
            Err(ClusterError::VniInUse { vni: 4097, .. })
        ));
    }
}

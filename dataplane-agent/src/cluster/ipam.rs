//! Cluster IPAM: a network's subnet is cut into blocks (default /26); a node
//! claims a block with a create-if-absent transaction and then hands out its
//! addresses locally. Two nodes never own the same block, so they never hand
//! out the same address, and a node with room in its blocks allocates while
//! etcd is unreachable. Only claiming a new block needs etcd.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use ipnet::Ipv4Net;

use super::keys::{
    decode, encode, BlockRecord, EndpointRecord, KeyKind, NetworkRecord, RECORD_VERSION,
};
use super::{Cluster, ClusterError};

/// A node's address state, per network (loaded from etcd on first use).
#[derive(Debug, Default)]
pub struct LocalIpam {
    nets: HashMap<String, NetIpam>,
}

#[derive(Debug)]
struct NetIpam {
    record: NetworkRecord,
    blocks: Vec<OwnedBlock>,
}

#[derive(Debug)]
struct OwnedBlock {
    cidr: Ipv4Net,
    mod_revision: i64,
    used: BTreeSet<Ipv4Addr>,
}

impl LocalIpam {
    pub(crate) fn forget_network(&mut self, name: &str) {
        self.nets.remove(name);
    }
}

impl NetIpam {
    /// An address is usable unless it is the subnet's network, broadcast or
    /// gateway address.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        let s = self.record.subnet;
        ip != s.network() && ip != s.broadcast() && ip != self.record.gateway
    }

    fn take_local(&mut self) -> Option<Ipv4Addr> {
        for i in 0..self.blocks.len() {
            let cidr = self.blocks[i].cidr;
            let free = cidr
                .hosts_inclusive()
                .find(|ip| self.usable(*ip) && !self.blocks[i].used.contains(ip));
            if let Some(ip) = free {
                self.blocks[i].used.insert(ip);
                return Some(ip);
            }
        }
        None
    }

    fn block_of(&mut self, ip: Ipv4Addr) -> Option<&mut OwnedBlock> {
        self.blocks.iter_mut().find(|b| b.cidr.contains(&ip))
    }
}

/// Every address of a block, network and broadcast included (blocks are
/// slices of a subnet, not subnets of their own).
trait HostsInclusive {
    fn hosts_inclusive(&self) -> Box<dyn Iterator<Item = Ipv4Addr>>;
}

impl HostsInclusive for Ipv4Net {
    fn hosts_inclusive(&self) -> Box<dyn Iterator<Item = Ipv4Addr>> {
        let first = u32::from(self.network());
        let last = u32::from(self.broadcast());
        Box::new((first..=last).map(Ipv4Addr::from))
    }
}

impl Cluster {
    /// Drops the local IPAM state of a network that was deleted.
    pub async fn forget_network(&self, name: &str) {
        self.ipam.lock().await.forget_network(name);
    }

    /// Allocates an address of a cluster network from this node's blocks,
    /// claiming a new block when they are full.
    pub async fn allocate_address(&self, network: &str) -> Result<Ipv4Addr, ClusterError> {
        let mut ipam = self.ipam.lock().await;
        if !ipam.nets.contains_key(network) {
            let loaded = self.load_network_ipam(network).await?;
            ipam.nets.insert(network.to_string(), loaded);
        }
        let Some(net) = ipam.nets.get_mut(network) else {
            return Err(ClusterError::NoSuchNetwork(network.to_string()));
        };
        if let Some(ip) = net.take_local() {
            return Ok(ip);
        }
        let block = self.claim_block(&net.record).await?;
        net.blocks.push(block);
        net.take_local()
            .ok_or_else(|| ClusterError::NetworkFull(network.to_string()))
    }

    /// Makes the addresses in use of `network` exactly `used` (those in this
    /// node's blocks): addresses allocated for an endpoint that was never
    /// made go back to the pool. The caller must hold off allocations while
    /// it computes `used` (the engine's lock).
    pub async fn sync_used(&self, network: &str, used: &BTreeSet<Ipv4Addr>) {
        let mut ipam = self.ipam.lock().await;
        if let Some(net) = ipam.nets.get_mut(network) {
            for b in &mut net.blocks {
                b.used = used
                    .iter()
                    .filter(|ip| b.cidr.contains(*ip))
                    .copied()
                    .collect();
            }
        }
    }

    /// Returns an address to this node's pool (local only).
    pub async fn release_address(&self, network: &str, ip: Ipv4Addr) {
        let mut ipam = self.ipam.lock().await;
        if let Some(b) = ipam.nets.get_mut(network).and_then(|n| n.block_of(ip)) {
            b.used.remove(&ip);
        }
    }

    /// The blocks of `network` this node owns (as loaded or claimed).
    pub async fn owned_blocks(&self, network: &str) -> Vec<Ipv4Net> {
        let ipam = self.ipam.lock().await;
        ipam.nets
            .get(network)
            .map(|n| n.blocks.iter().map(|b| b.cidr).collect())
            .unwrap_or_default()
    }

    /// Gives back this node's blocks of `network` that hold no address, each
    /// deleted only if its key is unchanged. Returns how many were released.
    pub async fn release_empty_blocks(&self, network: &str) -> Result<usize, ClusterError> {
        let mut ipam = self.ipam.lock().await;
        let Some(net) = ipam.nets.get_mut(network) else {
            return Ok(0);
        };
        let mut released = 0;
        let mut kept = Vec::new();
        let mut failed = None;
        for b in std::mem::take(&mut net.blocks) {
            if !b.used.is_empty() || failed.is_some() {
                kept.push(b);
                continue;
            }
            let key = self.keys.block(network, b.cidr);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    b.mod_revision,
                )])
                .and_then([TxnOp::delete(key, None)]);
            match self.txn("release address block", txn).await {
                Ok(resp) if resp.succeeded() => released += 1,
                // Changed meanwhile (reaped and claimed again): not ours.
                Ok(_) => {}
                Err(e) => {
                    failed = Some(e);
                    kept.push(b);
                }
            }
        }
        net.blocks = kept;
        match failed {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }

    /// Makes sure this node still owns the blocks of `network` it allocates
    /// from. After a partition longer than the lease and the grace period,
    /// the other nodes reaped this node's blocks: a block nobody took since
    /// is claimed again (create-if-absent, so a concurrent claim wins
    /// cleanly); a block another node claimed meanwhile is given up here (no
    /// more addresses from it) and returned, so that the caller can report
    /// the endpoints in it. Blocks still recorded as ours only refresh their
    /// revision. Returns the blocks lost to other nodes.
    pub async fn reclaim_blocks(&self, network: &str) -> Result<Vec<Ipv4Net>, ClusterError> {
        let mut ipam = self.ipam.lock().await;
        let Some(net) = ipam.nets.get_mut(network) else {
            return Ok(Vec::new());
        };
        let network_key = self.keys.network(network);
        let mut lost = Vec::new();
        let cidrs: Vec<Ipv4Net> = net.blocks.iter().map(|b| b.cidr).collect();
        for cidr in cidrs {
            let key = self.keys.block(network, cidr);
            // etcd away: `?` keeps the blocks as they are, for a later pass.
            let revision = if let Some(kv) = self.get("read address block", &key).await? {
                let rec: BlockRecord = decode(&kv.key, &kv.value)?;
                (rec.node == self.cfg.node_name).then_some(kv.mod_revision)
            } else {
                let record = BlockRecord {
                    version: RECORD_VERSION,
                    network: network.to_string(),
                    cidr,
                    node: self.cfg.node_name.clone(),
                };
                let txn = Txn::new()
                    .when([
                        Compare::version(key.clone(), CompareOp::Equal, 0),
                        Compare::version(network_key.clone(), CompareOp::Greater, 0),
                    ])
                    .and_then([TxnOp::put(key.clone(), encode(&record)?, None)]);
                let resp = self.txn("claim address block again", txn).await?;
                // Not succeeded: claimed by another node (or the network
                // is gone) between the read and the claim.
                resp.succeeded().then(|| {
                    resp.header()
                        .map_or(0, etcd_client::ResponseHeader::revision)
                })
            };
            if let Some(rev) = revision {
                if let Some(b) = net.blocks.iter_mut().find(|b| b.cidr == cidr) {
                    b.mod_revision = rev;
                }
            } else {
                net.blocks.retain(|b| b.cidr != cidr);
                lost.push(cidr);
            }
        }
        Ok(lost)
    }

    /// Reads the network, the blocks this node owns and the endpoints in
    /// them (after a restart, addresses in use stay in use).
    async fn load_network_ipam(&self, network: &str) -> Result<NetIpam, ClusterError> {
        let record = self.network(network).await?;
        let (_, kvs) = self.list(&self.keys.blocks(network)).await?;
        let mut blocks = Vec::new();
        for kv in kvs {
            if let Some(KeyKind::Block { .. }) = self.keys.parse(&kv.key) {
                let b: BlockRecord = decode(&kv.key, &kv.value)?;
                if b.node == self.cfg.node_name {
                    blocks.push(OwnedBlock {
                        cidr: b.cidr,
                        mod_revision: kv.mod_revision,
                        used: BTreeSet::new(),
                    });
                }
            }
        }
        let mut net = NetIpam { record, blocks };
        if !net.blocks.is_empty() {
            let (_, eps) = self.list(&self.keys.endpoints(network)).await?;
            for kv in eps {
                let ep: EndpointRecord = decode(&kv.key, &kv.value)?;
                if let Some(b) = net.block_of(ep.ip) {
                    b.used.insert(ep.ip);
                }
            }
        }
        Ok(net)
    }

    /// Claims the first free block of the network by transaction (the block
    /// key must be absent and the network must still exist).
    async fn claim_block(&self, net: &NetworkRecord) -> Result<OwnedBlock, ClusterError> {
        let blocks = self.keys.blocks(&net.name);
        let network_key = self.keys.network(&net.name);
        loop {
            let (_, kvs) = self.list(&blocks).await?;
            let taken: BTreeSet<Ipv4Net> = kvs
                .iter()
                .filter_map(|kv| match self.keys.parse(&kv.key) {
                    Some(KeyKind::Block { cidr, .. }) => Some(cidr),
                    _ => None,
                })
                .collect();
            let Ok(mut candidates) = net.subnet.subnets(net.block_len) else {
                return Err(ClusterError::NetworkFull(net.name.clone()));
            };
            let Some(cidr) = candidates.find(|c| !taken.contains(c)) else {
                return Err(ClusterError::NetworkFull(net.name.clone()));
            };
            let record = BlockRecord {
                version: RECORD_VERSION,
                network: net.name.clone(),
                cidr,
                node: self.cfg.node_name.clone(),
            };
            let key = self.keys.block(&net.name, cidr);
            let txn = Txn::new()
                .when([
                    Compare::version(key.clone(), CompareOp::Equal, 0),
                    Compare::version(network_key.clone(), CompareOp::Greater, 0),
                ])
                .and_then([TxnOp::put(key.clone(), encode(&record)?, None)]);
            let resp = self.txn("claim address block", txn).await?;
            if resp.succeeded() {
                let rev = resp
                    .header()
                    .map_or(0, etcd_client::ResponseHeader::revision);
                return Ok(OwnedBlock {
                    cidr,
                    mod_revision: rev,
                    used: BTreeSet::new(),
                });
            }
            if self.get("read network", &network_key).await?.is_none() {
                return Err(ClusterError::NoSuchNetwork(net.name.clone()));
            }
            // Another node claimed it first: list again.
        }
    }
}

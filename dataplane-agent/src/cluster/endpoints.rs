//! Endpoints of cluster networks (address -> node, MAC, container): written
//! with create-if-absent (the network must exist), deleted only if unchanged
//! since this node wrote them; reaping a dead node's entries.

use std::net::{Ipv4Addr, Ipv6Addr};

use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp};

use super::keys::{decode, encode, BlockRecord, EndpointRecord, KeyKind, RECORD_VERSION};
use super::{Cluster, ClusterError};

/// etcd refuses transactions with more operations than this (default 128).
const MAX_TXN_OPS: usize = 100;

/// An endpoint as this node wrote it: `mod_revision` guards its deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenEndpoint {
    pub record: EndpointRecord,
    pub mod_revision: i64,
}

impl Cluster {
    /// Writes an endpoint of this node; fails if the address is taken or the
    /// network is gone.
    pub async fn create_endpoint(
        &self,
        network: &str,
        ip: Ipv4Addr,
        mac: &str,
        container: &str,
    ) -> Result<WrittenEndpoint, ClusterError> {
        self.create_endpoint6(network, ip, None, mac, container)
            .await
    }

    /// [`Cluster::create_endpoint`] announcing the endpoint's IPv6 address
    /// too (dual-stack networks).
    pub async fn create_endpoint6(
        &self,
        network: &str,
        ip: Ipv4Addr,
        ip6: Option<Ipv6Addr>,
        mac: &str,
        container: &str,
    ) -> Result<WrittenEndpoint, ClusterError> {
        let record = EndpointRecord {
            ip6,
            version: RECORD_VERSION,
            network: network.to_string(),
            ip,
            node: self.cfg.node_name.clone(),
            mac: mac.to_string(),
            container: container.to_string(),
        };
        let key = self.keys.endpoint(network, ip);
        let net_key = self.keys.network(network);
        let txn = Txn::new()
            .when([
                Compare::version(key.clone(), CompareOp::Equal, 0),
                Compare::version(net_key.clone(), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(key.clone(), encode(&record)?, None)]);
        let resp = self.txn("create endpoint", txn).await?;
        if resp.succeeded() {
            let mod_revision = resp
                .header()
                .map_or(0, etcd_client::ResponseHeader::revision);
            return Ok(WrittenEndpoint {
                record,
                mod_revision,
            });
        }
        if self.get("read network", &net_key).await?.is_none() {
            return Err(ClusterError::NoSuchNetwork(network.to_string()));
        }
        Err(ClusterError::AddressInUse {
            network: network.to_string(),
            ip,
        })
    }

    /// Allocates an address from this node's blocks and writes the endpoint;
    /// the address goes back to the pool if the write fails.
    pub async fn add_endpoint(
        &self,
        network: &str,
        mac: &str,
        container: &str,
    ) -> Result<WrittenEndpoint, ClusterError> {
        let ip = self.allocate_address(network).await?;
        match self.create_endpoint(network, ip, mac, container).await {
            Ok(ep) => Ok(ep),
            Err(e) => {
                self.release_address(network, ip).await;
                Err(e)
            }
        }
    }

    /// Deletes an endpoint only if nobody changed it since `mod_revision`,
    /// and returns its address to this node's pool.
    pub async fn delete_endpoint(&self, ep: &WrittenEndpoint) -> Result<(), ClusterError> {
        let (network, ip) = (&ep.record.network, ep.record.ip);
        let key = self.keys.endpoint(network, ip);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                ep.mod_revision,
            )])
            .and_then([TxnOp::delete(key, None)]);
        if !self.txn("delete endpoint", txn).await?.succeeded() {
            return Err(ClusterError::EndpointChanged {
                network: network.clone(),
                ip,
            });
        }
        if ep.record.node == self.cfg.node_name {
            self.release_address(network, ip).await;
        }
        Ok(())
    }

    /// Removes a dead node's endpoints, blocks and record. Every deletion is
    /// guarded by the node's liveness key being absent (a node that came back
    /// meanwhile keeps everything) and by the entry being unchanged.
    pub async fn reap_node(&self, node: &str) -> Result<usize, ClusterError> {
        let alive = self.keys.alive(node);
        let (_, kvs) = self.list(&self.keys.root()).await?;
        let mut ops = Vec::new();
        for kv in &kvs {
            let owner = match self.keys.parse(&kv.key) {
                Some(KeyKind::Endpoint { .. }) => {
                    decode::<EndpointRecord>(&kv.key, &kv.value)?.node
                }
                Some(KeyKind::Block { .. }) => decode::<BlockRecord>(&kv.key, &kv.value)?.node,
                _ => continue,
            };
            if owner == node {
                ops.push((kv.key.clone(), kv.mod_revision));
            }
        }
        let mut removed = 0;
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let mut cmp = vec![Compare::version(alive.clone(), CompareOp::Equal, 0)];
            cmp.extend(
                chunk
                    .iter()
                    .map(|(k, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev)),
            );
            let dels: Vec<TxnOp> = chunk
                .iter()
                .map(|(k, _)| TxnOp::delete(k.clone(), None))
                .collect();
            let txn = Txn::new().when(cmp).and_then(dels);
            if !self.txn("reap node", txn).await?.succeeded() {
                if self.get("read node liveness", &alive).await?.is_some() {
                    return Err(ClusterError::NodeAlive(node.to_string()));
                }
                // An entry changed meanwhile: leave it to the next reap.
                continue;
            }
            removed += chunk.len();
        }
        let node_key = self.keys.node(node);
        let txn = Txn::new()
            .when([Compare::version(alive.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::delete(node_key, Some(DeleteOptions::new()))]);
        if !self.txn("reap node", txn).await?.succeeded() {
            return Err(ClusterError::NodeAlive(node.to_string()));
        }
        Ok(removed)
    }
}

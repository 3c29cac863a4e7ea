//! Node registration: the node's record (`nodes/<name>`, permanent) and its
//! liveness key (`alive/<name>`, bound to a lease kept alive by a task).
//! When the lease is lost (expired while etcd or the network was away) the
//! task grants a new one and writes the liveness key again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{PutOptions, Txn, TxnOp};
use tokio::task::JoinHandle;

use super::keys::{encode, AliveRecord, NodeRecord, RECORD_VERSION};
use super::{Cluster, ClusterError};

/// A registered node; dropping it stops the keep-alive (the lease then
/// expires and other nodes mark this node down). [`Registration::deregister`]
/// revokes the lease at once.
pub struct Registration {
    lease: Arc<AtomicI64>,
    task: JoinHandle<()>,
    cluster: Cluster,
}

impl Registration {
    /// The lease currently holding the liveness key.
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// Stops keeping the lease alive and revokes it (clean shutdown).
    pub async fn deregister(self) -> Result<(), ClusterError> {
        self.task.abort();
        let id = self.lease_id();
        let mut lease = self.cluster.client.lease_client();
        self.cluster.call("revoke lease", lease.revoke(id)).await?;
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    /// Writes the node record and the liveness key under a fresh lease and
    /// starts the keep-alive task.
    pub async fn register_node(&self) -> Result<Registration, ClusterError> {
        let id = self.grant_and_register().await?;
        let lease = Arc::new(AtomicI64::new(id));
        let task = tokio::spawn(keep_alive(self.clone(), lease.clone()));
        Ok(Registration {
            lease,
            task,
            cluster: self.clone(),
        })
    }

    /// Grants a lease and writes, in one transaction, the node record and
    /// the liveness key bound to the lease. Also used when the lease was
    /// lost: the record may have been reaped meanwhile.
    async fn grant_and_register(&self) -> Result<i64, ClusterError> {
        let ttl = i64::try_from(self.cfg.lease_ttl.as_secs().max(2)).unwrap_or(10);
        let mut lease = self.client.lease_client();
        let id = self.call("grant lease", lease.grant(ttl, None)).await?.id();
        let record = NodeRecord {
            version: RECORD_VERSION,
            name: self.cfg.node_name.clone(),
            address: self.cfg.advertise,
            vxlan_port: self.cfg.vxlan_port,
        };
        let alive = AliveRecord {
            version: RECORD_VERSION,
            lease: id,
        };
        let txn = Txn::new().and_then([
            TxnOp::put(self.keys.node(&record.name), encode(&record)?, None),
            TxnOp::put(
                self.keys.alive(&record.name),
                encode(&alive)?,
                Some(PutOptions::new().with_lease(id)),
            ),
        ]);
        self.txn("register node", txn).await?;
        Ok(id)
    }
}

/// Keeps the lease alive every ttl/3; re-registers when the lease is gone.
async fn keep_alive(cluster: Cluster, lease: Arc<AtomicI64>) {
    let period = (cluster.cfg.lease_ttl / 3).max(Duration::from_millis(300));
    let mut lost = false;
    loop {
        if lost {
            match cluster.grant_and_register().await {
                Ok(id) => {
                    tracing::info!(lease = id, "cluster: lease was lost, node registered again");
                    lease.store(id, Ordering::SeqCst);
                    lost = false;
                }
                Err(e) => {
                    tracing::warn!("cluster: cannot register node again: {e}");
                    tokio::time::sleep(period).await;
                    continue;
                }
            }
        }
        let id = lease.load(Ordering::SeqCst);
        let mut client = cluster.client.lease_client();
        let (mut keeper, mut stream) = match cluster
            .call("keep lease alive", client.keep_alive(id))
            .await
        {
            Ok(ks) => ks,
            Err(ClusterError::Etcd {
                source: etcd_client::Error::LeaseKeepAliveError(_),
                ..
            }) => {
                lost = true;
                continue;
            }
            Err(e) => {
                tracing::warn!("cluster: keep-alive: {e}");
                tokio::time::sleep(period).await;
                continue;
            }
        };
        loop {
            tokio::time::sleep(period).await;
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(cluster.cfg.op_timeout, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
                Ok(Ok(Some(_))) => {
                    lost = true;
                    break;
                }
                Ok(Ok(None) | Err(_)) | Err(_) => break,
            }
        }
    }
}

//! [`Cluster`]: the connection to etcd shared by every cluster operation.
//! Owns the deadlines (every request is bounded by `op_timeout`, so a dead
//! store gives a clear error quickly), the paginated consistent listing and
//! the node-local IPAM state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, Txn, TxnResponse};
use tokio::sync::Mutex;

use super::ipam::LocalIpam;
use super::keys::{prefix_end, Keys};
use super::{ClusterConfig, ClusterError};

/// Keys fetched per page when listing (keeps each response well under the
/// gRPC message limit even with 100k endpoints).
const LIST_PAGE: i64 = 2000;

/// One key-value pair as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub lease: i64,
}

impl Kv {
    pub(crate) fn from_etcd(kv: &etcd_client::KeyValue) -> Option<Kv> {
        Some(Kv {
            key: kv.key_str().ok()?.to_string(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        })
    }
}

/// A connected cluster store client for one node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    pub(crate) cfg: Arc<ClusterConfig>,
    pub(crate) ipam: Arc<Mutex<LocalIpam>>,
}

impl Cluster {
    /// Connects to the endpoints and checks that the store answers within
    /// `op_timeout`; an unreachable store is a one-line error.
    pub async fn connect(cfg: ClusterConfig) -> Result<Cluster, ClusterError> {
        let endpoints = cfg.endpoints.join(",");
        let opts = ConnectOptions::new()
            .with_connect_timeout(cfg.op_timeout)
            .with_keep_alive(Duration::from_secs(2), cfg.op_timeout)
            .with_keep_alive_while_idle(true);
        let client = match tokio::time::timeout(
            cfg.op_timeout,
            Client::connect(cfg.endpoints.clone(), Some(opts)),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => return Err(ClusterError::unreachable(endpoints, source)),
            Err(_) => {
                return Err(ClusterError::Timeout {
                    op: "connect",
                    timeout: cfg.op_timeout,
                })
            }
        };
        let cluster = Cluster {
            client,
            keys: Keys::new(&cfg.prefix),
            ipam: Arc::new(Mutex::new(LocalIpam::default())),
            cfg: Arc::new(cfg),
        };
        // The channel connects lazily: probe once so that a dead store is
        // reported now, naming the endpoints.
        let mut kv = cluster.client.kv_client();
        let probe = kv.get(
            cluster.keys.root(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        );
        match tokio::time::timeout(cluster.cfg.op_timeout, probe).await {
            Ok(Ok(_)) => Ok(cluster),
            Ok(Err(source)) => Err(ClusterError::unreachable(endpoints, source)),
            Err(_) => Err(ClusterError::Timeout {
                op: "connect",
                timeout: cluster.cfg.op_timeout,
            }),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn node_name(&self) -> &str {
        &self.cfg.node_name
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// The raw etcd client (tests and tools: compaction, direct writes).
    pub fn etcd(&self) -> Client {
        self.client.clone()
    }

    /// Runs one etcd request under the deadline.
    pub(crate) async fn call<T, F>(&self, op: &'static str, fut: F) -> Result<T, ClusterError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.cfg.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ClusterError::etcd(op, source)),
            Err(_) => Err(ClusterError::Timeout {
                op,
                timeout: self.cfg.op_timeout,
            }),
        }
    }

    pub(crate) async fn txn(
        &self,
        op: &'static str,
        txn: Txn,
    ) -> Result<TxnResponse, ClusterError> {
        let mut kv = self.client.kv_client();
        self.call(op, kv.txn(txn)).await
    }

    /// Reads one key: its value and mod revision.
    pub(crate) async fn get(
        &self,
        op: &'static str,
        key: &str,
    ) -> Result<Option<Kv>, ClusterError> {
        let mut kv = self.client.kv_client();
        let resp = self.call(op, kv.get(key, None)).await?;
        Ok(resp.kvs().first().and_then(Kv::from_etcd))
    }

    /// Lists every key under `prefix` at one revision (paginated), returning
    /// that revision: a watch from `revision + 1` misses nothing.
    pub async fn list(&self, prefix: &str) -> Result<(i64, Vec<Kv>), ClusterError> {
        self.list_as("list", prefix).await
    }

    /// [`Cluster::list`] naming the operation in errors.
    pub(crate) async fn list_as(
        &self,
        op: &'static str,
        prefix: &str,
    ) -> Result<(i64, Vec<Kv>), ClusterError> {
        let end = prefix_end(prefix.as_bytes());
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut out = Vec::new();
        let mut kv = self.client.kv_client();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision != 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self.call(op, kv.get(start.clone(), Some(opts))).await?;
            if revision == 0 {
                revision = resp
                    .header()
                    .map_or(0, etcd_client::ResponseHeader::revision);
            }
            out.extend(resp.kvs().iter().filter_map(Kv::from_etcd));
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok((revision, out))
    }
}

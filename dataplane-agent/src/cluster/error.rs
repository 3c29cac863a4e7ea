//! Errors of the cluster store: each one's Display is a one-line message.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// For the engine: an overlay network asked of an agent started
    /// without `--cluster-store`.
    #[error("overlay networks need a cluster store: start the agent with --cluster-store etcd://HOST:PORT")]
    NoClusterStore,
    #[error("invalid cluster store {url:?}: {reason}")]
    InvalidStore { url: String, reason: String },
    #[error("cluster store {endpoints} unreachable: {detail}")]
    Unreachable {
        endpoints: String,
        detail: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cluster store did not answer within {timeout:?} ({op})")]
    Timeout { op: &'static str, timeout: Duration },
    #[error("cluster store failed ({op}): {detail}")]
    Etcd {
        op: &'static str,
        detail: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot encode a cluster record: {source}")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error("cluster record {key} is not valid: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cluster record {key} has version {version}, this agent reads version 1")]
    UnknownVersion { key: String, version: u32 },
    #[error("invalid name {0:?}: use 1-128 characters without '/'")]
    InvalidName(String),
    #[error("cluster network {0} already exists")]
    NetworkExists(String),
    #[error("VNI {vni} is already used by cluster network {network}")]
    VniInUse { vni: u32, network: String },
    #[error("VNI {0} is out of range (1-16777215)")]
    VniOutOfRange(u32),
    #[error("no free VNI left")]
    NoFreeVni,
    #[error("subnet {subnet} overlaps {other} of cluster network {network}")]
    SubnetOverlap {
        subnet: Ipv4Net,
        other: Ipv4Net,
        network: String,
    },
    /// A dual-stack cluster network's IPv6 subnet (the message says why).
    #[error("{0}")]
    BadSubnet6(String),
    /// A dual-stack cluster network's IPv6 subnet overlaps another's.
    #[error("IPv6 subnet {subnet} overlaps {other} of cluster network {network}")]
    Subnet6Overlap {
        subnet: ipnet::Ipv6Net,
        other: ipnet::Ipv6Net,
        network: String,
    },
    #[error("subnet {0} is too small for a cluster network (at most /30)")]
    SubnetTooSmall(Ipv4Net),
    #[error("no such cluster network: {0}")]
    NoSuchNetwork(String),
    #[error("cluster network {network} still has {count} endpoint(s)")]
    NetworkInUse { network: String, count: usize },
    #[error("cluster network {0} has no free address block left")]
    NetworkFull(String),
    #[error("address {ip} of cluster network {network} is already in use")]
    AddressInUse { network: String, ip: Ipv4Addr },
    #[error("endpoint {ip} of cluster network {network} changed or was removed meanwhile")]
    EndpointChanged { network: String, ip: Ipv4Addr },
    #[error("node {0} is alive: only a dead node can be reaped")]
    NodeAlive(String),
    #[error("too many concurrent changes to the cluster store ({0}); try again")]
    Contention(&'static str),
}

impl ClusterError {
    pub(crate) fn etcd(op: &'static str, source: etcd_client::Error) -> Self {
        ClusterError::Etcd {
            op,
            detail: detail(&source),
            source,
        }
    }

    pub(crate) fn unreachable(endpoints: String, source: etcd_client::Error) -> Self {
        ClusterError::Unreachable {
            endpoints,
            detail: detail(&source),
            source,
        }
    }
}

/// A short one-line reason: the gRPC message and the innermost cause
/// (e.g. "tcp connect error: Connection refused (os error 111)").
fn detail(e: &etcd_client::Error) -> String {
    let text = match e {
        etcd_client::Error::GRpcStatus(status) => {
            let mut msg = status.message().to_string();
            let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
            let mut innermost = None;
            while let Some(c) = cause {
                innermost = Some(c.to_string());
                cause = c.source();
            }
            if let Some(inner) = innermost {
                if !msg.contains(&inner) {
                    msg = if msg.is_empty() {
                        inner
                    } else {
                        format!("{msg}: {inner}")
                    };
                }
            }
            if msg.is_empty() {
                format!("{:?}", status.code())
            } else {
                msg
            }
        }
        other => other.to_string(),
    };
    text.replace('\n', " ")
}

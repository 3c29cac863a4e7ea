//! The cluster's key schema in etcd and the records stored under it: the one
//! place that knows key layout and value encoding.
//!
//! Under a prefix (default `/dataplane/v1`):
//!
//! | key | value | lifetime |
//! |-----|-------|----------|
//! | `nodes/<node>` | [`NodeRecord`] | until the node is reaped |
//! | `alive/<node>` | [`AliveRecord`] | bound to the node's lease (liveness) |
//! | `networks/<name>` | [`NetworkRecord`] | until `network rm` |
//! | `vnis/<vni>` | network name (JSON string) | with its network |
//! | `blocks/<network>/<a.b.c.d>_<len>` | [`BlockRecord`] | claimed by one node |
//! | `endpoints/<network>/<a.b.c.d>` | [`EndpointRecord`] | create-if-absent |
//!
//! Values are JSON with a `version` field ([`RECORD_VERSION`]); a reader
//! refuses versions it does not know instead of guessing.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::ClusterError;

/// Version of every record written by this code.
pub const RECORD_VERSION: u32 = 1;

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "/dataplane/v1";

/// A node: how other nodes reach it over the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub version: u32,
    pub name: String,
    /// Underlay address (VXLAN tunnel endpoint).
    pub address: Ipv4Addr,
    pub vxlan_port: u16,
}

/// Written under the node's lease: present while the node is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliveRecord {
    pub version: u32,
    pub lease: i64,
}

/// A cluster (overlay) network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub version: u32,
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Net,
    /// The gateway address every node answers for (first host address).
    pub gateway: Ipv4Addr,
    /// Prefix length of the IPAM blocks nodes claim from `subnet`.
    pub block_len: u8,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Dual stack: the IPv6 subnet (addresses derived from the IPv4 ones,
    /// see [`super::dual`]); absent in records of IPv4-only networks and
    /// of agents from before dual stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// The IPv6 gateway every node answers for (first host address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

/// An IPAM block of a network's subnet, owned by one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub version: u32,
    pub network: String,
    pub cidr: Ipv4Net,
    pub node: String,
}

/// An endpoint: which node hosts an address of a cluster network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub version: u32,
    pub network: String,
    pub ip: Ipv4Addr,
    pub node: String,
    /// Container-side MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub container: String,
    /// The endpoint's IPv6 address on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
}

/// What a key under the prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Node(String),
    Alive(String),
    Network(String),
    Vni(u32),
    Block { network: String, cidr: Ipv4Net },
    Endpoint { network: String, ip: Ipv4Addr },
}

/// Builds and parses keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` without a trailing slash, e.g. `/dataplane/v1`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The whole cluster state: `<prefix>/`.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }
    pub fn node(&self, name: &str) -> String {
        format!("{}/nodes/{name}", self.prefix)
    }
    pub fn alive(&self, name: &str) -> String {
        format!("{}/alive/{name}", self.prefix)
    }
    pub fn networks(&self) -> String {
        format!("{}/networks/", self.prefix)
    }
    pub fn network(&self, name: &str) -> String {
        format!("{}/networks/{name}", self.prefix)
    }
    pub fn vni(&self, vni: u32) -> String {
        format!("{}/vnis/{vni}", self.prefix)
    }
    pub fn blocks(&self, network: &str) -> String {
        format!("{}/blocks/{network}/", self.prefix)
    }
    pub fn all_blocks(&self) -> String {
        format!("{}/blocks/", self.prefix)
    }
    pub fn block(&self, network: &str, cidr: Ipv4Net) -> String {
        format!(
            "{}/blocks/{network}/{}_{}",
            self.prefix,
            cidr.network(),
            cidr.prefix_len()
        )
    }
    pub fn endpoints(&self, network: &str) -> String {
        format!("{}/endpoints/{network}/", self.prefix)
    }
    pub fn all_endpoints(&self) -> String {
        format!("{}/endpoints/", self.prefix)
    }
    pub fn endpoint(&self, network: &str, ip: Ipv4Addr) -> String {
        format!("{}/endpoints/{network}/{ip}", self.prefix)
    }

    /// Parses a key under the prefix; `None` for keys this version does not
    /// know (ignored, so a newer writer does not break an older reader).
    pub fn parse(&self, key: &str) -> Option<KeyKind> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let (kind, rest) = rest.split_once('/')?;
        match kind {
            "nodes" => valid_name(rest).then(|| KeyKind::Node(rest.to_string())),
            "alive" => valid_name(rest).then(|| KeyKind::Alive(rest.to_string())),
            "networks" => valid_name(rest).then(|| KeyKind::Network(rest.to_string())),
            "vnis" => rest.parse().ok().map(KeyKind::Vni),
            "blocks" => {
                let (network, cidr) = rest.split_once('/')?;
                let (addr, len) = cidr.split_once('_')?;
                let cidr = Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
                Some(KeyKind::Block {
                    network: network.to_string(),
                    cidr,
                })
            }
            "endpoints" => {
                let (network, ip) = rest.split_once('/')?;
                Some(KeyKind::Endpoint {
                    network: network.to_string(),
                    ip: ip.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

/// Names used as one key segment: no `/`, not empty.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.contains('/') && !name.contains('\0')
}

/// Encodes a record as JSON.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(value).map_err(|source| ClusterError::Encode { source })
}

/// Decodes a record and checks its version.
pub fn decode<T: DeserializeOwned + Versioned>(key: &str, bytes: &[u8]) -> Result<T, ClusterError> {
    let v: T = serde_json::from_slice(bytes).map_err(|source| ClusterError::Decode {
        key: key.to_string(),
        source,
    })?;
    if v.record_version() != RECORD_VERSION {
        return Err(ClusterError::UnknownVersion {
            key: key.to_string(),
            version: v.record_version(),
        });
    }
    Ok(v)
}

/// Records that carry a `version` field.
pub trait Versioned {
    fn record_version(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn record_version(&self) -> u32 {
                self.version
            }
        }
    )*};
}
versioned!(
    NodeRecord,
    AliveRecord,
    NetworkRecord,
    BlockRecord,
    EndpointRecord
);

/// The smallest key greater than every key starting with `prefix` (etcd's
/// range end for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_parse() {
        let k = Keys::new("/dp/v1/");
        let net: Ipv4Net = "10.90.1.64/26".parse().unwrap();
        let ip: Ipv4Addr = "10.90.1.70".parse().unwrap();
        assert_eq!(k.parse(&k.node("h1")), Some(KeyKind::Node("h1".into())));
        assert_eq!(k.parse(&k.alive("h1")), Some(KeyKind::Alive("h1".into())));
        assert_eq!(
            k.parse(&k.network("ov1")),
            Some(KeyKind::Network("ov1".into()))
        );
        assert_eq!(k.parse(&k.vni(4096)), Some(KeyKind::Vni(4096)));
        assert_eq!(
            k.parse(&k.block("ov1", net)),
            Some(KeyKind::Block {
                network: "ov1".into(),
                cidr: net
            })
        );
        assert_eq!(
            k.parse(&k.endpoint("ov1", ip)),
            Some(KeyKind::Endpoint {
                network: "ov1".into(),
                ip
            })
        );
        assert_eq!(k.parse("/dp/v1/unknown/x"), None);
        assert_eq!(k.parse("/other/nodes/h1"), None);
    }

    #[test]
    fn records_from_before_dual_stack_still_parse() {
        let old = br#"{"version":1,"network":"ov1","ip":"10.90.0.2","node":"h1","mac":"02:42:0a:5a:00:02","container":"a"}"#;
        let ep: EndpointRecord = decode("k", old).unwrap();
        assert_eq!(ep.ip6, None);
        let old = br#"{"version":1,"name":"ov1","vni":4096,"subnet":"10.90.0.0/24","gateway":"10.90.0.1","block_len":26}"#;
        let net: NetworkRecord = decode("k", old).unwrap();
        assert_eq!((net.subnet6, net.gateway6), (None, None));
        // And an IPv4-only record is written as before.
        let text = String::from_utf8(encode(&net).unwrap()).unwrap();
        assert!(!text.contains("subnet6"), "{text}");
    }

    #[test]
    fn decode_refuses_unknown_versions() {
        let rec = AliveRecord {
            version: 2,
            lease: 1,
        };
        let bytes = encode(&rec).unwrap();
        let err = decode::<AliveRecord>("k", &bytes).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }
}

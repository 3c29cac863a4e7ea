//! The agent's core model: networks, containers and their endpoints.
//!
//! This is what is persisted (desired state) and what every front end (CLI,
//! HTTP API, later a Docker or CNI plugin) speaks. It knows nothing about
//! netlink or BPF.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{
    ipam::Pool,
    ports::{ExposedPort, PortMapping},
};

pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_MTU: u32 = 1500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: u32,
    pub name: String,
    pub driver: String,
    pub pool: Pool,
    pub mtu: u32,
    pub internal: bool,
    pub icc: bool,
    /// Last address handed out (IPAM allocates round-robin after it).
    #[serde(default)]
    pub last_ip: Option<Ipv4Addr>,
    /// The default network cannot be removed.
    #[serde(default)]
    pub builtin: bool,
}

/// How a container gets its network namespace, as Docker's `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum NetMode {
    /// Own namespace, attached to user networks (the usual case).
    Bridge,
    /// The host's own namespace.
    Host,
    /// Own namespace with only `lo`.
    None,
    /// Shares another container's namespace.
    Container(String),
}

impl NetMode {
    /// Parse the `--network` value; any other string names a network.
    pub fn parse(s: &str) -> (NetMode, Option<String>) {
        match s {
            "host" => (NetMode::Host, None),
            "none" => (NetMode::None, None),
            _ => match s.strip_prefix("container:") {
                Some(name) => (NetMode::Container(name.to_string()), None),
                None => (NetMode::Bridge, Some(s.to_string())),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            NetMode::Bridge => "bridge".into(),
            NetMode::Host => "host".into(),
            NetMode::None => "none".into(),
            NetMode::Container(n) => format!("container:{n}"),
        }
    }
}

/// A container's attachment to one network: a veth pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    /// Name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Name of the host side.
    pub host_ifname: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: [u8; 6],
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// Whether the container's default route goes through this endpoint.
    pub default_route: bool,
}

/// `--link NAME[:ALIAS]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSpec {
    pub name: String,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub mode: NetMode,
    pub hostname: Option<String>,
    pub endpoints: Vec<Endpoint>,
    /// Published ports (`-p`, `-P`), with the host ports chosen.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Exposed ports (`--expose`).
    #[serde(default)]
    pub expose: Vec<ExposedPort>,
    /// Links to other containers (`--link`).
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

/// Docker's MAC scheme: 02:42 followed by the IPv4 address.
pub fn mac_for_ip(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

// ---- API messages (shared by the server and the client) ----

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub icc: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerCreate {
    pub name: String,
    /// `--network`: a network name, `host`, `none` or `container:NAME`.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// `-p` specs.
    #[serde(default)]
    pub publish: Vec<String>,
    /// `-P`: publish every exposed port on a random host port.
    #[serde(default)]
    pub publish_all: bool,
    /// `--expose` specs.
    #[serde(default)]
    pub expose: Vec<String>,
    /// `--link NAME[:ALIAS]`.
    #[serde(default)]
    pub links: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectRequest {
    pub container: String,
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    pub id: u32,
    pub name: String,
    pub driver: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
    pub mtu: u32,
    pub internal: bool,
    pub icc: bool,
    pub containers: Vec<NetworkMember>,
    /// Drops counted on this network's endpoints, by reason.
    #[serde(default)]
    pub drops: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkMember {
    pub container: String,
    pub ip: Ipv4Addr,
    pub mac: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointView {
    pub network: String,
    pub interface: String,
    pub host_interface: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: String,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    pub counters: Option<CountersView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountersView {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub drops: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerView {
    pub id: String,
    pub name: String,
    pub network_mode: String,
    pub hostname: Option<String>,
    pub netns: String,
    pub endpoints: Vec<EndpointView>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub expose: Vec<ExposedPort>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    pub uplink: Option<String>,
    pub uplink_ip: Option<Ipv4Addr>,
    pub bpffs: String,
    pub host_netns: String,
    pub nat_port_range: (u16, u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_network_modes() {
        assert_eq!(NetMode::parse("host"), (NetMode::Host, None));
        assert_eq!(NetMode::parse("none"), (NetMode::None, None));
        assert_eq!(
            NetMode::parse("container:web"),
            (NetMode::Container("web".into()), None)
        );
        assert_eq!(
            NetMode::parse("frontend"),
            (NetMode::Bridge, Some("frontend".into()))
        );
    }

    #[test]
    fn docker_style_mac() {
        assert_eq!(
            fmt_mac(&mac_for_ip(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }
}

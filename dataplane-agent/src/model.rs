//! The agent's core model: networks, containers and their endpoints.
//!
//! This is what is persisted (desired state) and what every front end (CLI,
//! HTTP API, later a Docker or CNI plugin) speaks. It knows nothing about
//! netlink or BPF.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{
    dns::files::DnsConfig,
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
    /// The subnet was given by the user (`--subnet`): only then may
    /// containers ask for a static address (`--ip`), as in Docker.
    #[serde(default)]
    pub user_subnet: bool,
    /// Masquerade traffic leaving the host
    /// (`com.docker.network.bridge.enable_ip_masquerade`).
    #[serde(default = "yes")]
    pub masquerade: bool,
    /// Default host address of ports published by containers on this network
    /// (`com.docker.network.bridge.host_binding_ipv4`).
    #[serde(default)]
    pub host_binding: Option<Ipv4Addr>,
    /// Driver `lan`: the host interface on whose LAN the containers live.
    #[serde(default)]
    pub parent: Option<String>,
    /// Dual stack (`--ipv6`): the network's IPv6 subnet and gateway.
    #[serde(default)]
    pub ipv6: Option<Ipv6Pool>,
}

/// The IPv6 side of a dual-stack network (`network create --ipv6`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Pool {
    pub subnet: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
    /// `--ip-range` of the IPv6 family: addresses are allocated from it.
    #[serde(default)]
    pub ip_range: Option<(Ipv6Addr, u8)>,
    /// Last IPv6 address handed out (allocation goes round-robin after it).
    #[serde(default)]
    pub last_ip: Option<Ipv6Addr>,
    /// Masquerade IPv6 traffic leaving the host: the default for ULA
    /// subnets (fd00::/8), routed for global ones, as
    /// `com.docker.network.bridge.gateway_mode_ipv6=nat|routed` says.
    #[serde(default = "yes")]
    pub masquerade: bool,
}

fn yes() -> bool {
    true
}

/// How a container gets its network namespace, as Docker's `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum NetworkMode {
    /// Own namespace, attached to user networks (the usual case).
    Bridge,
    /// The host's own namespace.
    Host,
    /// Own namespace with only `lo`.
    None,
    /// Shares another container's namespace.
    Container(String),
    /// A namespace the agent does not own (a Docker sandbox): the value is
    /// its path (Docker's sandbox key) once joined, empty before. The agent
    /// creates the veth in the host namespace and Docker moves the container
    /// side; see `engine/external.rs`.
    External(String),
    /// A namespace someone else made (`container attach`, the CNI plugin):
    /// the agent bind-mounts it at its own namespace path, plumbs endpoints
    /// into it like its own, and gives it back untouched at detach; see
    /// `engine/attached.rs`.
    Attached(Attachment),
}

/// Where an attached namespace came from and who it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The path given (`--netns`, CNI_NETNS) or `/proc/PID/ns/net`.
    pub source: String,
    /// `--pid`: the process whose namespace it is; its exit ends the
    /// attachment.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The process's start time (field 22 of /proc/PID/stat), so that a
    /// reused pid is not taken for it.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// Device and inode of the namespace (nsfs): the same namespace is
    /// recognised whatever path names it.
    pub ns_dev: u64,
    pub ns_ino: u64,
    /// Who attached it: `cli`, or the runtime's container id (CNI).
    pub owner: String,
    /// Its runtime holds the published host ports itself (Podman's
    /// `enable_port_reservation`): the agent binds none of them.
    #[serde(default)]
    pub runtime_holds_ports: bool,
}

impl NetworkMode {
    /// Parse the `--network` value; any other string names a network.
    pub fn parse(s: &str) -> (NetworkMode, Option<String>) {
        match s {
            "host" => (NetworkMode::Host, None),
            "none" => (NetworkMode::None, None),
            _ => match s.strip_prefix("container:") {
                Some(name) => (NetworkMode::Container(name.to_string()), None),
                None => (NetworkMode::Bridge, Some(s.to_string())),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            NetworkMode::Bridge => "bridge".into(),
            NetworkMode::Host => "host".into(),
            NetworkMode::None => "none".into(),
            NetworkMode::Container(n) => format!("container:{n}"),
            NetworkMode::External(_) => "external".into(),
            NetworkMode::Attached(_) => "attached".into(),
        }
    }
}

/// A container's attachment to one network: a veth pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    /// Name inside the container (`eth0`, `eth1`, ...).
    #[serde(alias = "ifname")]
    pub interface: String,
    /// Name of the host side (`dp` + 8 hex digits).
    #[serde(alias = "host_ifname")]
    pub host_interface: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: [u8; 6],
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// Whether the container's default route goes through this endpoint.
    pub default_route: bool,
    /// `--network-alias` / `connect --alias`: more names of the container
    /// on this network (embedded DNS).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Dual stack: the endpoint's IPv6 address, prefix and gateway (None on
    /// IPv4-only networks).
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix_len6: u8,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
}

/// Docker's legacy `--link NAME[:ALIAS]` (a policy: not a kernel link
/// (netdev) nor a bpf_link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyLink {
    pub name: String,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    #[serde(alias = "mode")]
    pub network_mode: NetworkMode,
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
    pub links: Vec<LegacyLink>,
    /// `--dns`, `--dns-search`, `--dns-option`, `--add-host`.
    #[serde(default)]
    pub dns: DnsConfig,
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
#[serde(deny_unknown_fields)]
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
    /// Driver options as Docker's `-o KEY=VALUE` (`com.docker.network.*`).
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// Driver `lan`: the parent interface (`--parent`).
    #[serde(default)]
    pub parent: Option<String>,
    /// `--ipv6`: dual stack (Docker's `EnableIPv6`).
    #[serde(default, alias = "enable_ipv6")]
    pub ipv6: bool,
    /// The IPv6 `--subnet`, `--gateway` and `--ip-range` (the CLI sorts
    /// the repeated flags by family; an IPv6 value in `subnet`, `gateway` or
    /// `ip_range` is taken as these too).
    #[serde(default)]
    pub subnet6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    #[serde(default)]
    pub ip_range6: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerCreate {
    pub name: String,
    /// `--network`: a network name, `host`, `none` or `container:NAME`.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    /// `--ip6`: a static IPv6 address (dual-stack user subnets only).
    #[serde(default)]
    pub ip6: Option<String>,
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
    /// Docker's legacy `--link NAME[:ALIAS]` (a policy: not a kernel link
    /// (netdev) nor a bpf_link).
    #[serde(default)]
    pub links: Vec<String>,
    /// `--network-alias` (on the container's network).
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `--dns` servers.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--dns-search` domains.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-option` options.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host NAME:ADDR`.
    #[serde(default)]
    pub add_hosts: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    pub container: String,
    #[serde(default)]
    pub ip: Option<String>,
    /// `--ip6`: a static IPv6 address.
    #[serde(default)]
    pub ip6: Option<String>,
    /// `disconnect --force` (accepted as Docker's; a disconnect never needs it here).
    #[serde(default)]
    pub force: bool,
    /// `--alias`: names of the container on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Name of the interface inside the container (default: the first free
    /// `ethN`; the CNI plugin passes CNI_IFNAME).
    #[serde(default)]
    pub interface: Option<String>,
    /// MAC of the container side (default: Docker's 02:42 + address).
    #[serde(default)]
    pub mac: Option<String>,
}

/// `container attach`: adopt a namespace someone else made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    pub name: String,
    /// Path of the namespace (`--netns`, CNI_NETNS).
    #[serde(default)]
    pub netns: Option<String>,
    /// `--pid`: the namespace of this process.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Who attaches it (default `cli`; the CNI plugin passes the runtime's
    /// container id).
    #[serde(default)]
    pub owner: Option<String>,
}

/// Ports published for a container whose runtime publishes them itself
/// (CNI's `portMappings`): replaces what it published before.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// `-p` specs.
    #[serde(default)]
    pub publish: Vec<String>,
    /// The runtime binds the host ports itself (exact ports only): the
    /// agent checks them against its other mappings but binds nothing.
    #[serde(default)]
    pub runtime_holds_ports: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    pub id: u32,
    pub name: String,
    pub driver: String,
    /// None for the predefined `host` and `none` networks.
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    pub mtu: u32,
    pub internal: bool,
    pub icc: bool,
    #[serde(default = "yes")]
    pub masquerade: bool,
    #[serde(default)]
    pub host_binding_ipv4: Option<Ipv4Addr>,
    /// Driver `lan`: the parent interface.
    #[serde(default)]
    pub parent: Option<String>,
    pub containers: Vec<NetworkMember>,
    /// Drops counted on this network's endpoints, by reason.
    #[serde(default)]
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Dual stack (Docker's field).
    #[serde(rename = "EnableIPv6", default)]
    pub enable_ipv6: bool,
    /// Docker's `IPAM`: one `Config` entry per address family.
    #[serde(rename = "IPAM", default)]
    pub ipam: IpamView,
    /// IPv6 egress: `nat` (masqueraded) or `routed`; None without IPv6.
    #[serde(default)]
    pub gateway_mode_ipv6: Option<String>,
}

/// Docker's `IPAM` object of `network inspect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpamView {
    #[serde(rename = "Driver", default)]
    pub driver: String,
    #[serde(rename = "Config", default)]
    pub config: Vec<IpamConfigView>,
}

/// One address family's subnet, gateway and range (Docker's names).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpamConfigView {
    #[serde(rename = "Subnet")]
    pub subnet: String,
    #[serde(rename = "Gateway", default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkMember {
    pub container: String,
    /// None on `host` and `none`.
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<String>,
    /// Its IPv6 address on a dual-stack network.
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
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
    #[serde(default)]
    pub aliases: Vec<String>,
    pub counters: Option<CountersView>,
    /// Dual stack, with Docker's names (empty / 0 without IPv6).
    #[serde(rename = "GlobalIPv6Address", default)]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen", default)]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "IPv6Gateway", default)]
    pub ipv6_gateway: String,
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
    pub links: Vec<LegacyLink>,
    /// Point-to-point links this container is an end of.
    #[serde(default)]
    pub p2p: Vec<P2pView>,
    /// The DNS flags as given.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Whether names are served by the embedded resolver (127.0.0.11).
    #[serde(default)]
    pub embedded_dns: bool,
    /// Directory of its hosts, resolv.conf and hostname files (what
    /// `container exec` mounts over /etc), if it has them.
    #[serde(default)]
    pub files_dir: Option<String>,
    /// Attached namespaces: who attached it (`cli` or the runtime's
    /// container id).
    #[serde(default)]
    pub owner: Option<String>,
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
        assert_eq!(NetworkMode::parse("host"), (NetworkMode::Host, None));
        assert_eq!(NetworkMode::parse("none"), (NetworkMode::None, None));
        assert_eq!(
            NetworkMode::parse("container:web"),
            (NetworkMode::Container("web".into()), None)
        );
        assert_eq!(
            NetworkMode::parse("frontend"),
            (NetworkMode::Bridge, Some("frontend".into()))
        );
    }

    #[test]
    fn docker_style_mac() {
        assert_eq!(
            fmt_mac(&mac_for_ip(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }

    #[test]
    fn state_written_before_the_renames_still_loads() {
        let old = r#"{"id":"x","name":"c","mode":{"kind":"bridge"},"hostname":null,
            "endpoints":[{"network":"n","ifname":"eth0","host_ifname":"dp0a1b2c3d",
            "ip":"10.0.0.2","prefix_len":24,"mac":[2,66,10,0,0,2],"gateway":"10.0.0.1",
            "mtu":1500,"default_route":true}]}"#;
        let c: Container = serde_json::from_str(old).unwrap();
        assert_eq!(c.network_mode, NetworkMode::Bridge);
        assert_eq!(c.endpoints[0].interface, "eth0");
        assert_eq!(c.endpoints[0].host_interface, "dp0a1b2c3d");
        // State from before embedded DNS: no aliases, no DNS flags.
        assert!(c.endpoints[0].aliases.is_empty());
        // State from before IPv6: IPv4 only.
        assert_eq!(c.endpoints[0].ip6, None);
        assert_eq!(c.endpoints[0].gateway6, None);
        assert_eq!(c.dns, DnsConfig::default());
    }
}

/// A point-to-point link (`dataplane p2p create A B`): its own veth pair
/// between two containers' namespaces, or a container's and the host's, with
/// a /32 address and a host route to the peer on each end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pLink {
    pub id: u32,
    pub name: String,
    /// A container name or `host`.
    pub a: String,
    pub b: String,
    pub a_ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
}

/// The `host` end of a point-to-point link.
pub const P2P_HOST: &str = "host";

impl P2pLink {
    /// The interface name on end `end` (`a` or `b`): `p2p<id>` in a
    /// container, `dpp<id>` on the host.
    pub fn ifname(&self, end: &str) -> String {
        if end == P2P_HOST {
            format!("dpp{}", self.id)
        } else {
            format!("p2p{}", self.id)
        }
    }
}

/// `p2p create` request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pCreate {
    /// Default: `A-B`.
    #[serde(default)]
    pub name: Option<String>,
    pub a: String,
    pub b: String,
    /// A's address (`--ip`) and B's (`--peer-ip`): both or neither.
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub peer_ip: Option<String>,
}

/// A point-to-point link as shown by `p2p ls` and `container inspect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct P2pView {
    pub name: String,
    pub a: String,
    pub a_interface: String,
    pub a_ip: Ipv4Addr,
    pub b: String,
    pub b_interface: String,
    pub b_ip: Ipv4Addr,
}

impl From<&P2pLink> for P2pView {
    fn from(l: &P2pLink) -> Self {
        P2pView {
            name: l.name.clone(),
            a_interface: l.ifname(&l.a),
            b_interface: l.ifname(&l.b),
            a: l.a.clone(),
            b: l.b.clone(),
            a_ip: l.a_ip,
            b_ip: l.b_ip,
        }
    }
}

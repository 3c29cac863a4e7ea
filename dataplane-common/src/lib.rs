//! Types shared by the eBPF programs and the agent.
//!
//! Every key and value stored in a BPF map is defined here, once, as `#[repr(C)]`
//! plain data with explicit padding so that the kernel and user space agree on
//! the layout byte for byte, and so that `bpftool map dump` (which reads the BTF
//! emitted for these types) prints named, typed fields.
//!
//! Addresses are stored as byte arrays in network order (`[u8; 4]` for IPv4,
//! `[u8; 6]` for MACs) so that bpftool prints them as dotted bytes, and ports as
//! `u16` in *host* order so that they read naturally.
#![no_std]

pub mod ip6;
pub use ip6::*;
pub mod monitor;
pub use monitor::*;

/// Names of the pinned maps under the agent's bpffs root (`<bpffs>/maps/<NAME>`).
pub mod map_names {
    pub const ENDPOINTS: &str = "DP_ENDPOINTS";
    pub const IF_ENDPOINTS: &str = "DP_IF_ENDPOINTS";
    pub const NETWORKS: &str = "DP_NETWORKS";
    pub const CONFIG: &str = "DP_CONFIG";
    pub const NAT_OUT: &str = "DP_NAT_OUT";
    pub const NAT_IN: &str = "DP_NAT_IN";
    pub const EP_STATS: &str = "DP_EP_STATS";
    pub const DROPS: &str = "DP_DROPS";
    pub const PORTS: &str = "DP_PORTS";
    pub const CT: &str = "DP_CT";
    pub const HOST_IPS: &str = "DP_HOST_IPS";
    pub const HOST: &str = "DP_HOST";
    pub const LINKS: &str = "DP_LINKS";
    pub const POLICY_CT: &str = "DP_POLICY_CT";
    pub const SOCK_NAT: &str = "DP_SOCK_NAT";
    pub const EP_STATS_IX: &str = "DP_EP_STATS_IX";
    pub const ALL: [&str; 16] = [
        ENDPOINTS,
        IF_ENDPOINTS,
        NETWORKS,
        CONFIG,
        NAT_OUT,
        NAT_IN,
        EP_STATS,
        DROPS,
        PORTS,
        CT,
        HOST_IPS,
        HOST,
        LINKS,
        POLICY_CT,
        SOCK_NAT,
        EP_STATS_IX,
    ];
}

/// Names of the programs in the object file.
/// Maps of the overlay (VXLAN between nodes), pinned like the others.
pub mod overlay_map_names {
    pub const REMOTE: &str = "DP_OV_REMOTE";
    pub const NODES: &str = "DP_OV_NODES";
    pub const PEERS: &str = "DP_OV_PEERS";
    pub const VNIS: &str = "DP_OV_VNIS";
    pub const CONFIG: &str = "DP_OV_CONFIG";
    pub const ALL: [&str; 5] = [REMOTE, NODES, PEERS, VNIS, CONFIG];
}

pub mod prog_names {
    /// TC ingress of the VXLAN device.
    pub const FROM_OVERLAY: &str = "dp_from_overlay";
    /// TC ingress on the host side of every container veth (packets leaving a container).
    pub const FROM_CONTAINER: &str = "dp_from_container";
    /// TC ingress on the uplink (packets arriving from outside the host).
    pub const FROM_UPLINK: &str = "dp_from_uplink";
    /// XDP on the uplink: early drops and published-port DNAT.
    pub const XDP_UPLINK: &str = "dp_xdp_uplink";
    /// TC ingress on the uplink with the early work of `dp_xdp_uplink`
    /// folded in: in place of both where no XDP runs (the `tcx` uplink mode).
    pub const TC_UPLINK: &str = "dp_tc_uplink";
    /// cgroup/connect4, sendmsg4, recvmsg4: published ports from the host itself.
    pub const SOCK_CONNECT4: &str = "dp_sock_connect4";
    pub const SOCK_SENDMSG4: &str = "dp_sock_sendmsg4";
    pub const SOCK_RECVMSG4: &str = "dp_sock_recvmsg4";
    /// TC egress on the host side of every container veth: what the host's
    /// stack sends to a container (never what it forwards).
    pub const TO_CONTAINER: &str = "dp_to_container";
}

/// Map sizes (`max_entries`), shared by the eBPF maps and the agent.
pub const MAX_ENDPOINTS: u32 = 16384;
pub const MAX_NETWORKS: u32 = 1024;
/// Per flow table: `DP_NAT_OUT`, `DP_NAT_IN`, `DP_CT`.
pub const MAX_NAT_FLOWS: u32 = 262144;
pub const MAX_HOST_IPS: u32 = 1024;
pub const MAX_LINKS: u32 = 65536;
/// `DP_POLICY_CT`: replies of connections allowed by links.
pub const MAX_POLICY_FLOWS: u32 = 65536;
pub const MAX_SOCK_NAT: u32 = 65536;
/// `DP_EP_STATS_IX`: per-endpoint counters indexed by the host-side
/// ifindex, for ifindexes below this (a per-CPU array lookup, which the
/// verifier inlines: no hash, no call); endpoints with a larger ifindex
/// count in `DP_EP_STATS`.
pub const EP_STATS_SLOTS: u32 = 16384;

/// Key of the endpoint map: the endpoint's IPv4 address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointKey {
    pub ip: [u8; 4],
}

/// Endpoint flag: the endpoint lives in another host (reserved for overlay networks).
pub const EP_F_REMOTE: u16 = 1;
/// Endpoint flag: the two flags below carry its network's policy (copied
/// from the network's `NET_F_*`, which never change after creation), so the
/// container-to-container path needs no `DP_NETWORKS` lookup. Entries
/// without it (written by an older agent, until the reconciler rewrites
/// them) make the programs read the network.
pub const EP_F_NET_POLICY: u16 = 2;
/// Endpoint flag: its network is `--internal` (with `EP_F_NET_POLICY`).
pub const EP_F_INTERNAL: u16 = 4;
/// Endpoint flag: its network has `--icc=false` (with `EP_F_NET_POLICY`).
pub const EP_F_NO_ICC: u16 = 8;

/// Endpoint flag: its network is a `lan` network (addresses of the host's
/// LAN, reached from the parent interface without translation).
pub const EP_F_LAN: u16 = 16;

/// The `EndpointInfo::flags` that carry a network's `NET_F_*` flags.
#[inline(always)]
pub const fn endpoint_net_flags(net_flags: u32) -> u16 {
    let mut f = EP_F_NET_POLICY;
    if net_flags & NET_F_LAN != 0 {
        f |= EP_F_LAN;
    }
    if net_flags & NET_F_INTERNAL != 0 {
        f |= EP_F_INTERNAL;
    }
    if net_flags & NET_F_NO_ICC != 0 {
        f |= EP_F_NO_ICC;
    }
    f
}

/// One container endpoint (a veth pair with the container side in its namespace).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointInfo {
    /// ifindex of the host side of the veth pair (in the host namespace).
    pub ifindex: u32,
    /// Network the endpoint is attached to.
    pub net_id: u32,
    /// The container's address on that network.
    pub ip: [u8; 4],
    /// MAC of the container side (`eth0`, ...).
    pub mac: [u8; 6],
    /// MAC of the host side: the one the container resolves every address to.
    pub host_mac: [u8; 6],
    pub flags: u16,
    pub _pad: [u8; 2],
}

/// Network flag: `--internal`, no path beyond the network and its gateway.
pub const NET_F_INTERNAL: u32 = 1;
/// Network flag: inter-container communication disabled (`--icc=false`).
pub const NET_F_NO_ICC: u32 = 2;
/// Network flag: no masquerade (`enable_ip_masquerade=false`): traffic to
/// beyond the host leaves with the container's own address, routed by the stack.
pub const NET_F_NO_MASQ: u32 = 4;
/// Network flag: driver `lan` (containers get addresses of the parent
/// interface's LAN: proxy ARP on the parent, no masquerade).
pub const NET_F_LAN: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NetworkInfo {
    pub gateway: [u8; 4],
    pub subnet: [u8; 4],
    pub prefix_len: u32,
    pub flags: u32,
}

/// Global datapath configuration, slot 0 of a one-entry array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// ifindex of the uplink in the host namespace (0: no uplink, no masquerade).
    pub uplink_ifindex: u32,
    /// Address outbound traffic is masqueraded to.
    pub uplink_ip: [u8; 4],
    /// Source ports (and ICMP identifiers) used for masquerade, inclusive.
    pub nat_port_min: u16,
    pub nat_port_max: u16,
    pub _pad: u32,
}

/// A flow as seen on the wire. For ICMP echo, `sport` is the identifier and
/// `dport` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl FlowKey {
    /// A flow from `src:sport` to `dst:dport` (ICMP echo: `sport` is the
    /// identifier, `dport` 0).
    #[inline(always)]
    pub const fn new(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
            _pad: [0; 3],
        }
    }

    /// The same flow seen in the other direction.
    #[inline(always)]
    pub const fn reversed(&self) -> FlowKey {
        FlowKey::new(self.dst, self.src, self.dport, self.sport, self.proto)
    }
}

/// NAT entry: what the translated side of a flow becomes.
/// In `DP_NAT_OUT` (keyed by the container's original flow) it holds the
/// masquerade address and port; in `DP_NAT_IN` (keyed by the reply flow as it
/// arrives on the uplink) it holds the container's address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatEntry {
    pub addr: [u8; 4],
    pub port: u16,
    /// TCP state bits seen on this flow (`NAT_F_*`).
    pub flags: u16,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet.
    pub last_seen_ns: u64,
}

/// A FIN or RST was seen: the flow expires after the short timeout.
pub const NAT_F_CLOSING: u16 = 1;
/// A reply was seen: until then the flow expires after the short timeout
/// (unanswered SYNs and UDP probes must not hold masquerade ports for long).
pub const NAT_F_REPLIED: u16 = 2;
/// `DP_CT`: this entry translates the reply direction (the container that
/// accepted the connection answers through it). The other flags above apply
/// to `DP_CT` entries too.
pub const CT_F_REPLY_DIR: u16 = 4;

/// `DP_PORTS`: published ports.
pub const MAX_PORTS: u32 = 131072;

/// A published port: the host address (0.0.0.0 for every host address),
/// port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PortKey {
    pub ip: [u8; 4],
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Where a published port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortTarget {
    pub ip: [u8; 4],
    pub port: u16,
    pub _pad: u16,
}

/// Connection tracking of translated flows (published ports, hairpin): what
/// a packet of the flow keyed by its wire tuple is rewritten to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtEntry {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub flags: u16,
    pub _pad: u16,
    pub last_seen_ns: u64,
}

/// Host-wide facts for the socket programs (slot 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HostInfo {
    /// Cookie of the host network namespace the agent serves: the socket
    /// programs are attached to a cgroup and act only on sockets of this
    /// namespace.
    pub netns_cookie: u64,
}

/// `--link`: the linking container `src` may open connections to `dst` on
/// `port`/`proto`. `port == 0 && proto == 0` marks that a link exists at all.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LinkKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// A host socket's view of a published port it reached through the socket
/// programs (UDP replies are shown as coming from the address it used).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockKey {
    pub cookie: u64,
    pub ip: [u8; 4],
    pub port: u16,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockOrig {
    pub ip: [u8; 4],
    pub port: u16,
    pub _pad: u16,
}

/// Per-endpoint counters (per CPU), keyed by the host-side ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// Packets sent by the container (entering the datapath on its veth).
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets delivered to the container by the datapath.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Packets from this endpoint dropped, by `DropReason`.
    pub drops: [u64; DROP_REASONS],
}

/// Why the datapath dropped a packet. Shared by the programs (which count) and
/// the agent (which names them in `inspect`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Ethernet, IP or L4 header shorter than its declared size.
    Malformed = 0,
    /// Destination is an endpoint on another network.
    CrossNetwork = 1,
    /// `--internal` network: destination beyond the network and gateway.
    InternalNetwork = 2,
    /// No free masquerade port for this destination.
    NatExhausted = 3,
    /// Route lookup failed (no route, blackhole, ...).
    NoRoute = 4,
    /// Source IPv4 or MAC is not the endpoint's own.
    SpoofedSource = 5,
    /// Inter-container communication disabled on this network.
    IccDisabled = 6,
    /// Packet arrived on an interface the datapath does not know.
    UnknownInterface = 7,
    /// Fragment of a flow that needs translation (no ports to translate).
    UntranslatableFragment = 8,
    /// Protocol the masquerade cannot translate (not TCP, UDP or ICMP echo).
    UnsupportedProtocol = 9,
    /// From outside the host straight to a container address (not a
    /// published port), or forwarded into a container by the host's stack.
    DirectAccessFromOutside = 10,
    /// From outside the host to a loopback address.
    LoopbackFromOutside = 11,
    /// icc=false: a link exists between the two, but not for this port.
    LinkPortNotAllowed = 12,
    /// An 802.1Q/802.1ad tagged frame (in the packet or in the skb's VLAN
    /// metadata): the kernel would strip the tag and handle what is inside.
    VlanTagged = 13,
    /// An ethertype the program does not handle (from a container: anything
    /// but ARP and IPv4).
    UnsupportedEthertype = 14,
    /// From a container to 127.0.0.0/8, 0.0.0.0/8 or 240.0.0.0/4: never
    /// hairpinned, forwarded or handed to the stack.
    ReservedDestination = 15,
    /// An IPv4 packet with a (loose or strict) source route option.
    SourceRoute = 16,
    /// VXLAN from an underlay address that is not a node of the cluster.
    OverlayUnknownNode = 17,
    /// VXLAN with a VNI no cluster network of this node has.
    OverlayUnknownVni = 18,
    /// A later fragment (no L4 header) of a datagram whose first fragment
    /// (the one with the ports) was not seen, or seen more than
    /// `FRAG_TIMEOUT_NS` ago, on a path that must translate it: without the
    /// first fragment's translation it cannot be rewritten.
    FragmentWithoutFirst = 19,
}

pub const DROP_REASONS: usize = 20;

impl DropReason {
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::Malformed,
        DropReason::CrossNetwork,
        DropReason::InternalNetwork,
        DropReason::NatExhausted,
        DropReason::NoRoute,
        DropReason::SpoofedSource,
        DropReason::IccDisabled,
        DropReason::UnknownInterface,
        DropReason::UntranslatableFragment,
        DropReason::UnsupportedProtocol,
        DropReason::DirectAccessFromOutside,
        DropReason::LoopbackFromOutside,
        DropReason::LinkPortNotAllowed,
        DropReason::VlanTagged,
        DropReason::UnsupportedEthertype,
        DropReason::ReservedDestination,
        DropReason::SourceRoute,
        DropReason::OverlayUnknownNode,
        DropReason::OverlayUnknownVni,
        DropReason::FragmentWithoutFirst,
    ];

    /// The wire name (API, CLI, docs): the variant's name in snake case.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::CrossNetwork => "cross_network",
            DropReason::InternalNetwork => "internal_network",
            DropReason::NatExhausted => "nat_exhausted",
            DropReason::NoRoute => "no_route",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::IccDisabled => "icc_disabled",
            DropReason::UnknownInterface => "unknown_interface",
            DropReason::UntranslatableFragment => "untranslatable_fragment",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::DirectAccessFromOutside => "direct_access_from_outside",
            DropReason::LoopbackFromOutside => "loopback_from_outside",
            DropReason::LinkPortNotAllowed => "link_port_not_allowed",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::ReservedDestination => "reserved_destination",
            DropReason::SourceRoute => "source_route",
            DropReason::OverlayUnknownNode => "overlay_unknown_node",
            DropReason::OverlayUnknownVni => "overlay_unknown_vni",
            DropReason::FragmentWithoutFirst => "fragment_without_first",
        }
    }
}

// Layouts shared with the kernel and bpftool: no implicit padding, checked
// at compile time (for the eBPF target too).
const _: () = assert!(core::mem::size_of::<EndpointKey>() == 4);
const _: () = assert!(core::mem::size_of::<EndpointInfo>() == 28);
const _: () = assert!(core::mem::size_of::<NetworkInfo>() == 16);
const _: () = assert!(core::mem::size_of::<Config>() == 16);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 16);
const _: () = assert!(core::mem::size_of::<NatEntry>() == 16);
const _: () = assert!(core::mem::size_of::<EndpointStats>() == 8 * (4 + DROP_REASONS));
const _: () = assert!(core::mem::size_of::<PortKey>() == 8);
const _: () = assert!(core::mem::size_of::<PortTarget>() == 8);
const _: () = assert!(core::mem::size_of::<CtEntry>() == 24);
const _: () = assert!(core::mem::size_of::<HostInfo>() == 8);
const _: () = assert!(core::mem::size_of::<LinkKey>() == 12);
const _: () = assert!(core::mem::size_of::<SockKey>() == 16);
const _: () = assert!(core::mem::size_of::<SockOrig>() == 8);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)] plain data with explicit padding and
    // no invalid bit patterns.
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for NetworkInfo {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for NatEntry {}
    unsafe impl aya::Pod for EndpointStats {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for PortTarget {}
    unsafe impl aya::Pod for CtEntry {}
    unsafe impl aya::Pod for HostInfo {}
    unsafe impl aya::Pod for LinkKey {}
    unsafe impl aya::Pod for SockKey {}
    unsafe impl aya::Pod for SockOrig {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_dense() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn drop_reason_names_are_distinct() {
        for (i, a) in DropReason::ALL.iter().enumerate() {
            for b in &DropReason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}

// ---- Overlay (VXLAN between nodes) ----

/// Remote endpoints the overlay knows (any cluster size on paper; the
/// `DP_ENDPOINTS` entries they also need bound the total, see README).
pub const MAX_REMOTE_ENDPOINTS: u32 = 65536;
/// Nodes of the cluster.
pub const MAX_NODES: u32 = 8192;

/// `DP_OV_REMOTE` key: an address of a cluster network (local network id).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RemoteKey {
    pub net_id: u32,
    pub ip: [u8; 4],
}

/// `DP_OV_REMOTE` value: the node hosting the endpoint and the network's VNI.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RemoteEndpoint {
    /// Key of the node in `DP_OV_NODES`.
    pub node: u32,
    pub vni: u32,
}

/// `DP_OV_NODES` value: a node's underlay (VXLAN tunnel) address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OverlayNode {
    pub addr: [u8; 4],
}

/// `DP_OV_CONFIG` slot 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OverlayConfig {
    /// The VXLAN device (external mode); 0 while there is none.
    pub vxlan_ifindex: u32,
    /// Largest inner IPv4 packet that fits the underlay (uplink MTU - 50).
    pub mtu: u32,
}

const _: () = assert!(core::mem::size_of::<RemoteKey>() == 8);
const _: () = assert!(core::mem::size_of::<RemoteEndpoint>() == 8);
const _: () = assert!(core::mem::size_of::<OverlayNode>() == 4);
const _: () = assert!(core::mem::size_of::<OverlayConfig>() == 8);

#[cfg(feature = "user")]
mod overlay_pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data without padding or invalid bit patterns.
    unsafe impl aya::Pod for RemoteKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RemoteEndpoint {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OverlayNode {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OverlayConfig {}
}

/// Maps of `lan` networks (pinned like the others).
pub mod lan_map_names {
    /// network id -> its parent interface.
    pub const PARENTS: &str = "DP_LAN_PARENTS";
    pub const ALL: [&str; 1] = [PARENTS];
}

/// `DP_LAN_PARENTS` value: the parent interface of a `lan` network, where
/// ARP for its containers is answered (with `mac`) and from which they are
/// reachable.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LanParent {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<LanParent>() == 12);

#[cfg(feature = "user")]
mod lan_pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data with explicit padding, no invalid bit patterns.
    unsafe impl aya::Pod for LanParent {}
}

// ---- IPv4 fragments of translated flows ----

/// Names of the fragment-tracking maps, pinned like the others.
pub mod frag_map_names {
    pub const FRAGS: &str = "DP_FRAGS";
    pub const ALL: [&str; 1] = [FRAGS];
}

/// `DP_FRAGS` entries: datagrams being fragmented through a translation.
pub const MAX_FRAGS: u32 = 16384;
/// How long the first fragment's translation applies to the later ones
/// (the kernel's `ipfrag_time` default: a receiver gives up reassembling a
/// datagram after 30 s).
pub const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

/// `DP_FRAGS` key: a datagram as its fragments carry it on the wire where
/// they enter the datapath (before translation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// The IPv4 identification field, in host order.
    pub id: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// `DP_FRAGS` value: the addresses the first fragment was translated to
/// (later fragments carry no ports: only addresses change).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragEntry {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// When the first fragment was translated (`bpf_ktime_get_ns`).
    pub first_seen_ns: u64,
}

const _: () = assert!(core::mem::size_of::<FragKey>() == 12);
const _: () = assert!(core::mem::size_of::<FragEntry>() == 16);

#[cfg(feature = "user")]
mod frag_pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for FragKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FragEntry {}
}

// ---- Host interfaces served besides the uplink ----

/// Names of the host-interface maps, pinned like the others.
pub mod host_if_map_names {
    pub const HOST_IFS: &str = "DP_HOST_IFS";
    pub const ALL: [&str; 1] = [HOST_IFS];
}

/// `DP_HOST_IFS` entries: host interfaces with an IPv4 address.
pub const MAX_HOST_IFS: u32 = 256;

/// `DP_HOST_IFS` value (key: the interface's ifindex): the address traffic
/// routed out of it is masqueraded to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HostIf {
    pub ip: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<HostIf>() == 4);

#[cfg(feature = "user")]
mod host_if_pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data without padding or invalid bit patterns.
    unsafe impl aya::Pod for HostIf {}
}

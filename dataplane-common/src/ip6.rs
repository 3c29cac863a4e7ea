//! IPv6 (dual stack): keys, values and names of the IPv6 maps.
//!
//! A dual-stack endpoint keeps its IPv4 record (`EndpointInfo`, in
//! `DP_ENDPOINTS`/`DP_IF_ENDPOINTS`) as its identity: `DP_ENDPOINTS6` maps its
//! IPv6 address to that same record, so that every policy keyed by the IPv4
//! identity (networks, `--icc=false`, `--link`) applies to IPv6 unchanged.
//! `DP_IF_ENDPOINTS6` gives the IPv6 address of the endpoint behind a
//! host-side veth (anti-spoofing), `DP_NETWORKS6` a network's IPv6 subnet and
//! gateway (by the same network id as `DP_NETWORKS`).
//!
//! The IPv6 programs are reached by tail calls from the IPv4 ones' entry
//! points (their frames stay separate: `dp_from_container` is close to the
//! 512-byte stack limit), through the program array `DP_CALLS`.

/// Names of the pinned IPv6 maps.
pub mod ip6_map_names {
    /// IPv6 address -> the endpoint's `EndpointInfo`.
    pub const ENDPOINTS6: &str = "DP_ENDPOINTS6";
    /// host-side ifindex -> `Endpoint6` (the endpoint's IPv6 address).
    pub const IF_ENDPOINTS6: &str = "DP_IF_ENDPOINTS6";
    /// network id -> `Network6Info`.
    pub const NETWORKS6: &str = "DP_NETWORKS6";
    /// Program array of the tail-called programs (`CALL_*` slots).
    pub const CALLS: &str = "DP_CALLS";
    pub const ALL: [&str; 4] = [ENDPOINTS6, IF_ENDPOINTS6, NETWORKS6, CALLS];
}

/// Names of the tail-called programs.
pub mod ip6_prog_names {
    /// IPv6 from a container (tail-called by `dp_from_container`).
    pub const FROM_CONTAINER6: &str = "dp_from_container6";
    /// Inner IPv6 from the overlay (tail-called by `dp_from_overlay`).
    pub const FROM_OVERLAY6: &str = "dp_from_overlay6";
}

/// `DP_CALLS` slot of `dp_from_container6`.
pub const CALL_FROM_CONTAINER6: u32 = 0;
/// `DP_CALLS` slot of `dp_from_overlay6` (1 and 2 are the north-south
/// programs').
pub const CALL_FROM_OVERLAY6: u32 = 3;
/// `DP_CALLS` size.
pub const MAX_CALLS: u32 = 16;

/// Key of `DP_ENDPOINTS6`: an endpoint's IPv6 address (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Endpoint6Key {
    pub ip: [u8; 16],
}

/// `DP_IF_ENDPOINTS6` value (key: the host-side ifindex): the endpoint's
/// IPv6 address on that veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Endpoint6 {
    pub ip: [u8; 16],
}

/// Network IPv6 flag: traffic to beyond the host is masqueraded to the
/// outgoing interface's IPv6 address (the default for ULA subnets, as Docker
/// 27+ does with ip6tables); without it the network is routed (its
/// addresses leave untranslated).
pub const NET6_F_MASQ: u32 = 1;

/// `DP_NETWORKS6` value (key: the network id of `DP_NETWORKS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Network6Info {
    pub subnet: [u8; 16],
    pub gateway: [u8; 16],
    pub prefix_len: u32,
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<Endpoint6Key>() == 16);
const _: () = assert!(core::mem::size_of::<Endpoint6>() == 16);
const _: () = assert!(core::mem::size_of::<Network6Info>() == 40);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data without padding or invalid bit patterns.
    unsafe impl aya::Pod for Endpoint6Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Endpoint6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Network6Info {}
}

// ---- IPv6 north-south: masquerade (NAT66), published ports, fragments ----

/// Names of the IPv6 north-south maps, pinned like the others.
pub mod nat6_map_names {
    /// Masquerade, container flow -> host address/port.
    pub const NAT6_OUT: &str = "DP_NAT6_OUT";
    /// Masquerade, reply flow -> container address/port.
    pub const NAT6_IN: &str = "DP_NAT6_IN";
    /// Translated flows of published ports and hairpin, both directions.
    pub const CT6: &str = "DP_CT6";
    /// Published ports on the host's IPv6 addresses.
    pub const PORTS6: &str = "DP_PORTS6";
    /// The host's own IPv6 addresses (what `[::]` publishes on).
    pub const HOST_IPS6: &str = "DP_HOST_IPS6";
    /// Host interfaces with a global or ULA IPv6 address.
    pub const HOST_IFS6: &str = "DP_HOST_IFS6";
    /// Fragmented datagrams translated by their first fragment.
    pub const FRAGS6: &str = "DP_FRAGS6";
    /// Host sockets that reached a published port over IPv6.
    pub const SOCK_NAT6: &str = "DP_SOCK_NAT6";
    pub const ALL: [&str; 8] = [
        NAT6_OUT, NAT6_IN, CT6, PORTS6, HOST_IPS6, HOST_IFS6, FRAGS6, SOCK_NAT6,
    ];
}

/// Names of the IPv6 north-south programs.
pub mod nat6_prog_names {
    /// IPv6 from outside (tail-called by `dp_from_uplink`).
    pub const FROM_UPLINK6: &str = "dp_from_uplink6";
    /// IPv6 from a container to beyond the host (tail-called by
    /// `dp_from_container6`).
    pub const EGRESS6: &str = "dp_egress6";
    /// cgroup/connect6, sendmsg6, recvmsg6: published ports from the host.
    pub const SOCK_CONNECT6: &str = "dp_sock_connect6";
    pub const SOCK_SENDMSG6: &str = "dp_sock_sendmsg6";
    pub const SOCK_RECVMSG6: &str = "dp_sock_recvmsg6";
}

/// `DP_CALLS` slot of `dp_from_uplink6`.
pub const CALL_FROM_UPLINK6: u32 = 1;
/// `DP_CALLS` slot of `dp_egress6` (IPv6 from a container to beyond the
/// host: masquerade, routed, published-port replies, hairpin).
pub const CALL_EGRESS6: u32 = 2;

/// `DP_HOST_IPS6`, `DP_HOST_IFS6` entries.
pub const MAX_HOST_IPS6: u32 = 1024;

/// An IPv6 flow as seen on the wire. For ICMPv6 echo, `sport` is the
/// identifier and `dport` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl FlowKey6 {
    #[inline(always)]
    pub const fn new(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> FlowKey6 {
        FlowKey6 {
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
    pub const fn reversed(&self) -> FlowKey6 {
        FlowKey6::new(self.dst, self.src, self.dport, self.sport, self.proto)
    }
}

/// `DP_NAT6_OUT` / `DP_NAT6_IN` value: what the translated side of a flow
/// becomes (`NAT_F_*` flags, as for IPv4).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatEntry6 {
    pub addr: [u8; 16],
    pub port: u16,
    pub flags: u16,
    pub _pad: u32,
    pub last_seen_ns: u64,
}

/// `DP_CT6` value: what a packet of the flow keyed by its wire tuple is
/// rewritten to (`NAT_F_*`, `CT_F_REPLY_DIR` flags, as `DP_CT`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtEntry6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub flags: u16,
    pub _pad: u16,
    pub last_seen_ns: u64,
}

/// `DP_PORTS6` key: a published port on a host IPv6 address (`::` for
/// every host address), port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PortKey6 {
    pub ip: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// `DP_PORTS6` value: the container's IPv6 address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortTarget6 {
    pub ip: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}

/// `DP_HOST_IFS6` value (key: ifindex): the address traffic routed out of
/// that interface is masqueraded to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HostIf6 {
    pub ip: [u8; 16],
}

/// `DP_FRAGS6` key: a datagram as its fragments carry it where they enter
/// the datapath (the fragment header's 32-bit identification, host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
}

/// `DP_FRAGS6` value: the addresses the first fragment was translated to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragEntry6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub first_seen_ns: u64,
}

/// `DP_SOCK_NAT6` key: a host socket and the container address/port it was
/// connected to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockKey6 {
    pub cookie: u64,
    pub ip: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 6],
}

/// `DP_SOCK_NAT6` value: the address/port the socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockOrig6 {
    pub ip: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<FlowKey6>() == 40);
const _: () = assert!(core::mem::size_of::<NatEntry6>() == 32);
const _: () = assert!(core::mem::size_of::<CtEntry6>() == 48);
const _: () = assert!(core::mem::size_of::<PortKey6>() == 20);
const _: () = assert!(core::mem::size_of::<PortTarget6>() == 20);
const _: () = assert!(core::mem::size_of::<HostIf6>() == 16);
const _: () = assert!(core::mem::size_of::<FragKey6>() == 36);
const _: () = assert!(core::mem::size_of::<FragEntry6>() == 40);
const _: () = assert!(core::mem::size_of::<SockKey6>() == 32);
const _: () = assert!(core::mem::size_of::<SockOrig6>() == 20);

#[cfg(feature = "user")]
mod nat6_pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data with explicit padding, no invalid bit patterns.
    unsafe impl aya::Pod for FlowKey6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for NatEntry6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CtEntry6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PortKey6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PortTarget6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for HostIf6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FragKey6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FragEntry6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockKey6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockOrig6 {}
}

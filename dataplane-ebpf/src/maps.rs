//! Every map of the datapath, in one place. Key and value types come from
//! `dataplane-common`; the agent pins each map under its bpffs root by name.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    macros::btf_map,
};
use dataplane_common::{
    Config, CtEntry, DropReason, EndpointInfo, EndpointKey, EndpointStats, FlowKey, HostInfo,
    LinkKey, NatEntry, NetworkInfo, PortKey, PortTarget, SockKey, SockOrig, DROP_REASONS,
    EP_F_NET_POLICY, EP_F_NO_ICC, EP_STATS_SLOTS, MAX_ENDPOINTS, MAX_HOST_IPS, MAX_LINKS,
    MAX_NAT_FLOWS, MAX_NETWORKS, MAX_POLICY_FLOWS, MAX_PORTS, MAX_SOCK_NAT, NET_F_NO_ICC,
};

/// Container endpoints on this host, by IPv4 address.
#[btf_map]
pub static DP_ENDPOINTS: HashMap<EndpointKey, EndpointInfo, { MAX_ENDPOINTS as usize }> =
    HashMap::new();

/// The same endpoints, by the ifindex of their host-side veth.
#[btf_map]
pub static DP_IF_ENDPOINTS: HashMap<u32, EndpointInfo, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// Networks by id.
#[btf_map]
pub static DP_NETWORKS: HashMap<u32, NetworkInfo, { MAX_NETWORKS as usize }> = HashMap::new();

/// Global configuration (slot 0).
#[btf_map]
pub static DP_CONFIG: Array<Config, 1> = Array::new();

/// Masquerade: a container's original flow -> the uplink address/port it is
/// translated to.
#[btf_map]
pub static DP_NAT_OUT: LruHashMap<FlowKey, NatEntry, { MAX_NAT_FLOWS as usize }> =
    LruHashMap::new();

/// Masquerade, reverse: the reply flow as it arrives on the uplink -> the
/// container address/port it is translated back to.
#[btf_map]
pub static DP_NAT_IN: LruHashMap<FlowKey, NatEntry, { MAX_NAT_FLOWS as usize }> = LruHashMap::new();

/// Per-endpoint counters, by host-side ifindex, for endpoints whose
/// ifindex is beyond `DP_EP_STATS_IX` (the agent keeps an entry for every
/// endpoint: it marks the endpoint's counters as live).
#[btf_map]
pub static DP_EP_STATS: PerCpuHashMap<u32, EndpointStats, { MAX_ENDPOINTS as usize }> =
    PerCpuHashMap::new();

/// The same counters for host-side ifindexes below `EP_STATS_SLOTS`, by
/// ifindex: the hot path's counters cost no hash lookup.
#[btf_map]
pub static DP_EP_STATS_IX: PerCpuArray<EndpointStats, { EP_STATS_SLOTS as usize }> =
    PerCpuArray::new();

/// Global drop counters, indexed by `DropReason`.
#[btf_map]
pub static DP_DROPS: PerCpuArray<u64, DROP_REASONS> = PerCpuArray::new();

/// Published ports: (host address or 0.0.0.0, port, protocol) -> container
/// address and port.
#[btf_map]
pub static DP_PORTS: HashMap<PortKey, PortTarget, { MAX_PORTS as usize }> = HashMap::new();

/// Translated flows (published ports, hairpin), both directions, by the
/// tuple on the wire.
#[btf_map]
pub static DP_CT: LruHashMap<FlowKey, CtEntry, { MAX_NAT_FLOWS as usize }> = LruHashMap::new();

/// The host's own IPv4 addresses (what 0.0.0.0 publishes on).
#[btf_map]
pub static DP_HOST_IPS: HashMap<EndpointKey, u32, { MAX_HOST_IPS as usize }> = HashMap::new();

/// Host facts for the socket programs (slot 0).
#[btf_map]
pub static DP_HOST: Array<HostInfo, 1> = Array::new();

/// `--link` on icc=false networks: allowed (linker, linked, port, proto).
#[btf_map]
pub static DP_LINKS: HashMap<LinkKey, u32, { MAX_LINKS as usize }> = HashMap::new();

/// Reply direction of connections allowed by a link.
#[btf_map]
pub static DP_POLICY_CT: LruHashMap<FlowKey, u64, { MAX_POLICY_FLOWS as usize }> =
    LruHashMap::new();

/// Host sockets that reached a published port through the socket programs.
#[btf_map]
pub static DP_SOCK_NAT: LruHashMap<SockKey, SockOrig, { MAX_SOCK_NAT as usize }> =
    LruHashMap::new();

/// The published port a packet to `dst:port` hits, if any: an exact host
/// address first, then a wildcard one when `dst` is a host address.
#[inline(always)]
pub fn port_lookup(dst: [u8; 4], port: u16, proto: u8) -> Option<PortTarget> {
    let exact = PortKey {
        ip: dst,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(t) = unsafe { DP_PORTS.get(&exact) } {
        return Some(*t);
    }
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let is_host = dst[0] == 127 || unsafe { DP_HOST_IPS.get(EndpointKey { ip: dst }) }.is_some();
    if !is_host {
        return None;
    }
    let any = PortKey {
        ip: [0; 4],
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    unsafe { DP_PORTS.get(&any) }.copied()
}

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    DP_CONFIG.get(0)
}

/// Count a drop globally and, when `ifindex` is an endpoint's, on it.
#[inline(always)]
pub fn count_drop(ifindex: u32, reason: DropReason) {
    if let Some(p) = DP_DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU array slot, written only by this CPU.
        unsafe { *p += 1 };
    }
    count_endpoint_drop(ifindex, reason);
}

/// An endpoint's counters (this CPU's): the array slot of its ifindex, or
/// its hash entry when the ifindex is beyond the array.
#[inline(always)]
fn ep_stats(ifindex: u32) -> Option<*mut EndpointStats> {
    if ifindex < EP_STATS_SLOTS {
        DP_EP_STATS_IX.get_ptr_mut(ifindex)
    } else {
        DP_EP_STATS.get_ptr_mut(ifindex)
    }
}

/// Count a drop on an endpoint only (the global count is made elsewhere).
#[inline(always)]
pub fn count_endpoint_drop(ifindex: u32, reason: DropReason) {
    if let Some(s) = ep_stats(ifindex) {
        // A volatile read: the compiler may not assume the enum's range and
        // drop the check, which the verifier needs when the reason came back
        // from a BPF subprogram (an unbounded scalar to it).
        let raw = reason as u32;
        // SAFETY: a read of a local.
        let idx = unsafe { core::ptr::read_volatile(&raw) } as usize;
        if idx < DROP_REASONS {
            // SAFETY: a per-CPU map value, written only by this CPU; the
            // index is checked against the array's length.
            unsafe { (*s).drops[idx] += 1 };
        }
    }
}

#[inline(always)]
pub fn count_tx(ifindex: u32, bytes: u32) {
    if let Some(s) = ep_stats(ifindex) {
        // SAFETY: a per-CPU map value, written only by this CPU.
        unsafe {
            (*s).tx_packets += 1;
            (*s).tx_bytes += bytes as u64;
        }
    }
}

#[inline(always)]
pub fn count_rx(ifindex: u32, bytes: u32) {
    if let Some(s) = ep_stats(ifindex) {
        // SAFETY: a per-CPU map value, written only by this CPU.
        unsafe {
            (*s).rx_packets += 1;
            (*s).rx_bytes += bytes as u64;
        }
    }
}

// ---- Overlay (VXLAN between nodes): `overlay`, `from_overlay` ----

/// Remote endpoints of cluster networks: (local network id, address) ->
/// node and VNI. Each also has a `DP_ENDPOINTS` entry flagged
/// `EP_F_REMOTE` (ARP answers and the policy of local traffic).
#[btf_map]
pub static DP_OV_REMOTE: HashMap<
    dataplane_common::RemoteKey,
    dataplane_common::RemoteEndpoint,
    { dataplane_common::MAX_REMOTE_ENDPOINTS as usize },
> = HashMap::new();

/// Nodes by key -> underlay address (where VXLAN is sent).
#[btf_map]
pub static DP_OV_NODES: HashMap<
    u32,
    dataplane_common::OverlayNode,
    { dataplane_common::MAX_NODES as usize },
> = HashMap::new();

/// Underlay address -> node key: VXLAN from any other address is dropped.
#[btf_map]
pub static DP_OV_PEERS: HashMap<EndpointKey, u32, { dataplane_common::MAX_NODES as usize }> =
    HashMap::new();

/// VNI -> local network id of the cluster network.
#[btf_map]
pub static DP_OV_VNIS: HashMap<u32, u32, { MAX_NETWORKS as usize }> = HashMap::new();

/// The VXLAN device and the overlay MTU (slot 0).
#[btf_map]
pub static DP_OV_CONFIG: Array<dataplane_common::OverlayConfig, 1> = Array::new();

/// Whether `ep`'s network has inter-container communication off: from the
/// policy flags in the endpoint's own entry (no lookup), or from
/// `DP_NETWORKS` for an entry written without them (an older agent).
#[inline(always)]
pub fn icc_disabled(ep: &EndpointInfo) -> Result<bool, DropReason> {
    if ep.flags & EP_F_NET_POLICY != 0 {
        return Ok(ep.flags & EP_F_NO_ICC != 0);
    }
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    match unsafe { DP_NETWORKS.get(ep.net_id) } {
        Some(net) => Ok(net.flags & NET_F_NO_ICC != 0),
        None => Err(DropReason::UnknownInterface),
    }
}

/// Parent interface of each `lan` network, by network id.
#[btf_map]
pub static DP_LAN_PARENTS: HashMap<u32, dataplane_common::LanParent, { MAX_NETWORKS as usize }> =
    HashMap::new();

// ---- Monitor (`dataplane monitor`): see `events` ----

/// Drop and trace events for the agent's monitor.
#[btf_map]
pub static DP_MON_EVENTS: aya_ebpf::btf_maps::RingBuf<
    dataplane_common::MonitorEvent,
    { dataplane_common::MON_RING_BYTES as usize },
> = aya_ebpf::btf_maps::RingBuf::new();

/// Slot 0: which events are wanted (mask 0: none) and the rate limit.
#[btf_map]
pub static DP_MON_CONFIG: Array<dataplane_common::MonitorConfig, 1> = Array::new();

/// Per-CPU token bucket of the rate limit (slot 0).
#[btf_map]
pub static DP_MON_BUCKET: PerCpuArray<dataplane_common::MonitorBucket, 1> = PerCpuArray::new();

/// Per-CPU counters by `MON_STAT_*` (emitted, rate-limited, ring full).
#[btf_map]
pub static DP_MON_STATS: PerCpuArray<u64, { dataplane_common::MON_STATS as usize }> =
    PerCpuArray::new();

/// Per-CPU copy of the packet's first bytes at a program's entry (traces).
#[btf_map]
pub static DP_MON_ORIG: PerCpuArray<dataplane_common::MonitorCapture, 1> = PerCpuArray::new();

// ---- IPv4 fragments of translated flows: `frag` ----

/// The translation of a fragmented datagram's first fragment, by the
/// datagram as it entered the datapath: its later fragments (no ports) get
/// the same addresses.
#[btf_map]
pub static DP_FRAGS: LruHashMap<
    dataplane_common::FragKey,
    dataplane_common::FragEntry,
    { dataplane_common::MAX_FRAGS as usize },
> = LruHashMap::new();

// ---- Host interfaces besides the uplink: `from_container` ----

/// Every host interface with an IPv4 address, by ifindex -> the address
/// traffic the route lookup sends out of it is masqueraded to (the uplink
/// is also in `DP_CONFIG`).
#[btf_map]
pub static DP_HOST_IFS: HashMap<
    u32,
    dataplane_common::HostIf,
    { dataplane_common::MAX_HOST_IFS as usize },
> = HashMap::new();

/// The address to masquerade traffic leaving through `ifindex` to: the
/// uplink's, or another host interface's; `None` for an interface the
/// agent does not serve.
#[inline(always)]
pub fn masquerade_ip(cfg: &Config, ifindex: u32) -> Option<[u8; 4]> {
    if cfg.uplink_ifindex != 0 && ifindex == cfg.uplink_ifindex {
        return Some(cfg.uplink_ip);
    }
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    unsafe { DP_HOST_IFS.get(ifindex) }.map(|h| h.ip)
}

/// Scratch space for `bpf_fib_lookup` (this CPU's slot): see `forward::fib`.
#[repr(C)]
pub struct FibScratch(pub aya_ebpf::bindings::bpf_fib_lookup);

#[btf_map]
pub static DP_FIB_SCRATCH: PerCpuArray<FibScratch, 1> = PerCpuArray::new();

// ---- IPv6 (dual stack): see `dataplane_common::ip6` ----

/// Dual-stack endpoints by IPv6 address -> their IPv4 record (the identity
/// every policy is keyed by).
#[btf_map]
pub static DP_ENDPOINTS6: HashMap<
    dataplane_common::Endpoint6Key,
    EndpointInfo,
    { MAX_ENDPOINTS as usize },
> = HashMap::new();

/// host-side ifindex -> the endpoint's IPv6 address.
#[btf_map]
pub static DP_IF_ENDPOINTS6: HashMap<u32, dataplane_common::Endpoint6, { MAX_ENDPOINTS as usize }> =
    HashMap::new();

/// network id -> its IPv6 subnet and gateway.
#[btf_map]
pub static DP_NETWORKS6: HashMap<u32, dataplane_common::Network6Info, { MAX_NETWORKS as usize }> =
    HashMap::new();

/// The tail-called programs (`dataplane_common::CALL_*` slots), filled by
/// the agent after loading them.
#[btf_map]
pub static DP_CALLS: aya_ebpf::btf_maps::ProgramArray<{ dataplane_common::MAX_CALLS as usize }> =
    aya_ebpf::btf_maps::ProgramArray::new();

// ---- IPv6 north-south (masquerade, published ports, fragments): see
// `nat6`, `from_uplink6`, `icmp6_err`, `frag6`, `sock6` ----

/// IPv6 masquerade: a container's original flow -> the host address/port
/// it is translated to.
#[btf_map]
pub static DP_NAT6_OUT: LruHashMap<
    dataplane_common::FlowKey6,
    dataplane_common::NatEntry6,
    { MAX_NAT_FLOWS as usize },
> = LruHashMap::new();

/// IPv6 masquerade, reverse: the reply flow as it arrives -> the container
/// address/port it is translated back to.
#[btf_map]
pub static DP_NAT6_IN: LruHashMap<
    dataplane_common::FlowKey6,
    dataplane_common::NatEntry6,
    { MAX_NAT_FLOWS as usize },
> = LruHashMap::new();

/// IPv6 translated flows (published ports, hairpin; routed flows with an
/// identity entry), both directions, by the tuple on the wire.
#[btf_map]
pub static DP_CT6: LruHashMap<
    dataplane_common::FlowKey6,
    dataplane_common::CtEntry6,
    { MAX_NAT_FLOWS as usize },
> = LruHashMap::new();

/// Published ports on the host's IPv6 addresses (`::` for all of them).
#[btf_map]
pub static DP_PORTS6: HashMap<
    dataplane_common::PortKey6,
    dataplane_common::PortTarget6,
    { MAX_PORTS as usize },
> = HashMap::new();

/// The host's own IPv6 addresses.
#[btf_map]
pub static DP_HOST_IPS6: HashMap<
    dataplane_common::Endpoint6Key,
    u32,
    { dataplane_common::MAX_HOST_IPS6 as usize },
> = HashMap::new();

/// Host interfaces with a global or ULA IPv6 address, by ifindex -> the
/// address traffic routed out of it is masqueraded to.
#[btf_map]
pub static DP_HOST_IFS6: HashMap<
    u32,
    dataplane_common::HostIf6,
    { dataplane_common::MAX_HOST_IPS6 as usize },
> = HashMap::new();

/// The translation of a fragmented IPv6 datagram's first fragment.
#[btf_map]
pub static DP_FRAGS6: LruHashMap<
    dataplane_common::FragKey6,
    dataplane_common::FragEntry6,
    { dataplane_common::MAX_FRAGS as usize },
> = LruHashMap::new();

/// Host sockets that reached a published port over IPv6.
#[btf_map]
pub static DP_SOCK_NAT6: LruHashMap<
    dataplane_common::SockKey6,
    dataplane_common::SockOrig6,
    { MAX_SOCK_NAT as usize },
> = LruHashMap::new();

/// The IPv6 published port a packet to `[dst]:port` hits, if any: an exact
/// host address first, then `::` when `dst` is a host address (or `::1`).
#[inline(always)]
pub fn port_lookup6(dst: &[u8; 16], port: u16, proto: u8) -> Option<dataplane_common::PortTarget6> {
    let mut key = dataplane_common::PortKey6 {
        ip: *dst,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(t) = unsafe { DP_PORTS6.get(&key) } {
        return Some(*t);
    }
    let loopback = *dst == LOOPBACK6;
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if !loopback
        && unsafe { DP_HOST_IPS6.get(dataplane_common::Endpoint6Key { ip: *dst }) }.is_none()
    {
        return None;
    }
    key.ip = [0; 16];
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    unsafe { DP_PORTS6.get(&key) }.copied()
}

/// `::1`.
pub const LOOPBACK6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The IPv6 address to masquerade traffic leaving through `ifindex` to.
#[inline(always)]
pub fn masquerade_ip6(ifindex: u32) -> Option<[u8; 16]> {
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    unsafe { DP_HOST_IFS6.get(ifindex) }.map(|h| h.ip)
}

/// Per-CPU scratch of the IPv6 north-south paths (slot 0): see `nat6::scratch`.
#[btf_map]
pub static DP_SCRATCH6: PerCpuArray<crate::nat6::Scratch6, 1> = PerCpuArray::new();

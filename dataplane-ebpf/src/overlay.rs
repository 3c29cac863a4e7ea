//! Overlay egress (used by `from_container`): a packet for an endpoint of a
//! cluster network hosted on another node is encapsulated by the VXLAN
//! device in external (collect_md) mode: the program sets the tunnel key
//! (the network's VNI, the node's underlay address) and redirects the frame
//! to that device. No bridge, FDB or per-container route is involved.
//!
//! The policy (same network, icc, links) was applied by the caller exactly
//! as for a local peer: remote endpoints have `DP_ENDPOINTS` entries flagged
//! `EP_F_REMOTE` (and, on dual-stack cluster networks, `DP_ENDPOINTS6`
//! entries holding that same record: `from_container6` sends IPv6 this way
//! too). The ingress side's common check of the tunnel key is
//! [`tunnel_source`].

use aya_ebpf::{
    bindings::{bpf_tunnel_key, BPF_F_ZERO_CSUM_TX, TC_ACT_OK},
    helpers::{bpf_redirect, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use dataplane_common::{DropReason, EndpointInfo, EndpointKey, RemoteKey};

use crate::{
    forward,
    maps::{DP_OV_CONFIG, DP_OV_NODES, DP_OV_PEERS, DP_OV_REMOTE, DP_OV_VNIS},
    parse::ETH_LEN,
};

/// TTL of the outer (underlay) IPv4 header.
const UNDERLAY_TTL: u8 = 64;

/// Send the packet (from local endpoint `ep`) to the remote endpoint `peer`
/// (its IPv4 record, whatever the packet's family). `dont_fragment`: a
/// packet too big for the underlay goes to the stack (which answers it
/// through its IPv4 route to the overlay subnet) rather than being dropped
/// (`untranslatable_fragment`; IPv6 callers pass `false`: see
/// `from_container6`).
#[inline(always)]
pub fn to_remote(
    ctx: &TcContext,
    ep: &EndpointInfo,
    peer: &EndpointInfo,
    dont_fragment: bool,
) -> Result<i32, DropReason> {
    let key = RemoteKey {
        net_id: peer.net_id,
        ip: peer.ip,
    };
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(remote) = (unsafe { DP_OV_REMOTE.get(&key) }).copied() else {
        return Err(DropReason::NoRoute);
    };
    // SAFETY: as above.
    let Some(node) = (unsafe { DP_OV_NODES.get(remote.node) }).copied() else {
        return Err(DropReason::NoRoute);
    };
    let Some(cfg) = DP_OV_CONFIG.get(0).copied() else {
        return Err(DropReason::NoRoute);
    };
    if cfg.vxlan_ifindex == 0 {
        return Err(DropReason::NoRoute);
    }
    // SAFETY: `skb` is this program's __sk_buff; a plain context read.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    if gso_size == 0 && ctx.len() > cfg.mtu + ETH_LEN as u32 {
        if dont_fragment {
            // Too big for the underlay: the stack answers "fragmentation
            // needed" (its route to the overlay subnet has the overlay MTU).
            return Ok(TC_ACT_OK);
        }
        return Err(DropReason::UntranslatableFragment);
    }
    // SAFETY: bpf_tunnel_key is plain C data (integers and unions of
    // integers): all zeroes is a valid value.
    let mut tk: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    tk.tunnel_id = remote.vni;
    tk.__bindgen_anon_1.remote_ipv4 = u32::from_be_bytes(node.addr);
    tk.tunnel_ttl = UNDERLAY_TTL;
    // SAFETY: the context is this program's skb and `tk` a stack struct of
    // the size passed, which the helper only reads.
    let rc = unsafe {
        bpf_skb_set_tunnel_key(
            ctx.skb.skb,
            &mut tk,
            core::mem::size_of::<bpf_tunnel_key>() as u32,
            BPF_F_ZERO_CSUM_TX as u64,
        )
    };
    if rc < 0 {
        return Err(DropReason::NoRoute);
    }
    // The receiving node rewrites the MACs for its container; these name
    // the two endpoints for anyone capturing on the VXLAN device.
    forward::set_macs(ctx, &peer.mac, &ep.host_mac)?;
    // SAFETY: a BPF helper taking plain integers.
    Ok(unsafe { bpf_redirect(cfg.vxlan_ifindex, 0) as i32 })
}

/// The sender of a packet that came in over the overlay, from its tunnel
/// key: `(node key, local network id)`. The underlay source must be a node
/// of the cluster (`overlay_unknown_node`; also without tunnel metadata or
/// with an IPv6 underlay) and the VNI one of its networks
/// (`overlay_unknown_vni`).
#[inline(always)]
pub fn tunnel_source(ctx: &TcContext) -> Result<(u32, u32), DropReason> {
    // SAFETY: bpf_tunnel_key is plain C data: all zeroes is a valid value.
    let mut tk: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    // SAFETY: the context is this program's skb and `tk` a stack struct of
    // the size passed, which the helper fills in.
    let rc = unsafe {
        bpf_skb_get_tunnel_key(
            ctx.skb.skb,
            &mut tk,
            core::mem::size_of::<bpf_tunnel_key>() as u32,
            0,
        )
    };
    if rc < 0 {
        return Err(DropReason::OverlayUnknownNode);
    }
    // SAFETY: the helper filled the IPv4 member of the union (no
    // BPF_F_TUNINFO_IPV6 flag); it is a plain integer.
    let remote = unsafe { tk.__bindgen_anon_1.remote_ipv4 }.to_be_bytes();
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(node) = (unsafe { DP_OV_PEERS.get(EndpointKey { ip: remote }) }).copied() else {
        return Err(DropReason::OverlayUnknownNode);
    };
    // SAFETY: as above.
    let Some(net_id) = (unsafe { DP_OV_VNIS.get(tk.tunnel_id) }).copied() else {
        return Err(DropReason::OverlayUnknownVni);
    };
    Ok((node, net_id))
}

/// Whether `ip` (an IPv4 identity) on network `net_id` is an endpoint
/// hosted by `node` (anti-spoofing of what a node sends over the overlay).
#[inline(always)]
pub fn hosted_by(net_id: u32, ip: [u8; 4], node: u32) -> bool {
    // SAFETY: map lookup; the value (plain data) is read at once.
    match unsafe { DP_OV_REMOTE.get(&RemoteKey { net_id, ip }) } {
        Some(r) => r.node == node,
        None => false,
    }
}

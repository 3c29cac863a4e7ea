//! TC ingress on the VXLAN device (external mode): every packet another
//! node sends over the overlay enters this host here, decapsulated, with
//! its tunnel key (underlay source, VNI) as metadata.
//!
//! - The underlay source must be a node of the cluster (`DP_OV_PEERS`,
//!   `overlay_unknown_node`) and the VNI one of its cluster networks
//!   (`DP_OV_VNIS`, `overlay_unknown_vni`).
//! - An inner IPv6 frame goes on in `from_overlay6` (a tail call through
//!   `DP_CALLS`), with the same rules.
//! - The inner frame must be untagged IPv4 whose source is an endpoint of
//!   that network hosted by that very node (`DP_OV_REMOTE`: anti-spoofing
//!   against the endpoint registry, `spoofed_source`), without source
//!   route options.
//! - The destination must be a local endpoint of the same network
//!   (`cross_network` otherwise; `no_route` for anything else: a node never
//!   transits overlay traffic); `--icc=false` networks deny it
//!   (`icc_disabled`: `--link` allowances are local to a node).
//! - Delivered with `bpf_redirect_peer`, addressed to the container's MAC
//!   from its host-side MAC.

use aya_ebpf::{macros::classifier, programs::TcContext};
use dataplane_common::{DropReason, EndpointKey, EP_F_REMOTE};

use crate::{
    events, forward,
    maps::{self, DP_ENDPOINTS},
    overlay,
    parse::{self, ETH_LEN, ETH_P_IP, ETH_P_IPV6},
};

#[classifier]
pub fn dp_from_overlay(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    events::tc_verdict(
        mon,
        &ctx,
        dataplane_common::MON_AT_FROM_OVERLAY,
        ifindex,
        try_from_overlay(&ctx),
    )
}

#[inline(always)]
fn try_from_overlay(ctx: &TcContext) -> Result<i32, DropReason> {
    let (node, net_id) = overlay::tunnel_source(ctx)?;
    parse::pull_ipv4(ctx);
    let eth = parse::read::<[u8; 14]>(ctx, 0).ok_or(DropReason::Malformed)?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    // SAFETY: a plain context read of this program's skb.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present };
    if vlan_present != 0 || parse::is_vlan(ethertype) {
        return Err(DropReason::VlanTagged);
    }
    if ethertype == ETH_P_IPV6 {
        // SAFETY: a tail call into `dp_from_overlay6` through `DP_CALLS`;
        // it returns only when the slot is empty (IPv6 not loaded).
        unsafe { maps::DP_CALLS.tail_call(ctx, dataplane_common::CALL_FROM_OVERLAY6) };
        return Err(DropReason::UnsupportedEthertype);
    }
    if ethertype != ETH_P_IP {
        // Nodes answer ARP and NDP locally: only IP crosses the overlay.
        return Err(DropReason::UnsupportedEthertype);
    }
    let ip = parse::parse_ipv4(ctx, ETH_LEN).map_err(|_| DropReason::Malformed)?;
    if !overlay::hosted_by(net_id, ip.src, node) {
        return Err(DropReason::SpoofedSource);
    }
    if ip.l4_off > ETH_LEN + 20
        && parse::has_source_route(&parse::Pkt::tc(ctx), ETH_LEN, ip.l4_off - ETH_LEN)
    {
        return Err(DropReason::SourceRoute);
    }
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(peer) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ip.dst }) }).copied() else {
        return Err(DropReason::NoRoute);
    };
    if peer.flags & EP_F_REMOTE != 0 {
        return Err(DropReason::NoRoute);
    }
    if peer.net_id != net_id {
        return Err(DropReason::CrossNetwork);
    }
    // The receiver's entry carries its network's policy (same network).
    if maps::icc_disabled(&peer)? {
        return Err(DropReason::IccDisabled);
    }
    forward::deliver(ctx, &peer)
}

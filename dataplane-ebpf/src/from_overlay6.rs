//! IPv6 over the overlay: tail-called by `dp_from_overlay` (TC ingress on
//! the VXLAN device) for an inner IPv6 frame, with a stack frame of its
//! own. The twin of the IPv4 rules, by the endpoints' IPv4 identities:
//!
//! - The tunnel key is checked again (`overlay::tunnel_source`: a node of
//!   the cluster, a VNI of one of its networks).
//! - The inner source must be an endpoint of that network hosted by that
//!   very node: its `DP_ENDPOINTS6` entry is a remote one of the network
//!   whose IPv4 identity `DP_OV_REMOTE` places on the sending node
//!   (`spoofed_source` otherwise), without a source route.
//! - The destination must be a local endpoint of the same network
//!   (`cross_network`; `no_route` for anything else: a node never transits
//!   overlay traffic); `--icc=false` networks deny it (`icc_disabled`).
//! - Delivered with `bpf_redirect_peer`, addressed to the container's MAC
//!   from its host-side MAC.
//!
//! Neighbour discovery never crosses the overlay: each node answers its
//! containers' solicitations for remote endpoints itself (`ndp`).

use aya_ebpf::{macros::classifier, programs::TcContext};
use dataplane_common::{DropReason, Endpoint6Key, EP_F_REMOTE};

use crate::{
    events, forward,
    maps::{self, DP_ENDPOINTS6},
    overlay,
    parse::ETH_LEN,
    parse6::{self, Ipv6},
};

#[classifier]
pub fn dp_from_overlay6(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    events::tc_verdict(
        mon,
        &ctx,
        dataplane_common::MON_AT_FROM_OVERLAY,
        ifindex,
        try_from_overlay6(&ctx),
    )
}

#[inline(always)]
fn try_from_overlay6(ctx: &TcContext) -> Result<i32, DropReason> {
    let (node, net_id) = overlay::tunnel_source(ctx)?;
    parse6::pull(ctx);
    let mut ip = Ipv6::EMPTY;
    parse6::parse_ipv6(ctx, ETH_LEN, &mut ip).ok_or(DropReason::Malformed)?;
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let from_node = match unsafe { DP_ENDPOINTS6.get(Endpoint6Key { ip: ip.src }) } {
        Some(src) => {
            src.flags & EP_F_REMOTE != 0
                && src.net_id == net_id
                && overlay::hosted_by(net_id, src.ip, node)
        }
        None => false,
    };
    if !from_node {
        return Err(DropReason::SpoofedSource);
    }
    if ip.source_route {
        return Err(DropReason::SourceRoute);
    }
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(peer) = (unsafe { DP_ENDPOINTS6.get(Endpoint6Key { ip: ip.dst }) }).copied() else {
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

//! TC ingress on the VXLAN device (external mode): every packet another
//! node sends over the overlay enters this host here, decapsulated, with
//! its tunnel key (underlay source, VNI) as metadata.
//!
//! - The underlay source must be a node of the cluster (`DP_OV_PEERS`,
//!   `overlay_unknown_node`) and the VNI one of its cluster networks
//!   (`DP_OV_VNIS`, `overlay_unknown_vni`).
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

use aya_ebpf::{
    bindings::{bpf_tunnel_key, TC_ACT_SHOT},
    helpers::bpf_skb_get_tunnel_key,
    macros::classifier,
    programs::TcContext,
};
use dataplane_common::{DropReason, EndpointKey, RemoteKey, EP_F_REMOTE};

use crate::{
    events, forward,
    maps::{self, DP_ENDPOINTS, DP_OV_PEERS, DP_OV_REMOTE, DP_OV_VNIS},
    parse::{self, ETH_LEN, ETH_P_IP},
};

#[classifier]
pub fn dp_from_overlay(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    match try_from_overlay(&ctx) {
        Ok(action) => {
            events::trace_tc(
                mon,
                &ctx,
                dataplane_common::MON_AT_FROM_OVERLAY,
                ifindex,
                action,
            );
            action
        }
        Err(reason) => {
            maps::count_drop(ifindex, reason);
            events::drop(
                mon,
                &ctx,
                dataplane_common::MON_AT_FROM_OVERLAY,
                ifindex,
                reason,
            );
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn try_from_overlay(ctx: &TcContext) -> Result<i32, DropReason> {
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
        // No tunnel metadata (or IPv6 underlay): not from a node.
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
    parse::pull_ipv4(ctx);
    let eth = parse::read::<[u8; 14]>(ctx, 0).ok_or(DropReason::Malformed)?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    // SAFETY: a plain context read of this program's skb.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present };
    if vlan_present != 0 || parse::is_vlan(ethertype) {
        return Err(DropReason::VlanTagged);
    }
    if ethertype != ETH_P_IP {
        // Nodes answer ARP locally: only IPv4 crosses the overlay.
        return Err(DropReason::UnsupportedEthertype);
    }
    let ip = parse::parse_ipv4(ctx, ETH_LEN).map_err(|_| DropReason::Malformed)?;
    let src = RemoteKey { net_id, ip: ip.src };
    // SAFETY: map lookup; the value (plain data) is read at once.
    match unsafe { DP_OV_REMOTE.get(&src) } {
        Some(r) if r.node == node => {}
        _ => return Err(DropReason::SpoofedSource),
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

//! IPv6 neighbour discovery for containers (used by `from_container6`), the
//! twin of the ARP answers: a neighbour solicitation for the network's IPv6
//! gateway or for another endpoint of the same network is answered here
//! with a neighbour advertisement carrying the host-side MAC, bounced back
//! out of the same veth (`dp_to_container` lets that bounce pass). So all
//! unicast IPv6 from the container is addressed to the veth, where the
//! programs steer it.
//!
//! Duplicate address detection (a solicitation from `::`) is never
//! answered, and what is not answered here (solicitations for other
//! addresses, router solicitations, advertisements of the container's own
//! addresses) goes to the host's stack, which only answers for its own
//! addresses on that link. Router advertisements and redirects from a
//! container, and advertisements of addresses not its own, are dropped
//! (`spoofed_source`).

use aya_ebpf::{
    bindings::TC_ACT_OK,
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use dataplane_common::{DropReason, Endpoint6Key, EndpointInfo};

use crate::{
    maps::{DP_ENDPOINTS6, DP_NETWORKS6},
    parse::{self, Pkt, ETH_LEN, ETH_P_IPV6},
    parse6::{self, Ipv6, IPPROTO_ICMPV6},
};

pub const ICMPV6_MLD_QUERY: u8 = 130;
pub const ICMPV6_MLD_REPORT: u8 = 131;
pub const ICMPV6_MLD_DONE: u8 = 132;
pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
pub const ICMPV6_ROUTER_ADVERT: u8 = 134;
pub const ICMPV6_REDIRECT: u8 = 137;
pub const ICMPV6_NEIGH_SOLICIT: u8 = 135;
pub const ICMPV6_NEIGH_ADVERT: u8 = 136;
pub const ICMPV6_MLD2_REPORT: u8 = 143;

/// The hop limit every neighbour discovery message carries (RFC 4861: a
/// receiver discards others, they may come from off-link).
pub const NDP_HOP_LIMIT: u8 = 255;

/// Neighbour advertisement flags.
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// Ethernet + IPv6 + advertisement (24) + target link-layer option (8).
const NA_FRAME_LEN: usize = ETH_LEN + 40 + 32;
/// ICMPv6 length of a solicitation without options.
const NS_LEN: usize = 24;

/// Router/neighbour solicitation or advertisement, or a redirect.
#[inline(always)]
pub fn is_ndp(ip: &Ipv6) -> bool {
    ip.proto == IPPROTO_ICMPV6
        && ip.has_l4
        && ip.icmp_type >= ICMPV6_ROUTER_SOLICIT
        && ip.icmp_type <= ICMPV6_REDIRECT
        && ip.hop_limit == NDP_HOP_LIMIT
}

/// Multicast listener discovery (v1 and v2) of link-local scope.
#[inline(always)]
pub fn is_mld(ip: &Ipv6) -> bool {
    ip.proto == IPPROTO_ICMPV6
        && ip.has_l4
        && matches!(
            ip.icmp_type,
            ICMPV6_MLD_QUERY | ICMPV6_MLD_REPORT | ICMPV6_MLD_DONE | ICMPV6_MLD2_REPORT
        )
        && parse6::is_link_local_multicast(&ip.dst)
}

/// A neighbour discovery message from the container `ep` whose own IPv6
/// address is `own` (its source already checked to be `own`, its
/// link-local address or `::`).
#[inline(always)]
pub fn from_container(
    ctx: &TcContext,
    ep: &EndpointInfo,
    own: &[u8; 16],
    ip: &Ipv6,
) -> Result<i32, DropReason> {
    match ip.icmp_type {
        // A container is never a router of the host: a router
        // advertisement or a redirect would have the host's stack route
        // through it.
        ICMPV6_ROUTER_ADVERT | ICMPV6_REDIRECT => return Err(DropReason::SpoofedSource),
        ICMPV6_NEIGH_ADVERT => {
            // Only about its own addresses.
            let mut target = [0u8; 16];
            parse6::load16(ctx, ip.l4_off + 8, &mut target).ok_or(DropReason::Malformed)?;
            if target != *own && !parse6::is_link_local(&target) {
                return Err(DropReason::SpoofedSource);
            }
            return Ok(TC_ACT_OK);
        }
        ICMPV6_NEIGH_SOLICIT => {}
        // Router solicitations: the stack (no router advertisements here).
        _ => return Ok(TC_ACT_OK),
    }
    if !ip.no_ext || parse6::is_unspecified(&ip.src) {
        // Behind extension headers (not answered here), or duplicate
        // address detection (never answered).
        return Ok(TC_ACT_OK);
    }
    if (ip.payload_len as usize) < NS_LEN {
        return Err(DropReason::Malformed);
    }
    // Type, code, checksum, reserved, then the target address.
    let code = parse::read::<u8>(ctx, ip.l4_off + 1).ok_or(DropReason::Malformed)?;
    let mut target = [0u8; 16];
    parse6::load16(ctx, ip.l4_off + 8, &mut target).ok_or(DropReason::Malformed)?;
    if code != 0 || parse6::is_multicast(&target) || target == ip.src {
        // Invalid (the stack drops it) or about the asker itself.
        return Ok(TC_ACT_OK);
    }
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let router = match unsafe { DP_NETWORKS6.get(ep.net_id) } {
        Some(net6) => net6.gateway == target,
        None => false,
    };
    let known = router
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        || match unsafe { DP_ENDPOINTS6.get(Endpoint6Key { ip: target }) } {
            Some(peer) => peer.net_id == ep.net_id,
            None => false,
        };
    if !known {
        return Ok(TC_ACT_OK);
    }
    advertise(ctx, ep, &ip.src, &target, router)
}

/// Turn the solicitation in `ctx` into the advertisement "`target` is at
/// the host-side MAC", addressed to `dst` (the asker), in place, and send it
/// back out of the endpoint's veth.
#[inline(always)]
fn advertise(
    ctx: &TcContext,
    ep: &EndpointInfo,
    dst: &[u8; 16],
    target: &[u8; 16],
    router: bool,
) -> Result<i32, DropReason> {
    if ctx.len() as usize != NA_FRAME_LEN {
        // SAFETY: a BPF helper on this program's skb; packet pointers are
        // taken afresh below.
        if unsafe { bpf_skb_change_tail(ctx.skb.skb, NA_FRAME_LEN as u32, 0) } < 0 {
            return Err(DropReason::Malformed);
        }
    }
    parse::pull(ctx, NA_FRAME_LEN);
    let r = Pkt::tc(ctx)
        .ptr::<[u8; NA_FRAME_LEN]>(0)
        .ok_or(DropReason::Malformed)?;
    // SAFETY: `ptr` checked that the frame lies inside the packet's linear
    // data, which the program may write; nothing else refers to it. No
    // helper that moves packet data runs while it is used.
    let r = unsafe { &mut *r };
    r[0..6].copy_from_slice(&ep.mac);
    r[6..12].copy_from_slice(&ep.host_mac);
    r[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    r[14..18].copy_from_slice(&[0x60, 0, 0, 0]);
    r[18..20].copy_from_slice(&32u16.to_be_bytes());
    r[20] = IPPROTO_ICMPV6;
    r[21] = NDP_HOP_LIMIT;
    r[22..38].copy_from_slice(target);
    r[38..54].copy_from_slice(dst);
    r[54..62].copy_from_slice(&[
        ICMPV6_NEIGH_ADVERT,
        0,
        0,
        0,
        NA_SOLICITED | NA_OVERRIDE | if router { NA_ROUTER } else { 0 },
        0,
        0,
        0,
    ]);
    r[62..78].copy_from_slice(target);
    // Target link-layer address option: type 2, length 1 (8 bytes).
    r[78] = 2;
    r[79] = 1;
    r[80..86].copy_from_slice(&ep.host_mac);
    // Pseudo-header (addresses, upper-layer length, next header) and the
    // message with a zero checksum field.
    let mut sum: u32 = 32 + IPPROTO_ICMPV6 as u32;
    let mut i = 22;
    while i < NA_FRAME_LEN {
        sum += u16::from_be_bytes([r[i], r[i + 1]]) as u32;
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    r[56..58].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    // SAFETY: a BPF helper taking plain integers.
    Ok(unsafe { bpf_redirect(ep.ifindex, 0) as i32 })
}

//! IPv6 from a container: tail-called by `dp_from_container` (its entry
//! point) for every IPv6 frame, with a stack frame of its own. The twin of
//! the IPv4 rules, with the endpoint's IPv4 record as its identity:
//!
//! - Neighbour solicitations for the gateway or an endpoint of the same
//!   network are answered here (`ndp`); other solicitations, router
//!   solicitations and advertisements of the container's own addresses
//!   (hop limit 255), and link-local multicast listener reports, go to the
//!   stack; router advertisements, redirects and advertisements of other
//!   addresses are dropped.
//! - The source must be the endpoint's own IPv6 address and MAC; its
//!   link-local address (or `::`) only for those messages
//!   (anti-spoofing).
//! - To another endpoint (`DP_ENDPOINTS6`): the same policy as IPv4 (same
//!   network, `--icc=false` and links keyed by the IPv4 identities, internal
//!   networks), then straight into its namespace with `bpf_redirect_peer`,
//!   or, for an endpoint on another node (`EP_F_REMOTE`, a dual-stack
//!   cluster network), over the overlay (`overlay::to_remote`).
//! - The gateway, link-local and multicast destinations go to the stack;
//!   the rest of the network's subnet does not exist; `::1`, `::` and
//!   IPv4-mapped destinations are refused; everything else is beyond the
//!   host (`egress6`).
//! - A routing header with segments left (the stack would act on it) is a
//!   source route; extension headers are walked with bounds (`parse6`).
//!
//! An endpoint without an IPv6 address (no `DP_IF_ENDPOINTS6` entry) sends
//! no IPv6: its frames are dropped (`unsupported_ethertype`), as all IPv6
//! was before dual stack.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::{DropReason, Endpoint6Key, EndpointInfo, EP_F_REMOTE, NET_F_INTERNAL};

use crate::{
    egress6, events, forward,
    maps::{self, DP_ENDPOINTS6, DP_IF_ENDPOINTS, DP_NETWORKS, DP_NETWORKS6},
    ndp, overlay,
    parse::{self, ETH_LEN},
    parse6::{self, Ipv6},
    policy,
};

#[classifier]
pub fn dp_from_container6(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    events::tc_verdict(
        mon,
        &ctx,
        dataplane_common::MON_AT_FROM_CONTAINER,
        ifindex,
        try_from_container6(&ctx, ifindex),
    )
}

#[inline(always)]
fn try_from_container6(ctx: &TcContext, ifindex: u32) -> Result<i32, DropReason> {
    // SAFETY: map lookup; the value is copied out at once.
    let Some(ep6) = (unsafe { maps::DP_IF_ENDPOINTS6.get(ifindex) }).copied() else {
        return Err(DropReason::UnsupportedEthertype);
    };
    // SAFETY: map lookup; the value is copied out at once.
    let Some(ep) = (unsafe { DP_IF_ENDPOINTS.get(ifindex) }).copied() else {
        return Err(DropReason::UnknownInterface);
    };
    parse6::pull(ctx);
    let mac = parse::read::<[u8; 6]>(ctx, 6).ok_or(DropReason::Malformed)?;
    let mut ip = Ipv6::EMPTY;
    parse6::parse_ipv6(ctx, ETH_LEN, &mut ip).ok_or(DropReason::Malformed)?;
    // Anti-spoofing: the endpoint's own MAC, and its own IPv6 address but
    // for neighbour and multicast listener discovery, which use the
    // link-local address (or none yet).
    if mac != ep.mac {
        return Err(DropReason::SpoofedSource);
    }
    let own = ip.src == ep6.ip;
    if !own {
        let link = parse6::is_link_local(&ip.src) || parse6::is_unspecified(&ip.src);
        if !link {
            return Err(DropReason::SpoofedSource);
        }
        if ndp::is_ndp(&ip) {
            return ndp::from_container(ctx, &ep, &ep6.ip, &ip);
        }
        if ndp::is_mld(&ip) {
            return Ok(TC_ACT_OK);
        }
        return Err(DropReason::SpoofedSource);
    }
    maps::count_tx(ep.ifindex, ctx.len());
    if ndp::is_ndp(&ip) {
        return ndp::from_container(ctx, &ep, &ep6.ip, &ip);
    }
    if ip.source_route {
        return Err(DropReason::SourceRoute);
    }
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(peer) = unsafe { DP_ENDPOINTS6.get(Endpoint6Key { ip: ip.dst }) } {
        return to_endpoint(ctx, &ep, peer, &ip);
    }
    if parse6::is_reserved_destination(&ip.dst) {
        return Err(DropReason::ReservedDestination);
    }
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(net6) = (unsafe { DP_NETWORKS6.get(ep.net_id) }).copied() else {
        return Err(DropReason::UnknownInterface);
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(net) = (unsafe { DP_NETWORKS.get(ep.net_id) }).copied() else {
        return Err(DropReason::UnknownInterface);
    };
    // The gateway and link-scoped destinations (the host's side of the
    // link; the stack never forwards them) go to the stack, as does
    // multicast, which the stack does not forward either.
    if ip.dst == net6.gateway || parse6::is_link_local(&ip.dst) || parse6::is_multicast(&ip.dst) {
        return Ok(TC_ACT_OK);
    }
    if net.flags & NET_F_INTERNAL != 0 {
        return Err(DropReason::InternalNetwork);
    }
    if parse6::in_subnet6(&ip.dst, &net6.subnet, net6.prefix_len) {
        // An address of the network that is not an endpoint does not
        // exist: never route it out.
        return Err(DropReason::NoRoute);
    }
    egress6::beyond_host(ctx, net.flags)
}

/// Same-host delivery, straight into the peer's namespace, if the network
/// policy allows it (the IPv4 rules, by the IPv4 identities).
#[inline(always)]
fn to_endpoint(
    ctx: &TcContext,
    ep: &EndpointInfo,
    peer: &EndpointInfo,
    ip: &Ipv6,
) -> Result<i32, DropReason> {
    if peer.net_id != ep.net_id {
        return Err(DropReason::CrossNetwork);
    }
    let no_icc = maps::icc_disabled(ep)?;
    if no_icc && peer.ifindex != ep.ifindex {
        if let Some(reason) = policy::icc_denied(
            ep,
            peer,
            ip.has_ports().then_some((ip.sport, ip.dport, ip.proto)),
        ) {
            return Err(reason);
        }
    }
    if peer.flags & EP_F_REMOTE != 0 {
        // An endpoint of a dual-stack cluster network on another node. A
        // non-GSO packet above the overlay MTU is dropped
        // (`untranslatable_fragment`): the stack has no IPv6 route through
        // the VXLAN device to answer "packet too big" from, and could route
        // it out unencapsulated. Containers get the overlay MTU by default.
        return overlay::to_remote(ctx, ep, peer, false);
    }
    forward::deliver(ctx, peer)
}

//! IPv6 from outside: tail-called by `dp_from_uplink` (TC ingress of the
//! uplink and every other host interface) for each IPv6 frame, in a stack
//! frame of its own.
//!
//! - Published ports on the host's IPv6 addresses (`DP_PORTS6`, exact or
//!   `::`): the destination is translated to the container's IPv6 address
//!   and port, the client's address is kept, both directions are recorded
//!   in `DP_CT6` (the container's replies are translated back in `egress6`)
//!   and the packet is delivered straight into the container's namespace.
//! - Replies of masqueraded flows (`DP_NAT6_IN`) are translated back and
//!   delivered the same way.
//! - To a container's own address: only flows it has open (a routed
//!   network's replies: identity entries in `DP_CT6`) and errors about them
//!   are delivered; anything else is direct access from outside, dropped.
//! - A source claiming `::1`, a container or a host address is dropped
//!   before any translation (`spoofed_source`).
//! - ICMPv6 errors about translated flows: see `icmp6_err`; later
//!   fragments of translated datagrams: see `frag6`.
//!
//! Anything else (neighbour discovery, the host's own traffic) goes to the
//! host's stack untouched.

use aya_ebpf::{
    bindings::TC_ACT_OK, helpers::bpf_ktime_get_ns, macros::classifier, programs::TcContext,
};
use dataplane_common::{
    CtEntry6, DropReason, Endpoint6Key, EndpointInfo, FlowKey6, PortTarget6, CT_F_REPLY_DIR,
    NAT_F_REPLIED,
};

use crate::{
    events, forward, frag6, icmp6_err,
    maps::{self, DP_CT6, DP_ENDPOINTS6, DP_HOST_IPS6, LOOPBACK6},
    nat6::{self, Ip6, Scratch6, ICMP6_ECHO_REPLY, IP6_DST_OFF, IP6_HLIM_OFF},
    parse::{Frag, ETH_LEN, IPPROTO_TCP, IPPROTO_UDP},
};

#[classifier]
pub fn dp_from_uplink6(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    events::tc_verdict(
        mon,
        &ctx,
        dataplane_common::MON_AT_FROM_UPLINK,
        ifindex,
        try_from_uplink6(&ctx),
    )
}

#[inline(always)]
fn endpoint(ip: &[u8; 16]) -> Option<&'static EndpointInfo> {
    // SAFETY: map lookup; the value (plain data) is only read, during this
    // program run.
    unsafe { DP_ENDPOINTS6.get(Endpoint6Key { ip: *ip }) }
}

/// A source no packet from outside may have: `::1`, `::`, multicast, a
/// container's or one of the host's own addresses.
#[inline(always)]
fn spoofed(src: &[u8; 16]) -> bool {
    *src == LOOPBACK6
        || *src == [0; 16]
        || src[0] == 0xff
        || endpoint(src).is_some()
        // SAFETY: map lookup; only its presence is used.
        || unsafe { DP_HOST_IPS6.get(Endpoint6Key { ip: *src }) }.is_some()
}

#[inline(always)]
fn try_from_uplink6(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(s) = nat6::scratch() else {
        return Ok(TC_ACT_OK);
    };
    // One call site of the translation (each inlined copy takes stack).
    match classify(ctx, s)? {
        Some(verdict) => Ok(verdict),
        None => translated(ctx, &s.ip, &s.ct),
    }
}

/// Decide on a packet: a verdict, or `None` when it is to be translated as
/// `s.ct` says and delivered.
#[inline(always)]
fn classify(ctx: &TcContext, s: &mut Scratch6) -> Result<Option<i32>, DropReason> {
    if nat6::parse(ctx, &mut s.ip).is_err() {
        // Broken or with too many extension headers: not for a container.
        let dst: [u8; 16] = ctx
            .load(ETH_LEN + IP6_DST_OFF)
            .map_err(|_| DropReason::Malformed)?;
        if endpoint(&dst).is_some() {
            return Err(DropReason::Malformed);
        }
        return Ok(Some(TC_ACT_OK));
    }
    if let Some(ep) = endpoint(&s.ip.dst) {
        return to_container(ctx, s, ep).map(Some);
    }
    if maps::config().is_none() {
        return Ok(Some(TC_ACT_OK));
    }
    let ip = &mut s.ip;
    if ip.frag == Frag::Later {
        // A datagram whose first fragment was translated here: the same
        // destination. Else the host's own (or its first fragment has not
        // come yet): the stack's.
        return match frag6::lookup(ip) {
            Some(e) => {
                let ep = endpoint(&e.dst).ok_or(DropReason::NoRoute)?;
                if ip.hop_limit <= 1 {
                    return Ok(Some(TC_ACT_OK));
                }
                frag6::rewrite(ctx, ip, e).ok_or(DropReason::Malformed)?;
                forward::deliver(ctx, ep).map(Some)
            }
            None => Ok(Some(TC_ACT_OK)),
        };
    }
    if icmp6_err::is_error(ip) {
        if spoofed(&ip.src) {
            return Err(DropReason::SpoofedSource);
        }
        return icmp6_err::from_outside(ctx, ip, &mut s.q).map(Some);
    }
    if ip.ports_present() {
        s.key = ip.flow();
        if tracked(&s.key, ip, &mut s.ct) {
            return Ok(None);
        }
        if let Some(t) = maps::port_lookup6(&ip.dst, ip.dport, ip.proto) {
            if nat6::rnat_entry(&s.key, ip).is_none() {
                publish(s, &t)?;
                return Ok(None);
            }
        }
    } else if ip.is_echo(ICMP6_ECHO_REPLY) {
        // The identifier was translated on the way out (`sport` here, the
        // reverse key's destination "port").
        ip.dport = ip.sport;
        s.key = FlowKey6::new(ip.src, ip.dst, 0, ip.sport, ip.proto);
    } else {
        return Ok(Some(TC_ACT_OK));
    }
    // A masqueraded flow's reply: back to the container's address and port.
    let Some(back) = nat6::rnat_entry(&s.key, ip) else {
        return Ok(Some(TC_ACT_OK));
    };
    s.ct.src = ip.src;
    s.ct.sport = ip.sport;
    s.ct.dst = back.addr;
    s.ct.dport = back.port;
    Ok(None)
}

/// Copy a tracked flow's entry (refreshed) into `out`, by its wire tuple.
#[inline(always)]
fn tracked(key: &FlowKey6, ip: &Ip6, out: &mut CtEntry6) -> bool {
    let Some(ct) = DP_CT6.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: the pointer the map lookup returned, valid for this program
    // run; the value is plain data.
    unsafe {
        (*ct).last_seen_ns = bpf_ktime_get_ns();
        if (*ct).flags & CT_F_REPLY_DIR != 0 {
            (*ct).flags |= NAT_F_REPLIED;
        }
        (*ct).flags |= nat6::closing(ip);
        *out = *ct;
    }
    true
}

/// Apply a tracked translation and deliver into the container.
#[inline(always)]
fn translated(ctx: &TcContext, ip: &Ip6, ct: &CtEntry6) -> Result<i32, DropReason> {
    let ep = endpoint(&ct.dst).ok_or(DropReason::NoRoute)?;
    if ip.hop_limit <= 1 {
        return Ok(TC_ACT_OK);
    }
    nat6::translate(ctx, ip, &ct.src, ct.sport, &ct.dst, ct.dport)
        .map_err(|_| DropReason::Malformed)?;
    frag6::remember(ip, &ct.src, &ct.dst);
    forward::deliver(ctx, ep)
}

/// A new connection to a published port: to the container, client address
/// kept; both directions recorded in `DP_CT6`.
#[inline(always)]
fn publish(s: &mut Scratch6, t: &PortTarget6) -> Result<(), DropReason> {
    let ip = &s.ip;
    if spoofed(&ip.src) {
        return Err(DropReason::SpoofedSource);
    }
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let flags = nat6::closing(ip);
    s.ct = CtEntry6 {
        src: ip.src,
        dst: t.ip,
        sport: ip.sport,
        dport: t.port,
        flags,
        _pad: 0,
        last_seen_ns: now,
    };
    s.ct2 = CtEntry6 {
        src: ip.dst,
        dst: ip.src,
        sport: ip.dport,
        dport: ip.sport,
        flags: CT_F_REPLY_DIR | flags,
        _pad: 0,
        last_seen_ns: now,
    };
    s.key = FlowKey6::new(t.ip, ip.src, t.port, ip.sport, ip.proto);
    let _ = DP_CT6.insert(&s.key, &s.ct2, 0);
    s.key = ip.flow();
    let _ = DP_CT6.insert(&s.key, &s.ct, 0);
    Ok(())
}

/// To a container's own address: a tracked flow (routed networks' replies,
/// identity entries), a later fragment of one, or an error about one;
/// anything else is direct access from outside.
#[inline(always)]
fn to_container(ctx: &TcContext, s: &mut Scratch6, ep: &EndpointInfo) -> Result<i32, DropReason> {
    let r = to_container_inner(ctx, s, ep);
    if r == Err(DropReason::DirectAccessFromOutside) {
        // Blamed on the container it was aimed at, too.
        maps::count_endpoint_drop(ep.ifindex, DropReason::DirectAccessFromOutside);
    }
    r
}

#[inline(always)]
fn to_container_inner(
    ctx: &TcContext,
    s: &mut Scratch6,
    ep: &EndpointInfo,
) -> Result<i32, DropReason> {
    let ip = &s.ip;
    if spoofed(&ip.src) {
        return Err(DropReason::SpoofedSource);
    }
    if ip.frag == Frag::Later {
        let Some(e) = frag6::lookup(ip) else {
            return Err(DropReason::DirectAccessFromOutside);
        };
        if e.dst != ip.dst || e.src != ip.src {
            return Err(DropReason::DirectAccessFromOutside);
        }
        return pass(ctx, ip, ep);
    }
    if icmp6_err::is_error(ip) {
        return icmp6_err::to_routed(ctx, ip, &mut s.q, ep);
    }
    s.key = if ip.is_echo(ICMP6_ECHO_REPLY) {
        FlowKey6::new(ip.src, ip.dst, 0, ip.sport, ip.proto)
    } else if ip.proto == IPPROTO_TCP || ip.proto == IPPROTO_UDP {
        if !ip.has_l4 {
            return Err(DropReason::Malformed);
        }
        ip.flow()
    } else {
        return Err(DropReason::DirectAccessFromOutside);
    };
    if !tracked(&s.key, ip, &mut s.ct) || s.ct.dst != ip.dst || s.ct.src != ip.src {
        return Err(DropReason::DirectAccessFromOutside);
    }
    frag6::remember(ip, &ip.src, &ip.dst);
    pass(ctx, ip, ep)
}

/// Deliver untranslated (a routed network's flow): only the hop limit changes.
#[inline(always)]
fn pass(ctx: &TcContext, ip: &Ip6, ep: &EndpointInfo) -> Result<i32, DropReason> {
    if ip.hop_limit <= 1 {
        return Ok(TC_ACT_OK);
    }
    let hl = [ip.hop_limit - 1];
    ctx.store(ETH_LEN + IP6_HLIM_OFF, &hl, 0)
        .map_err(|_| DropReason::Malformed)?;
    forward::deliver(ctx, ep)
}

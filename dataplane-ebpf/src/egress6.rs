//! IPv6 from a container to beyond the host (`dp_egress6`, tail-called
//! through `beyond_host` by `from_container6` once the destination is
//! neither an endpoint, the gateway nor a multicast or reserved address):
//! the route lookup, then out of the interface it chose.
//!
//! A routed network's addresses leave untranslated (an identity entry in
//! `DP_CT6` lets the replies of its flows in, see `from_uplink6`); a
//! masqueraded network's (`NET6_F_MASQ`, ULA subnets by default) are
//! translated to the IPv6 address of the interface the route lookup chose
//! (`DP_HOST_IFS6`, `nat6`). Before the route lookup: flows tracked in
//! `DP_CT6` (replies of published ports, hairpin) are translated, a port
//! published on a host address starts a hairpin flow, later fragments get
//! their first fragment's translation (`frag6`), and ICMPv6 errors about
//! translated flows are translated through their quoted header
//! (`icmp6_err`). What the stack must answer (unreachable, prohibited, too
//! big, hop limit exceeded) or deliver itself (an address of the host) goes
//! up the stack.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_NOEXIST, TC_ACT_OK,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns},
    macros::classifier,
    programs::TcContext,
};
use dataplane_common::{
    CtEntry6, DropReason, Endpoint6Key, EndpointInfo, FlowKey6, PortTarget6, CALL_EGRESS6,
    CT_F_REPLY_DIR, MON_AT_FROM_CONTAINER, NAT_F_REPLIED, NET6_F_MASQ, NET_F_INTERNAL,
};

use crate::{
    events, forward, frag6, icmp6_err,
    maps::{self, DP_CT6, DP_ENDPOINTS6, DP_IF_ENDPOINTS, DP_NETWORKS6},
    nat6::{self, Ip6, Scratch6, ICMP6_ECHO_REQUEST},
    parse::{Frag, ETH_LEN, IPPROTO_TCP, IPPROTO_UDP},
    parse6::IP6_HOP_LIMIT_OFF,
};

const AF_INET6: u8 = 10;

/// A packet of endpoint `ep` (IPv4 network flags `net_flags`) for an
/// address beyond the host: on to `dp_egress6`, a program of its own (the
/// translations need a stack frame of their own).
#[inline(always)]
pub fn beyond_host(ctx: &TcContext, net_flags: u32) -> Result<i32, DropReason> {
    if net_flags & NET_F_INTERNAL != 0 {
        return Err(DropReason::InternalNetwork);
    }
    // SAFETY: a tail call into `dp_egress6` (`DP_CALLS`); it returns only
    // when the slot is empty.
    unsafe { maps::DP_CALLS.tail_call(ctx, CALL_EGRESS6) };
    Err(DropReason::NoRoute)
}

#[classifier]
pub fn dp_egress6(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    events::tc_verdict(
        mon,
        &ctx,
        MON_AT_FROM_CONTAINER,
        ifindex,
        try_egress6(&ctx, ifindex),
    )
}

/// The packet was checked by `dp_from_container6` (the endpoint's own
/// source, not for another endpoint, the gateway or the subnet).
#[inline(always)]
fn try_egress6(ctx: &TcContext, ifindex: u32) -> Result<i32, DropReason> {
    // SAFETY: map lookup; the value (plain data) is only read.
    let ep = unsafe { DP_IF_ENDPOINTS.get(ifindex) }.ok_or(DropReason::UnknownInterface)?;
    // SAFETY: as above.
    let net6 = unsafe { DP_NETWORKS6.get(ep.net_id) }.ok_or(DropReason::UnknownInterface)?;
    // The translations (`nat6`) work in this CPU's scratch space.
    let s = nat6::scratch().ok_or(DropReason::NoRoute)?;
    nat6::parse(ctx, &mut s.ip).map_err(|_| DropReason::Malformed)?;
    if let Some(r) = translated(s) {
        let dst = r?;
        if s.ip.hop_limit <= 1 {
            return Ok(TC_ACT_OK);
        }
        nat6::translate(ctx, &s.ip, &s.ct.src, s.ct.sport, &s.ct.dst, s.ct.dport)
            .map_err(|_| DropReason::Malformed)?;
        frag6::remember(&s.ip, &s.ct.src, &s.ct.dst);
        s.ip.dst = dst;
        return send(ctx, ep, &s.ip, false);
    }
    if s.ip.frag == Frag::Later {
        if let Some(e) = frag6::lookup(&s.ip) {
            if s.ip.hop_limit <= 1 {
                return Ok(TC_ACT_OK);
            }
            frag6::rewrite(ctx, &s.ip, e).ok_or(DropReason::Malformed)?;
            s.ip.dst = e.dst;
            return send(ctx, ep, &s.ip, true);
        }
    }
    if icmp6_err::is_error(&s.ip) {
        if let Some(r) = icmp6_err::from_container(ctx, &s.ip.src, &s.ip, &mut s.q) {
            s.ip.dst = r?;
            return send(ctx, ep, &s.ip, false);
        }
    }
    let Some((rc, f)) = fib6(ctx, ep.ifindex, &s.ip) else {
        return Err(DropReason::NoRoute);
    };
    if rc == BPF_FIB_LKUP_RET_NOT_FWDED {
        // An address of the host: the stack delivers it.
        return Ok(TC_ACT_OK);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        // Unreachable, prohibited, too big: the stack answers with the
        // ICMPv6 error (it does not forward these).
        return Ok(TC_ACT_OK);
    }
    if s.ip.hop_limit <= 1 {
        // The stack sends the ICMPv6 time exceeded.
        return Ok(TC_ACT_OK);
    }
    if net6.flags & NET6_F_MASQ == 0 {
        // Routed: untranslated; replies are let in by `from_uplink6`
        // for flows the container opened.
        routed_reply(&s.ip, &mut s.key, &mut s.ct);
        dec_hop_limit(ctx)?;
        return forward::forward(ctx, rc, f);
    }
    masquerade(ctx, s, f.ifindex)?;
    forward::forward(ctx, rc, f)
}

/// A flow tracked in `DP_CT6` (a published port's replies, both
/// directions of hairpin flows), or a new hairpin flow to a port published
/// on a host address: `s.ct` is its translation; the new destination.
#[inline(always)]
fn translated(s: &mut Scratch6) -> Option<Result<[u8; 16], DropReason>> {
    let p = &s.ip;
    if !p.ports_present() {
        return None;
    }
    s.key = p.flow();
    if let Some(ct) = DP_CT6.get_ptr_mut(&s.key) {
        // SAFETY: the pointer the map lookup returned, valid for this
        // program run; the value is plain data.
        unsafe {
            (*ct).last_seen_ns = bpf_ktime_get_ns();
            if (*ct).flags & CT_F_REPLY_DIR != 0 {
                (*ct).flags |= NAT_F_REPLIED;
            }
            (*ct).flags |= nat6::closing(p);
            s.ct = *ct;
        }
        return Some(Ok(s.ct.dst));
    }
    let t = maps::port_lookup6(&p.dst, p.dport, p.proto)?;
    Some(hairpin(s, &t).map(|()| t.ip))
}

/// A container reaching a port published on a host address: to the
/// published container, from that host address (so that the reply comes
/// back here) and a port of the masquerade range; both directions in
/// `DP_CT6`.
#[inline(always)]
fn hairpin(s: &mut Scratch6, t: &PortTarget6) -> Result<(), DropReason> {
    let cfg = maps::config().ok_or(DropReason::NoRoute)?;
    let p = &s.ip;
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    s.ct2 = CtEntry6 {
        src: p.dst,
        dst: p.src,
        sport: p.dport,
        dport: p.sport,
        flags: CT_F_REPLY_DIR,
        _pad: 0,
        last_seen_ns: now,
    };
    let (host, tip, tport, proto) = (p.dst, t.ip, t.port, p.proto);
    let back = &s.ct2;
    let port = nat6::claim_port(cfg, &host, proto, |port| {
        let reply = FlowKey6::new(tip, host, tport, port, proto);
        DP_CT6.insert(&reply, back, BPF_NOEXIST as u64).is_ok()
    })
    .ok_or(DropReason::NatExhausted)?;
    s.ct = CtEntry6 {
        src: host,
        dst: tip,
        sport: port,
        dport: tport,
        flags: 0,
        _pad: 0,
        last_seen_ns: now,
    };
    let _ = DP_CT6.insert(&s.key, &s.ct, 0);
    Ok(())
}

/// Send a translated packet (`ip`, with its new destination): into a
/// container of this host, or out of the interface the route lookup
/// chooses (`later`: a later fragment, which cannot be fragmented again).
#[inline(always)]
fn send(ctx: &TcContext, ep: &EndpointInfo, ip: &Ip6, later: bool) -> Result<i32, DropReason> {
    // SAFETY: map lookup; the value (plain data) is only read.
    if let Some(peer) = unsafe { DP_ENDPOINTS6.get(Endpoint6Key { ip: ip.dst }) } {
        return forward::deliver(ctx, peer);
    }
    match fib6(ctx, ep.ifindex, ip) {
        Some((rc, f)) if rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH => {
            forward::forward(ctx, rc, f)
        }
        _ if later => Err(DropReason::UntranslatableFragment),
        // Already rewritten: not for the stack either.
        _ => Err(DropReason::NoRoute),
    }
}

/// A routed flow leaving: the identity entry of its replies in `DP_CT6`
/// (refreshed in place when it exists).
#[inline(always)]
fn routed_reply(p: &Ip6, key: &mut FlowKey6, ct: &mut CtEntry6) {
    let echo = p.is_echo(ICMP6_ECHO_REQUEST);
    if !p.ports_present() && !echo {
        return;
    }
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    *key = FlowKey6::new(p.dst, p.src, p.dport, p.sport, p.proto);
    if let Some(e) = DP_CT6.get_ptr_mut(&*key) {
        // SAFETY: the pointer the map lookup returned, valid for this
        // program run; the value is plain data.
        unsafe { (*e).last_seen_ns = now };
        return;
    }
    *ct = CtEntry6 {
        src: p.dst,
        dst: p.src,
        sport: p.dport,
        dport: p.sport,
        flags: nat6::closing(p),
        _pad: 0,
        last_seen_ns: now,
    };
    let _ = DP_CT6.insert(&*key, &*ct, 0);
}

/// Masquerade to the IPv6 address of the interface the route lookup chose
/// (`DP_HOST_IFS6`).
#[inline(always)]
fn masquerade(ctx: &TcContext, s: &mut Scratch6, out_if: u32) -> Result<(), DropReason> {
    // An interface without a global or ULA address: nothing to
    // masquerade to (and a masqueraded network's addresses never leave
    // untranslated).
    let addr = maps::masquerade_ip6(out_if).ok_or(DropReason::NoRoute)?;
    let p = &s.ip;
    if p.frag == Frag::Later {
        // Its first fragment was not translated (or not seen).
        return Err(DropReason::FragmentWithoutFirst);
    }
    let translatable = match p.proto {
        IPPROTO_TCP | IPPROTO_UDP => p.has_l4,
        _ => p.is_echo(ICMP6_ECHO_REQUEST),
    };
    if !translatable {
        return Err(DropReason::UnsupportedProtocol);
    }
    let cfg = maps::config().ok_or(DropReason::NoRoute)?;
    s.key = p.flow();
    let out = nat6::snat_entry(&s.key, p, cfg, &addr).ok_or(DropReason::NatExhausted)?;
    nat6::translate(ctx, p, &out.addr, out.port, &p.dst, p.dport)
        .map_err(|_| DropReason::Malformed)?;
    frag6::remember(p, &out.addr, &p.dst);
    Ok(())
}

/// Decrement the hop limit of a routed packet (IPv6 has no header
/// checksum, and the L4 checksums do not cover it).
#[inline(always)]
pub fn dec_hop_limit(ctx: &TcContext) -> Result<(), DropReason> {
    let pkt = crate::parse::Pkt::tc(ctx);
    let h = pkt
        .ptr::<u8>(ETH_LEN + IP6_HOP_LIMIT_OFF)
        .ok_or(DropReason::Malformed)?;
    // SAFETY: `ptr` checked that the byte lies inside the packet's linear
    // data, which the program may write; nothing else refers to it.
    unsafe { *h = (*h).wrapping_sub(1) };
    Ok(())
}

/// Route lookup for `ip` as if it arrived on `ifindex`: the helper's return
/// code and the lookup result, or None on error (see `forward::fib`).
#[inline(always)]
pub fn fib6(ctx: &TcContext, ifindex: u32, ip: &Ip6) -> Option<(u32, &'static bpf_fib_lookup)> {
    let fib = maps::DP_FIB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array; a program runs to its end
    // on one CPU without being re-entered, and the value is plain data.
    let fib = unsafe { &mut (*fib).0 };
    // SAFETY: bpf_fib_lookup is a plain C struct (integers and unions of
    // integers): all zeroes is a valid value.
    *fib = unsafe { core::mem::zeroed() };
    fib.family = AF_INET6;
    fib.l4_protocol = ip.proto;
    fib.sport = ip.sport.to_be();
    fib.dport = ip.dport.to_be();
    // tot_len stays 0: the kernel checks the MTU with is_skb_forwardable().
    fib.ifindex = ifindex;
    fib.__bindgen_anon_3.ipv6_src = words(&ip.src);
    fib.__bindgen_anon_4.ipv6_dst = words(&ip.dst);
    // SAFETY: the context is this program's skb and `fib` a map value of
    // the size passed, which the helper fills in.
    let rc = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc < 0 {
        return None;
    }
    Some((rc as u32, fib))
}

/// An address as the helper's four words (network order in memory).
#[inline(always)]
fn words(ip: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([ip[0], ip[1], ip[2], ip[3]]),
        u32::from_ne_bytes([ip[4], ip[5], ip[6], ip[7]]),
        u32::from_ne_bytes([ip[8], ip[9], ip[10], ip[11]]),
        u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
    ]
}

//! ICMPv6 errors (destination unreachable, packet too big, time exceeded)
//! about translated IPv6 flows, translated through the header they quote.
//!
//! - From outside (`from_outside`, in `from_uplink6`): an error about a
//!   masqueraded flow quotes `host:nat_port -> remote`, one about a
//!   published-port flow `host:published -> client` (the container's reply
//!   as translated). The outer destination and the quoted source go back to
//!   the container's address and port, and the error is delivered (path-MTU
//!   discovery needs "packet too big"). An error about a routed flow (to the
//!   container's own address) is delivered as it is (`to_routed`).
//! - From a container (`from_container`, for `egress6`): the error quotes
//!   the packet the container received; it is rewritten the way that
//!   flow's packets from the container are (`DP_CT6`, `DP_NAT6_OUT`), so a
//!   client of a published UDP port nobody listens on gets "port
//!   unreachable" from the host address it used.
//!
//! The ICMPv6 checksum covers a pseudo-header (outer addresses) and the
//! whole message (the quoted bytes): both differences go through
//! `bpf_l4_csum_replace`, the first flagged as pseudo-header. The quoted L4
//! checksum is left alone (receivers do not check it).

use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, TC_ACT_OK},
    programs::TcContext,
};
use dataplane_common::{DropReason, Endpoint6Key, EndpointInfo, FlowKey6, CT_F_REPLY_DIR};

use crate::{
    csum, forward,
    maps::{self, DP_CT6, DP_ENDPOINTS6, DP_NAT6_IN, DP_NAT6_OUT},
    nat6::{
        addr_diff, Ip6, ICMP6_ECHO_REQUEST, IP6_DST_OFF, IP6_HLIM_OFF, IP6_SRC_OFF, IPPROTO_ICMPV6,
    },
    parse::{Frag, ETH_LEN, IPPROTO_TCP, IPPROTO_UDP},
};

pub const ICMP6_DEST_UNREACH: u8 = 1;
pub const ICMP6_PKT_TOOBIG: u8 = 2;
pub const ICMP6_TIME_EXCEEDED: u8 = 3;

/// Whether `ip` is an ICMPv6 error the datapath translates.
#[inline(always)]
pub fn is_error(ip: &Ip6) -> bool {
    ip.proto == IPPROTO_ICMPV6
        && ip.has_l4
        && ip.frag == Frag::No
        && (ip.icmp_type == ICMP6_DEST_UNREACH
            || ip.icmp_type == ICMP6_PKT_TOOBIG
            || ip.icmp_type == ICMP6_TIME_EXCEEDED)
}

/// The packet an ICMPv6 error quotes: an IPv6 header without extension
/// headers, then TCP/UDP ports or an echo request's identifier (`sport`).
#[derive(Clone, Copy)]
pub struct Quoted6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// Offset of the quoted IPv6 header.
#[inline(always)]
fn q_off(ip: &Ip6) -> usize {
    ip.l4_off + 8
}

/// Read the quoted header of error `ip` into `q`.
#[inline(always)]
pub fn quoted(ctx: &TcContext, ip: &Ip6, q: &mut Quoted6) -> Option<()> {
    let qo = q_off(ip);
    let h: [u8; 8] = ctx.load(qo).ok()?;
    if h[0] >> 4 != 6 {
        return None;
    }
    q.proto = h[6];
    let l: [u8; 8] = ctx.load(qo + 40).ok()?;
    match q.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            q.sport = u16::from_be_bytes([l[0], l[1]]);
            q.dport = u16::from_be_bytes([l[2], l[3]]);
        }
        IPPROTO_ICMPV6 if l[0] == ICMP6_ECHO_REQUEST => {
            q.sport = u16::from_be_bytes([l[4], l[5]]);
            q.dport = 0;
        }
        _ => return None,
    }
    ctx.load(qo + 8).map(|a| q.src = a).ok()?;
    ctx.load(qo + 24).map(|a| q.dst = a).ok()?;
    Some(())
}

/// Rewrite an ICMPv6 error: outer addresses to `outer` (hop limit
/// decremented), the quoted header to `inner` (src, sport, dst, dport).
#[inline(always)]
pub fn rewrite(
    ctx: &TcContext,
    ip: &Ip6,
    q: &Quoted6,
    outer: (&[u8; 16], &[u8; 16]),
    inner: (&[u8; 16], u16, &[u8; 16], u16),
) -> Result<(), ()> {
    let (isrc, isport, idst, idport) = inner;
    let qo = q_off(ip);
    let pseudo = addr_diff(addr_diff(0, &ip.src, outer.0), &ip.dst, outer.1);
    let quoted = addr_diff(addr_diff(0, &q.src, isrc), &q.dst, idst);
    let hl = [ip.hop_limit.wrapping_sub(1)];
    ctx.store(ETH_LEN + IP6_HLIM_OFF, &hl, 0).map_err(|_| ())?;
    ctx.store(ETH_LEN + IP6_SRC_OFF, outer.0, 0)
        .map_err(|_| ())?;
    ctx.store(ETH_LEN + IP6_DST_OFF, outer.1, 0)
        .map_err(|_| ())?;
    ctx.store(qo + 8, isrc, 0).map_err(|_| ())?;
    ctx.store(qo + 24, idst, 0).map_err(|_| ())?;
    let ports = if q.proto == IPPROTO_ICMPV6 {
        let (o, n) = (q.sport.to_be_bytes(), isport.to_be_bytes());
        ctx.store(qo + 44, &n, 0).map_err(|_| ())?;
        csum::diff2(0, o, n)
    } else {
        let (os, od) = (q.sport.to_be_bytes(), q.dport.to_be_bytes());
        let (ns, nd) = (isport.to_be_bytes(), idport.to_be_bytes());
        ctx.store(qo + 40, &[ns[0], ns[1], nd[0], nd[1]], 0)
            .map_err(|_| ())?;
        csum::diff4(
            0,
            [os[0], os[1], od[0], od[1]],
            [ns[0], ns[1], nd[0], nd[1]],
        )
    };
    let off = ip.l4_off + 2;
    ctx.l4_csum_replace(off, 0, pseudo as u64, BPF_F_PSEUDO_HDR as u64)
        .map_err(|_| ())?;
    ctx.l4_csum_replace(off, 0, quoted as u64, 0)
        .map_err(|_| ())?;
    ctx.l4_csum_replace(off, 0, csum::diff_fold(ports), 0)
        .map_err(|_| ())
}

/// An error from outside to a host address: about a published-port flow or
/// a masqueraded one, back to the container; anything else to the stack.
#[inline(always)]
pub fn from_outside(ctx: &TcContext, ip: &Ip6, q: &mut Quoted6) -> Result<i32, DropReason> {
    if quoted(ctx, ip, q).is_none() {
        return Ok(TC_ACT_OK);
    }
    let q = &*q;
    if q.src != ip.dst {
        return Ok(TC_ACT_OK);
    }
    // One call site of the rewrite (each inlined copy takes stack).
    let Some((addr, port)) = published_target(q).or_else(|| masquerade_target(q)) else {
        return Ok(TC_ACT_OK);
    };
    deliver(ctx, ip, q, &addr, port)
}

/// The container address and port of the published-port flow whose reply
/// (as translated) `q` is.
#[inline(always)]
fn published_target(q: &Quoted6) -> Option<([u8; 16], u16)> {
    if q.proto == IPPROTO_ICMPV6 {
        return None;
    }
    let t = maps::port_lookup6(&q.src, q.sport, q.proto)?;
    let own = FlowKey6::new(t.ip, q.dst, t.port, q.dport, q.proto);
    // SAFETY: map lookup; the value (plain data) is only read.
    let ct = unsafe { DP_CT6.get(&own) }?;
    if ct.src == q.src && ct.sport == q.sport && ct.flags & CT_F_REPLY_DIR != 0 {
        return Some((t.ip, t.port));
    }
    None
}

/// The container address and port of the masqueraded flow `q` is.
#[inline(always)]
fn masquerade_target(q: &Quoted6) -> Option<([u8; 16], u16)> {
    let key = if q.proto == IPPROTO_ICMPV6 {
        FlowKey6::new(q.dst, q.src, 0, q.sport, q.proto)
    } else {
        FlowKey6::new(q.dst, q.src, q.dport, q.sport, q.proto)
    };
    // SAFETY: map lookup; the value (plain data) is only read.
    let back = unsafe { DP_NAT6_IN.get(&key) }?;
    Some((back.addr, back.port))
}

/// Deliver an error to container `addr`, whose quoted source (address and
/// port) becomes `addr:port`.
#[inline(always)]
fn deliver(
    ctx: &TcContext,
    ip: &Ip6,
    q: &Quoted6,
    addr: &[u8; 16],
    port: u16,
) -> Result<i32, DropReason> {
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(ep) = (unsafe { DP_ENDPOINTS6.get(Endpoint6Key { ip: *addr }) }).copied() else {
        return Err(DropReason::NoRoute);
    };
    if ip.hop_limit <= 1 {
        return Ok(TC_ACT_OK);
    }
    rewrite(ctx, ip, q, (&ip.src, addr), (addr, port, &q.dst, q.dport))
        .map_err(|_| DropReason::Malformed)?;
    forward::deliver(ctx, &ep)
}

/// An error from outside to a container's own address (a routed network):
/// delivered when it is about a flow the container has open (`DP_CT6`
/// holds the reply direction of its routed flows), dropped otherwise.
#[inline(always)]
pub fn to_routed(
    ctx: &TcContext,
    ip: &Ip6,
    q: &mut Quoted6,
    ep: &EndpointInfo,
) -> Result<i32, DropReason> {
    if quoted(ctx, ip, q).is_none() {
        return Err(DropReason::DirectAccessFromOutside);
    }
    let reply = FlowKey6::new(q.dst, q.src, q.dport, q.sport, q.proto);
    // SAFETY: map lookup; only its presence is used.
    if q.src != ip.dst || unsafe { DP_CT6.get(&reply) }.is_none() {
        return Err(DropReason::DirectAccessFromOutside);
    }
    if ip.hop_limit <= 1 {
        return Ok(TC_ACT_OK);
    }
    let hl = [ip.hop_limit - 1];
    ctx.store(ETH_LEN + IP6_HLIM_OFF, &hl, 0)
        .map_err(|_| DropReason::Malformed)?;
    forward::deliver(ctx, ep)
}

/// An error from a container (address `own_ip`) about a translated flow:
/// rewritten the way that flow is translated. Returns the new outer
/// destination for the caller to send it to; `None` when the error is not
/// about a translated flow (the caller's usual path applies).
#[inline(always)]
pub fn from_container(
    ctx: &TcContext,
    own_ip: &[u8; 16],
    ip: &Ip6,
    q: &mut Quoted6,
) -> Option<Result<[u8; 16], DropReason>> {
    quoted(ctx, ip, q)?;
    let q = &*q;
    if q.dst != *own_ip || q.src != ip.dst || q.proto == IPPROTO_ICMPV6 {
        return None;
    }
    let own = FlowKey6::new(q.dst, q.src, q.dport, q.sport, q.proto);
    // (S, s, D, d): the container's flow as translated.
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let (s, sport, d, dport) = match (unsafe { DP_CT6.get(&own) }).copied() {
        Some(ct) => (ct.src, ct.sport, ct.dst, ct.dport),
        None => {
            // SAFETY: as above.
            let n = (unsafe { DP_NAT6_OUT.get(&own) }).copied()?;
            (n.addr, n.port, q.src, q.sport)
        }
    };
    if s == q.dst && sport == q.dport && d == q.src && dport == q.sport {
        // A routed flow: nothing to translate.
        return None;
    }
    if ip.hop_limit <= 1 {
        return None;
    }
    if rewrite(ctx, ip, q, (&s, &d), (&d, dport, &s, sport)).is_err() {
        return Some(Err(DropReason::Malformed));
    }
    Some(Ok(d))
}

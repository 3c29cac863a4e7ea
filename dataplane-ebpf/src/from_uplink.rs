//! TC ingress on the uplink and on every other host interface with an IPv4
//! address (they are all served alike):
//! - VLAN-tagged frames are dropped (the tag may be in the skb's metadata
//!   already: a native-XDP NIC strips it before XDP can see it, a veth
//!   before TC);
//! - packets for published ports, already translated to a container address
//!   by the XDP program, are delivered straight into the container's
//!   namespace; anything else addressed to a container (not translated by
//!   XDP: no reply translation of its flow in `DP_CT`) is dropped;
//! - ICMP errors about masqueraded and published-port flows are translated
//!   back through their quoted header and delivered;
//! - replies to masqueraded flows are translated back and delivered the same
//!   way;
//! - later fragments of a datagram whose first fragment was translated here
//!   (masquerade replies) or by the XDP program (published ports) get the
//!   same destination from `DP_FRAGS` and are delivered the same way.
//! - on the parent of a `lan` network (see `lan.rs`): ARP for its containers
//!   is answered, and IPv4 to them is delivered untranslated.
//! Anything else (ARP, IPv6, IPv4 for the host) goes to the host's stack
//! untouched: what the stack would forward to a container is dropped by
//! `dp_to_container` at the container's veth.
//!
//! `dp_tc_uplink` is the same program with the early work of `xdp_uplink`
//! folded in, for interfaces served without XDP (the agent's `tcx` uplink
//! mode, the default on virtual devices): packets addressed to a container
//! or a loopback address are dropped, and published ports are translated
//! and delivered in one pass.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::{
    DropReason, EndpointInfo, EndpointKey, FlowKey, NatEntry, PortTarget, CT_F_REPLY_DIR, EP_F_LAN,
};

use crate::{
    events, forward, frag,
    icmp_err::{self, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED},
    lan,
    maps::{self, DP_CT, DP_ENDPOINTS, DP_HOST_IPS, DP_NAT_IN},
    nat,
    parse::{
        self, Frag, ETH_LEN, ETH_P_ARP, ETH_P_IP, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP,
        IPPROTO_TCP, IPPROTO_UDP, IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF,
    },
    xdp_uplink,
};

#[classifier]
pub fn dp_from_uplink(ctx: TcContext) -> i32 {
    run::<false>(&ctx)
}

/// `dp_from_uplink` plus the early work of `dp_xdp_uplink` (which does not
/// run where this program is attached).
#[classifier]
pub fn dp_tc_uplink(ctx: TcContext) -> i32 {
    run::<true>(&ctx)
}

/// EARLY: no XDP program ran before: drop direct and loopback access and
/// translate published ports here.
#[inline(always)]
fn run<const EARLY: bool>(ctx: &TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(ctx);
    events::tc_verdict(
        mon,
        ctx,
        dataplane_common::MON_AT_FROM_UPLINK,
        ifindex,
        try_from_uplink::<EARLY>(ctx, ifindex),
    )
}

#[inline(always)]
fn try_from_uplink<const EARLY: bool>(ctx: &TcContext, ifindex: u32) -> Result<i32, DropReason> {
    parse::pull(ctx, ETH_LEN);
    let eth = parse::read::<[u8; 14]>(ctx, 0).ok_or(DropReason::Malformed)?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present };
    if vlan_present != 0 || parse::is_vlan(ethertype) {
        return Err(DropReason::VlanTagged);
    }
    if ethertype == ETH_P_ARP {
        return lan::arp(ctx, ifindex);
    }
    if ethertype == crate::parse::ETH_P_IPV6 {
        // SAFETY: a tail call into `dp_from_uplink6` (`DP_CALLS`); it returns only when the slot is empty.
        unsafe { maps::DP_CALLS.tail_call(ctx, dataplane_common::CALL_FROM_UPLINK6) };
    }
    if ethertype != ETH_P_IP {
        return Ok(TC_ACT_OK);
    }
    parse::pull_ipv4(ctx);
    // Decide on the destination before parsing anything that could be
    // truncated: a broken packet for a container must not reach the stack,
    // which forwards IPv4 without looking at L4 headers.
    let Some(hdr) = parse::read::<[u8; 20]>(ctx, ETH_LEN) else {
        return Ok(TC_ACT_OK);
    };
    let dst = [hdr[16], hdr[17], hdr[18], hdr[19]];
    // SAFETY: map lookup; the value is copied out at once.
    if let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: dst }) }).copied() {
        if ep.flags & EP_F_LAN != 0 {
            return lan::deliver(ctx, ifindex, &ep);
        }
        if EARLY {
            // Nothing translated it: only published ports are reachable
            // from outside. Blamed on the container it was aimed at, too.
            maps::count_endpoint_drop(ep.ifindex, DropReason::DirectAccessFromOutside);
            return Err(DropReason::DirectAccessFromOutside);
        }
        return published(ctx, &ep);
    }
    if EARLY && parse::is_loopback(dst) {
        return Err(DropReason::LoopbackFromOutside);
    }
    let Ok(mut ip) = parse::parse_ipv4(ctx, ETH_LEN) else {
        // Not ours to judge: the host's stack drops what is broken.
        return Ok(TC_ACT_OK);
    };
    if ip.frag == Frag::Later {
        return later_fragment(ctx, &ip);
    }
    let cfg = maps::config();
    // A published port may lie in the masquerade range (Docker publishes
    // any port; the masquerade skips ports that are published), so every
    // packet with ports is looked up.
    if EARLY && ip.ports_present() {
        if let Some(t) = maps::port_lookup(ip.dst, ip.dport, ip.proto) {
            return publish(ctx, &ip, &t);
        }
    }
    if cfg.is_none() {
        return Ok(TC_ACT_OK);
    }
    // Replies come to the address of the interface a flow left by (the
    // uplink's or another host interface's): the flow tables tell.
    if !ip.has_l4 {
        return Ok(TC_ACT_OK);
    }
    let key = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => ip.flow(),
        IPPROTO_ICMP if ip.icmp_type == ICMP_ECHO_REPLY => {
            // The identifier was translated on the way out; the parser put it
            // in `sport`, the reverse key has it as the destination "port".
            ip.dport = ip.sport;
            FlowKey::new(ip.src, ip.dst, 0, ip.sport, ip.proto)
        }
        IPPROTO_ICMP
            if ip.frag == Frag::No
                && (ip.icmp_type == ICMP_DEST_UNREACH || ip.icmp_type == ICMP_TIME_EXCEEDED) =>
        {
            return icmp_error(ctx, &ip, ip.dst);
        }
        _ => return Ok(TC_ACT_OK),
    };
    let Some(back) = nat::rnat_entry(&key, &ip) else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: back.addr }) }).copied() else {
        // The container is gone.
        return Err(DropReason::NoRoute);
    };
    if ip.ttl <= 1 {
        return Ok(TC_ACT_OK);
    }
    nat::translate(ctx, &ip, ip.src, ip.sport, back.addr, back.port)
        .map_err(|_| DropReason::Malformed)?;
    frag::remember(&ip, ip.src, back.addr);
    forward::deliver(ctx, &ep)
}

/// A later fragment for the host: if its datagram's first fragment was
/// translated to a container, the same destination; else it may be the
/// host's own (the stack reassembles it), or a datagram whose first
/// fragment has not arrived yet (the stack gives up on it after 30 s).
#[inline(always)]
fn later_fragment(ctx: &TcContext, ip: &parse::Ipv4) -> Result<i32, DropReason> {
    let Some(e) = frag::lookup(ip) else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: e.dst }) }).copied() else {
        // The container is gone.
        return Err(DropReason::NoRoute);
    };
    if ip.ttl <= 1 {
        return Ok(TC_ACT_OK);
    }
    frag::rewrite(&parse::Pkt::tc(ctx), ip, &e).ok_or(DropReason::Malformed)?;
    forward::deliver(ctx, &ep)
}

/// A packet for the published port `t` (`dp_tc_uplink`): what
/// `dp_xdp_uplink` does (spoofing check, reply translation recorded in
/// `DP_CT`, DNAT; TTL 1 goes to the stack), then delivery into the
/// container.
#[inline(always)]
fn publish(ctx: &TcContext, ip: &parse::Ipv4, t: &PortTarget) -> Result<i32, DropReason> {
    if ip.ttl <= 1 {
        return Ok(TC_ACT_OK);
    }
    if xdp_uplink::spoofed(ip.src) {
        return Err(DropReason::SpoofedSource);
    }
    xdp_uplink::record_reply(ip, t);
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: t.ip }) }).copied() else {
        // The container is gone.
        return Err(DropReason::NoRoute);
    };
    nat::translate(ctx, ip, ip.src, ip.sport, t.ip, t.port).map_err(|_| DropReason::Malformed)?;
    frag::remember(ip, ip.src, t.ip);
    forward::deliver(ctx, &ep)
}

/// A packet for a container: only a published-port packet translated by
/// `dp_xdp_uplink` (which recorded the reply translation of its flow) is
/// delivered. Anything else did not come through a translation: direct
/// access, dropped.
#[inline(always)]
fn published(ctx: &TcContext, ep: &EndpointInfo) -> Result<i32, DropReason> {
    let translated = match parse::parse_ipv4(ctx, ETH_LEN) {
        // Whole packets and first fragments (later ones are translated here,
        // never by XDP).
        Ok(ip) if ip.ports_present() => {
            let reply = ip.flow().reversed();
            // SAFETY: map lookup; only a field is read, at once.
            match unsafe { DP_CT.get(&reply) } {
                Some(ct) => ct.flags & CT_F_REPLY_DIR != 0,
                None => false,
            }
        }
        _ => false,
    };
    if !translated {
        // Blamed on the container it was aimed at, too.
        maps::count_endpoint_drop(ep.ifindex, DropReason::DirectAccessFromOutside);
        return Err(DropReason::DirectAccessFromOutside);
    }
    forward::deliver(ctx, ep)
}

/// An ICMP error about a masqueraded flow (fragmentation needed, port
/// unreachable, TTL exceeded...): its embedded header carries the
/// masquerade address (the host address it came to) and port. Translate the outer destination and the
/// embedded source back to the container's, fixing the outer IP, embedded IP
/// and ICMP checksums, and deliver it (path-MTU discovery needs this).
/// The embedded L4 checksum is left alone (only its first 8 bytes are
/// quoted, and receivers do not verify it).
#[inline(always)]
fn icmp_error(ctx: &TcContext, ip: &parse::Ipv4, host_ip: [u8; 4]) -> Result<i32, DropReason> {
    // Delivered straight into a container: the stack's reverse-path filter
    // never sees it, so nothing from outside may claim an address of this
    // host or of its containers (as for published ports in XDP).
    if parse::is_loopback(ip.src)
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        || unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ip.src }) }.is_some()
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        || unsafe { DP_HOST_IPS.get(EndpointKey { ip: ip.src }) }.is_some()
    {
        return Err(DropReason::SpoofedSource);
    }
    if let Some(r) = published_error(ctx, ip) {
        return r;
    }
    let inner = ip.l4_off + 8;
    // Embedded IPv4 header without options, plus the first 8 bytes of L4.
    parse::pull(ctx, inner + 28);
    let Some(h) = parse::read::<[u8; 28]>(ctx, inner) else {
        return Ok(TC_ACT_OK);
    };
    if h[0] != 0x45 || [h[12], h[13], h[14], h[15]] != host_ip {
        return Ok(TC_ACT_OK);
    }
    let remote = [h[16], h[17], h[18], h[19]];
    let proto = h[9];
    // (offset of the translated port in the embedded packet, NAT_IN key)
    let (port_off, key) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (
            inner + 20,
            FlowKey::new(
                remote,
                host_ip,
                u16::from_be_bytes([h[22], h[23]]),
                u16::from_be_bytes([h[20], h[21]]),
                proto,
            ),
        ),
        // An echo request (traceroute, ping): the identifier.
        IPPROTO_ICMP if h[20] == ICMP_ECHO_REQUEST => (
            inner + 24,
            FlowKey::new(
                remote,
                host_ip,
                0,
                u16::from_be_bytes([h[24], h[25]]),
                proto,
            ),
        ),
        _ => return Ok(TC_ACT_OK),
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(back) = (unsafe { DP_NAT_IN.get(&key) }).copied() else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: back.addr }) }).copied() else {
        return Err(DropReason::NoRoute);
    };
    if ip.ttl <= 1 {
        return Ok(TC_ACT_OK);
    }
    translate_icmp_error(ctx, ip, inner, port_off, host_ip, &back)
        .map_err(|_| DropReason::Malformed)?;
    forward::dec_ttl(ctx)?;
    forward::deliver(ctx, &ep)
}

/// An ICMP error about a published-port flow (from the client's side: port
/// unreachable, fragmentation needed...): it quotes `host:port -> client`,
/// the container's reply as translated. Back to the container: outer
/// destination and quoted source become the container's address and port.
#[inline(always)]
fn published_error(ctx: &TcContext, ip: &parse::Ipv4) -> Option<Result<i32, DropReason>> {
    let q = icmp_err::quoted(ctx, ip)?;
    if q.src != ip.dst {
        return None;
    }
    let t = maps::port_lookup(q.src, q.sport, q.proto)?;
    let own = FlowKey::new(t.ip, q.dst, t.port, q.dport, q.proto);
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let ct = (unsafe { DP_CT.get(&own) }).copied()?;
    if ct.src != q.src || ct.sport != q.sport || ct.flags & CT_F_REPLY_DIR == 0 {
        return None;
    }
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: t.ip }) }).copied() else {
        return Some(Err(DropReason::NoRoute));
    };
    if ip.ttl <= 1 {
        return Some(Ok(TC_ACT_OK));
    }
    let inner = (t.ip, t.port, q.dst, q.dport);
    if icmp_err::rewrite(&parse::Pkt::tc(ctx), ip, &q, (ip.src, t.ip), inner).is_none() {
        return Some(Err(DropReason::Malformed));
    }
    Some(forward::deliver(ctx, &ep))
}

#[inline(always)]
fn translate_icmp_error(
    ctx: &TcContext,
    ip: &parse::Ipv4,
    inner: usize,
    port_off: usize,
    host_ip: [u8; 4],
    back: &NatEntry,
) -> Result<(), ()> {
    let icmp_csum = ip.l4_off + 2;
    let old_a = u32::from_ne_bytes(host_ip) as u64;
    let new_a = u32::from_ne_bytes(back.addr) as u64;
    // Outer destination (covered by the outer IP checksum only).
    ctx.l3_csum_replace(ETH_LEN + IP_CSUM_OFF, old_a, new_a, 4)
        .map_err(|_| ())?;
    ctx.store(ETH_LEN + IP_DST_OFF, &back.addr, 0)
        .map_err(|_| ())?;
    // Embedded source address: the embedded IP checksum, and the ICMP
    // checksum for both the address and the embedded checksum's change.
    let old_c: [u8; 2] = ctx.load(inner + IP_CSUM_OFF).map_err(|_| ())?;
    ctx.l3_csum_replace(inner + IP_CSUM_OFF, old_a, new_a, 4)
        .map_err(|_| ())?;
    let new_c: [u8; 2] = ctx.load(inner + IP_CSUM_OFF).map_err(|_| ())?;
    ctx.store(inner + IP_SRC_OFF, &back.addr, 0)
        .map_err(|_| ())?;
    ctx.l4_csum_replace(icmp_csum, old_a, new_a, 4)
        .map_err(|_| ())?;
    ctx.l4_csum_replace(
        icmp_csum,
        u16::from_ne_bytes(old_c) as u64,
        u16::from_ne_bytes(new_c) as u64,
        2,
    )
    .map_err(|_| ())?;
    // Embedded source port (or echo identifier).
    let old_p: [u8; 2] = ctx.load(port_off).map_err(|_| ())?;
    let new_p = back.port.to_be_bytes();
    ctx.store(port_off, &new_p, 0).map_err(|_| ())?;
    ctx.l4_csum_replace(
        icmp_csum,
        u16::from_ne_bytes(old_p) as u64,
        u16::from_ne_bytes(new_p) as u64,
        2,
    )
    .map_err(|_| ())
}

//! TC ingress on the host side of a container's veth: every packet a
//! container sends enters the datapath here.
//!
//! - ARP requests for the gateway or for endpoints on the same network are
//!   answered here, with the host-side MAC, so that all unicast IPv4 from the
//!   container is addressed to this veth and can be steered by us.
//! - The source must be the endpoint's own IPv4 and MAC (anti-spoofing).
//! - IPv4 to another endpoint on this host is checked against the network
//!   policy (same network; icc; links) and redirected straight into the
//!   receiver's namespace with `bpf_redirect_peer` (no bridge, no stack).
//! - Flows tracked in `DP_CT` (replies of published-port connections,
//!   hairpin connections) are translated and delivered.
//! - A published port of this host reached from a container (hairpin) is
//!   translated to its container, with the source translated to that
//!   network's gateway so that the reply comes back through here.
//! - IPv4 to the gateway or another host address goes up the host's stack.
//! - IPv4 routed out of the uplink (or another host interface with an IPv4
//!   address, `DP_HOST_IFS`) is masqueraded to that interface's address and
//!   redirected to it.
//! - ICMP errors about translated flows are translated back (`icmp_err`).
//! - The first fragment of a datagram is translated like a whole packet on
//!   each of these paths; its later fragments get the same addresses from
//!   `DP_FRAGS` (see `frag`), or are dropped when the first was not seen.
//! - On a `lan` network, ARP for any address of the LAN is answered, and
//!   IPv4 to the LAN or beyond leaves untranslated through the interface
//!   the host routes it to (the parent).
//! - Everything else is dropped and counted: VLAN-tagged frames (in the
//!   packet or in the skb's VLAN metadata: the kernel would strip a VLAN-0
//!   tag and route what is inside without any of the checks above), any
//!   ethertype but ARP, IPv4 and IPv6 (IPv6 goes on in `from_container6`,
//!   a tail call with a stack frame of its own); source-routed
//!   IPv4; and destinations no container may reach (127.0.0.0/8, 0.0.0.0/8,
//!   240.0.0.0/4).

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_NOEXIST, TC_ACT_OK,
    },
    helpers::bpf_ktime_get_ns,
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::warn;
use dataplane_common::{
    CtEntry, DropReason, EndpointInfo, EndpointKey, FlowKey, FragEntry, PortTarget, CT_F_REPLY_DIR,
    EP_F_REMOTE, NAT_F_REPLIED, NET_F_INTERNAL, NET_F_LAN, NET_F_NO_MASQ,
};

use crate::{
    events, forward, frag, icmp_err,
    maps::{self, DP_CT, DP_ENDPOINTS, DP_IF_ENDPOINTS, DP_NETWORKS},
    nat, overlay,
    parse::{
        self, Frag, Ipv4, ETH_LEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ICMP_ECHO_REQUEST,
        IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
    },
    policy,
};

const ARP_REQUEST: u16 = 1;

#[classifier]
pub fn dp_from_container(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    events::tc_verdict(
        mon,
        &ctx,
        dataplane_common::MON_AT_FROM_CONTAINER,
        ifindex,
        try_from_container(&ctx, ifindex),
    )
}

#[inline(always)]
fn try_from_container(ctx: &TcContext, ifindex: u32) -> Result<i32, DropReason> {
    parse::pull(ctx, ETH_LEN);
    let eth = parse::read::<[u8; 14]>(ctx, 0).ok_or(DropReason::Malformed)?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    // SAFETY: map lookup; the value is copied out at once.
    let Some(ep) = (unsafe { DP_IF_ENDPOINTS.get(ifindex) }).copied() else {
        // Attached but not (or no longer) known: fail closed, the stack
        // would forward it without any policy.
        return Err(DropReason::UnknownInterface);
    };
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present };
    // The receiving veth moved an outer tag into the skb's metadata before
    // this program ran; a second one is still in the packet.
    if vlan_present != 0 || parse::is_vlan(ethertype) {
        return Err(DropReason::VlanTagged);
    }
    match ethertype {
        ETH_P_ARP => arp(ctx, &ep),
        ETH_P_IP => ipv4(ctx, &ep, &eth),
        ETH_P_IPV6 => {
            // SAFETY: a tail call into the IPv6 program of `DP_CALLS`; it
            // returns only when the slot is empty (IPv6 not loaded).
            unsafe { maps::DP_CALLS.tail_call(ctx, dataplane_common::CALL_FROM_CONTAINER6) };
            Err(DropReason::UnsupportedEthertype)
        }
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// Answer an ARP request from the container for the gateway or for another
/// endpoint of its network with the host-side MAC.
#[inline(always)]
fn arp(ctx: &TcContext, ep: &EndpointInfo) -> Result<i32, DropReason> {
    // Ethernet/IPv4 ARP: htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4)
    parse::pull(ctx, ETH_LEN + 28);
    let Some(a) = parse::read::<[u8; 28]>(ctx, ETH_LEN) else {
        return Err(DropReason::Malformed);
    };
    let op = u16::from_be_bytes([a[6], a[7]]);
    if a[0..6] != [0, 1, 8, 0, 6, 4] || op != ARP_REQUEST {
        return Ok(TC_ACT_OK);
    }
    let spa = [a[14], a[15], a[16], a[17]];
    let tpa = [a[24], a[25], a[26], a[27]];
    if tpa == spa || spa != ep.ip {
        // Gratuitous ARP / duplicate address detection, or not from the
        // endpoint's own address: nothing to answer.
        return Ok(TC_ACT_OK);
    }
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(net) = (unsafe { DP_NETWORKS.get(ep.net_id) }).copied() else {
        return Ok(TC_ACT_OK);
    };
    let known = tpa == net.gateway
        // A `lan` network: every address of the LAN is reached through us.
        || (net.flags & NET_F_LAN != 0 && in_subnet(tpa, net.subnet, net.prefix_len))
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        || match unsafe { DP_ENDPOINTS.get(EndpointKey { ip: tpa }) } {
            Some(peer) => peer.net_id == ep.net_id,
            None => false,
        };
    if !known {
        return Ok(TC_ACT_OK);
    }
    let sha = [a[8], a[9], a[10], a[11], a[12], a[13]];
    // Back out of the same veth, towards the container.
    forward::arp_reply(ctx, ep.ifindex, &ep.host_mac, sha, spa, tpa)
}

#[inline(always)]
fn ipv4(ctx: &TcContext, ep: &EndpointInfo, eth: &[u8; 14]) -> Result<i32, DropReason> {
    parse::pull_ipv4(ctx);
    let Ok(ip) = parse::parse_ipv4(ctx, ETH_LEN) else {
        return Err(DropReason::Malformed);
    };
    // Anti-spoofing: a container only speaks with its own addresses.
    if ip.src != ep.ip || eth[6..12] != ep.mac {
        return Err(DropReason::SpoofedSource);
    }
    maps::count_tx(ep.ifindex, ctx.len());
    // Options are rare: the scan runs only when there are some. The stack
    // would act on a source route (when accept_source_route is on), and no
    // container has a reason to send one.
    if ip.l4_off > ETH_LEN + 20
        && parse::has_source_route(&parse::Pkt::tc(ctx), ETH_LEN, ip.l4_off - ETH_LEN)
    {
        return Err(DropReason::SourceRoute);
    }

    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(peer) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ip.dst }) } {
        return to_endpoint(ctx, ep, peer, &ip);
    }
    if parse::is_reserved_destination(ip.dst) {
        // Never hairpinned (a port published on 127.0.0.1 serves the host's
        // own sockets only), forwarded or handed to the stack.
        return Err(DropReason::ReservedDestination);
    }

    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(net) = (unsafe { DP_NETWORKS.get(ep.net_id) }).copied() else {
        return Err(DropReason::UnknownInterface);
    };
    if net.flags & NET_F_INTERNAL != 0 {
        if ip.dst == net.gateway || parse::is_multicast_or_broadcast(ip.dst) {
            return Ok(TC_ACT_OK);
        }
        return Err(DropReason::InternalNetwork);
    }
    if icmp_err::is_error(&ip) {
        // About a translated flow (e.g. port unreachable from a published
        // UDP port): translated back like that flow.
        if let Some(r) = icmp_err::from_container(ctx, ep, &ip) {
            return r;
        }
    }
    if ip.frag == Frag::Later {
        // A later fragment of a datagram whose first fragment was
        // translated: the same addresses.
        if let Some(e) = frag::lookup(&ip) {
            return later_fragment(ctx, ep, &ip, &e);
        }
    }
    if ip.ports_present() {
        // Replies of published-port connections, hairpin connections.
        if let Some(ct) = DP_CT.get_ptr_mut(&ip.flow()) {
            // SAFETY: the pointer the map lookup returned, valid for this program run; the value is plain data.
            let ct = unsafe {
                (*ct).last_seen_ns = bpf_ktime_get_ns();
                // The accepting container answered; FIN/RST ends the flow.
                if (*ct).flags & CT_F_REPLY_DIR != 0 {
                    (*ct).flags |= NAT_F_REPLIED;
                }
                (*ct).flags |= nat::closing(&ip);
                *ct
            };
            return translated(ctx, ep, &ip, &ct);
        }
        if let Some(t) = maps::port_lookup(ip.dst, ip.dport, ip.proto) {
            return hairpin(ctx, ep, &ip, &t);
        }
    }
    // On a `lan` network the LAN (its router included) is reached through
    // the parent interface with the container's own address: no gateway or
    // subnet rule below applies (one call site of `routed`: each inlined
    // copy would take stack of its own).
    let lan = net.flags & NET_F_LAN != 0;
    if parse::is_multicast_or_broadcast(ip.dst) || (!lan && ip.dst == net.gateway) {
        return Ok(TC_ACT_OK);
    }
    if !lan && in_subnet(ip.dst, net.subnet, net.prefix_len) {
        // The subnet's broadcast address goes to the stack (which does not
        // forward it); any other address of the network that is not an
        // endpoint does not exist: never route it out.
        let host_bits = !mask(net.prefix_len);
        if u32::from_be_bytes(ip.dst) & host_bits == host_bits {
            return Ok(TC_ACT_OK);
        }
        return Err(DropReason::NoRoute);
    }
    routed(ctx, ep, &ip, net.flags)
}

#[inline(always)]
fn mask(prefix_len: u32) -> u32 {
    if prefix_len == 0 {
        0
    } else if prefix_len >= 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - prefix_len)
    }
}

#[inline(always)]
fn in_subnet(ip: [u8; 4], subnet: [u8; 4], prefix_len: u32) -> bool {
    let m = mask(prefix_len);
    u32::from_be_bytes(ip) & m == u32::from_be_bytes(subnet) & m
}

/// Same-host delivery, straight into the peer's namespace, if the network
/// policy allows it.
#[inline(always)]
fn to_endpoint(
    ctx: &TcContext,
    ep: &EndpointInfo,
    peer: &EndpointInfo,
    ip: &Ipv4,
) -> Result<i32, DropReason> {
    if peer.net_id != ep.net_id {
        return Err(DropReason::CrossNetwork);
    }
    let no_icc = maps::icc_disabled(ep)?;
    // Link policy only on icc=false networks (and never for a container
    // talking to itself).
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
        return overlay::to_remote(ctx, ep, peer, ip.dont_fragment);
    }
    forward::deliver(ctx, peer)
}

/// A container reaching a published port of this host: translate the
/// destination to the published container and the source to the gateway of
/// that container's network (so the reply returns through the datapath), and
/// record both directions in `DP_CT`.
#[inline(always)]
fn hairpin(
    ctx: &TcContext,
    ep: &EndpointInfo,
    ip: &Ipv4,
    t: &PortTarget,
) -> Result<i32, DropReason> {
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(target) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: t.ip }) }).copied() else {
        return Err(DropReason::NoRoute);
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    let Some(tnet) = (unsafe { DP_NETWORKS.get(target.net_id) }).copied() else {
        return Err(DropReason::NoRoute);
    };
    let Some(cfg) = maps::config() else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let back = CtEntry {
        src: ip.dst,
        dst: ip.src,
        sport: ip.dport,
        dport: ip.sport,
        flags: CT_F_REPLY_DIR,
        _pad: 0,
        last_seen_ns: now,
    };
    // Ports from the NAT range only: it is disjoint from the host's
    // ephemeral ports, which the host's own connections from the gateway use.
    let reply = |port: u16| FlowKey::new(t.ip, tnet.gateway, t.port, port, ip.proto);
    let Some(nat_port) = nat::claim_port(cfg, None, tnet.gateway, ip.proto, |port| {
        DP_CT
            .insert(&reply(port), &back, BPF_NOEXIST as u64)
            .is_ok()
    }) else {
        return Err(DropReason::NatExhausted);
    };
    let fwd = CtEntry {
        src: tnet.gateway,
        dst: t.ip,
        sport: nat_port,
        dport: t.port,
        flags: 0,
        _pad: 0,
        last_seen_ns: now,
    };
    let _ = DP_CT.insert(&ip.flow(), &fwd, 0);
    translated(ctx, ep, ip, &fwd)
}

/// Apply a tracked translation and deliver the packet: into a container on
/// this host, or out of the uplink.
#[inline(always)]
fn translated(
    ctx: &TcContext,
    ep: &EndpointInfo,
    ip: &Ipv4,
    ct: &CtEntry,
) -> Result<i32, DropReason> {
    if ip.ttl <= 1 {
        return Ok(TC_ACT_OK);
    }
    if nat::translate(ctx, ip, ct.src, ct.sport, ct.dst, ct.dport).is_err() {
        return Err(DropReason::Malformed);
    }
    frag::remember(ip, ct.src, ct.dst);
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(peer) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ct.dst }) } {
        return forward::deliver(ctx, peer);
    }
    let mut out = *ip;
    out.src = ct.src;
    out.dst = ct.dst;
    out.sport = ct.sport;
    out.dport = ct.dport;
    match forward::fib(ctx, ep.ifindex, &out) {
        Some((rc, f)) if rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH => {
            forward::forward(ctx, rc, f)
        }
        _ => Ok(TC_ACT_OK),
    }
}

/// Destinations beyond the host: masquerade out of the uplink.
#[inline(always)]
fn routed(
    ctx: &TcContext,
    ep: &EndpointInfo,
    ip: &Ipv4,
    net_flags: u32,
) -> Result<i32, DropReason> {
    let Some((rc, f)) = forward::fib(ctx, ep.ifindex, ip) else {
        return Err(DropReason::NoRoute);
    };
    if rc == BPF_FIB_LKUP_RET_NOT_FWDED {
        // A local address of the host: the stack delivers it.
        return Ok(TC_ACT_OK);
    }
    if net_flags & NET_F_LAN != 0 {
        // No translation: out of the interface the host routes the LAN
        // through. What needs fragmenting, an ICMP error or a TTL
        // exceeded is the stack's (there is no translation to keep).
        let fwd = rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH;
        if !fwd || ip.ttl <= 1 {
            return Ok(TC_ACT_OK);
        }
        return forward::forward(ctx, rc, f);
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && !ip.dont_fragment {
        // The stack would fragment and forward it untranslated.
        return Err(DropReason::UntranslatableFragment);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        // Unreachable, prohibited, needs fragmentation with DF: the stack
        // answers with the right ICMP error (it does not forward these).
        return Ok(TC_ACT_OK);
    }
    if net_flags & NET_F_NO_MASQ != 0 {
        // enable_ip_masquerade=false: the stack routes it untranslated.
        return Ok(TC_ACT_OK);
    }
    let Some(cfg) = maps::config() else {
        return Err(DropReason::NoRoute);
    };
    let Some(masq_ip) = maps::masquerade_ip(cfg, f.ifindex) else {
        // An interface the agent does not serve: plain routing by the stack.
        return Ok(TC_ACT_OK);
    };
    if masq_ip == [0; 4] {
        // The interface has no address to masquerade to.
        return Err(DropReason::NoRoute);
    }
    if ip.ttl <= 1 {
        // The stack sends the ICMP time exceeded.
        return Ok(TC_ACT_OK);
    }
    if ip.frag == Frag::Later {
        // Its first fragment was not translated (or not seen).
        return Err(DropReason::FragmentWithoutFirst);
    }
    let translatable = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => ip.has_l4,
        IPPROTO_ICMP => ip.has_l4 && ip.icmp_type == ICMP_ECHO_REQUEST,
        _ => false,
    };
    if !translatable {
        return Err(DropReason::UnsupportedProtocol);
    }
    let Some(out) = nat::snat_entry(&ip.flow(), ip, cfg, masq_ip) else {
        warn!(
            ctx,
            "no free masquerade port for {:i} -> {:i}", ip.src, ip.dst
        );
        return Err(DropReason::NatExhausted);
    };
    if nat::translate(ctx, ip, out.addr, out.port, ip.dst, ip.dport).is_err() {
        return Err(DropReason::Malformed);
    }
    frag::remember(ip, out.addr, ip.dst);
    forward::forward(ctx, rc, f)
}

/// A later fragment of a translated datagram: the addresses its first
/// fragment got, then on to where that one went (a container of this host,
/// or out of the interface the route lookup chooses).
#[inline(always)]
fn later_fragment(
    ctx: &TcContext,
    ep: &EndpointInfo,
    ip: &Ipv4,
    e: &FragEntry,
) -> Result<i32, DropReason> {
    if ip.ttl <= 1 {
        // The stack neither forwards it nor answers a later fragment.
        return Ok(TC_ACT_OK);
    }
    frag::rewrite(&parse::Pkt::tc(ctx), ip, e).ok_or(DropReason::Malformed)?;
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(peer) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: e.dst }) } {
        return forward::deliver(ctx, peer);
    }
    let mut out = *ip;
    out.src = e.src;
    out.dst = e.dst;
    match forward::fib(ctx, ep.ifindex, &out) {
        Some((rc, f)) if rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH => {
            forward::forward(ctx, rc, f)
        }
        // Bigger than the next hop's MTU (a fragment is not fragmented
        // again here), or no route any more: already rewritten, so not for
        // the stack either.
        Some((rc, _)) if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            Err(DropReason::UntranslatableFragment)
        }
        _ => Err(DropReason::NoRoute),
    }
}

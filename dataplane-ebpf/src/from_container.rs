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
//! - IPv4 routed out of the uplink is masqueraded to the uplink's address and
//!   redirected to the uplink.
//! - Everything else is dropped and counted: VLAN-tagged frames (in the
//!   packet or in the skb's VLAN metadata: the kernel would strip a VLAN-0
//!   tag and route what is inside without any of the checks above), IPv6
//!   (containers have IPv4 only) and any other ethertype; source-routed
//!   IPv4; and destinations no container may reach (127.0.0.0/8, 0.0.0.0/8,
//!   240.0.0.0/4).

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NOT_FWDED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_NOEXIST, TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns, bpf_redirect, bpf_redirect_neigh},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::warn;
use dataplane_common::{
    CtEntry, DropReason, EndpointInfo, EndpointKey, FlowKey, LinkKey, PortTarget, CT_F_REPLY_DIR,
    NAT_F_REPLIED, NET_F_INTERNAL, NET_F_NO_ICC,
};

use crate::{
    maps::{self, DP_CT, DP_ENDPOINTS, DP_IF_ENDPOINTS, DP_LINKS, DP_NETWORKS, DP_POLICY_CT},
    nat::{self, Side},
    parse::{
        self, Frag, Ipv4, ETH_LEN, ETH_P_ARP, ETH_P_IP, ICMP_ECHO_REQUEST, IPPROTO_ICMP,
        IPPROTO_TCP, IPPROTO_UDP,
    },
};

const AF_INET: u8 = 2;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

#[classifier]
pub fn dp_from_container(ctx: TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    parse::pull_headers(&ctx);
    let Some(eth) = parse::read::<[u8; 14]>(&ctx, 0) else {
        return drop(ifindex, DropReason::Malformed);
    };
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let Some(ep) = (unsafe { DP_IF_ENDPOINTS.get(ifindex) }).copied() else {
        // Attached but not (or no longer) known: fail closed, the stack
        // would forward it without any policy.
        return drop(ifindex, DropReason::UnknownInterface);
    };
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present };
    // The receiving veth moved an outer tag into the skb's metadata before
    // this program ran; a second one is still in the packet.
    if vlan_present != 0 || parse::is_vlan(ethertype) {
        return drop(ifindex, DropReason::VlanTagged);
    }
    match ethertype {
        ETH_P_ARP => arp(&ctx, &ep),
        ETH_P_IP => ipv4(&ctx, &ep, &eth),
        _ => drop(ifindex, DropReason::UnsupportedEthertype),
    }
}

#[inline(always)]
fn drop(ifindex: u32, reason: DropReason) -> i32 {
    maps::count_drop(ifindex, reason);
    TC_ACT_SHOT
}

/// Answer an ARP request from the container for the gateway or for another
/// endpoint of its network with the host-side MAC.
#[inline(always)]
fn arp(ctx: &TcContext, ep: &EndpointInfo) -> i32 {
    // Ethernet/IPv4 ARP: htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4)
    let Some(a) = parse::read::<[u8; 28]>(ctx, ETH_LEN) else {
        return drop(ep.ifindex, DropReason::Malformed);
    };
    let op = u16::from_be_bytes([a[6], a[7]]);
    if a[0..6] != [0, 1, 8, 0, 6, 4] || op != ARP_REQUEST {
        return TC_ACT_OK;
    }
    let spa = [a[14], a[15], a[16], a[17]];
    let tpa = [a[24], a[25], a[26], a[27]];
    if tpa == spa || spa != ep.ip {
        // Gratuitous ARP / duplicate address detection, or not from the
        // endpoint's own address: nothing to answer.
        return TC_ACT_OK;
    }
    let Some(net) = (unsafe { DP_NETWORKS.get(ep.net_id) }).copied() else {
        return TC_ACT_OK;
    };
    let known = tpa == net.gateway
        || match unsafe { DP_ENDPOINTS.get(EndpointKey { ip: tpa }) } {
            Some(peer) => peer.net_id == ep.net_id,
            None => false,
        };
    if !known {
        return TC_ACT_OK;
    }
    let sha = [a[8], a[9], a[10], a[11], a[12], a[13]];
    // Build the reply in place.
    let mut reply = [0u8; 42];
    reply[0..6].copy_from_slice(&sha);
    reply[6..12].copy_from_slice(&ep.host_mac);
    reply[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    reply[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    reply[20..22].copy_from_slice(&ARP_REPLY.to_be_bytes());
    reply[22..28].copy_from_slice(&ep.host_mac);
    reply[28..32].copy_from_slice(&tpa);
    reply[32..38].copy_from_slice(&sha);
    reply[38..42].copy_from_slice(&spa);
    if ctx.store(0, &reply, 0).is_err() {
        return drop(ep.ifindex, DropReason::Malformed);
    }
    // Back out of the same veth, towards the container.
    unsafe { bpf_redirect(ep.ifindex, 0) as i32 }
}

#[inline(always)]
fn ipv4(ctx: &TcContext, ep: &EndpointInfo, eth: &[u8; 14]) -> i32 {
    let Ok(ip) = parse::parse_ipv4(ctx, ETH_LEN) else {
        return drop(ep.ifindex, DropReason::Malformed);
    };
    // Anti-spoofing: a container only speaks with its own addresses.
    if ip.src != ep.ip || eth[6..12] != ep.mac {
        return drop(ep.ifindex, DropReason::SpoofedSource);
    }
    maps::count_tx(ep.ifindex, ctx.len());
    // Options are rare: the scan runs only when there are some. The stack
    // would act on a source route (when accept_source_route is on), and no
    // container has a reason to send one.
    if ip.l4_off > ETH_LEN + 20
        && parse::has_source_route(&parse::Pkt::tc(ctx), ETH_LEN, ip.l4_off - ETH_LEN)
    {
        return drop(ep.ifindex, DropReason::SourceRoute);
    }

    if let Some(peer) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ip.dst }) } {
        return to_endpoint(ctx, ep, peer, &ip);
    }
    if parse::is_reserved_destination(ip.dst) {
        // Never hairpinned (a port published on 127.0.0.1 serves the host's
        // own sockets only), forwarded or handed to the stack.
        return drop(ep.ifindex, DropReason::ReservedDestination);
    }

    let Some(net) = (unsafe { DP_NETWORKS.get(ep.net_id) }).copied() else {
        return drop(ep.ifindex, DropReason::UnknownInterface);
    };
    if net.flags & NET_F_INTERNAL != 0 {
        if ip.dst == net.gateway || parse::is_multicast_or_broadcast(ip.dst) {
            return TC_ACT_OK;
        }
        return drop(ep.ifindex, DropReason::InternalNetwork);
    }
    if ip.has_ports() {
        // Replies of published-port connections, hairpin connections.
        if let Some(ct) = DP_CT.get_ptr_mut(&ip.flow()) {
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
    if ip.dst == net.gateway || parse::is_multicast_or_broadcast(ip.dst) {
        return TC_ACT_OK;
    }
    if in_subnet(ip.dst, net.subnet, net.prefix_len) {
        // The subnet's broadcast address goes to the stack (which does not
        // forward it); any other address of the network that is not an
        // endpoint does not exist: never route it out.
        let host_bits = !mask(net.prefix_len);
        if u32::from_be_bytes(ip.dst) & host_bits == host_bits {
            return TC_ACT_OK;
        }
        return drop(ep.ifindex, DropReason::NoRoute);
    }
    routed(ctx, ep, &ip)
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
fn to_endpoint(ctx: &TcContext, ep: &EndpointInfo, peer: &EndpointInfo, ip: &Ipv4) -> i32 {
    if peer.net_id != ep.net_id {
        return drop(ep.ifindex, DropReason::CrossNetwork);
    }
    let Some(net) = (unsafe { DP_NETWORKS.get(ep.net_id) }) else {
        return drop(ep.ifindex, DropReason::UnknownInterface);
    };
    if net.flags & NET_F_NO_ICC != 0 && peer.ifindex != ep.ifindex {
        if let Some(reason) = icc_denied(ep, peer, ip) {
            return drop(ep.ifindex, reason);
        }
    }
    nat::deliver(ctx, peer)
}

/// On an icc=false network: the linking container may open connections to
/// the linked one on its exposed ports, and the replies of those flow back.
/// Everything else between them is denied.
#[inline(always)]
fn icc_denied(ep: &EndpointInfo, peer: &EndpointInfo, ip: &Ipv4) -> Option<DropReason> {
    if ip.has_ports() {
        let allowed = LinkKey {
            src: ep.ip,
            dst: peer.ip,
            port: ip.dport,
            proto: ip.proto,
            _pad: 0,
        };
        let now = unsafe { bpf_ktime_get_ns() };
        if unsafe { DP_LINKS.get(&allowed) }.is_some() {
            let reply = ip.flow().reversed();
            // Refresh in place; an LRU insert per packet would allocate.
            match DP_POLICY_CT.get_ptr_mut(&reply) {
                Some(ts) => unsafe { *ts = now },
                None => {
                    let _ = DP_POLICY_CT.insert(&reply, &now, 0);
                }
            }
            return None;
        }
        if let Some(ts) = DP_POLICY_CT.get_ptr_mut(&ip.flow()) {
            unsafe { *ts = now };
            return None;
        }
    }
    let any = |a: [u8; 4], b: [u8; 4]| {
        let k = LinkKey {
            src: a,
            dst: b,
            port: 0,
            proto: 0,
            _pad: 0,
        };
        unsafe { DP_LINKS.get(&k) }.is_some()
    };
    if any(ep.ip, peer.ip) || any(peer.ip, ep.ip) {
        Some(DropReason::LinkPortNotAllowed)
    } else {
        Some(DropReason::IccDisabled)
    }
}

/// A container reaching a published port of this host: translate the
/// destination to the published container and the source to the gateway of
/// that container's network (so the reply returns through the datapath), and
/// record both directions in `DP_CT`.
#[inline(always)]
fn hairpin(ctx: &TcContext, ep: &EndpointInfo, ip: &Ipv4, t: &PortTarget) -> i32 {
    let Some(target) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: t.ip }) }).copied() else {
        return drop(ep.ifindex, DropReason::NoRoute);
    };
    let Some(tnet) = (unsafe { DP_NETWORKS.get(target.net_id) }).copied() else {
        return drop(ep.ifindex, DropReason::NoRoute);
    };
    let Some(cfg) = maps::config() else {
        return TC_ACT_OK;
    };
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
    let Some(nat_port) = nat::claim_port(cfg, None, |port| {
        DP_CT
            .insert(&reply(port), &back, BPF_NOEXIST as u64)
            .is_ok()
    }) else {
        return drop(ep.ifindex, DropReason::NatExhausted);
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
fn translated(ctx: &TcContext, ep: &EndpointInfo, ip: &Ipv4, ct: &CtEntry) -> i32 {
    if ip.ttl <= 1 {
        return TC_ACT_OK;
    }
    if nat::rewrite(ctx, ip, Side::Src, ct.src, ct.sport).is_err()
        || nat::rewrite(ctx, ip, Side::Dst, ct.dst, ct.dport).is_err()
        || nat::dec_ttl(ctx, ip).is_err()
    {
        return drop(ep.ifindex, DropReason::Malformed);
    }
    if let Some(peer) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ct.dst }) } {
        return nat::deliver(ctx, peer);
    }
    let mut out = *ip;
    out.src = ct.src;
    out.dst = ct.dst;
    out.sport = ct.sport;
    out.dport = ct.dport;
    match fib(ctx, ep, &out) {
        Some((rc, f)) if rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH => {
            forward(ctx, ep, rc, &f)
        }
        _ => TC_ACT_OK,
    }
}

#[inline(always)]
fn fib(ctx: &TcContext, ep: &EndpointInfo, ip: &Ipv4) -> Option<(u32, bpf_fib_lookup)> {
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = ip.proto;
    fib.sport = ip.sport.to_be();
    fib.dport = ip.dport.to_be();
    // tot_len stays 0: the kernel then checks the MTU with
    // is_skb_forwardable(), which understands GSO packets (a 64 KiB TCP
    // segment is not "too big" for a 1500 MTU device).
    fib.ifindex = ep.ifindex;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.src);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(ip.dst);
    let rc = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            &mut fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc < 0 {
        return None;
    }
    Some((rc as u32, fib))
}

/// Send a rewritten packet out of the interface the route lookup chose.
#[inline(always)]
fn forward(ctx: &TcContext, ep: &EndpointInfo, rc: u32, f: &bpf_fib_lookup) -> i32 {
    if rc == BPF_FIB_LKUP_RET_SUCCESS {
        if nat::set_macs(ctx, &f.dmac, &f.smac).is_err() {
            return drop(ep.ifindex, DropReason::Malformed);
        }
        return unsafe { bpf_redirect(f.ifindex, 0) as i32 };
    }
    // The next hop's MAC is not resolved yet: let the kernel resolve it.
    unsafe { bpf_redirect_neigh(f.ifindex, core::ptr::null_mut(), 0, 0) as i32 }
}

/// Destinations beyond the host: masquerade out of the uplink.
#[inline(always)]
fn routed(ctx: &TcContext, ep: &EndpointInfo, ip: &Ipv4) -> i32 {
    let Some((rc, f)) = fib(ctx, ep, ip) else {
        return drop(ep.ifindex, DropReason::NoRoute);
    };
    if rc == BPF_FIB_LKUP_RET_NOT_FWDED {
        // A local address of the host: the stack delivers it.
        return TC_ACT_OK;
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && !ip.dont_fragment {
        // The stack would fragment and forward it untranslated.
        return drop(ep.ifindex, DropReason::UntranslatableFragment);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        // Unreachable, prohibited, needs fragmentation with DF: the stack
        // answers with the right ICMP error (it does not forward these).
        return TC_ACT_OK;
    }
    let Some(cfg) = maps::config() else {
        return drop(ep.ifindex, DropReason::NoRoute);
    };
    if cfg.uplink_ifindex == 0 || f.ifindex != cfg.uplink_ifindex {
        // Another host interface: plain routing by the stack.
        return TC_ACT_OK;
    }
    if cfg.uplink_ip == [0; 4] {
        // The uplink has no address to masquerade to.
        return drop(ep.ifindex, DropReason::NoRoute);
    }
    if ip.ttl <= 1 {
        // The stack sends the ICMP time exceeded.
        return TC_ACT_OK;
    }
    if ip.frag != Frag::No {
        return drop(ep.ifindex, DropReason::UntranslatableFragment);
    }
    let translatable = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => ip.has_l4,
        IPPROTO_ICMP => ip.has_l4 && ip.icmp_type == ICMP_ECHO_REQUEST,
        _ => false,
    };
    if !translatable {
        return drop(ep.ifindex, DropReason::UnsupportedProtocol);
    }
    let Some(out) = nat::snat_entry(&ip.flow(), ip, cfg) else {
        warn!(
            ctx,
            "no free masquerade port for {:i} -> {:i}", ip.src, ip.dst
        );
        return drop(ep.ifindex, DropReason::NatExhausted);
    };
    if nat::rewrite(ctx, ip, Side::Src, out.addr, out.port).is_err()
        || nat::dec_ttl(ctx, ip).is_err()
    {
        return drop(ep.ifindex, DropReason::Malformed);
    }
    forward(ctx, ep, rc, &f)
}

//! TC ingress on the host side of a container's veth: every packet a
//! container sends enters the datapath here.
//!
//! - ARP requests for the gateway or for endpoints on the same network are
//!   answered here, with the host-side MAC, so that all unicast IPv4 from the
//!   container is addressed to this veth and can be steered by us.
//! - IPv4 to another endpoint on this host is redirected straight into the
//!   receiver's namespace with `bpf_redirect_peer` (no bridge, no stack).
//! - IPv4 to the gateway or another host address goes up the host's stack.
//! - IPv4 routed out of the uplink is masqueraded to the uplink's address and
//!   redirected to the uplink.
//! - Everything else (IPv6, VLAN-tagged, other ethertypes) goes to the stack.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::{debug, warn};
use dataplane_common::{
    DropReason, EndpointInfo, EndpointKey, FlowKey, NET_F_INTERNAL, NET_F_NO_ICC,
};

use crate::{
    maps::{self, DP_ENDPOINTS, DP_IF_ENDPOINTS, DP_NETWORKS},
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
        // Not (or no longer) one of ours: leave it to the stack.
        return TC_ACT_OK;
    };
    match ethertype {
        ETH_P_ARP => arp(&ctx, &ep),
        ETH_P_IP => ipv4(&ctx, &ep, &eth),
        _ => TC_ACT_OK,
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
        return drop(ep.ifindex, DropReason::Spoofed);
    }
    maps::count_tx(ep.ifindex, ctx.len());

    if let Some(peer) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ip.dst }) } {
        return to_endpoint(ctx, ep, peer);
    }

    let Some(net) = (unsafe { DP_NETWORKS.get(ep.net_id) }).copied() else {
        return drop(ep.ifindex, DropReason::UnknownInterface);
    };
    if ip.dst == net.gateway || parse::is_multicast_or_broadcast(ip.dst) {
        return TC_ACT_OK;
    }
    if net.flags & NET_F_INTERNAL != 0 {
        return drop(ep.ifindex, DropReason::Internal);
    }
    routed(ctx, ep, &ip)
}

/// Same-host delivery, straight into the peer's namespace.
#[inline(always)]
fn to_endpoint(ctx: &TcContext, ep: &EndpointInfo, peer: &EndpointInfo) -> i32 {
    if peer.net_id != ep.net_id {
        return drop(ep.ifindex, DropReason::CrossNetwork);
    }
    if let Some(net) = unsafe { DP_NETWORKS.get(ep.net_id) } {
        if net.flags & NET_F_NO_ICC != 0 && peer.ifindex != ep.ifindex {
            return drop(ep.ifindex, DropReason::Icc);
        }
    }
    if nat::set_macs(ctx, &peer.mac, &peer.host_mac).is_err() {
        return drop(ep.ifindex, DropReason::Malformed);
    }
    maps::count_rx(peer.ifindex, ctx.len());
    unsafe { bpf_redirect_peer(peer.ifindex, 0) as i32 }
}

/// Destinations beyond the host: masquerade out of the uplink.
#[inline(always)]
fn routed(ctx: &TcContext, ep: &EndpointInfo, ip: &Ipv4) -> i32 {
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = ip.proto;
    fib.sport = ip.sport.to_be();
    fib.dport = ip.dport.to_be();
    // Host order, unlike the addresses and ports.
    fib.__bindgen_anon_1.tot_len = ctx.len() as u16 - ETH_LEN as u16;
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
    } as u32;
    debug!(
        ctx,
        "route lookup for {:i}: rc {} via ifindex {}", ip.dst, rc, fib.ifindex
    );
    if rc == BPF_FIB_LKUP_RET_NOT_FWDED {
        // A local address of the host: the stack delivers it.
        return TC_ACT_OK;
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        // Unreachable, prohibited, forwarding disabled, needs fragmentation:
        // the stack answers with the right ICMP error.
        return TC_ACT_OK;
    }
    let Some(cfg) = maps::config() else {
        return TC_ACT_OK;
    };
    if cfg.uplink_ifindex == 0 || fib.ifindex != cfg.uplink_ifindex {
        // Another host interface: plain routing by the stack.
        return TC_ACT_OK;
    }
    if ip.ttl <= 1 {
        // The stack sends the ICMP time exceeded.
        return TC_ACT_OK;
    }
    if ip.frag != Frag::No {
        return drop(ep.ifindex, DropReason::Fragment);
    }
    let translatable = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => ip.has_l4,
        IPPROTO_ICMP => ip.has_l4 && ip.icmp_type == ICMP_ECHO_REQUEST,
        _ => false,
    };
    if !translatable {
        return drop(ep.ifindex, DropReason::Unsupported);
    }
    let key = FlowKey {
        src: ip.src,
        dst: ip.dst,
        sport: ip.sport,
        dport: ip.dport,
        proto: ip.proto,
        _pad: [0; 3],
    };
    let Some(out) = nat::snat_entry(&key, ip, cfg) else {
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
    if rc == BPF_FIB_LKUP_RET_SUCCESS {
        if nat::set_macs(ctx, &fib.dmac, &fib.smac).is_err() {
            return drop(ep.ifindex, DropReason::Malformed);
        }
        return unsafe { bpf_redirect(fib.ifindex, 0) as i32 };
    }
    // The next hop's MAC is not resolved yet: let the kernel resolve it.
    unsafe { bpf_redirect_neigh(fib.ifindex, core::ptr::null_mut(), 0, 0) as i32 }
}

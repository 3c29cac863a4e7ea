//! XDP on the uplink, the first program a packet from outside meets:
//! - drops VLAN-tagged frames (802.1Q/802.1ad: the kernel strips a VLAN-0
//!   tag before TC and would handle the inner packet as untagged, past the
//!   checks below); other ethertypes (ARP, IPv6...) are the host's and go to
//!   the stack, which has no route from them to a container;
//! - drops packets addressed straight to a container (only published ports
//!   are reachable from outside, as Docker 28's raw-table rules do) and
//!   packets to loopback addresses (a published 127.0.0.1 port must never
//!   be reachable from another machine);
//! - translates published ports (DNAT to the container's address and port,
//!   checksums fixed incrementally) and records the reply translation in
//!   `DP_CT`. TC ingress on the uplink then delivers the packet into the
//!   container's namespace with `bpf_redirect_peer`. The first fragment of
//!   a fragmented datagram is translated the same way and its translation
//!   remembered in `DP_FRAGS`; TC ingress rewrites the later fragments
//!   (which carry no ports) from there.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_ns,
    macros::xdp,
    programs::XdpContext,
};
use dataplane_common::{
    CtEntry, DropReason, EndpointKey, FlowKey, PortTarget, CT_F_REPLY_DIR, EP_F_LAN,
};

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

use crate::{
    csum::{csum_replace2, csum_replace4},
    events, frag,
    maps::{self, DP_CT, DP_ENDPOINTS, DP_HOST_IPS},
    nat,
    parse::{
        self, Pkt, ETH_LEN, ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, IP_CSUM_OFF, IP_DST_OFF, IP_TTL_OFF,
    },
};

#[xdp]
pub fn dp_xdp_uplink(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    let mon = events::start(&ctx);
    match try_xdp_uplink(&ctx) {
        Ok(action) => {
            events::trace_xdp(
                mon,
                &ctx,
                dataplane_common::MON_AT_XDP_UPLINK,
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
                dataplane_common::MON_AT_XDP_UPLINK,
                ifindex,
                reason,
            );
            XDP_DROP
        }
    }
}

#[inline(always)]
fn try_xdp_uplink(ctx: &XdpContext) -> Result<u32, DropReason> {
    let pkt = Pkt::xdp(ctx);
    let Some(eth) = pkt.read::<[u8; 14]>(0) else {
        return Ok(XDP_PASS);
    };
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    if parse::is_vlan(ethertype) {
        return Err(DropReason::VlanTagged);
    }
    if ethertype != ETH_P_IP {
        return Ok(XDP_PASS);
    }
    // The early drops need only the fixed IP header: decide them before
    // parsing anything that could be truncated.
    let Some(hdr) = pkt.read::<[u8; 20]>(ETH_LEN) else {
        return Ok(XDP_PASS);
    };
    let dst = [hdr[16], hdr[17], hdr[18], hdr[19]];
    if parse::is_loopback(dst) {
        return Err(DropReason::LoopbackFromOutside);
    }
    // SAFETY: map lookup; only a field is read, at once.
    if let Some(ep) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: dst }) } {
        if ep.flags & EP_F_LAN != 0 {
            // A container with an address of the LAN: TC ingress checks it
            // came from the network's parent and delivers it.
            return Ok(XDP_PASS);
        }
        // Blamed on the container it was aimed at, too.
        maps::count_endpoint_drop(ep.ifindex, DropReason::DirectAccessFromOutside);
        return Err(DropReason::DirectAccessFromOutside);
    }
    let Ok(ip) = parse::parse_ipv4_pkt(&pkt, ETH_LEN) else {
        return Ok(XDP_PASS);
    };
    if !ip.ports_present() {
        return Ok(XDP_PASS);
    }
    let Some(t) = maps::port_lookup(ip.dst, ip.dport, ip.proto) else {
        return Ok(XDP_PASS);
    };
    if ip.ttl <= 1 {
        return Ok(XDP_PASS);
    }
    if spoofed(ip.src) {
        return Err(DropReason::SpoofedSource);
    }
    record_reply(&ip, &t);
    if dnat(&pkt, &ip, t.ip, t.port).is_none() {
        return Err(DropReason::Malformed);
    }
    frag::remember(&ip, ip.src, t.ip);
    Ok(XDP_PASS)
}

/// Nothing from outside speaks with an address of this host or of its
/// containers (the stack's rp_filter never sees what the datapath delivers).
/// Shared with `dp_tc_uplink`.
#[inline(always)]
pub(crate) fn spoofed(src: [u8; 4]) -> bool {
    parse::is_loopback(src)
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        || unsafe { DP_ENDPOINTS.get(EndpointKey { ip: src }) }.is_some()
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        || unsafe { DP_HOST_IPS.get(EndpointKey { ip: src }) }.is_some()
}

/// Record in `DP_CT` the reply translation of a packet for the published
/// port `t`: the reply leaves the container as `t.ip:t.port -> client` and
/// must look like it comes from the published address. Shared with
/// `dp_tc_uplink`.
#[inline(always)]
pub(crate) fn record_reply(ip: &parse::Ipv4, t: &PortTarget) {
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let reply = FlowKey::new(t.ip, ip.src, t.port, ip.sport, ip.proto);
    let want = CtEntry {
        src: ip.dst,
        dst: ip.src,
        sport: ip.dport,
        dport: ip.sport,
        flags: CT_F_REPLY_DIR | nat::closing(ip),
        _pad: 0,
        last_seen_ns: now,
    };
    // A TCP connection starts with a SYN: only a SYN (or a flow we have no
    // state for) may replace the reply translation, so that a stray packet
    // cannot redirect the replies of a live connection.
    let syn = ip.proto == IPPROTO_TCP && ip.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    match DP_CT.get_ptr_mut(&reply) {
        // The same connection: keep it alive.
        // SAFETY: the pointer the map lookup returned, valid for this program run; the value is plain data.
        Some(e) if unsafe { (*e).src == want.src && (*e).sport == want.sport } => unsafe {
            (*e).last_seen_ns = now;
            (*e).flags |= nat::closing(ip);
        },
        // The client reused its port towards another published address of
        // the same container port: replies follow the new connection.
        Some(_) if syn || ip.proto == IPPROTO_UDP => {
            let _ = DP_CT.insert(&reply, &want, 0);
        }
        Some(_) => {}
        None => {
            let _ = DP_CT.insert(&reply, &want, 0);
        }
    }
}

/// Rewrite the destination address and port, decrement the TTL, and fix the
/// IP and L4 checksums.
#[inline(always)]
fn dnat(pkt: &Pkt, ip: &parse::Ipv4, addr: [u8; 4], port: u16) -> Option<()> {
    // SAFETY: bounds-checked by `ptr`; XDP packet memory is writable.
    let h = unsafe { &mut *pkt.ptr::<[u8; 20]>(ETH_LEN)? };
    let new_port = port.to_be_bytes();
    let old_port = ip.dport.to_be_bytes();
    let mut check = u16::from_ne_bytes([h[IP_CSUM_OFF], h[IP_CSUM_OFF + 1]]);
    check = csum_replace4(check, ip.dst, addr);
    let old_ttl = [h[IP_TTL_OFF], h[IP_TTL_OFF + 1]];
    let new_ttl = [old_ttl[0] - 1, old_ttl[1]];
    check = csum_replace2(check, old_ttl, new_ttl);
    h[IP_TTL_OFF] = new_ttl[0];
    h[IP_DST_OFF..IP_DST_OFF + 4].copy_from_slice(&addr);
    let c = check.to_ne_bytes();
    h[IP_CSUM_OFF] = c[0];
    h[IP_CSUM_OFF + 1] = c[1];
    if ip.proto == IPPROTO_TCP {
        // SAFETY: bounds-checked by `ptr`; XDP packet memory is writable and nothing else refers to it.
        let l4 = unsafe { &mut *pkt.ptr::<[u8; 20]>(ip.l4_off)? };
        let mut check = u16::from_ne_bytes([l4[16], l4[17]]);
        check = csum_replace4(check, ip.dst, addr);
        check = csum_replace2(check, old_port, new_port);
        l4[2] = new_port[0];
        l4[3] = new_port[1];
        let c = check.to_ne_bytes();
        l4[16] = c[0];
        l4[17] = c[1];
    } else {
        // SAFETY: bounds-checked by `ptr`; XDP packet memory is writable and nothing else refers to it.
        let l4 = unsafe { &mut *pkt.ptr::<[u8; 8]>(ip.l4_off)? };
        let mut check = u16::from_ne_bytes([l4[6], l4[7]]);
        if check != 0 {
            check = csum_replace4(check, ip.dst, addr);
            check = csum_replace2(check, old_port, new_port);
            if check == 0 {
                check = 0xffff;
            }
        }
        l4[2] = new_port[0];
        l4[3] = new_port[1];
        let c = check.to_ne_bytes();
        l4[6] = c[0];
        l4[7] = c[1];
    }
    Some(())
}

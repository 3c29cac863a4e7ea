//! Address/port translation with incremental checksum updates, and the
//! masquerade port allocator.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    programs::TcContext,
};
use dataplane_common::{Config, FlowKey, NatEntry, NAT_F_CLOSING, NAT_F_REPLIED};

use crate::{
    csum::{self, csum_replace2, csum_replace4},
    maps::{self, DP_NAT_IN, DP_NAT_OUT},
    parse::{
        l4_csum_off, Ipv4, Pkt, ETH_LEN, IPPROTO_ICMP, IPPROTO_UDP, IP_CSUM_OFF, IP_DST_OFF,
        IP_SRC_OFF, IP_TTL_OFF,
    },
};

/// How many ports the allocator tries before giving up on a flow.
const NAT_TRIES: u32 = 32;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// Rewrite an IPv4 packet's addresses and ports (ICMP echo: identifier) to
/// `src:sport -> dst:dport` and decrement its TTL.
///
/// Addresses, ports, TTL and the IPv4 header checksum are written directly
/// into the packet (the IPv4 checksum is always complete). The L4 checksum
/// is left to `bpf_l4_csum_replace`, at most two calls with precomputed
/// differences (addresses, then ports): what that field holds depends on
/// the skb's checksum state, which a program cannot read (a
/// CHECKSUM_PARTIAL skb, what containers' sockets send over a veth, holds
/// only the pseudo-header sum: it covers the addresses, not the ports).
/// The caller checked that the L4 header is present (`Ipv4::has_l4`).
#[inline(always)]
pub fn translate(
    ctx: &TcContext,
    ip: &Ipv4,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
) -> Result<(), ()> {
    let pkt = Pkt::tc(ctx);
    let h = pkt.ptr::<[u8; 20]>(ETH_LEN).ok_or(())?;
    // SAFETY: `ptr` checked that the 20 bytes lie inside the packet's
    // linear data, which the program may write; nothing else refers to it.
    let h = unsafe { &mut *h };
    let old_ttl = [h[IP_TTL_OFF], h[IP_TTL_OFF + 1]];
    let new_ttl = [old_ttl[0].wrapping_sub(1), old_ttl[1]];
    let mut check = u16::from_ne_bytes([h[IP_CSUM_OFF], h[IP_CSUM_OFF + 1]]);
    check = csum_replace4(check, ip.src, src);
    check = csum_replace4(check, ip.dst, dst);
    check = csum_replace2(check, old_ttl, new_ttl);
    h[IP_TTL_OFF] = new_ttl[0];
    h[IP_SRC_OFF..IP_SRC_OFF + 4].copy_from_slice(&src);
    h[IP_DST_OFF..IP_DST_OFF + 4].copy_from_slice(&dst);
    let c = check.to_ne_bytes();
    h[IP_CSUM_OFF] = c[0];
    h[IP_CSUM_OFF + 1] = c[1];

    let l4 = pkt.ptr::<[u8; 8]>(ip.l4_off).ok_or(())?;
    // SAFETY: as above, for the first 8 bytes of the L4 header.
    let l4 = unsafe { &mut *l4 };
    let ports = if ip.proto == IPPROTO_ICMP {
        // ICMP echo: one identifier, translated on one side.
        let id = if sport != ip.sport {
            sport
        } else if dport != ip.dport {
            dport
        } else {
            ip.sport
        };
        let old = [l4[4], l4[5]];
        let new = id.to_be_bytes();
        l4[4] = new[0];
        l4[5] = new[1];
        csum::diff2(0, old, new)
    } else {
        let old = [l4[0], l4[1], l4[2], l4[3]];
        let s = sport.to_be_bytes();
        let d = dport.to_be_bytes();
        let new = [s[0], s[1], d[0], d[1]];
        l4[..4].copy_from_slice(&new);
        csum::diff4(0, old, new)
    };
    let addrs = csum::diff4(csum::diff4(0, ip.src, src), ip.dst, dst);

    let off = ip.l4_off + l4_csum_off(ip.proto);
    let mangled0 = if ip.proto == IPPROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    // The size bits 0 select the helper's diff mode (`from` must be 0).
    // ICMP has no pseudo-header: only the IP checksum covers the addresses.
    if ip.proto != IPPROTO_ICMP && (ip.src != src || ip.dst != dst) {
        ctx.l4_csum_replace(
            off,
            0,
            csum::diff_fold(addrs),
            BPF_F_PSEUDO_HDR as u64 | mangled0,
        )
        .map_err(|_| ())?;
    }
    if ip.sport != sport || ip.dport != dport {
        ctx.l4_csum_replace(off, 0, csum::diff_fold(ports), mangled0)
            .map_err(|_| ())?;
    }
    Ok(())
}

/// `NAT_F_CLOSING` if the packet carries a FIN or RST.
#[inline(always)]
pub fn closing(ip: &Ipv4) -> u16 {
    if ip.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        NAT_F_CLOSING
    } else {
        0
    }
}

/// The masquerade translation of a container's flow to `addr` (the address
/// of the interface it leaves by): existing, or newly allocated. `None` when
/// every port tried is taken for this destination.
#[inline(always)]
pub fn snat_entry(key: &FlowKey, ip: &Ipv4, cfg: &Config, addr: [u8; 4]) -> Option<NatEntry> {
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(e) = DP_NAT_OUT.get_ptr_mut(key) {
        // SAFETY: the pointer the map lookup returned, valid for this program run; the value is plain data.
        let out = unsafe {
            (*e).last_seen_ns = now;
            (*e).flags |= closing(ip);
            *e
        };
        // The two directions live in separate LRU maps: if the reverse entry
        // was evicted, its port may have been claimed by another flow since.
        // Restore it, or translate this flow anew.
        let rev = FlowKey::new(key.dst, out.addr, key.dport, out.port, key.proto);
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        if let Some(b) = unsafe { DP_NAT_IN.get(&rev) } {
            if b.addr == key.src && b.port == key.sport {
                return Some(out);
            }
        } else {
            let back = NatEntry {
                addr: key.src,
                port: key.sport,
                flags: out.flags,
                last_seen_ns: now,
            };
            if DP_NAT_IN.insert(&rev, &back, BPF_NOEXIST as u64).is_ok() {
                return Some(out);
            }
        }
        let _ = DP_NAT_OUT.remove(key);
    }
    let back = NatEntry {
        addr: key.src,
        port: key.sport,
        flags: closing(ip),
        last_seen_ns: now,
    };
    let rev = |port: u16| FlowKey::new(key.dst, addr, key.dport, port, key.proto);
    let port = claim_port(cfg, None, addr, key.proto, |port| {
        DP_NAT_IN
            .insert(&rev(port), &back, BPF_NOEXIST as u64)
            .is_ok()
    })?;
    let out = NatEntry {
        addr,
        port,
        flags: back.flags,
        last_seen_ns: now,
    };
    if DP_NAT_OUT.insert(key, &out, BPF_NOEXIST as u64).is_ok() {
        return Some(out);
    }
    // Another CPU translated the same flow first: use its entry.
    let _ = DP_NAT_IN.remove(&rev(port));
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    unsafe { DP_NAT_OUT.get(key) }.copied()
}

/// Claim a translated source port on `src`: `first` if given, else (or if
/// taken) ports of the masquerade range from a random offset. A port
/// published on `src` (`DP_PORTS`, exact or wildcard) is never claimed: the
/// range is shared with published ports, as Docker lets any port be
/// published. `claim` reserves a port (a `BPF_NOEXIST` insert of the reply
/// key) and says whether it could.
#[inline(always)]
pub fn claim_port(
    cfg: &Config,
    first: Option<u16>,
    src: [u8; 4],
    proto: u8,
    mut claim: impl FnMut(u16) -> bool,
) -> Option<u16> {
    let published = |port: u16| maps::port_lookup(src, port, proto).is_some();
    if let Some(p) = first {
        if !published(p) && claim(p) {
            return Some(p);
        }
    }
    let min = cfg.nat_port_min as u32;
    let max = cfg.nat_port_max as u32;
    if min == 0 || max < min {
        return None;
    }
    let range = max - min + 1;
    if range == 0 {
        return None;
    }
    // SAFETY: a BPF helper without arguments.
    let seed = unsafe { bpf_get_prandom_u32() };
    for i in 0..NAT_TRIES {
        let port = (min + (seed.wrapping_add(i) % range)) as u16;
        if !published(port) && claim(port) {
            return Some(port);
        }
    }
    None
}

/// The reverse translation of a reply arriving on the uplink, if any.
#[inline(always)]
pub fn rnat_entry(key: &FlowKey, ip: &Ipv4) -> Option<NatEntry> {
    let e = DP_NAT_IN.get_ptr_mut(key)?;
    // SAFETY: the pointer the map lookup returned, valid for this program run; the value is plain data.
    unsafe {
        (*e).last_seen_ns = bpf_ktime_get_ns();
        (*e).flags |= closing(ip) | NAT_F_REPLIED;
        Some(*e)
    }
}

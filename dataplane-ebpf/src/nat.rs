//! Address/port translation with incremental checksum updates, and the
//! masquerade port allocator.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    programs::TcContext,
};
use dataplane_common::{Config, FlowKey, NatEntry, NAT_F_CLOSING, NAT_F_REPLIED};

use crate::{
    maps::{self, DP_NAT_IN, DP_NAT_OUT},
    parse::{
        l4_csum_off, Ipv4, ETH_LEN, IPPROTO_ICMP, IPPROTO_UDP, IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF,
    },
};

/// How many ports the allocator tries before giving up on a flow.
const NAT_TRIES: u32 = 32;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Rewrite the source or destination address and port (ICMP: echo identifier)
/// of an IPv4 packet, fixing the IP and L4 checksums incrementally.
#[inline(always)]
pub fn rewrite(
    ctx: &TcContext,
    ip: &Ipv4,
    side: Side,
    new_addr: [u8; 4],
    new_port: u16,
) -> Result<(), ()> {
    let l3 = ETH_LEN;
    let l4 = ip.l4_off;
    let (addr_off, old_addr, port_off, old_port) = match side {
        Side::Src => (l3 + IP_SRC_OFF, ip.src, 0usize, ip.sport),
        Side::Dst => (l3 + IP_DST_OFF, ip.dst, 2usize, ip.dport),
    };
    let csum = l4 + l4_csum_off(ip.proto);
    let mangled0 = if ip.proto == IPPROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let old_a = u32::from_ne_bytes(old_addr) as u64;
    let new_a = u32::from_ne_bytes(new_addr) as u64;

    if old_addr != new_addr {
        // ICMP has no pseudo-header: only the IP checksum covers the address.
        if ip.proto != IPPROTO_ICMP {
            ctx.l4_csum_replace(csum, old_a, new_a, BPF_F_PSEUDO_HDR as u64 | mangled0 | 4)
                .map_err(|_| ())?;
        }
        ctx.l3_csum_replace(l3 + IP_CSUM_OFF, old_a, new_a, 4)
            .map_err(|_| ())?;
        ctx.store(addr_off, &new_addr, 0).map_err(|_| ())?;
    }

    if old_port != new_port {
        // ICMP echo: the identifier (same field in both directions).
        let off = if ip.proto == IPPROTO_ICMP {
            l4 + 4
        } else {
            l4 + port_off
        };
        let old_p = u16::from_ne_bytes(old_port.to_be_bytes()) as u64;
        let new_p = u16::from_ne_bytes(new_port.to_be_bytes()) as u64;
        ctx.l4_csum_replace(csum, old_p, new_p, mangled0 | 2)
            .map_err(|_| ())?;
        ctx.store(off, &new_port.to_be_bytes(), 0).map_err(|_| ())?;
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

/// The masquerade translation of a container's flow: existing, or newly
/// allocated. `None` when every port tried is taken for this destination.
#[inline(always)]
pub fn snat_entry(key: &FlowKey, ip: &Ipv4, cfg: &Config) -> Option<NatEntry> {
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
    let rev = |port: u16| FlowKey::new(key.dst, cfg.uplink_ip, key.dport, port, key.proto);
    let port = claim_port(cfg, None, cfg.uplink_ip, key.proto, |port| {
        DP_NAT_IN
            .insert(&rev(port), &back, BPF_NOEXIST as u64)
            .is_ok()
    })?;
    let out = NatEntry {
        addr: cfg.uplink_ip,
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

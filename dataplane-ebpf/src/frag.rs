//! IPv4 fragments of translated flows (masquerade, published ports,
//! hairpin, and their replies).
//!
//! Only the first fragment of a datagram carries the L4 header, so only it
//! can be matched against the flow tables and have its ports rewritten.
//! When a program translates a first fragment it records the addresses it
//! wrote in `DP_FRAGS`, by (source, destination, protocol, IP id) as the
//! datagram entered the datapath; the later fragments of the datagram
//! (offset > 0) look that entry up and get the same address rewrite (their
//! payload has no checksum of its own: the first fragment's L4 checksum,
//! already fixed, covers the whole datagram). Nothing is reassembled.
//!
//! A later fragment that arrives before its first fragment has no entry: on
//! a path that must translate it, it is dropped and counted
//! (`fragment_without_first`); from outside it may be the host's own and
//! goes to the stack. Linux sends the fragments of a datagram in order, so
//! this is only seen when the network reorders them.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use dataplane_common::{FragEntry, FragKey, FRAG_TIMEOUT_NS};

use crate::{
    csum::{csum_replace2, csum_replace4},
    maps::DP_FRAGS,
    parse::{Frag, Ipv4, Pkt, ETH_LEN, IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF, IP_TTL_OFF},
};

#[inline(always)]
fn key(ip: &Ipv4) -> FragKey {
    FragKey {
        src: ip.src,
        dst: ip.dst,
        id: ip.id,
        proto: ip.proto,
        _pad: 0,
    }
}

/// After translating `ip` (as it was on the wire) to `src -> dst`: if it is
/// a first fragment, remember the translation for the later ones.
#[inline(always)]
pub fn remember(ip: &Ipv4, src: [u8; 4], dst: [u8; 4]) {
    if ip.frag != Frag::First {
        return;
    }
    let e = FragEntry {
        src,
        dst,
        // SAFETY: a BPF helper without arguments.
        first_seen_ns: unsafe { bpf_ktime_get_ns() },
    };
    let _ = DP_FRAGS.insert(&key(ip), &e, 0);
}

/// The translation of a later fragment's datagram, if its first fragment
/// was translated less than `FRAG_TIMEOUT_NS` ago.
#[inline(always)]
pub fn lookup(ip: &Ipv4) -> Option<FragEntry> {
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let e = (unsafe { DP_FRAGS.get(&key(ip)) }).copied()?;
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(e.first_seen_ns) > FRAG_TIMEOUT_NS {
        return None;
    }
    Some(e)
}

/// Rewrite a later fragment's addresses to `e`'s and decrement its TTL,
/// fixing the IPv4 header checksum (the only checksum a later fragment
/// has). Written directly: the IPv4 checksum is always complete.
#[inline(always)]
pub fn rewrite(pkt: &Pkt, ip: &Ipv4, e: &FragEntry) -> Option<()> {
    // SAFETY: bounds-checked by `ptr`: the 20 bytes lie inside the packet's
    // linear data, which the program may write; nothing else refers to it.
    let h = unsafe { &mut *pkt.ptr::<[u8; 20]>(ETH_LEN)? };
    let old_ttl = [h[IP_TTL_OFF], h[IP_TTL_OFF + 1]];
    let new_ttl = [old_ttl[0].wrapping_sub(1), old_ttl[1]];
    let mut check = u16::from_ne_bytes([h[IP_CSUM_OFF], h[IP_CSUM_OFF + 1]]);
    check = csum_replace4(check, ip.src, e.src);
    check = csum_replace4(check, ip.dst, e.dst);
    check = csum_replace2(check, old_ttl, new_ttl);
    h[IP_TTL_OFF] = new_ttl[0];
    h[IP_SRC_OFF..IP_SRC_OFF + 4].copy_from_slice(&e.src);
    h[IP_DST_OFF..IP_DST_OFF + 4].copy_from_slice(&e.dst);
    let c = check.to_ne_bytes();
    h[IP_CSUM_OFF] = c[0];
    h[IP_CSUM_OFF + 1] = c[1];
    Some(())
}

//! IPv6 fragments of translated flows: as `frag` does for IPv4. The first
//! fragment (offset 0, the one with the L4 header) is translated like a
//! whole packet and its translation recorded in `DP_FRAGS6` by (source,
//! destination, fragment identification) as the datagram entered the
//! datapath; later fragments get the same addresses. An IPv6 fragment has
//! no header checksum, and the first fragment's L4 checksum (fixed for the
//! new pseudo-header) covers the whole datagram: only addresses change.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use dataplane_common::{FragEntry6, FragKey6, FRAG_TIMEOUT_NS};

use crate::{
    maps::DP_FRAGS6,
    nat6::{Ip6, IP6_DST_OFF, IP6_HLIM_OFF, IP6_SRC_OFF},
    parse::{Frag, ETH_LEN},
};

#[inline(always)]
fn key(ip: &Ip6) -> FragKey6 {
    FragKey6 {
        src: ip.src,
        dst: ip.dst,
        id: ip.frag_id,
    }
}

/// After translating `ip` (as it was on the wire) to `src -> dst`: if it is
/// a first fragment, remember the translation for the later ones.
#[inline(always)]
pub fn remember(ip: &Ip6, src: &[u8; 16], dst: &[u8; 16]) {
    if ip.frag != Frag::First {
        return;
    }
    let e = FragEntry6 {
        src: *src,
        dst: *dst,
        // SAFETY: a BPF helper without arguments.
        first_seen_ns: unsafe { bpf_ktime_get_ns() },
    };
    let _ = DP_FRAGS6.insert(&key(ip), &e, 0);
}

/// The translation of a later fragment's datagram, if its first fragment
/// was translated less than `FRAG_TIMEOUT_NS` ago.
#[inline(always)]
pub fn lookup(ip: &Ip6) -> Option<&'static FragEntry6> {
    // SAFETY: map lookup; the value (plain data) is only read, during this
    // program run.
    let e = unsafe { DP_FRAGS6.get(&key(ip)) }?;
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(e.first_seen_ns) > FRAG_TIMEOUT_NS {
        return None;
    }
    Some(e)
}

/// Rewrite a later fragment's addresses to `e`'s and decrement its hop limit.
#[inline(always)]
pub fn rewrite(ctx: &TcContext, ip: &Ip6, e: &FragEntry6) -> Option<()> {
    let hl = [ip.hop_limit.wrapping_sub(1)];
    ctx.store(ETH_LEN + IP6_HLIM_OFF, &hl, 0).ok()?;
    ctx.store(ETH_LEN + IP6_SRC_OFF, &e.src, 0).ok()?;
    ctx.store(ETH_LEN + IP6_DST_OFF, &e.dst, 0).ok()
}

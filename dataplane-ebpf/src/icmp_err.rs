//! ICMP errors (destination unreachable, fragmentation needed included, and
//! time exceeded) about translated flows, sent by a container: the error
//! quotes the packet the container received, so the outer addresses and the
//! quoted header are translated back the way that flow's packets from the
//! container are translated (`DP_CT`: replies of published ports, both
//! directions of hairpin flows; `DP_NAT_OUT`: masqueraded flows).
//!
//! For a quoted packet `X:x -> ep:p`, the container's own flow is
//! `ep:p -> X:x`; if that is translated to `S:s -> D:d`, the error becomes
//! `S -> D` quoting `D:d -> S:s`. So a connected UDP client outside gets
//! ECONNREFUSED from a published UDP port nobody listens on.
//!
//! Errors from outside about published-port flows are handled in
//! `from_uplink` (with those about masqueraded flows).

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK},
    programs::TcContext,
};
use dataplane_common::{DropReason, EndpointInfo, EndpointKey, FlowKey};

use crate::{
    csum::{csum_replace2, csum_replace4, diff2, diff4},
    forward,
    maps::{DP_CT, DP_ENDPOINTS, DP_NAT_OUT},
    parse::{self, Ipv4, Pkt, ETH_LEN, IPPROTO_TCP, IPPROTO_UDP, IP_CSUM_OFF, IP_TTL_OFF},
};

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// Whether `ip` is an ICMP error the datapath translates (unfragmented).
#[inline(always)]
pub fn is_error(ip: &Ipv4) -> bool {
    ip.proto == parse::IPPROTO_ICMP
        && ip.has_l4
        && ip.frag == parse::Frag::No
        && (ip.icmp_type == ICMP_DEST_UNREACH || ip.icmp_type == ICMP_TIME_EXCEEDED)
}

/// The header an ICMP error quotes (IPv4 without options, then the ports).
#[derive(Clone, Copy)]
pub struct Quoted {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// The quoted TCP/UDP header of an ICMP error, made linear first. Quoted
/// headers with IP options are not translated (never seen in practice: the
/// error then goes where it would without the datapath).
#[inline(always)]
pub fn quoted(ctx: &TcContext, ip: &Ipv4) -> Option<Quoted> {
    let off = ip.l4_off + 8;
    parse::pull(ctx, off + 28);
    let h = parse::read::<[u8; 28]>(ctx, off)?;
    let proto = h[9];
    if h[0] != 0x45 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        return None;
    }
    Some(Quoted {
        src: [h[12], h[13], h[14], h[15]],
        dst: [h[16], h[17], h[18], h[19]],
        sport: u16::from_be_bytes([h[20], h[21]]),
        dport: u16::from_be_bytes([h[22], h[23]]),
        proto,
    })
}

/// The translation of an error from container `ep`, if it is about a
/// translated flow: `None` leaves the packet to the caller's usual path.
#[inline(always)]
pub fn from_container(
    ctx: &TcContext,
    ep: &EndpointInfo,
    ip: &Ipv4,
) -> Option<Result<i32, DropReason>> {
    let q = quoted(ctx, ip)?;
    // The container received the quoted packet and answers its sender.
    if q.dst != ep.ip || q.src != ip.dst {
        return None;
    }
    let own = FlowKey::new(q.dst, q.src, q.dport, q.sport, q.proto);
    // (S, s, D, d): the container's flow as translated.
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let t = match (unsafe { DP_CT.get(&own) }).copied() {
        Some(ct) => (ct.src, ct.sport, ct.dst, ct.dport),
        None => {
            // SAFETY: as above.
            let n = (unsafe { DP_NAT_OUT.get(&own) }).copied()?;
            (n.addr, n.port, q.src, q.sport)
        }
    };
    Some(translate_and_send(ctx, ep, ip, &q, t))
}

#[inline(always)]
fn translate_and_send(
    ctx: &TcContext,
    ep: &EndpointInfo,
    ip: &Ipv4,
    q: &Quoted,
    (s, sport, d, dport): ([u8; 4], u16, [u8; 4], u16),
) -> Result<i32, DropReason> {
    if ip.ttl <= 1 {
        return Ok(TC_ACT_OK);
    }
    rewrite(&Pkt::tc(ctx), ip, q, (s, d), (d, dport, s, sport)).ok_or(DropReason::Malformed)?;
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(peer) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: d }) } {
        return forward::deliver(ctx, peer);
    }
    let mut out = *ip;
    out.src = s;
    out.dst = d;
    match forward::fib(ctx, ep.ifindex, &out) {
        Some((rc, f)) if rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH => {
            forward::forward(ctx, rc, f)
        }
        _ => Err(DropReason::NoRoute),
    }
}

/// Rewrite an ICMP error: the outer addresses to `outer` (TTL decremented),
/// the quoted header's addresses and ports to `inner` (src, sport, dst,
/// dport), fixing the outer IPv4, quoted IPv4 and ICMP checksums. Direct
/// writes: all three are complete checksums, and each change to the ICMP
/// message is compensated in its checksum, so a CHECKSUM_COMPLETE skb's sum
/// stays right. The quoted L4 checksum is left alone (receivers do not
/// check it; only its first bytes are quoted).
#[inline(always)]
pub fn rewrite(
    pkt: &Pkt,
    ip: &Ipv4,
    q: &Quoted,
    outer: ([u8; 4], [u8; 4]),
    inner: ([u8; 4], u16, [u8; 4], u16),
) -> Option<()> {
    let (isrc, isport, idst, idport) = inner;
    // SAFETY: bounds-checked by `ptr`: the bytes lie inside the packet's
    // linear data, which the program may write; nothing else refers to them.
    let h = unsafe { &mut *pkt.ptr::<[u8; 20]>(ETH_LEN)? };
    let old_ttl = [h[IP_TTL_OFF], h[IP_TTL_OFF + 1]];
    let new_ttl = [old_ttl[0].wrapping_sub(1), old_ttl[1]];
    let mut c = u16::from_ne_bytes([h[IP_CSUM_OFF], h[IP_CSUM_OFF + 1]]);
    c = csum_replace4(c, ip.src, outer.0);
    c = csum_replace4(c, ip.dst, outer.1);
    c = csum_replace2(c, old_ttl, new_ttl);
    h[IP_TTL_OFF] = new_ttl[0];
    h[12..16].copy_from_slice(&outer.0);
    h[16..20].copy_from_slice(&outer.1);
    h[IP_CSUM_OFF..IP_CSUM_OFF + 2].copy_from_slice(&c.to_ne_bytes());

    // The ICMP header, the quoted IPv4 header and its ports: one range,
    // one bounds check (two overlapping ones get merged by the compiler in
    // a way the verifier cannot follow).
    // SAFETY: as above, for these 32 bytes.
    let m = unsafe { &mut *pkt.ptr::<[u8; 32]>(ip.l4_off)? };
    let (icmp, qh) = m.split_at_mut(8);
    let old_qc = [qh[IP_CSUM_OFF], qh[IP_CSUM_OFF + 1]];
    let mut qc = u16::from_ne_bytes(old_qc);
    qc = csum_replace4(qc, q.src, isrc);
    qc = csum_replace4(qc, q.dst, idst);
    let new_qc = qc.to_ne_bytes();
    let (old_sp, old_dp) = (q.sport.to_be_bytes(), q.dport.to_be_bytes());
    let (new_sp, new_dp) = (isport.to_be_bytes(), idport.to_be_bytes());
    qh[12..16].copy_from_slice(&isrc);
    qh[16..20].copy_from_slice(&idst);
    qh[IP_CSUM_OFF..IP_CSUM_OFF + 2].copy_from_slice(&new_qc);
    qh[20..22].copy_from_slice(&new_sp);
    qh[22..24].copy_from_slice(&new_dp);

    let mut d = diff4(0, q.src, isrc);
    d = diff4(d, q.dst, idst);
    d = diff2(d, old_qc, new_qc);
    d = diff2(d, old_sp, new_sp);
    d = diff2(d, old_dp, new_dp);
    let old = u16::from_ne_bytes([icmp[2], icmp[3]]);
    let mut sum = (!old) as u32 + (d & 0xffff) + (d >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_ne_bytes());
    Some(())
}

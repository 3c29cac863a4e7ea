//! Sending a packet on after the programs decided where it goes: into a
//! container on this host (`deliver`), or out of the interface the route
//! lookup chose (`fib`, `forward`), with the MAC and TTL rewrites both need.
//!
//! Failures are returned as the drop reason; the program's entry point
//! counts it on the endpoint or interface the packet came from.

use aya_ebpf::{
    bindings::{bpf_fib_lookup, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use dataplane_common::{DropReason, EndpointInfo};

use crate::{
    csum::csum_replace2,
    maps,
    parse::{Ipv4, Pkt, ETH_LEN, IP_CSUM_OFF, IP_TTL_OFF},
};

const AF_INET: u8 = 2;

/// Decrement the TTL of a routed packet, fixing the IP checksum (written
/// directly: the IPv4 header checksum is always complete, whatever the
/// skb's checksum state).
#[inline(always)]
pub fn dec_ttl(ctx: &TcContext) -> Result<(), DropReason> {
    let pkt = Pkt::tc(ctx);
    let h = pkt.ptr::<[u8; 20]>(ETH_LEN).ok_or(DropReason::Malformed)?;
    // SAFETY: `ptr` checked that the 20 bytes lie inside the packet's
    // linear data, which the program may write; nothing else refers to it.
    let h = unsafe { &mut *h };
    let old = [h[IP_TTL_OFF], h[IP_TTL_OFF + 1]];
    let new = [old[0].wrapping_sub(1), old[1]];
    let check = u16::from_ne_bytes([h[IP_CSUM_OFF], h[IP_CSUM_OFF + 1]]);
    let c = csum_replace2(check, old, new).to_ne_bytes();
    h[IP_TTL_OFF] = new[0];
    h[IP_CSUM_OFF] = c[0];
    h[IP_CSUM_OFF + 1] = c[1];
    Ok(())
}

/// Rewrite both MAC addresses (direct packet access: no helper call).
#[inline(always)]
pub fn set_macs(ctx: &TcContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), DropReason> {
    let pkt = Pkt::tc(ctx);
    let m = pkt.ptr::<[u8; 12]>(0).ok_or(DropReason::Malformed)?;
    // SAFETY: `ptr` checked that the 12 bytes lie inside the packet's
    // linear data, which the program may write; nothing else refers to it.
    let m = unsafe { &mut *m };
    m[..6].copy_from_slice(dst);
    m[6..].copy_from_slice(src);
    Ok(())
}

/// Deliver a packet into a container on this host: straight into its
/// namespace with `bpf_redirect_peer`, addressed from its host-side MAC.
/// A failure is the sender's drop (the receiver never saw the packet).
#[inline(always)]
pub fn deliver(ctx: &TcContext, peer: &EndpointInfo) -> Result<i32, DropReason> {
    set_macs(ctx, &peer.mac, &peer.host_mac)?;
    maps::count_rx(peer.ifindex, ctx.len());
    // SAFETY: a BPF helper taking plain integers; it only records the
    // redirect target for the verdict the program returns.
    Ok(unsafe { bpf_redirect_peer(peer.ifindex, 0) as i32 })
}

/// Route lookup for `ip` as if it arrived on `ifindex`: the helper's return
/// code and the lookup result (egress interface, MACs), or None on error.
#[inline(always)]
pub fn fib(ctx: &TcContext, ifindex: u32, ip: &Ipv4) -> Option<(u32, &'static bpf_fib_lookup)> {
    // The 64-byte lookup lives in a per-CPU scratch slot, not on the stack:
    // every inlined call site would take a stack copy of its own, and the
    // programs have 512 bytes of stack in all.
    let fib = maps::DP_FIB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array; a program runs to its end
    // on one CPU without being re-entered, and the value is plain data.
    let fib = unsafe { &mut (*fib).0 };
    // SAFETY: bpf_fib_lookup is a plain C struct (integers and unions of
    // integers): all zeroes is a valid value.
    *fib = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = ip.proto;
    fib.sport = ip.sport.to_be();
    fib.dport = ip.dport.to_be();
    // tot_len stays 0: the kernel then checks the MTU with
    // is_skb_forwardable(), which understands GSO packets (a 64 KiB TCP
    // segment is not "too big" for a 1500 MTU device).
    fib.ifindex = ifindex;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.src);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(ip.dst);
    // SAFETY: the context is this program's skb and `fib` a map value of
    // the size passed, which the helper fills in.
    let rc = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            fib,
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
pub fn forward(ctx: &TcContext, rc: u32, f: &bpf_fib_lookup) -> Result<i32, DropReason> {
    if rc == BPF_FIB_LKUP_RET_SUCCESS {
        set_macs(ctx, &f.dmac, &f.smac)?;
        // SAFETY: a BPF helper taking plain integers.
        return Ok(unsafe { bpf_redirect(f.ifindex, 0) as i32 });
    }
    // The next hop's MAC is not resolved yet: let the kernel resolve it.
    // SAFETY: a BPF helper; a null neighbour means "look it up".
    Ok(unsafe { bpf_redirect_neigh(f.ifindex, core::ptr::null_mut(), 0, 0) as i32 })
}

/// Turn the ARP request in `ctx` (from `sha`/`spa`, asking for `tpa`) into
/// the reply "`tpa` is at `mac`", in place, and send it back out of
/// `ifindex` (towards the asker).
#[inline(always)]
pub fn arp_reply(
    ctx: &TcContext,
    ifindex: u32,
    mac: &[u8; 6],
    sha: [u8; 6],
    spa: [u8; 4],
    tpa: [u8; 4],
) -> Result<i32, DropReason> {
    let mut reply = [0u8; 42];
    reply[0..6].copy_from_slice(&sha);
    reply[6..12].copy_from_slice(mac);
    reply[12..14].copy_from_slice(&crate::parse::ETH_P_ARP.to_be_bytes());
    reply[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    reply[20..22].copy_from_slice(&2u16.to_be_bytes());
    reply[22..28].copy_from_slice(mac);
    reply[28..32].copy_from_slice(&tpa);
    reply[32..38].copy_from_slice(&sha);
    reply[38..42].copy_from_slice(&spa);
    if ctx.store(0, &reply, 0).is_err() {
        return Err(DropReason::Malformed);
    }
    // SAFETY: a BPF helper taking plain integers.
    Ok(unsafe { bpf_redirect(ifindex, 0) as i32 })
}

//! IPv6 from a container to beyond the host (used by `from_container6`
//! once the destination is neither an endpoint, the gateway nor a
//! multicast or reserved address): the route lookup, then out of the
//! interface it chose.
//!
//! A routed network's addresses leave untranslated; what the stack must
//! answer (unreachable, prohibited, too big, hop limit exceeded) or deliver
//! itself (an address of the host) goes up the stack.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK,
    },
    helpers::bpf_fib_lookup as fib_lookup,
    programs::TcContext,
};
use dataplane_common::{DropReason, EndpointInfo, Network6Info, NET6_F_MASQ, NET_F_INTERNAL};

use crate::{
    forward, maps,
    parse::ETH_LEN,
    parse6::{Ipv6, IP6_HOP_LIMIT_OFF},
};

const AF_INET6: u8 = 10;

/// A packet of endpoint `ep` (network `net6`, IPv4 network flags
/// `net_flags`) for an address beyond the host.
#[inline(always)]
pub fn beyond_host(
    ctx: &TcContext,
    ep: &EndpointInfo,
    ip: &Ipv6,
    net6: &Network6Info,
    net_flags: u32,
) -> Result<i32, DropReason> {
    if net_flags & NET_F_INTERNAL != 0 {
        return Err(DropReason::InternalNetwork);
    }
    let Some((rc, f)) = fib6(ctx, ep.ifindex, ip) else {
        return Err(DropReason::NoRoute);
    };
    if rc == BPF_FIB_LKUP_RET_NOT_FWDED {
        // An address of the host: the stack delivers it.
        return Ok(TC_ACT_OK);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        // Unreachable, prohibited, too big: the stack answers with the
        // ICMPv6 error (it does not forward these).
        return Ok(TC_ACT_OK);
    }
    if net6.flags & NET6_F_MASQ != 0 {
        // A masqueraded network's addresses never leave untranslated.
        return Err(DropReason::NoRoute);
    }
    if ip.hop_limit <= 1 {
        // The stack sends the ICMPv6 time exceeded.
        return Ok(TC_ACT_OK);
    }
    dec_hop_limit(ctx)?;
    forward::forward(ctx, rc, f)
}

/// Decrement the hop limit of a routed packet (IPv6 has no header
/// checksum, and the L4 checksums do not cover it).
#[inline(always)]
pub fn dec_hop_limit(ctx: &TcContext) -> Result<(), DropReason> {
    let pkt = crate::parse::Pkt::tc(ctx);
    let h = pkt
        .ptr::<u8>(ETH_LEN + IP6_HOP_LIMIT_OFF)
        .ok_or(DropReason::Malformed)?;
    // SAFETY: `ptr` checked that the byte lies inside the packet's linear
    // data, which the program may write; nothing else refers to it.
    unsafe { *h = (*h).wrapping_sub(1) };
    Ok(())
}

/// Route lookup for `ip` as if it arrived on `ifindex`: the helper's return
/// code and the lookup result, or None on error (see `forward::fib`).
#[inline(always)]
pub fn fib6(ctx: &TcContext, ifindex: u32, ip: &Ipv6) -> Option<(u32, &'static bpf_fib_lookup)> {
    let fib = maps::DP_FIB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array; a program runs to its end
    // on one CPU without being re-entered, and the value is plain data.
    let fib = unsafe { &mut (*fib).0 };
    // SAFETY: bpf_fib_lookup is a plain C struct (integers and unions of
    // integers): all zeroes is a valid value.
    *fib = unsafe { core::mem::zeroed() };
    fib.family = AF_INET6;
    fib.l4_protocol = ip.proto;
    fib.sport = ip.sport.to_be();
    fib.dport = ip.dport.to_be();
    // tot_len stays 0: the kernel checks the MTU with is_skb_forwardable().
    fib.ifindex = ifindex;
    fib.__bindgen_anon_3.ipv6_src = words(&ip.src);
    fib.__bindgen_anon_4.ipv6_dst = words(&ip.dst);
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

/// An address as the helper's four words (network order in memory).
#[inline(always)]
fn words(ip: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([ip[0], ip[1], ip[2], ip[3]]),
        u32::from_ne_bytes([ip[4], ip[5], ip[6], ip[7]]),
        u32::from_ne_bytes([ip[8], ip[9], ip[10], ip[11]]),
        u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
    ]
}

//! IPv6 address/port translation (NAT66) for the north-south paths:
//! masquerade of containers' flows to a host interface's IPv6 address,
//! published ports on the host's IPv6 addresses, and their replies.
//!
//! IPv6 has no header checksum: only the L4 checksum changes, and for
//! TCP, UDP and ICMPv6 alike it covers a pseudo-header with both addresses.
//! Headers are read and written with the skb helpers (`bpf_skb_load_bytes`,
//! `bpf_skb_store_bytes`): after extension headers the L4 header is at an
//! offset only known at run time, which the helpers check themselves.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use dataplane_common::{Config, FlowKey6, NatEntry6, NAT_F_CLOSING, NAT_F_REPLIED};

use crate::{
    csum,
    maps::{self, DP_NAT6_IN, DP_NAT6_OUT},
    parse::{Frag, ETH_LEN, IPPROTO_TCP, IPPROTO_UDP},
};

pub const IPPROTO_ICMPV6: u8 = 58;
pub const ICMP6_ECHO_REQUEST: u8 = 128;
pub const ICMP6_ECHO_REPLY: u8 = 129;

const NH_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_DSTOPTS: u8 = 60;
/// Extension headers skipped before the L4 header: more is refused
/// (`malformed`), as real traffic carries one or two.
const EXT_MAX: usize = 4;

/// Offsets inside the IPv6 header.
pub const IP6_HLIM_OFF: usize = 7;
pub const IP6_SRC_OFF: usize = 8;
pub const IP6_DST_OFF: usize = 24;
pub const IP6_HDR_LEN: usize = 40;

const NAT_TRIES: u32 = 32;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// What the north-south programs need to know about an IPv6 packet.
#[derive(Clone, Copy)]
pub struct Ip6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The upper-layer protocol, after the extension headers.
    pub proto: u8,
    pub hop_limit: u8,
    pub frag: Frag,
    /// The fragment header's identification (host order), if any.
    pub frag_id: u32,
    /// Offset of the L4 header from the start of the frame.
    pub l4_off: usize,
    /// Ports in host order (ICMPv6 echo: `sport` is the identifier).
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    /// Whether the L4 header was present in full (never for later fragments).
    pub has_l4: bool,
}

impl Ip6 {
    #[inline(always)]
    pub fn flow(&self) -> FlowKey6 {
        FlowKey6::new(self.src, self.dst, self.sport, self.dport, self.proto)
    }

    /// TCP or UDP with its ports (a whole packet or a first fragment).
    #[inline(always)]
    pub fn ports_present(&self) -> bool {
        (self.proto == IPPROTO_TCP || self.proto == IPPROTO_UDP) && self.has_l4
    }

    /// An ICMPv6 echo request or reply (its identifier in `sport`).
    #[inline(always)]
    pub fn is_echo(&self, ty: u8) -> bool {
        self.proto == IPPROTO_ICMPV6 && self.has_l4 && self.icmp_type == ty
    }
}

/// This CPU's scratch space for the IPv6 north-south paths: the parsed
/// packet and the header an ICMPv6 error quotes live here, not on the
/// 512-byte stack (every inlined call site would take copies of its own).
pub struct Scratch6 {
    pub ip: Ip6,
    pub q: crate::icmp6_err::Quoted6,
    pub key: FlowKey6,
    pub ct: dataplane_common::CtEntry6,
    pub ct2: dataplane_common::CtEntry6,
}

/// This CPU's scratch (`DP_SCRATCH6`, slot 0).
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch6> {
    let p = maps::DP_SCRATCH6.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array; a program runs to its end
    // on one CPU without being re-entered, and the value is plain data.
    Some(unsafe { &mut *p })
}

/// Parse the IPv6 header after the Ethernet header into `p`, skip the
/// extension headers (at most `EXT_MAX`, each bounds-checked by the load
/// helper), and read the L4 header when present.
#[inline(always)]
pub fn parse(ctx: &TcContext, p: &mut Ip6) -> Result<(), ()> {
    let h: [u8; 8] = ctx.load(ETH_LEN).map_err(|_| ())?;
    if h[0] >> 4 != 6 {
        return Err(());
    }
    ctx.load(ETH_LEN + IP6_SRC_OFF)
        .map(|a| p.src = a)
        .map_err(|_| ())?;
    ctx.load(ETH_LEN + IP6_DST_OFF)
        .map(|a| p.dst = a)
        .map_err(|_| ())?;
    p.proto = h[6];
    p.hop_limit = h[IP6_HLIM_OFF];
    p.frag = Frag::No;
    p.frag_id = 0;
    p.l4_off = ETH_LEN + IP6_HDR_LEN;
    p.sport = 0;
    p.dport = 0;
    p.tcp_flags = 0;
    p.icmp_type = 0;
    p.has_l4 = false;
    for _ in 0..EXT_MAX {
        match p.proto {
            NH_HOP | NH_ROUTING | NH_DSTOPTS => {
                let e: [u8; 2] = ctx.load(p.l4_off).map_err(|_| ())?;
                p.proto = e[0];
                p.l4_off += (e[1] as usize + 1) * 8;
            }
            NH_FRAGMENT => {
                let e: [u8; 8] = ctx.load(p.l4_off).map_err(|_| ())?;
                p.proto = e[0];
                p.l4_off += 8;
                let word = u16::from_be_bytes([e[2], e[3]]);
                p.frag_id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                p.frag = if word >> 3 != 0 {
                    Frag::Later
                } else if word & 1 != 0 {
                    Frag::First
                } else {
                    // An atomic fragment (RFC 6946): a whole packet.
                    Frag::No
                };
                if p.frag == Frag::Later {
                    return Ok(());
                }
            }
            _ => break,
        }
    }
    if matches!(p.proto, NH_HOP | NH_ROUTING | NH_DSTOPTS | NH_FRAGMENT) {
        return Err(());
    }
    match p.proto {
        IPPROTO_TCP => {
            // The whole 20-byte header must be there.
            let l: [u8; 20] = ctx.load(p.l4_off).map_err(|_| ())?;
            p.sport = u16::from_be_bytes([l[0], l[1]]);
            p.dport = u16::from_be_bytes([l[2], l[3]]);
            p.tcp_flags = l[13];
            p.has_l4 = true;
        }
        IPPROTO_UDP => {
            let l: [u8; 4] = ctx.load(p.l4_off).map_err(|_| ())?;
            p.sport = u16::from_be_bytes([l[0], l[1]]);
            p.dport = u16::from_be_bytes([l[2], l[3]]);
            // The whole 8-byte header must be there.
            let _: [u8; 8] = ctx.load(p.l4_off).map_err(|_| ())?;
            p.has_l4 = true;
        }
        IPPROTO_ICMPV6 => {
            let l: [u8; 8] = ctx.load(p.l4_off).map_err(|_| ())?;
            p.icmp_type = l[0];
            if l[0] == ICMP6_ECHO_REQUEST || l[0] == ICMP6_ECHO_REPLY {
                p.sport = u16::from_be_bytes([l[4], l[5]]);
            }
            p.has_l4 = true;
        }
        _ => {}
    }
    Ok(())
}

/// The checksum difference (a 32-bit partial sum, for `bpf_l4_csum_replace`
/// in diff mode) of replacing address `old` by `new`, added to `seed`:
/// `bpf_csum_diff` reads the addresses where they are (no bytes held in
/// registers, which would spill to the stack across helper calls).
#[inline(always)]
pub fn addr_diff(seed: u32, old: &[u8; 16], new: &[u8; 16]) -> u32 {
    // SAFETY: a BPF helper reading 16 bytes at each pointer, both valid
    // references to 16-byte arrays; it writes nothing.
    let d = unsafe {
        aya_ebpf::helpers::bpf_csum_diff(
            old.as_ptr() as *mut u32,
            16,
            new.as_ptr() as *mut u32,
            16,
            seed,
        )
    };
    d as u32
}

/// Offset of the L4 checksum from the L4 header.
#[inline(always)]
pub fn l4_csum_off(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => 2, // ICMPv6
    }
}

/// Rewrite an IPv6 packet to `src:sport -> dst:dport` (ICMPv6 echo: the
/// identifier) and decrement its hop limit. The L4 checksum is fixed with
/// `bpf_l4_csum_replace` in diff mode (addresses as pseudo-header, then
/// ports), whatever the skb's checksum state. A later fragment has no L4
/// header: only its addresses change (the first fragment's checksum covers
/// the datagram).
#[inline(always)]
pub fn translate(
    ctx: &TcContext,
    ip: &Ip6,
    src: &[u8; 16],
    sport: u16,
    dst: &[u8; 16],
    dport: u16,
) -> Result<(), ()> {
    let moved = ip.src != *src || ip.dst != *dst;
    let addrs = addr_diff(addr_diff(0, &ip.src, src), &ip.dst, dst);
    let hl = [ip.hop_limit.wrapping_sub(1)];
    ctx.store(ETH_LEN + IP6_HLIM_OFF, &hl, 0).map_err(|_| ())?;
    ctx.store(ETH_LEN + IP6_SRC_OFF, src, 0).map_err(|_| ())?;
    ctx.store(ETH_LEN + IP6_DST_OFF, dst, 0).map_err(|_| ())?;
    if !ip.has_l4 {
        return Ok(());
    }
    let ports = if ip.proto == IPPROTO_ICMPV6 {
        let id = if sport != ip.sport {
            sport
        } else if dport != ip.dport {
            dport
        } else {
            ip.sport
        };
        let old = ip.sport.to_be_bytes();
        let new = id.to_be_bytes();
        ctx.store(ip.l4_off + 4, &new, 0).map_err(|_| ())?;
        csum::diff2(0, old, new)
    } else if ip.proto == IPPROTO_TCP || ip.proto == IPPROTO_UDP {
        let s = sport.to_be_bytes();
        let d = dport.to_be_bytes();
        let new = [s[0], s[1], d[0], d[1]];
        let os = ip.sport.to_be_bytes();
        let od = ip.dport.to_be_bytes();
        ctx.store(ip.l4_off, &new, 0).map_err(|_| ())?;
        csum::diff4(0, [os[0], os[1], od[0], od[1]], new)
    } else {
        0
    };
    let off = ip.l4_off + l4_csum_off(ip.proto);
    let mangled0 = if ip.proto == IPPROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    if moved {
        ctx.l4_csum_replace(off, 0, addrs as u64, BPF_F_PSEUDO_HDR as u64 | mangled0)
            .map_err(|_| ())?;
    }
    if ports != 0 && (ip.sport != sport || ip.dport != dport) {
        ctx.l4_csum_replace(off, 0, csum::diff_fold(ports), mangled0)
            .map_err(|_| ())?;
    }
    Ok(())
}

#[inline(always)]
pub fn closing(ip: &Ip6) -> u16 {
    if ip.proto == IPPROTO_TCP && ip.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        NAT_F_CLOSING
    } else {
        0
    }
}

/// Claim a translated port on `src` from the masquerade range (a random
/// offset first), never one published on `src` (`DP_PORTS6`). `claim`
/// reserves it (a `BPF_NOEXIST` insert of the reply key).
#[inline(always)]
pub fn claim_port(
    cfg: &Config,
    src: &[u8; 16],
    proto: u8,
    mut claim: impl FnMut(u16) -> bool,
) -> Option<u16> {
    let min = cfg.nat_port_min as u32;
    let max = cfg.nat_port_max as u32;
    if min == 0 || max < min {
        return None;
    }
    let range = max - min + 1;
    if range == 0 {
        // (No division by zero below: the compiler's check would be a panic
        // path, which the verifier refuses.)
        return None;
    }
    // SAFETY: a BPF helper without arguments.
    let seed = unsafe { aya_ebpf::helpers::bpf_get_prandom_u32() };
    for i in 0..NAT_TRIES {
        let port = (min + (seed.wrapping_add(i) % range)) as u16;
        if maps::port_lookup6(src, port, proto).is_none() && claim(port) {
            return Some(port);
        }
    }
    None
}

/// The masquerade translation of a container's flow to `addr`: existing or
/// newly allocated; `None` when every port tried is taken.
#[inline(always)]
pub fn snat_entry(key: &FlowKey6, ip: &Ip6, cfg: &Config, addr: &[u8; 16]) -> Option<NatEntry6> {
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(e) = DP_NAT6_OUT.get_ptr_mut(key) {
        // SAFETY: the pointer the map lookup returned, valid for this
        // program run; the value is plain data.
        let out = unsafe {
            (*e).last_seen_ns = now;
            (*e).flags |= closing(ip);
            *e
        };
        let rev = FlowKey6::new(key.dst, out.addr, key.dport, out.port, key.proto);
        // SAFETY: map lookup; the value (plain data) is read at once.
        match unsafe { DP_NAT6_IN.get(&rev) } {
            Some(b) if b.addr == key.src && b.port == key.sport => return Some(out),
            Some(_) => {}
            None => {
                let back = NatEntry6 {
                    addr: key.src,
                    port: key.sport,
                    flags: out.flags,
                    _pad: 0,
                    last_seen_ns: now,
                };
                if DP_NAT6_IN.insert(&rev, &back, BPF_NOEXIST as u64).is_ok() {
                    return Some(out);
                }
            }
        }
        let _ = DP_NAT6_OUT.remove(key);
    }
    let back = NatEntry6 {
        addr: key.src,
        port: key.sport,
        flags: closing(ip),
        _pad: 0,
        last_seen_ns: now,
    };
    let port = claim_port(cfg, addr, key.proto, |port| {
        let rev = FlowKey6::new(key.dst, *addr, key.dport, port, key.proto);
        DP_NAT6_IN.insert(&rev, &back, BPF_NOEXIST as u64).is_ok()
    })?;
    let out = NatEntry6 {
        addr: *addr,
        port,
        flags: back.flags,
        _pad: 0,
        last_seen_ns: now,
    };
    if DP_NAT6_OUT.insert(key, &out, BPF_NOEXIST as u64).is_ok() {
        return Some(out);
    }
    // Another CPU translated the same flow first: use its entry.
    let rev = FlowKey6::new(key.dst, *addr, key.dport, port, key.proto);
    let _ = DP_NAT6_IN.remove(&rev);
    // SAFETY: map lookup; the value (plain data) is read at once.
    unsafe { DP_NAT6_OUT.get(key) }.copied()
}

/// The reverse translation of a masqueraded flow's reply, if any.
#[inline(always)]
pub fn rnat_entry(key: &FlowKey6, ip: &Ip6) -> Option<NatEntry6> {
    let e = DP_NAT6_IN.get_ptr_mut(key)?;
    // SAFETY: the pointer the map lookup returned, valid for this program
    // run; the value is plain data.
    unsafe {
        (*e).last_seen_ns = bpf_ktime_get_ns();
        (*e).flags |= closing(ip) | NAT_F_REPLIED;
        Some(*e)
    }
}

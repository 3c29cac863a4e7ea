//! IPv6 parsing with explicit bounds: the fixed header, a bounded walk over
//! the extension headers (hop-by-hop, routing, destination options,
//! fragment, authentication) and the L4 header after them.
//!
//! Like `parse`, the parser copies what the programs need into a plain
//! value. Anything that does not parse — a header cut short, a hop-by-hop
//! header that is not the first, more extension headers than
//! `MAX_EXT_HDRS`, a chain longer than the payload — is `None`: the caller
//! drops it as malformed (fail closed: the stack would act on what the
//! programs could not check).

use aya_ebpf::{helpers::bpf_skb_load_bytes, programs::TcContext};

use crate::parse::{self, Frag, Pkt, ETH_LEN, IPPROTO_TCP, IPPROTO_UDP};

pub const IPV6_HDR_LEN: usize = 40;
/// Offset of the hop limit inside the IPv6 header.
pub const IP6_HOP_LIMIT_OFF: usize = 7;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// Extension headers walked before giving up. Real packets carry one or two
/// (hop-by-hop with a router alert, a fragment header, destination options);
/// every header is verified on its own path, so the bound stays small.
pub const MAX_EXT_HDRS: usize = 4;

/// Bytes made linear when the packet has extension headers (rare): the
/// fixed header, a few extension headers and a TCP header.
const PULL_EXT: usize = ETH_LEN + IPV6_HDR_LEN + 96 + 20;

/// What the programs need to know about an IPv6 packet.
#[derive(Clone, Copy)]
pub struct Ipv6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub hop_limit: u8,
    /// The upper-layer protocol (the last "next header" of the chain).
    pub proto: u8,
    /// Offset of the L4 header from the start of the frame.
    pub l4_off: usize,
    /// The payload length field (extension headers included).
    pub payload_len: u16,
    pub frag: Frag,
    /// A routing header with segments left: the stack would act on it.
    pub source_route: bool,
    /// Whether the first "next header" is the upper-layer protocol.
    pub no_ext: bool,
    /// Ports in host order (ICMPv6 echo: `sport` is the identifier).
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: u8,
    /// Whether the L4 header was present in full (never for `Frag::Later`).
    pub has_l4: bool,
}

impl Ipv6 {
    /// Nothing parsed yet (see `parse_ipv6`).
    pub const EMPTY: Ipv6 = Ipv6 {
        src: [0; 16],
        dst: [0; 16],
        hop_limit: 0,
        proto: 0,
        l4_off: 0,
        payload_len: 0,
        frag: Frag::No,
        source_route: false,
        no_ext: true,
        sport: 0,
        dport: 0,
        icmp_type: 0,
        has_l4: false,
    };

    /// A whole (unfragmented) TCP or UDP packet: it has ports to match
    /// policy on.
    #[inline(always)]
    pub fn has_ports(&self) -> bool {
        (self.proto == IPPROTO_TCP || self.proto == IPPROTO_UDP)
            && self.has_l4
            && self.frag == Frag::No
    }
}

#[inline(always)]
fn is_ext(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH | IPPROTO_DSTOPTS
    )
}

/// Make the fixed header and the L4 header linear: only the bytes this
/// packet has, and only when they are not linear already (see
/// `parse::pull`).
#[inline(always)]
pub fn pull(ctx: &TcContext) {
    let want = match parse::read::<[u8; 8]>(ctx, ETH_LEN) {
        Some(h) => match h[6] {
            IPPROTO_TCP => ETH_LEN + IPV6_HDR_LEN + 20,
            IPPROTO_UDP => ETH_LEN + IPV6_HDR_LEN + 8,
            // Neighbour solicitations with their link-layer address option.
            IPPROTO_ICMPV6 => ETH_LEN + IPV6_HDR_LEN + 32,
            _ => PULL_EXT,
        },
        None => PULL_EXT,
    };
    parse::pull(ctx, want);
}

/// Bounds-checked reference to `N` bytes at `off` (read in place: copying
/// them out costs a stack slot per byte).
#[inline(always)]
fn bytes<const N: usize>(pkt: &Pkt, off: usize) -> Option<&[u8; N]> {
    let p = pkt.ptr::<[u8; N]>(off)?;
    // SAFETY: `ptr` checked that the bytes lie inside the packet; they are
    // only read, before anything changes the packet.
    Some(unsafe { &*p })
}

/// Copy the 16 bytes at `off` (an address) into `dst` with the helper.
#[inline(always)]
pub fn load16(ctx: &TcContext, off: usize, dst: &mut [u8; 16]) -> Option<()> {
    // SAFETY: the helper writes exactly 16 bytes into `dst`, a 16-byte
    // buffer, or fails (bytes beyond the packet) leaving it unspecified.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            off as u32,
            dst.as_mut_ptr().cast(),
            16,
        )
    };
    if rc < 0 {
        return None;
    }
    Some(())
}

/// Parse the IPv6 header at `l3`, its extension headers and, when present,
/// the L4 header, into `p` (filled in place: returning the value would
/// copy it through the stack).
#[inline(always)]
pub fn parse_ipv6(ctx: &TcContext, l3: usize, p: &mut Ipv6) -> Option<()> {
    let pkt = &Pkt::tc(ctx);
    let h = bytes::<IPV6_HDR_LEN>(pkt, l3)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let payload_len = u16::from_be_bytes([h[4], h[5]]);
    let first = h[6];
    let mut next = first;
    let mut off = l3 + IPV6_HDR_LEN;
    let mut frag = Frag::No;
    let mut source_route = false;
    let mut i = 0;
    while is_ext(next) {
        if i == MAX_EXT_HDRS {
            return None;
        }
        // Every extension header is at least 8 bytes; the first two are
        // the next header and the length.
        let e = bytes::<8>(pkt, off)?;
        if next == IPPROTO_HOPOPTS && i != 0 {
            // Only allowed right after the fixed header (RFC 8200 4.1).
            return None;
        }
        let len = match next {
            IPPROTO_FRAGMENT => {
                // Offset (13 bits) and the M flag.
                if e[2] != 0 || e[3] & 0xf8 != 0 {
                    frag = Frag::Later;
                } else if e[3] & 1 != 0 {
                    frag = Frag::First;
                }
                8
            }
            IPPROTO_AH => (e[1] as usize + 2) * 4,
            _ => {
                if next == IPPROTO_ROUTING && e[3] != 0 {
                    source_route = true;
                }
                (e[1] as usize + 1) * 8
            }
        };
        next = e[0];
        off += len;
        i += 1;
        if frag == Frag::Later {
            // No L4 header in a later fragment; what follows is payload.
            break;
        }
    }
    // The chain must fit in the payload (a jumbogram's length is 0).
    if payload_len != 0 && off > l3 + IPV6_HDR_LEN + payload_len as usize {
        return None;
    }
    if pkt.start + off > pkt.end {
        return None;
    }
    p.hop_limit = h[7];
    p.proto = next;
    p.l4_off = off;
    p.payload_len = payload_len;
    p.frag = frag;
    p.source_route = source_route;
    p.no_ext = !is_ext(first);
    // Copied by the helper: copying them byte by byte costs a stack slot
    // per byte.
    load16(ctx, l3 + 8, &mut p.src)?;
    load16(ctx, l3 + 24, &mut p.dst)?;
    if frag == Frag::Later {
        return Some(());
    }
    match next {
        IPPROTO_TCP => {
            let t = bytes::<20>(pkt, off)?;
            p.sport = u16::from_be_bytes([t[0], t[1]]);
            p.dport = u16::from_be_bytes([t[2], t[3]]);
            p.has_l4 = true;
        }
        IPPROTO_UDP => {
            let u = bytes::<8>(pkt, off)?;
            p.sport = u16::from_be_bytes([u[0], u[1]]);
            p.dport = u16::from_be_bytes([u[2], u[3]]);
            p.has_l4 = true;
        }
        IPPROTO_ICMPV6 => {
            let c = bytes::<8>(pkt, off)?;
            p.icmp_type = c[0];
            if c[0] == ICMPV6_ECHO_REQUEST || c[0] == ICMPV6_ECHO_REPLY {
                p.sport = u16::from_be_bytes([c[4], c[5]]);
            }
            p.has_l4 = true;
        }
        _ => {}
    }
    Some(())
}

/// fe80::/10.
#[inline(always)]
pub fn is_link_local(ip: &[u8; 16]) -> bool {
    ip[0] == 0xfe && ip[1] & 0xc0 == 0x80
}

/// ff00::/8.
#[inline(always)]
pub fn is_multicast(ip: &[u8; 16]) -> bool {
    ip[0] == 0xff
}

/// Multicast of link-local scope (ff02::/16 and ff12::/16 ...): never
/// forwarded by the stack.
#[inline(always)]
pub fn is_link_local_multicast(ip: &[u8; 16]) -> bool {
    ip[0] == 0xff && ip[1] & 0x0f == 2
}

#[inline(always)]
pub fn is_unspecified(ip: &[u8; 16]) -> bool {
    let (hi, lo) = halves(ip);
    hi == 0 && lo == 0
}

/// Destinations no container packet may reach, whatever the policy: the
/// loopback `::1`, the unspecified `::` and IPv4-mapped `::ffff:0:0/96`
/// (the stack would treat those as IPv4 of the host).
#[inline(always)]
pub fn is_reserved_destination(ip: &[u8; 16]) -> bool {
    let (hi, lo) = halves(ip);
    hi == 0 && (lo <= 1 || lo >> 32 == 0xffff)
}

/// The address as two big-endian halves.
#[inline(always)]
pub fn halves(ip: &[u8; 16]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&ip[..8]);
    b.copy_from_slice(&ip[8..]);
    (u64::from_be_bytes(a), u64::from_be_bytes(b))
}

#[inline(always)]
fn mask64(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else if bits >= 64 {
        u64::MAX
    } else {
        u64::MAX << (64 - bits)
    }
}

/// Whether `ip` lies in `subnet`/`prefix_len`.
#[inline(always)]
pub fn in_subnet6(ip: &[u8; 16], subnet: &[u8; 16], prefix_len: u32) -> bool {
    let (ih, il) = halves(ip);
    let (sh, sl) = halves(subnet);
    let mh = mask64(prefix_len);
    let ml = mask64(prefix_len.saturating_sub(64));
    ih & mh == sh & mh && il & ml == sl & ml
}

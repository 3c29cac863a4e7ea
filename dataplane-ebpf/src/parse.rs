//! Packet parsing with explicit bounds checks.
//!
//! Parsers copy what they need out of the packet into plain values, so that
//! callers can rewrite the packet afterwards (which invalidates packet
//! pointers) without re-validating anything.

use aya_ebpf::programs::{TcContext, XdpContext};
use core::mem::size_of;
use dataplane_common::FlowKey;

pub const ETH_LEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// Offsets inside the IPv4 header.
pub const IP_TTL_OFF: usize = 8;
pub const IP_CSUM_OFF: usize = 10;
pub const IP_SRC_OFF: usize = 12;
pub const IP_DST_OFF: usize = 16;

/// Pulled when the IPv4 header itself is not in the linear area (never
/// seen from veths or NICs: they keep at least the headers linear):
/// Ethernet + maximal IPv4 header + TCP header without options.
const PULL_MAX: usize = ETH_LEN + 60 + 20;

/// The packet as a bounded byte range: TC and XDP programs parse alike.
#[derive(Clone, Copy)]
pub struct Pkt {
    pub start: usize,
    pub end: usize,
}

impl Pkt {
    #[inline(always)]
    pub fn tc(ctx: &TcContext) -> Pkt {
        Pkt {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    #[inline(always)]
    pub fn xdp(ctx: &XdpContext) -> Pkt {
        Pkt {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// Bounds-checked pointer to a `T` at `off` bytes into the packet.
    #[inline(always)]
    pub fn ptr<T>(&self, off: usize) -> Option<*mut T> {
        if self.start + off + size_of::<T>() > self.end {
            return None;
        }
        Some((self.start + off) as *mut T)
    }

    #[inline(always)]
    pub fn read<T: Copy>(&self, off: usize) -> Option<T> {
        // SAFETY: `ptr` checked that the `T` lies inside the packet; the read is unaligned.
        self.ptr::<T>(off).map(|p| unsafe { p.read_unaligned() })
    }
}

#[inline(always)]
pub fn read<T: Copy>(ctx: &TcContext, off: usize) -> Option<T> {
    Pkt::tc(ctx).read(off)
}

/// Make sure the first `want` bytes (or the whole packet, if shorter) are
/// in the linear part of the skb. Nothing is done when they already are:
/// `bpf_skb_pull_data` makes the skb writable, and on a clone (every TCP
/// segment the stack sends keeps its original for retransmission) pulling
/// payload bytes copies the skb's head.
#[inline(always)]
pub fn pull(ctx: &TcContext, want: usize) {
    let linear = ctx.data_end() - ctx.data();
    if linear >= want {
        return;
    }
    let len = ctx.len() as usize;
    let want = if len < want { len } else { want };
    if linear < want {
        let _ = ctx.pull_data(want as u32);
    }
}

/// Length of the L4 header the parser reads for `proto` (0: none).
#[inline(always)]
fn l4_hdr_len(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP | IPPROTO_ICMP => 8,
        _ => 0,
    }
}

/// Make the IPv4 header at `ETH_LEN` (options included) and the L4 header
/// `parse_ipv4` reads linear: only the bytes this packet has (a GSO TCP skb
/// has exactly Ethernet + IPv4 + TCP with options linear, 66 bytes with
/// timestamps), and only when they are not linear already.
#[inline(always)]
pub fn pull_ipv4(ctx: &TcContext) {
    let want = match read::<[u8; 10]>(ctx, ETH_LEN) {
        Some(h) => ETH_LEN + ((h[0] & 0x0f) as usize) * 4 + l4_hdr_len(h[9]),
        None => PULL_MAX,
    };
    pull(ctx, want);
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// Not fragmented.
    No,
    /// First fragment: carries the L4 header.
    First,
    /// Later fragment: no L4 header, no ports.
    Later,
}

/// What the programs need to know about an IPv4 packet.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub ttl: u8,
    /// The identification field (host order): with the addresses and the
    /// protocol, what ties a datagram's fragments together.
    pub id: u16,
    pub frag: Frag,
    /// The Don't Fragment bit.
    pub dont_fragment: bool,
    /// Offset of the L4 header from the start of the frame.
    pub l4_off: usize,
    /// Ports in host order (ICMP echo: `sport` is the identifier).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags, ICMP type.
    pub tcp_flags: u8,
    pub icmp_type: u8,
    /// Whether the L4 header was present in full (always false for `Frag::Later`).
    pub has_l4: bool,
}

impl Ipv4 {
    /// A whole (unfragmented) TCP or UDP packet: it has ports to translate
    /// or to match policy on.
    #[inline(always)]
    pub fn has_ports(&self) -> bool {
        (self.proto == IPPROTO_TCP || self.proto == IPPROTO_UDP)
            && self.has_l4
            && self.frag == Frag::No
    }

    /// A TCP or UDP packet whose ports are present: a whole packet or the
    /// first fragment of a datagram (translated like a whole one, and the
    /// translation remembered for the later fragments, see `frag`).
    #[inline(always)]
    pub fn ports_present(&self) -> bool {
        (self.proto == IPPROTO_TCP || self.proto == IPPROTO_UDP) && self.has_l4
    }

    /// The packet's flow as it is on the wire.
    #[inline(always)]
    pub fn flow(&self) -> FlowKey {
        FlowKey::new(self.src, self.dst, self.sport, self.dport, self.proto)
    }
}

pub enum ParseError {
    /// A header is shorter than it claims.
    Truncated,
}

/// Parse the IPv4 header at `l3_off` and, when present, the L4 header.
#[inline(always)]
pub fn parse_ipv4(ctx: &TcContext, l3_off: usize) -> Result<Ipv4, ParseError> {
    parse_ipv4_pkt(&Pkt::tc(ctx), l3_off)
}

#[inline(always)]
pub fn parse_ipv4_pkt(pkt: &Pkt, l3_off: usize) -> Result<Ipv4, ParseError> {
    let vihl: u8 = pkt.read(l3_off).ok_or(ParseError::Truncated)?;
    // The fixed part of the header must be there.
    let hdr: [u8; 20] = pkt.read(l3_off).ok_or(ParseError::Truncated)?;
    if vihl >> 4 != 4 {
        return Err(ParseError::Truncated);
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(ParseError::Truncated);
    }
    let tot_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if tot_len < ihl {
        return Err(ParseError::Truncated);
    }
    // Options, if any, must be inside the packet too.
    if pkt.start + l3_off + ihl > pkt.end {
        return Err(ParseError::Truncated);
    }
    let frag_word = u16::from_be_bytes([hdr[6], hdr[7]]);
    let more_frags = frag_word & 0x2000 != 0;
    let frag_off = frag_word & 0x1fff;
    let frag = if frag_off != 0 {
        Frag::Later
    } else if more_frags {
        Frag::First
    } else {
        Frag::No
    };
    let mut p = Ipv4 {
        src: [hdr[12], hdr[13], hdr[14], hdr[15]],
        dst: [hdr[16], hdr[17], hdr[18], hdr[19]],
        proto: hdr[9],
        ttl: hdr[8],
        id: u16::from_be_bytes([hdr[4], hdr[5]]),
        frag,
        dont_fragment: frag_word & 0x4000 != 0,
        l4_off: l3_off + ihl,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: 0,
        has_l4: false,
    };
    if frag == Frag::Later {
        return Ok(p);
    }
    let l4 = p.l4_off;
    match p.proto {
        IPPROTO_TCP => {
            let h: [u8; 20] = pkt.read(l4).ok_or(ParseError::Truncated)?;
            p.sport = u16::from_be_bytes([h[0], h[1]]);
            p.dport = u16::from_be_bytes([h[2], h[3]]);
            p.tcp_flags = h[13];
            p.has_l4 = true;
        }
        IPPROTO_UDP => {
            let h: [u8; 8] = pkt.read(l4).ok_or(ParseError::Truncated)?;
            p.sport = u16::from_be_bytes([h[0], h[1]]);
            p.dport = u16::from_be_bytes([h[2], h[3]]);
            p.has_l4 = true;
        }
        IPPROTO_ICMP => {
            let h: [u8; 8] = pkt.read(l4).ok_or(ParseError::Truncated)?;
            p.icmp_type = h[0];
            if h[0] == ICMP_ECHO_REQUEST || h[0] == ICMP_ECHO_REPLY {
                p.sport = u16::from_be_bytes([h[4], h[5]]);
            }
            p.has_l4 = true;
        }
        _ => {}
    }
    Ok(p)
}

/// Offset of the L4 checksum field from the L4 header, for the protocols the
/// datapath rewrites.
#[inline(always)]
pub fn l4_csum_off(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => 2, // ICMP
    }
}

/// 802.1Q or 802.1ad: the kernel strips such a tag (VLAN 0 is a priority
/// tag, handled as untagged) and processes what is inside.
#[inline(always)]
pub fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// 224.0.0.0/4 or the limited broadcast 255.255.255.255. Class E
/// (240.0.0.0/4) is neither: the kernel routes it like unicast.
#[inline(always)]
pub fn is_multicast_or_broadcast(ip: [u8; 4]) -> bool {
    ip[0] & 0xf0 == 224 || ip == [255, 255, 255, 255]
}

/// Destinations no container packet may reach, whatever the policy:
/// loopback (127.0.0.0/8: a port published on 127.0.0.1 is for the host's
/// own sockets), "this network" (0.0.0.0/8) and class E (240.0.0.0/4, but not
/// the limited broadcast).
#[inline(always)]
pub fn is_reserved_destination(ip: [u8; 4]) -> bool {
    ip[0] == 127 || ip[0] == 0 || (ip[0] & 0xf0 == 240 && ip != [255, 255, 255, 255])
}

const IPOPT_END: u8 = 0;
const IPOPT_NOOP: u8 = 1;
const IPOPT_LSRR: u8 = 0x83;
const IPOPT_SSRR: u8 = 0x89;
/// IPv4 options are at most 40 bytes.
const IPOPT_MAX: usize = 40;
/// Options (NOPs included) looked at: every path through the scan is
/// verified separately, so the bound stays small. Real option lists are one
/// or two options and some padding.
const IPOPT_SCAN: usize = 8;

/// Whether the IPv4 header at `l3_off` (of `ihl` bytes, already checked to
/// be inside the packet) carries a loose or strict source route option.
/// A malformed option list, or one longer than `IPOPT_SCAN` options, counts
/// as one: fail closed (the stack would reject a malformed one anyway).
#[inline(always)]
pub fn has_source_route(pkt: &Pkt, l3_off: usize, ihl: usize) -> bool {
    let mut i = 20usize;
    for _ in 0..IPOPT_SCAN {
        if i >= ihl || i >= 20 + IPOPT_MAX {
            return false;
        }
        let Some(t) = pkt.read::<u8>(l3_off + i) else {
            return true;
        };
        match t {
            IPOPT_END => return false,
            IPOPT_NOOP => i += 1,
            IPOPT_LSRR | IPOPT_SSRR => return true,
            _ => {
                let Some(len) = pkt.read::<u8>(l3_off + i + 1) else {
                    return true;
                };
                if len < 2 {
                    return true;
                }
                i += len as usize;
            }
        }
    }
    i < ihl
}

#[inline(always)]
pub fn is_loopback(ip: [u8; 4]) -> bool {
    ip[0] == 127
}

//! Hand-written IPv6 packet builders (fixed header, extension headers, TCP,
//! UDP, ICMPv6, neighbour discovery) and a view for assertions; checksums
//! with the independent RFC 1071 routine of `pkt`.

use super::pkt::{eth, inet_csum, ETH_LEN, ETH_P_IPV6, PROTO_TCP, PROTO_UDP};

pub const PROTO_HOPOPTS: u8 = 0;
pub const PROTO_ROUTING: u8 = 43;
pub const PROTO_FRAGMENT: u8 = 44;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_DSTOPTS: u8 = 60;

pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_MLD2_REPORT: u8 = 143;
pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
pub const ICMPV6_ROUTER_ADVERT: u8 = 134;
pub const ICMPV6_REDIRECT: u8 = 137;
pub const ICMPV6_NEIGH_SOLICIT: u8 = 135;
pub const ICMPV6_NEIGH_ADVERT: u8 = 136;

pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

pub const IP6_HDR_LEN: usize = 40;

/// `a:b:c:d:e:f:g:h` from eight groups.
pub const fn ip6(g: [u16; 8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    let mut i = 0;
    while i < 8 {
        let b = g[i].to_be_bytes();
        a[2 * i] = b[0];
        a[2 * i + 1] = b[1];
        i += 1;
    }
    a
}

pub fn ip6_str(a: [u8; 16]) -> String {
    std::net::Ipv6Addr::from(a).to_string()
}

/// The solicited-node multicast address of `target` (ff02::1:ffXX:XXXX).
pub fn solicited_node(target: [u8; 16]) -> [u8; 16] {
    let mut a = ip6([0xff02, 0, 0, 0, 0, 1, 0xff00, 0]);
    a[13..].copy_from_slice(&target[13..]);
    a
}

/// Its multicast MAC (33:33 and the address's last four bytes).
pub fn multicast_mac(ip: [u8; 16]) -> [u8; 6] {
    [0x33, 0x33, ip[12], ip[13], ip[14], ip[15]]
}

/// Checksum of an upper-layer message over the IPv6 pseudo-header
/// (checksum field included as it is).
pub fn l4_csum6(src: [u8; 16], dst: [u8; 16], proto: u8, msg: &[u8]) -> u16 {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    inet_csum(&[&p, msg])
}

/// An IPv6 header with `next` and `hop_limit`, followed by `payload`
/// (extension headers included); `payload_len` overrides the computed one.
pub fn ipv6(
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    hop_limit: u8,
    payload: &[u8],
    payload_len: Option<u16>,
) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&payload_len.unwrap_or(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(hop_limit);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// An options extension header (hop-by-hop or destination options) of
/// `units` 8-byte units, padded with PadN, followed by `rest`.
pub fn opts_hdr(next: u8, units: u8, rest: &[u8]) -> Vec<u8> {
    let len = usize::from(units) * 8;
    let mut h = vec![next, units - 1, 1, (len - 4) as u8];
    h.resize(len, 0);
    h.extend_from_slice(rest);
    h
}

/// A routing header (type 4, segment routing) with `segments_left` and one
/// segment, followed by `rest`.
pub fn routing_hdr(next: u8, segments_left: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 2, 4, segments_left, 0, 0, 0, 0];
    h.extend_from_slice(&ip6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99]));
    h.extend_from_slice(rest);
    h
}

/// A fragment header (offset in 8-byte units, more-fragments flag).
pub fn frag_hdr(next: u8, offset: u16, more: bool, rest: &[u8]) -> Vec<u8> {
    let word = (offset << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&word.to_be_bytes());
    h.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    h.extend_from_slice(rest);
    h
}

/// A TCP segment (20-byte header) with a valid IPv6 checksum.
pub fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut s = vec![0u8; 20];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..8].copy_from_slice(&7u32.to_be_bytes());
    s[12] = 5 << 4;
    s[13] = flags;
    s[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let c = l4_csum6(src, dst, PROTO_TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

/// A UDP datagram with a valid IPv6 checksum.
pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; 8];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    let c = l4_csum6(src, dst, PROTO_UDP, &s);
    s[6..8].copy_from_slice(&c.to_be_bytes());
    s
}

/// An ICMPv6 message of `typ`/`code` with `body` after the checksum, with a
/// valid checksum.
pub fn icmp6(src: [u8; 16], dst: [u8; 16], typ: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(body);
    let c = l4_csum6(src, dst, PROTO_ICMPV6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A whole frame: Ethernet, IPv6 (hop limit 64), `next` and its payload.
pub fn frame6(
    dmac: [u8; 6],
    smac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    eth(
        dmac,
        smac,
        ETH_P_IPV6,
        &ipv6(src, dst, next, 64, payload, None),
    )
}

/// A TCP SYN frame.
pub fn tcp_frame6(
    dmac: [u8; 6],
    smac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let t = tcp6(src, dst, sport, dport, super::pkt::TCP_SYN);
    frame6(dmac, smac, src, dst, PROTO_TCP, &t)
}

/// A neighbour solicitation for `target` from `src` (`::` for duplicate
/// address detection, which carries no source link-layer option), to the
/// target's solicited-node address, hop limit 255.
pub fn neighbour_solicit(smac: [u8; 6], src: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let dst = solicited_node(target);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&target);
    if src != [0; 16] {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&smac);
    }
    let m = icmp6(src, dst, ICMPV6_NEIGH_SOLICIT, 0, &body);
    eth(
        multicast_mac(dst),
        smac,
        ETH_P_IPV6,
        &ipv6(src, dst, PROTO_ICMPV6, 255, &m, None),
    )
}

/// Read-only view of an Ethernet/IPv6 frame, for assertions.
pub struct View6<'a>(pub &'a [u8]);

impl View6<'_> {
    pub fn dst_mac(&self) -> [u8; 6] {
        self.0[0..6].try_into().unwrap()
    }
    pub fn src_mac(&self) -> [u8; 6] {
        self.0[6..12].try_into().unwrap()
    }
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.0[12], self.0[13]])
    }
    pub fn payload_len(&self) -> usize {
        usize::from(u16::from_be_bytes([
            self.0[ETH_LEN + 4],
            self.0[ETH_LEN + 5],
        ]))
    }
    pub fn next_header(&self) -> u8 {
        self.0[ETH_LEN + 6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.0[ETH_LEN + 7]
    }
    pub fn src(&self) -> [u8; 16] {
        self.0[ETH_LEN + 8..ETH_LEN + 24].try_into().unwrap()
    }
    pub fn dst(&self) -> [u8; 16] {
        self.0[ETH_LEN + 24..ETH_LEN + 40].try_into().unwrap()
    }
    /// What follows the fixed header, bounded by the payload length.
    pub fn payload(&self) -> &[u8] {
        let start = ETH_LEN + IP6_HDR_LEN;
        &self.0[start..start + self.payload_len()]
    }
}

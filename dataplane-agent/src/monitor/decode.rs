//! Decoding of the programs' events: the packet bytes an event carries
//! (Ethernet, IPv4, the L4 ports) into a tuple, and the event's codes into
//! words.

use std::net::Ipv4Addr;

use dataplane_common::{
    DropReason, MonitorEvent, MON_AT_FROM_CONTAINER, MON_AT_FROM_OVERLAY, MON_AT_FROM_UPLINK,
    MON_AT_TO_CONTAINER, MON_AT_XDP_UPLINK, MON_CAPTURE, MON_EVF_REDIRECTED, MON_EV_DROP,
    MON_EV_TRACE,
};
use serde::{Deserialize, Serialize};

/// An IPv4 packet's addresses and ports (ICMP echo: the identifier as
/// `sport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuple {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// The name of an IP protocol number.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => format!("proto-{n}"),
    }
}

/// The tuple of the first bytes of a packet, if it is IPv4 (untagged).
pub fn parse_tuple(b: &[u8]) -> Option<Tuple> {
    if b.len() < 34 || u16::from_be_bytes([b[12], b[13]]) != 0x0800 {
        return None;
    }
    let ip = &b[14..];
    if ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let proto = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let later_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
    let l4 = ip.get(ihl..).unwrap_or_default();
    let (sport, dport) = match proto {
        6 | 17 if !later_fragment && l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        1 if !later_fragment && l4.len() >= 6 && (l4[0] == 8 || l4[0] == 0) => {
            (u16::from_be_bytes([l4[4], l4[5]]), 0)
        }
        _ => (0, 0),
    };
    Some(Tuple {
        proto,
        src,
        dst,
        sport,
        dport,
    })
}

/// Where an event was made.
pub fn point_name(p: u8) -> &'static str {
    match p {
        MON_AT_FROM_CONTAINER => "from_container",
        MON_AT_TO_CONTAINER => "to_container",
        MON_AT_FROM_UPLINK => "from_uplink",
        MON_AT_XDP_UPLINK => "xdp_uplink",
        MON_AT_FROM_OVERLAY => "from_overlay",
        _ => "unknown",
    }
}

/// An event as the reader hands it to subscribers (before names).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Monotonic nanoseconds (CLOCK_MONOTONIC) of the event.
    pub ts_ns: u64,
    pub drop: bool,
    /// Drops: the reason's name; traces: what became of the packet.
    pub what: String,
    pub point: &'static str,
    pub ifindex: u32,
    pub len: u32,
    pub tuple: Option<Tuple>,
    /// Traces: the tuple before the program ran, when it differs.
    pub orig: Option<Tuple>,
}

/// Decode one ring buffer record; `None` for a record of another size or
/// an unknown kind.
pub fn decode(raw: &[u8]) -> Option<Decoded> {
    if raw.len() < std::mem::size_of::<MonitorEvent>() {
        return None;
    }
    // SAFETY: the record is at least a MonitorEvent long; MonitorEvent is
    // plain data (any bit pattern is valid); the read is unaligned.
    let ev: MonitorEvent = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
    let cap = |n: u32, b: &[u8; MON_CAPTURE]| b[..(n as usize).min(MON_CAPTURE)].to_vec();
    let tuple = parse_tuple(&cap(ev.caplen, &ev.packet));
    let (drop, what) = match ev.kind {
        MON_EV_DROP => {
            let reason = DropReason::ALL
                .get(ev.code as usize)
                .map_or_else(|| format!("reason-{}", ev.code), |r| r.name().to_string());
            (true, reason)
        }
        MON_EV_TRACE => (false, trace_action(ev.point, ev.code, ev.flags).to_string()),
        _ => return None,
    };
    let orig = if drop {
        None
    } else {
        parse_tuple(&cap(ev.orig_caplen, &ev.orig)).filter(|o| Some(*o) != tuple)
    };
    Some(Decoded {
        ts_ns: ev.ts_ns,
        drop,
        what,
        point: point_name(ev.point),
        ifindex: ev.ifindex,
        len: ev.len,
        tuple,
        orig,
    })
}

fn trace_action(point: u8, code: u32, flags: u8) -> &'static str {
    if flags & MON_EVF_REDIRECTED != 0 {
        return "redirected";
    }
    match (point, code) {
        // XDP_PASS: on to TC (which delivers translated packets).
        (MON_AT_XDP_UPLINK, 2) => "passed",
        (MON_AT_XDP_UPLINK, 3) => "tx",
        // TC_ACT_OK: up the host's stack.
        (_, 0) => "to_stack",
        _ => "forwarded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(proto: u8, ihl_words: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 14];
        p[12] = 0x08;
        let mut ip = vec![0u8; usize::from(ihl_words) * 4];
        ip[0] = 0x40 | ihl_words;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[10, 1, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 2, 0, 3]);
        p.extend(ip);
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn tcp_tuple_with_ip_options() {
        let t = parse_tuple(&packet(6, 6, &[0x9c, 0x40, 0, 80])).unwrap();
        assert_eq!(t.src, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(t.dst, Ipv4Addr::new(10, 2, 0, 3));
        assert_eq!((t.sport, t.dport, t.proto), (40000, 80, 6));
    }

    #[test]
    fn icmp_echo_has_its_identifier() {
        let t = parse_tuple(&packet(1, 5, &[8, 0, 0, 0, 0x12, 0x34])).unwrap();
        assert_eq!((t.sport, t.dport), (0x1234, 0));
    }

    #[test]
    fn short_or_non_ipv4_is_none() {
        assert!(parse_tuple(&[0u8; 20]).is_none());
        let mut arp = packet(6, 5, &[]);
        arp[13] = 0x06;
        assert!(parse_tuple(&arp).is_none());
    }
}

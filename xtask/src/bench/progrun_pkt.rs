//! Frames for the BPF_PROG_TEST_RUN micro-benchmark: Ethernet + IPv4 (no
//! options) + UDP or TCP with valid checksums, and a reader for the few
//! fields the benchmark checks in the programs' output.

pub(super) const ETH_LEN: usize = 14;
pub(super) const PROTO_TCP: u8 = 6;
pub(super) const PROTO_UDP: u8 = 17;
const TCP_ACK: u8 = 0x10;

/// RFC 1071 ones' complement sum over `parts`, folded and inverted.
fn csum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in *p {
            match odd.take() {
                Some(hi) => sum += u64::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One L4 flow: addresses, ports, protocol.
#[derive(Clone, Copy, Debug)]
pub(super) struct Flow {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// An Ethernet frame `src_mac -> dst_mac` carrying `flow` with `payload`
/// bytes of zeros (TCP: an ACK segment without options).
pub(super) fn frame(dst_mac: [u8; 6], src_mac: [u8; 6], f: Flow, payload: usize) -> Vec<u8> {
    let data = vec![0u8; payload];
    let mut l4 = if f.proto == PROTO_TCP {
        let mut s = vec![0u8; 20];
        s[4..8].copy_from_slice(&1u32.to_be_bytes());
        s[8..12].copy_from_slice(&1u32.to_be_bytes());
        s[12] = 5 << 4;
        s[13] = TCP_ACK;
        s[14..16].copy_from_slice(&64240u16.to_be_bytes());
        s
    } else {
        let mut s = vec![0u8; 8];
        s[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        s
    };
    l4[0..2].copy_from_slice(&f.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&f.dport.to_be_bytes());
    l4.extend_from_slice(&data);
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&f.src);
    pseudo[4..8].copy_from_slice(&f.dst);
    pseudo[9] = f.proto;
    pseudo[10..12].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    let mut c = csum(&[&pseudo, &l4]);
    let off = if f.proto == PROTO_TCP { 16 } else { 6 };
    if c == 0 && f.proto == PROTO_UDP {
        c = 0xffff;
    }
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());

    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = f.proto;
    ip[12..16].copy_from_slice(&f.src);
    ip[16..20].copy_from_slice(&f.dst);
    let c = csum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());

    let mut v = Vec::with_capacity(ETH_LEN + ip.len() + l4.len());
    v.extend_from_slice(&dst_mac);
    v.extend_from_slice(&src_mac);
    v.extend_from_slice(&0x0800u16.to_be_bytes());
    v.extend_from_slice(&ip);
    v.extend_from_slice(&l4);
    v
}

/// The fields of an output frame the benchmark checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    pub dst_mac: [u8; 6],
    pub flow: (([u8; 4], u16), ([u8; 4], u16)),
}

/// Reads an Ethernet/IPv4 (no options)/UDP-or-TCP frame.
pub(super) fn seen(f: &[u8]) -> Option<Seen> {
    if f.len() < ETH_LEN + 24 || f[ETH_LEN] != 0x45 {
        return None;
    }
    let ip = &f[ETH_LEN..];
    let a = |o: usize| [ip[o], ip[o + 1], ip[o + 2], ip[o + 3]];
    let p = |o: usize| u16::from_be_bytes([ip[o], ip[o + 1]]);
    Some(Seen {
        dst_mac: f[0..6].try_into().ok()?,
        flow: ((a(12), p(20)), (a(16), p(22))),
    })
}

/// Whether every checksum of the IPv4 header and the UDP/TCP segment is
/// valid (a zero UDP checksum means none).
pub(super) fn checksums_ok(f: &[u8]) -> bool {
    if f.len() < ETH_LEN + 20 {
        return false;
    }
    let ip = &f[ETH_LEN..];
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if tot < 20 || tot > ip.len() || csum(&[&ip[..20]]) != 0 {
        return false;
    }
    let l4 = &ip[20..tot];
    if ip[9] == PROTO_UDP && l4.len() >= 8 && l4[6..8] == [0, 0] {
        return true;
    }
    let mut pseudo = [0u8; 12];
    pseudo[0..8].copy_from_slice(&ip[12..20]);
    pseudo[9] = ip[9];
    pseudo[10..12].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    csum(&[&pseudo, l4]) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_valid_checksums_and_read_back() {
        let f = Flow {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            sport: 1234,
            dport: 80,
            proto: PROTO_UDP,
        };
        let v = frame([2; 6], [4; 6], f, 22);
        assert_eq!(v.len(), 64);
        assert!(checksums_ok(&v));
        let s = seen(&v).unwrap();
        assert_eq!(s.dst_mac, [2; 6]);
        assert_eq!(s.flow, (([10, 0, 0, 1], 1234), ([10, 0, 0, 2], 80)));
        let t = frame(
            [2; 6],
            [4; 6],
            Flow {
                proto: PROTO_TCP,
                ..f
            },
            1000,
        );
        assert!(checksums_ok(&t));
        let mut bad = t.clone();
        bad[ETH_LEN + 30] ^= 1;
        assert!(!checksums_ok(&bad));
        // RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            csum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
    }
}

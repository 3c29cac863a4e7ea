//! Hand-written packet builders and an independent RFC 1071 checksum, used to
//! feed the eBPF programs and to check what they produce.

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_GRE: u8 = 47;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// IPv4 flags/fragment-offset word: more fragments.
pub const IP_MF: u16 = 0x2000;
/// IPv4 flags/fragment-offset word: don't fragment.
pub const IP_DF: u16 = 0x4000;

pub const ETH_LEN: usize = 14;

/// RFC 1071 Internet checksum: the ones' complement of the ones' complement
/// sum of 16-bit big-endian words (an odd trailing byte is padded with zero).
pub fn inet_csum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut carry_byte: Option<u8> = None;
    for chunk in chunks {
        for &b in *chunk {
            match carry_byte.take() {
                None => carry_byte = Some(b),
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
            }
            // Fold early so the sum never overflows.
            if sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
        }
    }
    if let Some(hi) = carry_byte {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src);
    p[4..8].copy_from_slice(&dst);
    p[9] = proto;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// Checksum of a TCP/UDP segment (checksum field included as it is).
pub fn l4_csum(src: [u8; 4], dst: [u8; 4], proto: u8, seg: &[u8]) -> u16 {
    inet_csum(&[&pseudo_header(src, dst, proto, seg.len()), seg])
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ETH_LEN + payload.len());
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An IPv4 header description. `ihl`/`tot_len` override the computed values
/// (to build malformed headers); the checksum is always computed.
#[derive(Clone)]
pub struct Ip4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub ttl: u8,
    pub id: u16,
    pub frag: u16,
    pub options: Vec<u8>,
    pub ihl: Option<u8>,
    pub tot_len: Option<u16>,
}

impl Ip4 {
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> Ip4 {
        Ip4 {
            src,
            dst,
            proto,
            ttl: 64,
            id: 0x1234,
            frag: IP_DF,
            options: Vec::new(),
            ihl: None,
            tot_len: None,
        }
    }

    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Ip4 {
        self.ttl = ttl;
        self
    }

    #[must_use]
    pub fn frag(mut self, frag: u16) -> Ip4 {
        self.frag = frag;
        self
    }

    #[must_use]
    pub fn options(mut self, options: &[u8]) -> Ip4 {
        assert_eq!(options.len() % 4, 0);
        self.options = options.to_vec();
        self
    }

    #[must_use]
    pub fn src(mut self, src: [u8; 4]) -> Ip4 {
        self.src = src;
        self
    }

    /// Header followed by `payload`.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hlen = 20 + self.options.len();
        let ihl = self.ihl.unwrap_or((hlen / 4) as u8);
        let tot = self.tot_len.unwrap_or((hlen + payload.len()) as u16);
        let mut h = vec![0u8; hlen];
        h[0] = 0x40 | (ihl & 0x0f);
        h[2..4].copy_from_slice(&tot.to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        h[6..8].copy_from_slice(&self.frag.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src);
        h[16..20].copy_from_slice(&self.dst);
        h[20..].copy_from_slice(&self.options);
        let c = inet_csum(&[&h]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

/// A TCP segment (20-byte header, no options) with a valid checksum.
pub fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = vec![0u8; 20];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    if flags & TCP_ACK != 0 {
        s[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
    }
    s[12] = 5 << 4;
    s[13] = flags;
    s[14..16].copy_from_slice(&64240u16.to_be_bytes());
    s.extend_from_slice(payload);
    let c = l4_csum(src, dst, PROTO_TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

/// A UDP datagram; with `with_csum == false` the checksum field is 0 ("none").
pub fn udp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
    with_csum: bool,
) -> Vec<u8> {
    let mut s = vec![0u8; 8];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    if with_csum {
        let mut c = l4_csum(src, dst, PROTO_UDP, &s);
        if c == 0 {
            c = 0xffff;
        }
        s[6..8].copy_from_slice(&c.to_be_bytes());
    }
    s
}

/// An ICMP message of `typ`/`code` whose 4 "rest of header" bytes are
/// `id`/`seq` (echo) followed by `payload`.
pub fn icmp(typ: u8, code: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let c = inet_csum(&[&m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// Ethernet/IPv4 ARP body (28 bytes).
pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa);
    a
}

/// Read-only view of an Ethernet/IPv4 frame, for assertions.
pub struct View<'a>(pub &'a [u8]);

impl View<'_> {
    pub fn dst_mac(&self) -> [u8; 6] {
        self.0[0..6].try_into().unwrap()
    }
    pub fn src_mac(&self) -> [u8; 6] {
        self.0[6..12].try_into().unwrap()
    }
    pub fn ihl(&self) -> usize {
        usize::from(self.0[ETH_LEN] & 0x0f) * 4
    }
    pub fn ip_header(&self) -> &[u8] {
        &self.0[ETH_LEN..ETH_LEN + self.ihl()]
    }
    pub fn ttl(&self) -> u8 {
        self.0[ETH_LEN + 8]
    }
    pub fn ip_src(&self) -> [u8; 4] {
        self.0[ETH_LEN + 12..ETH_LEN + 16].try_into().unwrap()
    }
    pub fn ip_dst(&self) -> [u8; 4] {
        self.0[ETH_LEN + 16..ETH_LEN + 20].try_into().unwrap()
    }
    pub fn proto(&self) -> u8 {
        self.0[ETH_LEN + 9]
    }
    /// The L4 part, bounded by the IPv4 total length.
    pub fn l4(&self) -> &[u8] {
        let tot = usize::from(u16::from_be_bytes([
            self.0[ETH_LEN + 2],
            self.0[ETH_LEN + 3],
        ]));
        &self.0[ETH_LEN + self.ihl()..ETH_LEN + tot]
    }
    pub fn sport(&self) -> u16 {
        let l4 = self.l4();
        u16::from_be_bytes([l4[0], l4[1]])
    }
    pub fn dport(&self) -> u16 {
        let l4 = self.l4();
        u16::from_be_bytes([l4[2], l4[3]])
    }
    pub fn icmp_id(&self) -> u16 {
        let l4 = self.l4();
        u16::from_be_bytes([l4[4], l4[5]])
    }
    pub fn udp_csum_field(&self) -> u16 {
        let l4 = self.l4();
        u16::from_be_bytes([l4[6], l4[7]])
    }

    /// Every checksum the frame carries verifies (0 when summed over with
    /// the checksum field in place).
    pub fn assert_checksums(&self) {
        assert_eq!(
            inet_csum(&[self.ip_header()]),
            0,
            "IPv4 header checksum invalid: {:02x?}",
            self.ip_header()
        );
        let l4 = self.l4();
        match self.proto() {
            PROTO_TCP => assert_eq!(
                l4_csum(self.ip_src(), self.ip_dst(), PROTO_TCP, l4),
                0,
                "TCP checksum invalid"
            ),
            // A zero UDP checksum means "none".
            PROTO_UDP if self.udp_csum_field() != 0 => assert_eq!(
                l4_csum(self.ip_src(), self.ip_dst(), PROTO_UDP, l4),
                0,
                "UDP checksum invalid"
            ),
            PROTO_ICMP => assert_eq!(inet_csum(&[l4]), 0, "ICMP checksum invalid"),
            _ => {}
        }
    }
}

#[test]
fn checksum_routine_matches_rfc1071_example() {
    // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(inet_csum(&[&data]), !0xddf2);
    // Split across chunks at an odd boundary gives the same result.
    assert_eq!(inet_csum(&[&data[..3], &data[3..]]), !0xddf2);
    // A well-known IPv4 header (checksum 0xb861).
    let hdr = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(inet_csum(&[&hdr]), 0);
    let mut zeroed = hdr;
    zeroed[10] = 0;
    zeroed[11] = 0;
    assert_eq!(inet_csum(&[&zeroed]), 0xb861);
}

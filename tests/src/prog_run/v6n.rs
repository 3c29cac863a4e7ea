//! IPv6 north-south fixtures for BPF_PROG_TEST_RUN: IPv6 packet builders
//! (extension headers, fragments, ICMPv6 with its pseudo-header checksum),
//! a view of what the programs emit, and `V6n`, the IPv6 maps of a test's
//! `Env` with `dp_from_uplink6` loaded into its `DP_CALLS` slot (reached,
//! as in the agent, through the tail call of `dp_from_uplink`).

use aya::maps::{HashMap, MapData, ProgramArray};
use aya::programs::SchedClassifier;
use dataplane_common::{
    ip6_map_names, nat6_map_names, nat6_prog_names, CtEntry6, Endpoint6, Endpoint6Key,
    EndpointInfo, FlowKey6, FragEntry6, FragKey6, HostIf6, NatEntry6, PortKey6, PortTarget6,
    CALL_FROM_UPLINK6,
};

use super::harness::{Env, EpDef};
use super::pkt::{eth, inet_csum, ETH_LEN, ETH_P_IPV6};

pub const PROTO_ICMPV6: u8 = 58;
pub const NH_HOP: u8 = 0;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_DSTOPTS: u8 = 60;

/// The host's IPv6 address on the uplink.
pub const HOST6: [u8; 16] = addr6([0xfd00, 0x77, 0, 0, 0, 0, 0, 2]);
/// A client outside.
pub const CLIENT6: [u8; 16] = addr6([0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 7]);
/// IPv6 addresses of the fixture's endpoints E1 and E2.
pub const E1_6: [u8; 16] = addr6([0xfd00, 0x20, 0, 0, 0, 0, 0, 2]);
pub const E2_6: [u8; 16] = addr6([0xfd00, 0x20, 0, 0, 0, 0, 0, 3]);

pub const fn addr6(w: [u16; 8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    let mut i = 0;
    while i < 8 {
        a[2 * i] = (w[i] >> 8) as u8;
        a[2 * i + 1] = w[i] as u8;
        i += 1;
    }
    a
}

/// The ICMPv6/TCP/UDP checksum over the IPv6 pseudo-header and `seg`
/// (0 when `seg` carries a right checksum).
pub fn csum6(src: [u8; 16], dst: [u8; 16], proto: u8, seg: &[u8]) -> u16 {
    let mut p = [0u8; 40];
    p[..16].copy_from_slice(&src);
    p[16..32].copy_from_slice(&dst);
    p[32..36].copy_from_slice(&(seg.len() as u32).to_be_bytes());
    p[39] = proto;
    inet_csum(&[&p, seg])
}

/// An L4 segment with its checksum filled in at `csum_off`.
fn with_csum(
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    mut seg: Vec<u8>,
    csum_off: usize,
) -> Vec<u8> {
    seg[csum_off] = 0;
    seg[csum_off + 1] = 0;
    let c = csum6(src, dst, proto, &seg);
    seg[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
    seg
}

pub fn tcp6(
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = vec![0u8; 20];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..8].copy_from_slice(&1u32.to_be_bytes());
    s[12] = 5 << 4;
    s[13] = flags;
    s[14..16].copy_from_slice(&64240u16.to_be_bytes());
    s.extend_from_slice(payload);
    with_csum(src, dst, 6, s, 16)
}

pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; 8];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    with_csum(src, dst, 17, s, 6)
}

/// An ICMPv6 message (type, code, the 4 bytes after the checksum, body).
pub fn icmp6(
    src: [u8; 16],
    dst: [u8; 16],
    typ: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut s = vec![typ, code, 0, 0];
    s.extend_from_slice(&rest);
    s.extend_from_slice(body);
    with_csum(src, dst, PROTO_ICMPV6, s, 2)
}

/// An IPv6 header (+ extension headers `ext`, already chained: `nh` is the
/// first next-header value) followed by `l4`.
pub fn ip6(src: [u8; 16], dst: [u8; 16], nh: u8, hop_limit: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
    h.push(nh);
    h.push(hop_limit);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(ext);
    h.extend_from_slice(l4);
    h
}

/// An 8-byte options extension header (hop-by-hop or destination options)
/// whose next header is `next`: padding only.
pub fn ext_opts(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// A fragment header: next header, offset in bytes (a multiple of 8), more
/// fragments, identification.
pub fn ext_frag(next: u8, offset: usize, more: bool, id: u32) -> Vec<u8> {
    let word = ((offset / 8) as u16) << 3 | u16::from(more);
    let mut v = vec![next, 0];
    v.extend_from_slice(&word.to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v
}

/// An Ethernet frame carrying `ip` (from the next hop to the uplink).
pub fn frame6(ip: &[u8]) -> Vec<u8> {
    eth([2, 0xee, 0, 0, 0, 2], [2, 0xee, 0, 0, 0, 1], ETH_P_IPV6, ip)
}

/// A view of an emitted IPv6 frame without extension headers.
pub struct View6<'a>(pub &'a [u8]);

impl View6<'_> {
    fn ip(&self) -> &[u8] {
        &self.0[ETH_LEN..]
    }
    pub fn dst_mac(&self) -> [u8; 6] {
        self.0[0..6].try_into().unwrap()
    }
    pub fn hop_limit(&self) -> u8 {
        self.ip()[7]
    }
    pub fn next_header(&self) -> u8 {
        self.ip()[6]
    }
    pub fn src(&self) -> [u8; 16] {
        self.ip()[8..24].try_into().unwrap()
    }
    pub fn dst(&self) -> [u8; 16] {
        self.ip()[24..40].try_into().unwrap()
    }
    /// What follows the IPv6 header (and `ext` bytes of extension headers).
    pub fn l4(&self, ext: usize) -> &[u8] {
        &self.ip()[40 + ext..]
    }
    pub fn sport(&self, ext: usize) -> u16 {
        u16::from_be_bytes(self.l4(ext)[0..2].try_into().unwrap())
    }
    pub fn dport(&self, ext: usize) -> u16 {
        u16::from_be_bytes(self.l4(ext)[2..4].try_into().unwrap())
    }
    /// Assert the L4 checksum (final protocol `proto`) is right.
    pub fn assert_l4_csum(&self, proto: u8, ext: usize) {
        assert_eq!(
            csum6(self.src(), self.dst(), proto, self.l4(ext)),
            0,
            "L4 checksum of the emitted packet"
        );
    }
}

/// The IPv6 maps of a test `Env`, with `dp_from_uplink6` in `DP_CALLS`.
pub struct V6n {
    /// The endpoint maps, unless `ip6::setup6` took them first.
    pub endpoints6: Option<HashMap<MapData, Endpoint6Key, EndpointInfo>>,
    pub if_endpoints6: Option<HashMap<MapData, u32, Endpoint6>>,
    pub ports6: HashMap<MapData, PortKey6, PortTarget6>,
    pub host_ips6: HashMap<MapData, Endpoint6Key, u32>,
    pub host_ifs6: HashMap<MapData, u32, HostIf6>,
    pub ct6: HashMap<MapData, FlowKey6, CtEntry6>,
    pub nat6_in: HashMap<MapData, FlowKey6, NatEntry6>,
    pub nat6_out: HashMap<MapData, FlowKey6, NatEntry6>,
    pub frags6: HashMap<MapData, FragKey6, FragEntry6>,
}

fn take<T>(env: &mut Env, name: &str) -> T
where
    T: TryFrom<aya::maps::Map>,
    <T as TryFrom<aya::maps::Map>>::Error: std::fmt::Debug,
{
    let m = env
        .ebpf_mut()
        .take_map(name)
        .unwrap_or_else(|| panic!("map {name} missing"));
    T::try_from(m).unwrap_or_else(|e| panic!("map {name}: {e:?}"))
}

fn maybe_take<T>(env: &mut Env, name: &str) -> Option<T>
where
    T: TryFrom<aya::maps::Map>,
    <T as TryFrom<aya::maps::Map>>::Error: std::fmt::Debug,
{
    let m = env.ebpf_mut().take_map(name)?;
    Some(T::try_from(m).unwrap_or_else(|e| panic!("map {name}: {e:?}")))
}

impl V6n {
    /// Load `dp_from_uplink6` into `DP_CALLS`, register the host's IPv6
    /// address on the uplink and E1, E2 as dual-stack endpoints (unless
    /// `ip6::setup6` registered the endpoints already: then the egress tests'
    /// addresses are `ip6::ip6_of`).
    pub fn new(env: &mut Env) -> V6n {
        let ebpf = env.ebpf_mut();
        let name = nat6_prog_names::FROM_UPLINK6;
        let prog: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        prog.load()
            .unwrap_or_else(|e| panic!("loading {name}: {e:?}"));
        let fd = prog.fd().unwrap().try_clone().unwrap();
        let mut calls =
            ProgramArray::try_from(ebpf.map_mut(ip6_map_names::CALLS).unwrap()).unwrap();
        calls.set(CALL_FROM_UPLINK6, &fd, 0).unwrap();
        let mut v = V6n {
            endpoints6: maybe_take(env, ip6_map_names::ENDPOINTS6),
            if_endpoints6: maybe_take(env, ip6_map_names::IF_ENDPOINTS6),
            ports6: take(env, nat6_map_names::PORTS6),
            host_ips6: take(env, nat6_map_names::HOST_IPS6),
            host_ifs6: take(env, nat6_map_names::HOST_IFS6),
            ct6: take(env, nat6_map_names::CT6),
            nat6_in: take(env, nat6_map_names::NAT6_IN),
            nat6_out: take(env, nat6_map_names::NAT6_OUT),
            frags6: take(env, nat6_map_names::FRAGS6),
        };
        v.host_ips6
            .insert(Endpoint6Key { ip: HOST6 }, 1, 0)
            .unwrap();
        let up = env.ifx(super::harness::UPLINK_IF);
        v.host_ifs6.insert(up, HostIf6 { ip: HOST6 }, 0).unwrap();
        if v.endpoints6.is_some() {
            v.add_endpoint6(env, super::harness::E1, E1_6);
            v.add_endpoint6(env, super::harness::E2, E2_6);
        }
        v
    }

    pub fn add_endpoint6(&mut self, env: &Env, e: EpDef, ip: [u8; 16]) {
        let info = env.info(e);
        let m = self
            .endpoints6
            .as_mut()
            .expect("endpoint maps taken by setup6");
        m.insert(Endpoint6Key { ip }, info, 0).unwrap();
        let m = self
            .if_endpoints6
            .as_mut()
            .expect("endpoint maps taken by setup6");
        m.insert(info.ifindex, Endpoint6 { ip }, 0).unwrap();
    }

    /// Publish `[addr]:port/proto` (`::` for every host address) to `target`.
    pub fn publish(&mut self, addr: [u8; 16], port: u16, proto: u8, target: [u8; 16], tport: u16) {
        let k = PortKey6 {
            ip: addr,
            port,
            proto,
            _pad: 0,
        };
        let t = PortTarget6 {
            ip: target,
            port: tport,
            _pad: 0,
        };
        self.ports6.insert(k, t, 0).unwrap();
    }

    pub fn ct6_entries(&self) -> Vec<(FlowKey6, CtEntry6)> {
        self.ct6.iter().map(Result::unwrap).collect()
    }
}

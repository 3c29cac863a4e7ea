//! The IPv6 side of the BPF_PROG_TEST_RUN fixture: `dp_from_container6`
//! loaded into `DP_CALLS` (so `dp_from_container` tail-calls it, as the
//! agent arranges), the dual-stack maps filled like the agent fills them,
//! and IPv6 addressing and routes in the test namespace.

use std::process::Command;

use aya::{
    maps::{HashMap, MapData, ProgramArray},
    programs::SchedClassifier,
};
use dataplane_common::{
    ip6_map_names, ip6_prog_names, Endpoint6, Endpoint6Key, EndpointInfo, Network6Info,
    CALL_FROM_CONTAINER6,
};

use super::{
    harness::{Env, EpDef, ENDPOINTS, NETWORKS, UPLINK_IF},
    pkt6::{ip6, ip6_str},
};

/// The uplink's IPv6 address and its next hop (a permanent neighbour).
pub const UPLINK_IP6: [u8; 16] = ip6([0xfd77, 0, 0, 0, 0, 0, 0, 2]);
pub const NEXT_HOP6: [u8; 16] = ip6([0xfd77, 0, 0, 0, 0, 0, 0, 1]);
/// Reached through the IPv6 default route.
pub const FAR6: [u8; 16] = ip6([0x2001, 0xdb8, 0xf0, 0, 0, 0, 0, 7]);
/// Blackholed.
pub const BLACKHOLED6: [u8; 16] = ip6([0x2001, 0xdb8, 0xdead, 0, 0, 0, 0, 9]);

/// Network `net`'s IPv6 subnet: fd00:0:0:<net>::/64.
pub fn subnet6(net: u32) -> [u8; 16] {
    ip6([0xfd00, 0, 0, net as u16, 0, 0, 0, 0])
}

/// Its gateway: ::1 of the subnet.
pub fn gateway6(net: u32) -> [u8; 16] {
    let mut a = subnet6(net);
    a[15] = 1;
    a
}

/// An endpoint's IPv6 address: its IPv4 host byte in its network's subnet.
pub fn ip6_of(e: EpDef) -> [u8; 16] {
    let mut a = subnet6(e.net);
    a[15] = e.ip[3];
    a
}

/// Its link-local address (EUI-64 from the MAC).
pub fn link_local(e: EpDef) -> [u8; 16] {
    let m = e.mac;
    let mut a = ip6([0xfe80, 0, 0, 0, 0, 0, 0, 0]);
    a[8..].copy_from_slice(&[m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    a
}

/// Handles on the IPv6 maps.
pub struct Maps6 {
    pub endpoints6: HashMap<MapData, Endpoint6Key, EndpointInfo>,
    pub if_endpoints6: HashMap<MapData, u32, Endpoint6>,
    pub networks6: HashMap<MapData, u32, Network6Info>,
}

impl Maps6 {
    /// Register `e`'s IPv6 address (both maps), with the IPv4 record `info`.
    pub fn add(&mut self, info: EndpointInfo, e: EpDef) {
        let ip = ip6_of(e);
        self.endpoints6
            .insert(Endpoint6Key { ip }, info, 0)
            .unwrap();
        self.if_endpoints6
            .insert(info.ifindex, Endpoint6 { ip }, 0)
            .unwrap();
    }

    pub fn set_net_flags(&mut self, net: u32, flags: u32) {
        let mut n = self.networks6.get(&net, 0).unwrap();
        n.flags = flags;
        self.networks6.insert(net, n, 0).unwrap();
    }
}

fn ip(args: &[&str]) {
    // The calling thread is inside the test namespace (see `with_env`); a
    // child process starts in the thread's namespace.
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Load `dp_from_container6` into `DP_CALLS`, fill the IPv6 maps for every
/// endpoint and network of the fixture (no masquerade: routed), and give
/// the namespace IPv6 routes: the uplink's address, a permanent next hop,
/// a default route and a blackhole.
pub fn setup6(env: &mut Env) -> Maps6 {
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").unwrap();
    let nh = ip6_str(NEXT_HOP6);
    let mac = super::harness::NEXT_HOP_MAC
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let addr = format!("{}/64", ip6_str(UPLINK_IP6));
    ip(&["-6", "addr", "add", &addr, "dev", UPLINK_IF, "nodad"]);
    ip(&[
        "-6",
        "neigh",
        "add",
        &nh,
        "lladdr",
        &mac,
        "nud",
        "permanent",
        "dev",
        UPLINK_IF,
    ]);
    ip(&[
        "-6", "route", "add", "default", "via", &nh, "dev", UPLINK_IF,
    ]);
    ip(&["-6", "route", "add", "blackhole", "2001:db8:dead::/48"]);

    let ebpf = env.ebpf_mut();
    let prog: &mut SchedClassifier = ebpf
        .program_mut(ip6_prog_names::FROM_CONTAINER6)
        .unwrap()
        .try_into()
        .unwrap();
    prog.load()
        .unwrap_or_else(|e| panic!("loading {}: {e:?}", ip6_prog_names::FROM_CONTAINER6));
    let fd = prog.fd().unwrap().try_clone().unwrap();
    let mut calls = ProgramArray::try_from(ebpf.map_mut(ip6_map_names::CALLS).unwrap()).unwrap();
    calls.set(CALL_FROM_CONTAINER6, &fd, 0).unwrap();
    // Beyond the host: `dp_egress6`, tail-called by `dp_from_container6`.
    let name = dataplane_common::nat6_prog_names::EGRESS6;
    let prog: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
    prog.load()
        .unwrap_or_else(|e| panic!("loading {name}: {e:?}"));
    let fd = prog.fd().unwrap().try_clone().unwrap();
    let mut calls = ProgramArray::try_from(ebpf.map_mut(ip6_map_names::CALLS).unwrap()).unwrap();
    calls.set(dataplane_common::CALL_EGRESS6, &fd, 0).unwrap();
    let mut m = Maps6 {
        endpoints6: HashMap::try_from(ebpf.take_map(ip6_map_names::ENDPOINTS6).unwrap()).unwrap(),
        if_endpoints6: HashMap::try_from(ebpf.take_map(ip6_map_names::IF_ENDPOINTS6).unwrap())
            .unwrap(),
        networks6: HashMap::try_from(ebpf.take_map(ip6_map_names::NETWORKS6).unwrap()).unwrap(),
    };
    for n in NETWORKS {
        m.networks6
            .insert(
                n.id,
                Network6Info {
                    subnet: subnet6(n.id),
                    gateway: gateway6(n.id),
                    prefix_len: 64,
                    flags: 0,
                },
                0,
            )
            .unwrap();
    }
    for e in ENDPOINTS {
        let info = env.info(e);
        m.add(info, e);
    }
    m
}

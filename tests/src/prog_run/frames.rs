//! Frame builders and assertions shared by the `prog_run*` test binaries:
//! frames a container or an outside client sends, published-port setup,
//! and checks of verdicts, output frames and drop counters.

use dataplane_common::{
    CtEntry, DropReason, EndpointKey, FlowKey, PortKey, PortTarget, NAT_F_CLOSING,
};

use super::{harness::*, pkt::*};

pub const BCAST: [u8; 6] = [0xff; 6];

/// A TCP SYN frame from endpoint `e` to `dst:dport`.
pub fn tcp_from(e: EpDef, dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let seg = tcp(e.ip, dst, sport, dport, flags, b"");
    eth(
        e.host_mac,
        e.mac,
        ETH_P_IP,
        &Ip4::new(e.ip, dst, PROTO_TCP).build(&seg),
    )
}

pub fn udp_from(e: EpDef, dst: [u8; 4], sport: u16, dport: u16, with_csum: bool) -> Vec<u8> {
    let dg = udp(e.ip, dst, sport, dport, b"hello, udp", with_csum);
    eth(
        e.host_mac,
        e.mac,
        ETH_P_IP,
        &Ip4::new(e.ip, dst, PROTO_UDP).build(&dg),
    )
}

pub fn arp_request(e: EpDef, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    eth(
        BCAST,
        e.mac,
        ETH_P_ARP,
        &arp(ARP_REQUEST, e.mac, spa, [0; 6], tpa),
    )
}

pub fn flow(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src,
        dst,
        sport,
        dport,
        proto,
        _pad: [0; 3],
    }
}

/// Same-network delivery: the frame leaves with the receiver's MACs and an
/// untouched IP packet.
pub fn assert_delivered_to(run: &Run, input: &[u8], peer: EpDef) {
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "verdict");
    let mut want = input.to_vec();
    want[0..6].copy_from_slice(&peer.mac);
    want[6..12].copy_from_slice(&peer.host_mac);
    assert_eq!(run.out, want, "delivered frame");
}

pub fn assert_passed_unchanged(run: &Run, input: &[u8]) {
    assert_eq!(run.verdict, TC_ACT_OK, "verdict");
    assert_eq!(run.out, input, "frame must be unchanged");
}

pub fn assert_dropped(env: &Env, run: &Run, input: &[u8], reason: DropReason, ep: Option<EpDef>) {
    assert_eq!(run.verdict, TC_ACT_SHOT, "verdict");
    assert_eq!(run.out, input, "a dropped frame is not modified");
    env.assert_only_drop(reason);
    assert_eq!(env.drop_count(reason), 1, "drop counter {}", reason.name());
    if let Some(e) = ep {
        let s = env.stats(e);
        for r in DropReason::ALL {
            assert_eq!(
                s.drops[r as usize],
                u64::from(r == reason),
                "endpoint drop counter {}",
                r.name()
            );
        }
    }
}

pub fn publish(env: &mut Env, host_ip: [u8; 4], port: u16, proto: u8, to: [u8; 4], to_port: u16) {
    env.ports
        .insert(
            PortKey {
                ip: host_ip,
                port,
                proto,
                _pad: 0,
            },
            PortTarget {
                ip: to,
                port: to_port,
                _pad: 0,
            },
            0,
        )
        .unwrap();
}

pub fn add_host_ip(env: &mut Env, ip: [u8; 4]) {
    env.host_ips.insert(EndpointKey { ip }, 1, 0).unwrap();
}

/// The usual setup: 0.0.0.0:8080/tcp -> E1:80, the uplink address is a host
/// address.
pub fn publish_8080(env: &mut Env) {
    add_host_ip(env, UPLINK_IP);
    publish(env, [0; 4], 8080, PROTO_TCP, E1.ip, 80);
}

/// A frame arriving on the uplink from the next hop.
pub fn from_outside(ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IP, &ip.build(l4))
}

pub fn outside_tcp(dst: [u8; 4], sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    from_outside(
        &Ip4::new(FAR, dst, PROTO_TCP),
        &tcp(FAR, dst, sport, dport, flags, payload),
    )
}

pub fn outside_udp(dst: [u8; 4], sport: u16, dport: u16, with_csum: bool) -> Vec<u8> {
    from_outside(
        &Ip4::new(FAR, dst, PROTO_UDP),
        &udp(FAR, dst, sport, dport, b"published udp", with_csum),
    )
}

pub fn frame_from(e: EpDef, ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(e.host_mac, e.mac, ETH_P_IP, &ip.build(l4))
}

/// What endpoint `to` receives: `ip`/`l4` behind its MACs.
pub fn to_endpoint(to: EpDef, ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(to.mac, to.host_mac, ETH_P_IP, &ip.build(l4))
}

pub fn ct_entries(env: &Env) -> Vec<(FlowKey, CtEntry)> {
    env.ct.iter().map(Result::unwrap).collect()
}

pub fn assert_ct(env: &Env, key: FlowKey, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) {
    let e = env
        .ct
        .get(&key, 0)
        .unwrap_or_else(|e| panic!("no DP_CT entry for {key:?}: {e:?}"));
    assert_eq!(
        (e.src, e.sport, e.dst, e.dport),
        (src, sport, dst, dport),
        "DP_CT entry for {key:?}"
    );
    assert_eq!(e.flags & NAT_F_CLOSING, 0, "not closing");
    assert!(e.last_seen_ns > 0, "last_seen_ns set");
}

pub fn assert_xdp_pass_unchanged(run: &Run, input: &[u8], what: &str) {
    assert_eq!(run.verdict, XDP_PASS, "{what}: verdict");
    assert_eq!(run.out, input, "{what}: frame must be unchanged");
}

pub fn assert_xdp_dropped(run: &Run, input: &[u8], what: &str) {
    assert_eq!(run.verdict, XDP_DROP, "{what}: verdict");
    assert_eq!(run.out, input, "{what}: a dropped frame is not modified");
}

/// Every global drop counter: `reason` has `n`, the others 0.
pub fn assert_drops(env: &Env, reason: DropReason, n: u64) {
    for r in DropReason::ALL {
        let want = if r == reason { n } else { 0 };
        assert_eq!(env.drop_count(r), want, "global drop counter {}", r.name());
    }
}

/// Endpoint drop counters: `reason` has `n`, the others 0.
pub fn assert_ep_drops(env: &Env, e: EpDef, reason: DropReason, n: u64) {
    let s = env.stats(e);
    for r in DropReason::ALL {
        let want = if r == reason { n } else { 0 };
        assert_eq!(
            s.drops[r as usize],
            want,
            "drop counter {} of {}",
            r.name(),
            e.host
        );
    }
}

/// A SYN from the client to the wildcard-published 8080: checks the DNAT
/// and the DP_CT entry, returns the translated frame.
pub fn xdp_syn_to_8080(env: &Env, payload: &[u8], flags: u8) -> Vec<u8> {
    let pkt = outside_tcp(UPLINK_IP, 40000, 8080, flags, payload);
    let run = env.run_xdp(&pkt);
    assert_eq!(run.verdict, XDP_PASS, "DNATed packet goes on to TC");
    let v = View(&run.out);
    v.assert_checksums();
    assert_eq!(v.ip_dst(), E1.ip);
    assert_eq!(v.ip_src(), FAR, "client address preserved");
    assert_eq!(v.dport(), 80);
    assert_eq!(v.sport(), 40000);
    assert_eq!(v.ttl(), 63);
    let want = from_outside(
        &Ip4::new(FAR, E1.ip, PROTO_TCP).ttl(63),
        &tcp(FAR, E1.ip, 40000, 80, flags, payload),
    );
    assert_eq!(run.out, want, "DNATed frame (MACs untouched by XDP)");
    assert_ct(
        env,
        flow(E1.ip, FAR, 80, 40000, PROTO_TCP),
        UPLINK_IP,
        8080,
        FAR,
        40000,
    );
    run.out
}

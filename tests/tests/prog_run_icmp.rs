//! BPF_PROG_TEST_RUN tests of ICMP errors about translated flows: a
//! container's own errors about published-port, hairpin and masqueraded
//! flows (`dp_from_container`), and errors from outside about published-port
//! flows (`dp_from_uplink`). Each output frame is compared byte for byte with
//! one built independently (outer header, quoted header with its checksum,
//! ICMP checksum). Needs root.

use dataplane_common::{DropReason, EndpointKey, PortKey, PortTarget};
use dataplane_tests::prog_run::{harness::*, pkt::*};

const CLIENT: [u8; 4] = FAR;
const CPORT: u16 = 40000;
const GW_A: [u8; 4] = NETWORKS[0].gateway;
const PORT_UNREACH: u8 = 3;
const FRAG_NEEDED: u8 = 4;

fn publish(env: &mut Env, port: u16, proto: u8, to: [u8; 4], to_port: u16) {
    let k = PortKey {
        ip: [0; 4],
        port,
        proto,
        _pad: 0,
    };
    let t = PortTarget {
        ip: to,
        port: to_port,
        _pad: 0,
    };
    env.ports.insert(k, t, 0).unwrap();
    env.host_ips
        .insert(EndpointKey { ip: UPLINK_IP }, 1, 0)
        .unwrap();
}

/// What an ICMP error quotes of a UDP datagram `src:sport -> dst:dport`: its
/// IPv4 header (total length of the whole datagram) and UDP header, whose
/// length and checksum fields stay those of the original (`csum_of`).
fn quoted_udp(
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    csum_of: &[u8],
) -> Vec<u8> {
    let mut ip = Ip4::new(src, dst, PROTO_UDP).ttl(63);
    ip.tot_len = Some(20 + 8 + 32);
    let mut h = csum_of[..8].to_vec();
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    ip.build(&h)
}

/// An ICMP destination unreachable of `code` from `from` to `to` quoting `q`.
fn unreach(from: [u8; 4], to: [u8; 4], ttl: u8, code: u8, mtu: u16, q: &[u8]) -> Vec<u8> {
    Ip4::new(from, to, PROTO_ICMP)
        .ttl(ttl)
        .build(&icmp(ICMP_DEST_UNREACH, code, 0, mtu, q))
}

fn udp_hdr() -> Vec<u8> {
    udp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[0x5a; 32], true)
}

fn check(run: &Run, want: &[u8]) {
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "verdict");
    let v = View(&run.out);
    v.assert_checksums();
    let q = &v.l4()[8..28];
    assert_eq!(inet_csum(&[q]), 0, "quoted IPv4 header checksum");
    assert_eq!(run.out, want, "translated ICMP error");
}

/// A client datagram to the published UDP port 5353 (-> E2:53) through XDP,
/// which records the flow.
fn client_to_published(env: &mut Env) {
    publish(env, 5353, PROTO_UDP, E2.ip, 53);
    let dg = udp(CLIENT, UPLINK_IP, CPORT, 5353, b"query", true);
    let f = eth(
        UPLINK_MAC,
        NEXT_HOP_MAC,
        ETH_P_IP,
        &Ip4::new(CLIENT, UPLINK_IP, PROTO_UDP).build(&dg),
    );
    let x = env.run_xdp(&f);
    assert_eq!(x.verdict, XDP_PASS);
    assert_eq!(View(&x.out).ip_dst(), E2.ip);
}

#[test]
fn container_port_unreachable_about_a_published_flow_reaches_the_client() {
    with_env(|env| {
        client_to_published(env);
        let h = udp_hdr();
        let q_in = quoted_udp((CLIENT, CPORT), (E2.ip, 53), &h);
        let pkt = eth(
            E2.host_mac,
            E2.mac,
            ETH_P_IP,
            &unreach(E2.ip, CLIENT, 64, PORT_UNREACH, 0, &q_in),
        );
        let run = env.run_container(E2, &pkt);
        let q_out = quoted_udp((CLIENT, CPORT), (UPLINK_IP, 5353), &h);
        let want = eth(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IP,
            &unreach(UPLINK_IP, CLIENT, 63, PORT_UNREACH, 0, &q_out),
        );
        check(&run, &want);
        env.assert_no_drops();
    });
}

#[test]
fn fragmentation_needed_from_outside_about_a_published_flow_reaches_the_container() {
    with_env(|env| {
        client_to_published(env);
        // The container's reply went out as UPLINK_IP:5353 -> CLIENT:CPORT;
        // a router on the way says it is too big.
        let h = udp_hdr();
        let q_in = quoted_udp((UPLINK_IP, 5353), (CLIENT, CPORT), &h);
        let pkt = eth(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            ETH_P_IP,
            &unreach(NEXT_HOP, UPLINK_IP, 64, FRAG_NEEDED, 1400, &q_in),
        );
        let x = env.run_xdp(&pkt);
        assert_eq!((x.verdict, &x.out), (XDP_PASS, &pkt), "XDP leaves it");
        let run = env.run_uplink(&pkt);
        let q_out = quoted_udp((E2.ip, 53), (CLIENT, CPORT), &h);
        let want = eth(
            E2.mac,
            E2.host_mac,
            ETH_P_IP,
            &unreach(NEXT_HOP, E2.ip, 63, FRAG_NEEDED, 1400, &q_out),
        );
        check(&run, &want);
        // About a client port the flow table does not know: the host's.
        let q_other = quoted_udp((UPLINK_IP, 5353), (CLIENT, CPORT + 1), &h);
        let other = eth(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            ETH_P_IP,
            &unreach(NEXT_HOP, UPLINK_IP, 64, FRAG_NEEDED, 1400, &q_other),
        );
        let run = env.run_uplink(&other);
        assert_eq!((run.verdict, run.out), (TC_ACT_OK, other));
        env.assert_no_drops();
    });
}

#[test]
fn errors_about_hairpin_flows_are_translated_both_ways() {
    with_env(|env| {
        publish(env, 5353, PROTO_UDP, E2.ip, 53);
        // E1 -> UPLINK_IP:5353, translated to GW_A:nat -> E2:53.
        let dg = udp(E1.ip, UPLINK_IP, 4444, 5353, b"hairpin", true);
        let f = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, UPLINK_IP, PROTO_UDP).build(&dg),
        );
        let r = env.run_container(E1, &f);
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let nat = View(&r.out).sport();
        let h = udp_hdr();
        // E2 has nothing on 53: its error to the gateway goes to E1.
        let q_in = quoted_udp((GW_A, nat), (E2.ip, 53), &h);
        let pkt = eth(
            E2.host_mac,
            E2.mac,
            ETH_P_IP,
            &unreach(E2.ip, GW_A, 64, PORT_UNREACH, 0, &q_in),
        );
        let run = env.run_container(E2, &pkt);
        let q_out = quoted_udp((E1.ip, 4444), (UPLINK_IP, 5353), &h);
        let want = eth(
            E1.mac,
            E1.host_mac,
            ETH_P_IP,
            &unreach(UPLINK_IP, E1.ip, 63, PORT_UNREACH, 0, &q_out),
        );
        check(&run, &want);
        // E1's error about E2's answer (UPLINK_IP:5353 -> E1:4444) goes to E2.
        let q_in = quoted_udp((UPLINK_IP, 5353), (E1.ip, 4444), &h);
        let pkt = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &unreach(E1.ip, UPLINK_IP, 64, PORT_UNREACH, 0, &q_in),
        );
        let run = env.run_container(E1, &pkt);
        let q_out = quoted_udp((E2.ip, 53), (GW_A, nat), &h);
        let want = eth(
            E2.mac,
            E2.host_mac,
            ETH_P_IP,
            &unreach(GW_A, E2.ip, 63, PORT_UNREACH, 0, &q_out),
        );
        check(&run, &want);
        env.assert_no_drops();
    });
}

#[test]
fn container_error_about_a_masqueraded_flow_is_masqueraded() {
    with_env(|env| {
        let dg = udp(E1.ip, FAR, 5353, 53, b"q", true);
        let f = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, FAR, PROTO_UDP).build(&dg),
        );
        let r = env.run_container(E1, &f);
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let nat = View(&r.out).sport();
        // The answer came back, E1's socket was gone.
        let h = udp_hdr();
        let q_in = quoted_udp((FAR, 53), (E1.ip, 5353), &h);
        let pkt = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &unreach(E1.ip, FAR, 64, PORT_UNREACH, 0, &q_in),
        );
        let run = env.run_container(E1, &pkt);
        let q_out = quoted_udp((FAR, 53), (UPLINK_IP, nat), &h);
        let want = eth(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IP,
            &unreach(UPLINK_IP, FAR, 63, PORT_UNREACH, 0, &q_out),
        );
        check(&run, &want);
        env.assert_no_drops();
    });
}

#[test]
fn container_errors_about_no_flow_of_its_own_are_dropped() {
    with_env(|env| {
        client_to_published(env);
        let h = udp_hdr();
        // E1 quoting E2's published flow: not E1's, not translated.
        let q = quoted_udp((CLIENT, CPORT), (E2.ip, 53), &h);
        let pkt = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &unreach(E1.ip, CLIENT, 64, PORT_UNREACH, 0, &q),
        );
        let run = env.run_container(E1, &pkt);
        assert_eq!((run.verdict, &run.out), (TC_ACT_SHOT, &pkt));
        // E2 quoting a flow nobody translated.
        let q = quoted_udp((CLIENT, CPORT + 1), (E2.ip, 53), &h);
        let pkt = eth(
            E2.host_mac,
            E2.mac,
            ETH_P_IP,
            &unreach(E2.ip, CLIENT, 64, PORT_UNREACH, 0, &q),
        );
        let run = env.run_container(E2, &pkt);
        assert_eq!((run.verdict, &run.out), (TC_ACT_SHOT, &pkt));
        env.assert_only_drop(DropReason::UnsupportedProtocol);
        assert_eq!(env.drop_count(DropReason::UnsupportedProtocol), 2);
    });
}

#[test]
fn time_exceeded_from_outside_about_a_published_flow_reaches_the_container() {
    with_env(|env| {
        client_to_published(env);
        let h = udp_hdr();
        let q_in = quoted_udp((UPLINK_IP, 5353), (CLIENT, CPORT), &h);
        let te = |from, to, ttl, q: &[u8]| {
            Ip4::new(from, to, PROTO_ICMP)
                .ttl(ttl)
                .build(&icmp(ICMP_TIME_EXCEEDED, 0, 0, 0, q))
        };
        let pkt = eth(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            ETH_P_IP,
            &te(NEXT_HOP, UPLINK_IP, 64, &q_in),
        );
        let run = env.run_uplink(&pkt);
        let q_out = quoted_udp((E2.ip, 53), (CLIENT, CPORT), &h);
        let want = eth(
            E2.mac,
            E2.host_mac,
            ETH_P_IP,
            &te(NEXT_HOP, E2.ip, 63, &q_out),
        );
        check(&run, &want);
        env.assert_no_drops();
    });
}

#[test]
fn errors_from_outside_claiming_a_host_or_container_source_are_dropped() {
    with_env(|env| {
        client_to_published(env);
        let h = udp_hdr();
        let q = quoted_udp((UPLINK_IP, 5353), (CLIENT, CPORT), &h);
        for src in [E1.ip, UPLINK_IP, [127, 0, 0, 1]] {
            let pkt = eth(
                UPLINK_MAC,
                NEXT_HOP_MAC,
                ETH_P_IP,
                &unreach(src, UPLINK_IP, 64, PORT_UNREACH, 0, &q),
            );
            let run = env.run_uplink(&pkt);
            assert_eq!((run.verdict, &run.out), (TC_ACT_SHOT, &pkt), "from {src:?}");
        }
        env.assert_only_drop(DropReason::SpoofedSource);
        assert_eq!(env.drop_count(DropReason::SpoofedSource), 3);
    });
}

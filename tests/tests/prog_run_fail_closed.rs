//! BPF_PROG_TEST_RUN tests of what the programs refuse to hand to the host's
//! stack (issue 18): VLAN-tagged frames, unknown ethertypes, IPv6 from
//! containers, reserved destinations, source routes, packets for a container
//! that did not come through a translation, and whatever the stack would
//! forward into a container. Every refusal has an untagged/ordinary control
//! that does get through.
//!
//! BPF_PROG_TEST_RUN cannot set the skb's VLAN metadata (`vlan_present` is
//! not among the `__sk_buff` fields it accepts), so tags here are in the
//! packet; the namespace tests in `isolation.rs` send real tagged frames
//! through veths, which move the outer tag into the metadata. Needs root.

use dataplane_common::{DropReason, PortKey, PortTarget};
use dataplane_tests::prog_run::{harness::*, pkt::*};

const ETH_P_8021AD: u16 = 0x88a8;
const CPORT: u16 = 40000;

/// `frame` with VLAN tags (tpid, tci) inserted after the MAC addresses,
/// outermost first.
fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    for (tpid, tci) in tags {
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&tci.to_be_bytes());
    }
    v.extend_from_slice(&frame[12..]);
    v
}

/// The tag stacks of issue 18: one VLAN-0 tag, two VLAN-0 802.1Q tags,
/// an 802.1ad outer tag over an 802.1Q one, and an ordinary VLAN id.
fn tag_stacks() -> Vec<(&'static str, Vec<(u16, u16)>)> {
    vec![
        ("802.1Q vid 0", vec![(ETH_P_8021Q, 0)]),
        (
            "802.1Q/802.1Q vid 0",
            vec![(ETH_P_8021Q, 0), (ETH_P_8021Q, 0)],
        ),
        (
            "802.1ad/802.1Q vid 0",
            vec![(ETH_P_8021AD, 0), (ETH_P_8021Q, 0)],
        ),
        ("802.1Q vid 100 prio 5", vec![(ETH_P_8021Q, 0xa064)]),
    ]
}

fn udp_frame(e: EpDef, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let dg = udp(e.ip, dst, CPORT, dport, b"x", true);
    eth(
        e.host_mac,
        e.mac,
        ETH_P_IP,
        &Ip4::new(e.ip, dst, PROTO_UDP).build(&dg),
    )
}

fn outside_udp(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let dg = udp(FAR, dst, CPORT, dport, b"x", true);
    eth(
        UPLINK_MAC,
        NEXT_HOP_MAC,
        ETH_P_IP,
        &Ip4::new(FAR, dst, PROTO_UDP).build(&dg),
    )
}

fn outside_tcp(dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let seg = tcp(FAR, dst, CPORT, dport, flags, b"");
    eth(
        UPLINK_MAC,
        NEXT_HOP_MAC,
        ETH_P_IP,
        &Ip4::new(FAR, dst, PROTO_TCP).build(&seg),
    )
}

fn publish(env: &mut Env, host_ip: [u8; 4], port: u16, proto: u8, to: [u8; 4], to_port: u16) {
    let key = PortKey {
        ip: host_ip,
        port,
        proto,
        _pad: 0,
    };
    let target = PortTarget {
        ip: to,
        port: to_port,
        _pad: 0,
    };
    env.ports.insert(key, target, 0).unwrap();
}

fn assert_shot(run: &Run, input: &[u8], what: &str) {
    assert_eq!(run.verdict, TC_ACT_SHOT, "{what}: verdict");
    assert_eq!(run.out, input, "{what}: a dropped frame is not modified");
}

fn assert_redirected_to(run: &Run, peer: EpDef, what: &str) {
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "{what}: verdict");
    assert_eq!(
        View(&run.out).dst_mac(),
        peer.mac,
        "{what}: to {}",
        peer.ctr
    );
}

/// Global counters: exactly `want` (reason, count), every other reason 0.
fn assert_drops(env: &Env, want: &[(DropReason, u64)]) {
    for r in DropReason::ALL {
        let n = want.iter().find(|(w, _)| *w == r).map_or(0, |(_, n)| *n);
        assert_eq!(env.drop_count(r), n, "drop counter {}", r.name());
    }
}

#[test]
fn container_vlan_tagged_frames_are_dropped_whatever_they_carry() {
    with_env(|env| {
        // Inner packets that would each break a promise if the stack got
        // them: same network, another network, an icc=false peer, the
        // gateway of an internal network, the outside world.
        let inner = [
            (E1, E2.ip),
            (E1, E3.ip),
            (E4, E5.ip),
            (E6, [8, 8, 8, 8]),
            (E1, FAR),
        ];
        let mut n = 0;
        for (name, tags) in tag_stacks() {
            for (from, dst) in inner {
                let frame = tagged(&udp_frame(from, dst, 53), &tags);
                let run = env.run_container(from, &frame);
                assert_shot(
                    &run,
                    &frame,
                    &format!("{name} from {} to {dst:?}", from.ctr),
                );
                n += 1;
            }
        }
        assert_drops(env, &[(DropReason::VlanTagged, n)]);
        assert_eq!(env.stats(E1).drops[DropReason::VlanTagged as usize], 12);
        assert_eq!(env.stats(E2).rx_packets, 0);
        assert_eq!(env.stats(E5).rx_packets, 0);
        assert!(env.nat_out_entries().is_empty());
        // Control: the same packet untagged is delivered.
        let frame = udp_frame(E1, E2.ip, 53);
        let run = env.run_container(E1, &frame);
        assert_redirected_to(&run, E2, "untagged");
        assert_eq!(env.stats(E2).rx_packets, 1);
    });
}

#[test]
fn container_ipv6_and_unknown_ethertypes_are_dropped() {
    with_env(|env| {
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        let cases = [
            ("ipv6", eth(E1.host_mac, E1.mac, ETH_P_IPV6, &v6)),
            ("lldp", eth(E1.host_mac, E1.mac, 0x88cc, &[0; 46])),
            ("mpls", eth(E1.host_mac, E1.mac, 0x8847, &[0; 46])),
            ("802.3 length", eth(E1.host_mac, E1.mac, 46, &[0x42; 46])),
        ];
        for (what, frame) in &cases {
            let run = env.run_container(E1, frame);
            assert_shot(&run, frame, what);
        }
        assert_drops(env, &[(DropReason::UnsupportedEthertype, 4)]);
        assert_eq!(
            env.stats(E1).drops[DropReason::UnsupportedEthertype as usize],
            4
        );
        // Control: ARP still goes to the stack, IPv4 still flows.
        let a = eth(
            [0xff; 6],
            E1.mac,
            ETH_P_ARP,
            &arp(ARP_REQUEST, E1.mac, E1.ip, [0; 6], [172, 20, 0, 99]),
        );
        let run = env.run_container(E1, &a);
        assert_eq!(run.verdict, TC_ACT_OK, "arp");
        let run = env.run_container(E1, &udp_frame(E1, E2.ip, 53));
        assert_redirected_to(&run, E2, "ipv4");
    });
}

#[test]
fn container_cannot_reach_loopback_published_ports_or_reserved_destinations() {
    with_env(|env| {
        // A port published on 127.0.0.1 and one on every address.
        publish(env, [127, 0, 0, 1], 8080, PROTO_UDP, E2.ip, 80);
        publish(env, [0; 4], 9090, PROTO_UDP, E2.ip, 90);
        env.host_ips
            .insert(dataplane_common::EndpointKey { ip: UPLINK_IP }, 0, 0)
            .unwrap();
        let cases = [
            (E1, [127, 0, 0, 1], 8080),
            (E1, [127, 0, 0, 1], 9090),
            (E1, [127, 1, 2, 3], 9090),
            (E3, [127, 0, 0, 1], 8080),
            (E1, [0, 0, 0, 0], 9090),
            (E1, [0, 1, 2, 3], 53),
            (E1, [240, 0, 0, 1], 53),
            (E1, [254, 255, 255, 255], 53),
            // The internal network: class E used to count as multicast.
            (E6, [240, 0, 0, 1], 53),
            (E6, [127, 0, 0, 1], 8080),
        ];
        for (from, dst, port) in cases {
            let frame = udp_frame(from, dst, port);
            let run = env.run_container(from, &frame);
            assert_shot(&run, &frame, &format!("{} to {dst:?}:{port}", from.ctr));
        }
        assert_drops(env, &[(DropReason::ReservedDestination, 10)]);
        assert_eq!(env.stats(E2).rx_packets, 0);
        assert!(env.nat_out_entries().is_empty());
        assert_eq!(env.ct.iter().count(), 0, "nothing hairpinned");
        // Controls: the wildcard port through a host address is hairpinned;
        // the limited broadcast and multicast go to the stack.
        let run = env.run_container(E1, &udp_frame(E1, UPLINK_IP, 9090));
        assert_redirected_to(&run, E2, "hairpin via the host address");
        for dst in [[255, 255, 255, 255], [224, 0, 0, 251], [239, 255, 255, 250]] {
            for from in [E1, E6] {
                let frame = udp_frame(from, dst, 5353);
                let run = env.run_container(from, &frame);
                assert_eq!(run.verdict, TC_ACT_OK, "{} to {dst:?}", from.ctr);
            }
        }
        assert_drops(env, &[(DropReason::ReservedDestination, 10)]);
    });
}

#[test]
fn container_source_routed_packets_are_dropped() {
    with_env(|env| {
        let gw = NETWORKS[0].gateway;
        // LSRR / SSRR naming E3 (another network) as the next hop, behind
        // a NOP; and a broken option list.
        let lsrr = [1, 0x83, 7, 4, 172, 21, 0, 2];
        let ssrr = [0x89, 7, 4, 172, 21, 0, 2, 0];
        let broken = [0x44, 1, 0, 0];
        let mut n = 0;
        for opts in [&lsrr[..], &ssrr[..], &broken[..]] {
            for dst in [gw, E2.ip, FAR] {
                let dg = udp(E1.ip, dst, CPORT, 53, b"x", true);
                let ip = Ip4::new(E1.ip, dst, PROTO_UDP).options(opts);
                let frame = eth(E1.host_mac, E1.mac, ETH_P_IP, &ip.build(&dg));
                let run = env.run_container(E1, &frame);
                assert_shot(&run, &frame, &format!("options {opts:?} to {dst:?}"));
                n += 1;
            }
        }
        assert_drops(env, &[(DropReason::SourceRoute, n)]);
        // Control: other options (NOPs, a timestamp) are fine.
        let ts = [1, 1, 1, 0x44, 4, 5, 0, 0];
        let dg = udp(E1.ip, E2.ip, CPORT, 53, b"x", true);
        let ip = Ip4::new(E1.ip, E2.ip, PROTO_UDP).options(&ts);
        let frame = eth(E1.host_mac, E1.mac, ETH_P_IP, &ip.build(&dg));
        let run = env.run_container(E1, &frame);
        assert_redirected_to(&run, E2, "timestamp option");
        assert_drops(env, &[(DropReason::SourceRoute, n)]);
    });
}

#[test]
fn xdp_drops_tagged_frames_from_outside() {
    with_env(|env| {
        publish(env, [0; 4], 8080, PROTO_UDP, E2.ip, 80);
        env.host_ips
            .insert(dataplane_common::EndpointKey { ip: UPLINK_IP }, 0, 0)
            .unwrap();
        let mut n = 0;
        for (name, tags) in tag_stacks() {
            // Straight to a container, and to the published port.
            for frame in [outside_udp(E2.ip, 80), outside_udp(UPLINK_IP, 8080)] {
                let frame = tagged(&frame, &tags);
                let run = env.run_xdp(&frame);
                assert_eq!(run.verdict, XDP_DROP, "{name}");
                assert_eq!(run.out, frame, "{name}");
                n += 1;
            }
        }
        assert_drops(env, &[(DropReason::VlanTagged, n)]);
        assert_eq!(env.ct.iter().count(), 0);
        // Control: untagged, the published port is translated and the
        // container address dropped as direct access.
        let run = env.run_xdp(&outside_udp(UPLINK_IP, 8080));
        assert_eq!(run.verdict, XDP_PASS);
        assert_eq!(View(&run.out).ip_dst(), E2.ip);
        let run = env.run_xdp(&outside_udp(E2.ip, 80));
        assert_eq!(run.verdict, XDP_DROP);
        assert_drops(
            env,
            &[
                (DropReason::VlanTagged, n),
                (DropReason::DirectAccessFromOutside, 1),
            ],
        );
    });
}

#[test]
fn uplink_tc_drops_tagged_frames_and_untranslated_packets_for_containers() {
    with_env(|env| {
        publish(env, [0; 4], 8080, PROTO_TCP, E2.ip, 80);
        env.host_ips
            .insert(dataplane_common::EndpointKey { ip: UPLINK_IP }, 0, 0)
            .unwrap();
        // What XDP would have dropped, had it seen it (a tag stripped by a
        // NIC, XDP missing): TC does not deliver it either.
        let mut tagged_n = 0;
        for (name, tags) in tag_stacks() {
            let frame = tagged(&outside_udp(E2.ip, 80), &tags);
            let run = env.run_uplink(&frame);
            assert_shot(&run, &frame, name);
            tagged_n += 1;
        }
        // Untagged but untranslated: an unpublished UDP service, a TCP port
        // that is published (but not addressed through its published
        // address), ICMP, a container on an internal network, a fragment,
        // a truncated header.
        let icmp_frame = {
            let m = icmp(ICMP_ECHO_REQUEST, 0, 7, 1, b"");
            eth(
                UPLINK_MAC,
                NEXT_HOP_MAC,
                ETH_P_IP,
                &Ip4::new(FAR, E2.ip, PROTO_ICMP).build(&m),
            )
        };
        let frag = {
            let dg = udp(FAR, E2.ip, CPORT, 53, &[0; 16], true);
            eth(
                UPLINK_MAC,
                NEXT_HOP_MAC,
                ETH_P_IP,
                &Ip4::new(FAR, E2.ip, PROTO_UDP).frag(IP_MF).build(&dg),
            )
        };
        let cases = [
            ("udp 53", outside_udp(E2.ip, 53)),
            ("tcp 80", outside_tcp(E2.ip, 80, TCP_SYN)),
            ("icmp", icmp_frame),
            ("internal", outside_udp(E6.ip, 53)),
            ("fragment", frag),
            (
                "truncated",
                outside_tcp(E2.ip, 80, TCP_SYN)[..ETH_LEN + 24].to_vec(),
            ),
        ];
        for (what, frame) in &cases {
            let run = env.run_uplink(frame);
            assert_shot(&run, frame, what);
        }
        assert_drops(
            env,
            &[
                (DropReason::VlanTagged, tagged_n),
                (DropReason::DirectAccessFromOutside, cases.len() as u64),
            ],
        );
        assert_eq!(env.stats(E2).rx_packets, 0);
        assert_eq!(env.stats(E6).rx_packets, 0);
        // Control: the published port, translated by XDP, is delivered.
        let run = env.run_xdp(&outside_tcp(UPLINK_IP, 8080, TCP_SYN));
        assert_eq!(run.verdict, XDP_PASS);
        let run = env.run_uplink(&run.out);
        assert_redirected_to(&run, E2, "published port after XDP");
        assert_eq!(env.stats(E2).rx_packets, 1);
        // IPv6 and ARP are the host's: to the stack.
        let v6 = eth(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV6, &[0x60; 48]);
        assert_eq!(env.run_uplink(&v6).verdict, TC_ACT_OK);
    });
}

#[test]
fn to_container_drops_what_the_stack_forwards_and_passes_the_hosts_own() {
    with_env(|env| {
        let frame = eth(
            E1.mac,
            E1.host_mac,
            ETH_P_IP,
            &Ip4::new(FAR, E1.ip, PROTO_UDP).build(&udp(FAR, E1.ip, CPORT, 53, b"x", true)),
        );
        // Received on the uplink, on another host interface, on another
        // container's veth, on this very veth: forwarded by the stack.
        for ingress in [UPLINK_IF, OTHER_IF, E2.host, E1.host] {
            let run = env.run_to_container(E1, Some(ingress), &frame);
            assert_shot(&run, &frame, ingress);
        }
        assert_drops(env, &[(DropReason::DirectAccessFromOutside, 4)]);
        assert_eq!(
            env.stats(E1).drops[DropReason::DirectAccessFromOutside as usize],
            4
        );
        // The host's own packets pass, and the ARP replies the datapath
        // bounces back out of the veth they came in by.
        let run = env.run_to_container(E1, None, &frame);
        assert_eq!(run.verdict, TC_ACT_OK, "the host's own");
        assert_eq!(run.out, frame);
        let reply = eth(
            E1.mac,
            E1.host_mac,
            ETH_P_ARP,
            &arp(ARP_REPLY, E1.host_mac, NETWORKS[0].gateway, E1.mac, E1.ip),
        );
        let run = env.run_to_container(E1, Some(E1.host), &reply);
        assert_eq!(run.verdict, TC_ACT_OK, "arp reply");
        // ...but not ARP the stack forwards from elsewhere.
        let run = env.run_to_container(E1, Some(UPLINK_IF), &reply);
        assert_shot(&run, &reply, "arp from the uplink");
        assert_drops(env, &[(DropReason::DirectAccessFromOutside, 5)]);
    });
}

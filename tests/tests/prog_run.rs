//! BPF_PROG_TEST_RUN tests of the datapath's TC programs.
//!
//! Every test gets its own network namespace (holding the interfaces whose
//! ifindex the programs see in `__sk_buff.ifindex`, the uplink with its route
//! and neighbour, ...), a freshly loaded copy of the eBPF object with private
//! (unpinned) maps, and runs the programs from a thread that entered that
//! namespace. Packets are built by hand and the output is compared byte for
//! byte with packets built independently, and checked with an independent
//! RFC 1071 checksum routine. Needs root.

use dataplane_common::{DropReason, NET_F_NO_ICC};
use dataplane_tests::prog_run::{frames::*, harness::*, pkt::*};

// ---------------------------------------------------------------------------
// 1. Endpoint to endpoint
// ---------------------------------------------------------------------------

#[test]
fn same_network_endpoint_is_redirected_with_rewritten_macs() {
    with_env(|env| {
        let pkt = tcp_from(E1, E2.ip, 40000, 8080, TCP_SYN);
        let run = env.run_container(E1, &pkt);
        assert_delivered_to(&run, &pkt, E2);
        View(&run.out).assert_checksums();
        let s1 = env.stats(E1);
        let s2 = env.stats(E2);
        assert_eq!((s1.tx_packets, s1.tx_bytes), (1, pkt.len() as u64));
        assert_eq!((s1.rx_packets, s1.rx_bytes), (0, 0));
        assert_eq!((s2.rx_packets, s2.rx_bytes), (1, pkt.len() as u64));
        assert_eq!((s2.tx_packets, s2.tx_bytes), (0, 0));
        env.assert_no_drops();

        // And back: UDP from E2 to E1.
        let back = udp_from(E2, E1.ip, 8080, 40000, true);
        let run = env.run_container(E2, &back);
        assert_delivered_to(&run, &back, E1);
        assert_eq!(env.stats(E1).rx_packets, 1);
        assert_eq!(env.stats(E2).tx_packets, 1);
        assert!(env.nat_out_entries().is_empty(), "no NAT for local traffic");
    });
}

// ---------------------------------------------------------------------------
// 2. ARP
// ---------------------------------------------------------------------------

fn assert_arp_reply(run: &Run, e: EpDef, requested: [u8; 4]) {
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "ARP reply is sent back");
    assert!(run.out.len() >= 42);
    let o = &run.out;
    assert_eq!(&o[0..6], &e.mac, "eth dst = requester");
    assert_eq!(&o[6..12], &e.host_mac, "eth src = host side");
    assert_eq!(&o[12..14], &ETH_P_ARP.to_be_bytes());
    let want = arp(ARP_REPLY, e.host_mac, requested, e.mac, e.ip);
    assert_eq!(&o[14..42], &want[..], "ARP reply body");
}

#[test]
fn arp_for_gateway_and_peer_is_answered_with_host_mac() {
    with_env(|env| {
        let gw = NETWORKS[0].gateway;
        let run = env.run_container(E1, &arp_request(E1, E1.ip, gw));
        assert_arp_reply(&run, E1, gw);

        let run = env.run_container(E1, &arp_request(E1, E1.ip, E2.ip));
        assert_arp_reply(&run, E1, E2.ip);

        // Padded to the Ethernet minimum: the padding is left alone.
        let mut padded = arp_request(E1, E1.ip, E2.ip);
        padded.resize(60, 0xaa);
        let run = env.run_container(E1, &padded);
        assert_arp_reply(&run, E1, E2.ip);
        assert_eq!(run.out.len(), 60);
        assert!(run.out[42..].iter().all(|b| *b == 0xaa));
        env.assert_no_drops();
    });
}

#[test]
fn arp_not_answerable_goes_to_the_stack_unchanged() {
    with_env(|env| {
        let cases = [
            // Unknown address in the subnet.
            arp_request(E1, E1.ip, [172, 20, 0, 99]),
            // Endpoint of another network.
            arp_request(E1, E1.ip, E3.ip),
            // Gateway of another network.
            arp_request(E1, E1.ip, NETWORKS[1].gateway),
            // Gratuitous ARP / DAD.
            arp_request(E1, E1.ip, E1.ip),
            // Not from the endpoint's address.
            arp_request(E1, [172, 20, 0, 50], E2.ip),
            // An ARP reply, not a request.
            eth(
                E1.host_mac,
                E1.mac,
                ETH_P_ARP,
                &arp(ARP_REPLY, E1.mac, E1.ip, E1.host_mac, E2.ip),
            ),
        ];
        for pkt in cases {
            let run = env.run_container(E1, &pkt);
            assert_passed_unchanged(&run, &pkt);
        }
        env.assert_no_drops();
    });
}

#[test]
fn truncated_arp_is_malformed() {
    with_env(|env| {
        let mut pkt = arp_request(E1, E1.ip, E2.ip);
        pkt.truncate(ETH_LEN + 20);
        let run = env.run_container(E1, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::Malformed, Some(E1));
    });
}

// ---------------------------------------------------------------------------
// 3. Anti-spoofing
// ---------------------------------------------------------------------------

#[test]
fn spoofed_source_ip_is_dropped() {
    with_env(|env| {
        let fake = [172, 20, 0, 77];
        let seg = tcp(fake, E2.ip, 1, 2, TCP_SYN, b"");
        let pkt = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(fake, E2.ip, PROTO_TCP).build(&seg),
        );
        let run = env.run_container(E1, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::SpoofedSource, Some(E1));
        assert_eq!(env.stats(E1).tx_packets, 0);
        assert_eq!(env.stats(E2).rx_packets, 0);
    });
}

#[test]
fn spoofed_source_mac_is_dropped() {
    with_env(|env| {
        let mut pkt = tcp_from(E1, E2.ip, 1, 2, TCP_SYN);
        pkt[6..12].copy_from_slice(&[0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let run = env.run_container(E1, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::SpoofedSource, Some(E1));
        // Another endpoint's IP through E1's veth is spoofed too.
        let seg = tcp(E2.ip, E3.ip, 1, 2, TCP_SYN, b"");
        let pkt2 = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E2.ip, E3.ip, PROTO_TCP).build(&seg),
        );
        let run = env.run_container(E1, &pkt2);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        assert_eq!(env.drop_count(DropReason::SpoofedSource), 2);
    });
}

// ---------------------------------------------------------------------------
// 4. Isolation between networks, icc
// ---------------------------------------------------------------------------

#[test]
fn endpoint_on_another_network_is_dropped() {
    with_env(|env| {
        let pkt = tcp_from(E1, E3.ip, 40000, 80, TCP_SYN);
        let run = env.run_container(E1, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::CrossNetwork, Some(E1));
        assert_eq!(env.stats(E3).rx_packets, 0);
    });
}

#[test]
fn icc_disabled_network_drops_endpoint_to_endpoint() {
    with_env(|env| {
        let pkt = udp_from(E4, E5.ip, 5000, 53, true);
        let run = env.run_container(E4, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::IccDisabled, Some(E4));
        assert_eq!(env.stats(E5).rx_packets, 0);
        // The gateway is still reachable.
        let gw = NETWORKS[2].gateway;
        assert_eq!(NETWORKS[2].flags, NET_F_NO_ICC);
        let pkt = udp_from(E4, gw, 5000, 53, true);
        let run = env.run_container(E4, &pkt);
        assert_passed_unchanged(&run, &pkt);
        assert_eq!(env.drop_count(DropReason::IccDisabled), 1);
    });
}

#[test]
fn icc_disabled_network_is_enforced_for_entries_without_policy_flags() {
    with_env(|env| {
        // Entries an older agent wrote carry no network policy: the program
        // must read the network instead of taking them as icc=true.
        for e in [E4, E5] {
            let info = env.info_without_policy(e);
            env.set_endpoint_info(info);
        }
        let pkt = udp_from(E4, E5.ip, 5000, 53, true);
        let run = env.run_container(E4, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::IccDisabled, Some(E4));
        assert_eq!(env.stats(E5).rx_packets, 0);
        // With the flags (what the agent writes) the decision is the same.
        for e in [E4, E5] {
            let info = env.info(e);
            assert_ne!(info.flags, 0);
            env.set_endpoint_info(info);
        }
        let run = env.run_container(E4, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        assert_eq!(env.drop_count(DropReason::IccDisabled), 2);
    });
}

// ---------------------------------------------------------------------------
// 5. Internal networks
// ---------------------------------------------------------------------------

#[test]
fn internal_network_reaches_gateway_only() {
    with_env(|env| {
        let pkt = tcp_from(E6, FAR, 40000, 443, TCP_SYN);
        let run = env.run_container(E6, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::InternalNetwork, Some(E6));

        let gw = NETWORKS[3].gateway;
        let pkt = tcp_from(E6, gw, 40000, 53, TCP_SYN);
        let run = env.run_container(E6, &pkt);
        assert_passed_unchanged(&run, &pkt);
        assert_eq!(env.drop_count(DropReason::InternalNetwork), 1);
        assert!(env.nat_out_entries().is_empty());
    });
}

// ---------------------------------------------------------------------------
// 6. Malformed and unusual frames
// ---------------------------------------------------------------------------

/// Frames the kernel's BPF_PROG_TEST_RUN may refuse before the program runs:
/// shorter than ETH_HLEN (always), and, on recent kernels (6.18 here),
/// ethertype IPv4 with less than a 20-byte IPv4 header. When the kernel
/// accepts them, the program must drop them as malformed.
#[test]
fn truncated_ethernet_and_ipv4_headers_are_dropped_as_malformed() {
    with_env(|env| {
        let mut inputs = vec![vec![0u8; 10], eth(E1.host_mac, E1.mac, ETH_P_IP, &[])];
        let mut short_ip = tcp_from(E1, E2.ip, 1, 2, TCP_SYN);
        short_ip.truncate(ETH_LEN + 12);
        inputs.push(short_ip);
        let mut dropped = 0;
        for pkt in &inputs {
            match env.try_run_container(E1, pkt) {
                Err(e) => assert!(
                    e.contains("code: 22"),
                    "{}-byte frame: unexpected error {e}",
                    pkt.len()
                ),
                Ok(run) => {
                    assert!(pkt.len() >= ETH_LEN, "kernel ran a sub-Ethernet frame");
                    assert_eq!(run.verdict, TC_ACT_SHOT, "{}-byte frame", pkt.len());
                    assert_eq!(&run.out, pkt);
                    dropped += 1;
                }
            }
        }
        assert_eq!(env.drop_count(DropReason::Malformed), dropped);
        assert_eq!(env.stats(E1).drops[DropReason::Malformed as usize], dropped);
        if dropped > 0 {
            env.assert_only_drop(DropReason::Malformed);
        } else {
            env.assert_no_drops();
        }
        assert_eq!(env.stats(E2).rx_packets, 0);
    });
}

/// A TCP frame from E1 to E2 whose IPv4 header is replaced by `ip`.
fn with_ip(ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(E1.host_mac, E1.mac, ETH_P_IP, &ip.build(l4))
}

#[test]
fn ihl_below_five_is_malformed() {
    with_env(|env| {
        let seg = tcp(E1.ip, E2.ip, 1, 2, TCP_SYN, b"");
        let mut ip = Ip4::new(E1.ip, E2.ip, PROTO_TCP);
        ip.ihl = Some(4);
        let pkt = with_ip(&ip, &seg);
        let run = env.run_container(E1, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::Malformed, Some(E1));
    });
}

#[test]
fn ihl_beyond_the_packet_is_malformed() {
    with_env(|env| {
        // IHL 15 (60 bytes) and a total length to match, but only 24 bytes
        // of IP header and no payload in the frame.
        let mut ip = Ip4::new(E1.ip, E2.ip, PROTO_TCP).options(&[1, 1, 1, 1]);
        ip.ihl = Some(15);
        ip.tot_len = Some(80);
        let pkt = with_ip(&ip, &[]);
        assert_eq!(pkt.len(), ETH_LEN + 24);
        let run = env.run_container(E1, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::Malformed, Some(E1));
    });
}

#[test]
fn total_length_below_header_length_and_bad_version_are_malformed() {
    with_env(|env| {
        let seg = tcp(E1.ip, E2.ip, 1, 2, TCP_SYN, b"");
        let mut ip = Ip4::new(E1.ip, E2.ip, PROTO_TCP);
        ip.tot_len = Some(19);
        let pkt = with_ip(&ip, &seg);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        assert_eq!(run.out, pkt);

        let mut pkt = tcp_from(E1, E2.ip, 1, 2, TCP_SYN);
        pkt[ETH_LEN] = 0x65; // version 6 behind ethertype 0x0800
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::Malformed);
        assert_eq!(env.drop_count(DropReason::Malformed), 2);
        assert_eq!(env.stats(E2).rx_packets, 0);
    });
}

#[test]
fn truncated_l4_headers_are_malformed() {
    with_env(|env| {
        let seg = tcp(E1.ip, E2.ip, 1000, 2000, TCP_SYN, b"");
        // Not fragmented, 10 bytes of TCP header.
        let pkt = with_ip(&Ip4::new(E1.ip, E2.ip, PROTO_TCP), &seg[..10]);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT, "short TCP");
        // First fragment (MF, offset 0), 10 bytes of TCP header.
        let pkt = with_ip(&Ip4::new(E1.ip, E2.ip, PROTO_TCP).frag(IP_MF), &seg[..10]);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT, "short TCP, first fragment");
        // UDP with 4 bytes, ICMP with 6 bytes.
        let dg = udp(E1.ip, E2.ip, 1, 2, b"", true);
        let pkt = with_ip(&Ip4::new(E1.ip, E2.ip, PROTO_UDP), &dg[..4]);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT, "short UDP");
        let m = icmp(ICMP_ECHO_REQUEST, 0, 7, 1, b"");
        let pkt = with_ip(&Ip4::new(E1.ip, E2.ip, PROTO_ICMP), &m[..6]);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT, "short ICMP");
        env.assert_only_drop(DropReason::Malformed);
        assert_eq!(env.drop_count(DropReason::Malformed), 4);
        assert_eq!(env.stats(E1).drops[DropReason::Malformed as usize], 4);
    });
}

#[test]
fn ipv4_with_options_to_peer_is_delivered() {
    with_env(|env| {
        // One 4-byte option word: NOP NOP NOP EOL.
        let seg = tcp(E1.ip, E2.ip, 1000, 2000, TCP_SYN, b"data");
        let pkt = with_ip(
            &Ip4::new(E1.ip, E2.ip, PROTO_TCP).options(&[1, 1, 1, 0]),
            &seg,
        );
        assert_eq!(pkt[ETH_LEN] & 0x0f, 6);
        let run = env.run_container(E1, &pkt);
        assert_delivered_to(&run, &pkt, E2);
        View(&run.out).assert_checksums();
        env.assert_no_drops();
    });
}

#[test]
fn later_fragment_to_peer_is_delivered() {
    with_env(|env| {
        // Offset 185 * 8 bytes, no L4 header: just payload bytes.
        let pkt = with_ip(&Ip4::new(E1.ip, E2.ip, PROTO_UDP).frag(185), &[0x5a; 30]);
        let run = env.run_container(E1, &pkt);
        assert_delivered_to(&run, &pkt, E2);
        // A later fragment shorter than any L4 header is fine too.
        let pkt = with_ip(&Ip4::new(E1.ip, E2.ip, PROTO_TCP).frag(3), &[1, 2]);
        let run = env.run_container(E1, &pkt);
        assert_delivered_to(&run, &pkt, E2);
        assert_eq!(env.stats(E2).rx_packets, 2);
        env.assert_no_drops();
    });
}

/// Fail closed: the stack would strip the tag (or route the IPv6) with none
/// of the checks of this program (`prog_run_fail_closed.rs` has more).
#[test]
fn vlan_and_ipv6_frames_from_a_container_are_dropped() {
    with_env(|env| {
        let inner = Ip4::new(E1.ip, E2.ip, PROTO_UDP).build(&udp(E1.ip, E2.ip, 1, 2, b"x", true));
        let mut vlan_payload = vec![0x00, 0x64]; // VID 100
        vlan_payload.extend_from_slice(&ETH_P_IP.to_be_bytes());
        vlan_payload.extend_from_slice(&inner);
        let vlan = eth(E1.host_mac, E1.mac, ETH_P_8021Q, &vlan_payload);
        let run = env.run_container(E1, &vlan);
        assert_dropped(env, &run, &vlan, DropReason::VlanTagged, Some(E1));

        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        let ipv6 = eth(E1.host_mac, E1.mac, ETH_P_IPV6, &v6);
        let run = env.run_container(E1, &ipv6);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        assert_eq!(env.drop_count(DropReason::UnsupportedEthertype), 1);
        assert_eq!(env.stats(E1).tx_packets, 0);
        assert_eq!(env.stats(E2).rx_packets, 0);
    });
}

#[test]
fn unknown_interface_is_dropped() {
    with_env(|env| {
        // Fail closed: the program runs only on the agent's veths, and one it
        // does not know (not yet, or no longer) must not hand packets to the
        // stack, which would route them with no policy at all.
        let pkt = tcp_from(E1, E2.ip, 1, 2, TCP_SYN);
        let run = env.run_container_on(STRAY_IF, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        let mut short = tcp_from(E1, E2.ip, 1, 2, TCP_SYN);
        short[ETH_LEN] = 0x44; // IHL 4
        let run = env.run_container_on(STRAY_IF, &short);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        // An endpoint removed from the maps is unknown too.
        env.remove_endpoint(E1);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::UnknownInterface);
        assert_eq!(env.stats(E2).rx_packets, 0);
    });
}

#[test]
fn gateway_broadcast_and_multicast_go_to_the_stack() {
    with_env(|env| {
        let gw = NETWORKS[0].gateway;
        for dst in [gw, [255, 255, 255, 255], [224, 0, 0, 251], [239, 1, 2, 3]] {
            let pkt = udp_from(E1, dst, 5353, 5353, true);
            let run = env.run_container(E1, &pkt);
            assert_eq!(run.verdict, TC_ACT_OK, "to {dst:?}");
            assert_eq!(run.out, pkt, "to {dst:?}");
        }
        assert_eq!(env.stats(E1).tx_packets, 4);
        env.assert_no_drops();
        assert!(env.nat_out_entries().is_empty());
    });
}

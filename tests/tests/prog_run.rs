//! BPF_PROG_TEST_RUN tests of the datapath's TC programs.
//!
//! Every test gets its own network namespace (holding the interfaces whose
//! ifindex the programs see in `__sk_buff.ifindex`, the uplink with its route
//! and neighbour, ...), a freshly loaded copy of the eBPF object with private
//! (unpinned) maps, and runs the programs from a thread that entered that
//! namespace. Packets are built by hand and the output is compared byte for
//! byte with packets built independently, and checked with an independent
//! RFC 1071 checksum routine. Needs root.

use dataplane_common::{DropReason, FlowKey, NatEntry, NAT_F_CLOSING, NET_F_NO_ICC};
use dataplane_tests::prog_run::{harness::*, pkt::*};

const BCAST: [u8; 6] = [0xff; 6];

/// A TCP SYN frame from endpoint `e` to `dst:dport`.
fn tcp_from(e: EpDef, dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let seg = tcp(e.ip, dst, sport, dport, flags, b"");
    eth(
        e.host_mac,
        e.mac,
        ETH_P_IP,
        &Ip4::new(e.ip, dst, PROTO_TCP).build(&seg),
    )
}

fn udp_from(e: EpDef, dst: [u8; 4], sport: u16, dport: u16, with_csum: bool) -> Vec<u8> {
    let dg = udp(e.ip, dst, sport, dport, b"hello, udp", with_csum);
    eth(
        e.host_mac,
        e.mac,
        ETH_P_IP,
        &Ip4::new(e.ip, dst, PROTO_UDP).build(&dg),
    )
}

fn arp_request(e: EpDef, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    eth(
        BCAST,
        e.mac,
        ETH_P_ARP,
        &arp(ARP_REQUEST, e.mac, spa, [0; 6], tpa),
    )
}

fn flow(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> FlowKey {
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
fn assert_delivered_to(run: &Run, input: &[u8], peer: EpDef) {
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "verdict");
    let mut want = input.to_vec();
    want[0..6].copy_from_slice(&peer.mac);
    want[6..12].copy_from_slice(&peer.host_mac);
    assert_eq!(run.out, want, "delivered frame");
}

fn assert_passed_unchanged(run: &Run, input: &[u8]) {
    assert_eq!(run.verdict, TC_ACT_OK, "verdict");
    assert_eq!(run.out, input, "frame must be unchanged");
}

fn assert_dropped(env: &Env, run: &Run, input: &[u8], reason: DropReason, ep: Option<EpDef>) {
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

// ---------------------------------------------------------------------------
// 7. Masquerade
// ---------------------------------------------------------------------------

/// Expected NAT state for one masqueraded flow; returns the NAT port.
fn assert_nat_pair(env: &Env, orig: FlowKey, nat_port: u16) {
    let out = env
        .nat_out
        .get(&orig, 0)
        .unwrap_or_else(|e| panic!("no DP_NAT_OUT entry for {orig:?}: {e:?}"));
    assert_eq!(out.addr, UPLINK_IP, "DP_NAT_OUT addr");
    assert_eq!(out.port, nat_port, "DP_NAT_OUT port");
    assert!(out.last_seen_ns > 0);
    let (rsport, rdport) = if orig.proto == PROTO_ICMP {
        (0, nat_port)
    } else {
        (orig.dport, nat_port)
    };
    let rev = flow(orig.dst, UPLINK_IP, rsport, rdport, orig.proto);
    let back = env
        .nat_in
        .get(&rev, 0)
        .unwrap_or_else(|e| panic!("no DP_NAT_IN entry for {rev:?}: {e:?}"));
    assert_eq!(back.addr, orig.src, "DP_NAT_IN addr");
    assert_eq!(back.port, orig.sport, "DP_NAT_IN port");
    assert!(back.last_seen_ns > 0);
}

fn nat_port_of(run: &Run) -> u16 {
    let v = View(&run.out);
    let p = if v.proto() == PROTO_ICMP {
        v.icmp_id()
    } else {
        v.sport()
    };
    assert!(
        (NAT_MIN..=NAT_MAX).contains(&p),
        "NAT port {p} outside {NAT_MIN}..={NAT_MAX}"
    );
    p
}

/// Masquerade one TCP segment from E1 and check every byte of the result.
fn masq_tcp(env: &Env, dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> u16 {
    let payload = b"GET / HTTP/1.0\r\n\r\n";
    let ip = Ip4::new(E1.ip, dst, PROTO_TCP);
    let pkt = eth(
        E1.host_mac,
        E1.mac,
        ETH_P_IP,
        &ip.build(&tcp(E1.ip, dst, sport, dport, flags, payload)),
    );
    let run = env.run_container(E1, &pkt);
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "masqueraded TCP is redirected"
    );
    let v = View(&run.out);
    v.assert_checksums();
    assert_eq!(v.src_mac(), UPLINK_MAC);
    assert_eq!(v.dst_mac(), NEXT_HOP_MAC);
    assert_eq!(v.ip_src(), UPLINK_IP);
    assert_eq!(v.ip_dst(), dst);
    assert_eq!(v.ttl(), 63);
    assert_eq!(v.dport(), dport);
    let port = nat_port_of(&run);
    let want = eth(
        NEXT_HOP_MAC,
        UPLINK_MAC,
        ETH_P_IP,
        &ip.clone()
            .src(UPLINK_IP)
            .ttl(63)
            .build(&tcp(UPLINK_IP, dst, port, dport, flags, payload)),
    );
    assert_eq!(run.out, want, "masqueraded frame");
    assert_nat_pair(env, flow(E1.ip, dst, sport, dport, PROTO_TCP), port);
    port
}

#[test]
fn masquerade_tcp_rewrites_source_and_keeps_the_port_for_the_flow() {
    with_env(|env| {
        let port = masq_tcp(env, NEXT_HOP, 40000, 80, TCP_SYN);
        assert_eq!(env.nat_out_entries().len(), 1);
        assert_eq!(env.nat_in_entries().len(), 1);
        // Same flow again: same port, no new entries.
        let again = masq_tcp(env, NEXT_HOP, 40000, 80, TCP_ACK);
        assert_eq!(again, port);
        assert_eq!(env.nat_out_entries().len(), 1);
        assert_eq!(env.nat_in_entries().len(), 1);
        // Through the default route (next hop != destination).
        masq_tcp(env, FAR, 40001, 443, TCP_SYN);
        assert_eq!(env.nat_out_entries().len(), 2);
        // A FIN marks the flow as closing.
        let fin = masq_tcp(env, NEXT_HOP, 40000, 80, TCP_FIN | TCP_ACK);
        assert_eq!(fin, port);
        let out = env
            .nat_out
            .get(&flow(E1.ip, NEXT_HOP, 40000, 80, PROTO_TCP), 0)
            .unwrap();
        assert_eq!(out.flags & NAT_F_CLOSING, NAT_F_CLOSING);
        let s = env.stats(E1);
        assert_eq!(s.tx_packets, 4);
        env.assert_no_drops();
    });
}

#[test]
fn masquerade_tcp_with_ip_options_finds_the_ports_after_them() {
    with_env(|env| {
        let opts = [1, 1, 1, 0];
        let ip = Ip4::new(E1.ip, FAR, PROTO_TCP).options(&opts);
        let seg = tcp(E1.ip, FAR, 40000, 80, TCP_SYN, b"");
        let pkt = eth(E1.host_mac, E1.mac, ETH_P_IP, &ip.build(&seg));
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let v = View(&run.out);
        assert_eq!(v.ihl(), 24);
        v.assert_checksums();
        let port = nat_port_of(&run);
        let want = eth(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IP,
            &ip.clone()
                .src(UPLINK_IP)
                .ttl(63)
                .build(&tcp(UPLINK_IP, FAR, port, 80, TCP_SYN, b"")),
        );
        assert_eq!(run.out, want);
        assert_nat_pair(env, flow(E1.ip, FAR, 40000, 80, PROTO_TCP), port);
    });
}

fn masq_udp(env: &Env, with_csum: bool) {
    let pkt = udp_from(E1, FAR, 5353, 53, with_csum);
    let run = env.run_container(E1, &pkt);
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    let v = View(&run.out);
    v.assert_checksums();
    let port = nat_port_of(&run);
    if !with_csum {
        assert_eq!(v.udp_csum_field(), 0, "a zero UDP checksum stays zero");
    }
    let want = eth(
        NEXT_HOP_MAC,
        UPLINK_MAC,
        ETH_P_IP,
        &Ip4::new(UPLINK_IP, FAR, PROTO_UDP).ttl(63).build(&udp(
            UPLINK_IP,
            FAR,
            port,
            53,
            b"hello, udp",
            with_csum,
        )),
    );
    assert_eq!(run.out, want);
    assert_nat_pair(env, flow(E1.ip, FAR, 5353, 53, PROTO_UDP), port);
    // Second datagram of the flow: same port.
    let run2 = env.run_container(E1, &pkt);
    assert_eq!(run2.verdict, TC_ACT_REDIRECT);
    assert_eq!(run2.out, want);
}

#[test]
fn masquerade_udp() {
    with_env(|env| {
        masq_udp(env, true);
        env.assert_no_drops();
    });
}

#[test]
fn masquerade_udp_without_checksum_keeps_it_zero() {
    with_env(|env| {
        masq_udp(env, false);
        env.assert_no_drops();
    });
}

#[test]
fn masquerade_icmp_echo_rewrites_the_identifier() {
    with_env(|env| {
        let m = icmp(ICMP_ECHO_REQUEST, 0, 0x4242, 1, b"ping payload 0123");
        let ip = Ip4::new(E1.ip, FAR, PROTO_ICMP);
        let pkt = eth(E1.host_mac, E1.mac, ETH_P_IP, &ip.build(&m));
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let v = View(&run.out);
        v.assert_checksums();
        let id = nat_port_of(&run);
        let want = eth(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IP,
            &ip.clone().src(UPLINK_IP).ttl(63).build(&icmp(
                ICMP_ECHO_REQUEST,
                0,
                id,
                1,
                b"ping payload 0123",
            )),
        );
        assert_eq!(run.out, want);
        assert_nat_pair(env, flow(E1.ip, FAR, 0x4242, 0, PROTO_ICMP), id);
        env.assert_no_drops();
    });
}

#[test]
fn masquerade_ttl_one_goes_to_the_stack_untouched() {
    with_env(|env| {
        let seg = tcp(E1.ip, FAR, 40000, 80, TCP_SYN, b"");
        let pkt = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, FAR, PROTO_TCP).ttl(1).build(&seg),
        );
        let run = env.run_container(E1, &pkt);
        assert_passed_unchanged(&run, &pkt);
        assert!(env.nat_out_entries().is_empty());
        assert!(env.nat_in_entries().is_empty());
        env.assert_no_drops();
    });
}

#[test]
fn masquerade_first_fragment_is_translated_and_an_orphan_later_one_dropped() {
    // More cases (in order, overlapping, tiny, replies, published ports,
    // hairpin) in prog_run_frag.rs.
    with_env(|env| {
        let dg = udp(E1.ip, FAR, 5000, 53, &[7; 40], true);
        let first = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, FAR, PROTO_UDP).frag(IP_MF).build(&dg[..24]),
        );
        let run = env.run_container(E1, &first);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(View(&run.out).ip_src(), UPLINK_IP);
        assert_eq!(env.nat_out_entries().len(), 1);
        // A later fragment of another datagram (other id): its first
        // fragment was never seen.
        let mut ip = Ip4::new(E1.ip, FAR, PROTO_UDP).frag(6);
        ip.id = 0x9876;
        let later = eth(E1.host_mac, E1.mac, ETH_P_IP, &ip.build(&[7; 16]));
        let run = env.run_container(E1, &later);
        assert_dropped(
            env,
            &run,
            &later,
            DropReason::FragmentWithoutFirst,
            Some(E1),
        );
    });
}

#[test]
fn masquerade_unsupported_protocols_are_dropped() {
    with_env(|env| {
        let gre = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, FAR, PROTO_GRE).build(&[0, 0, 0x08, 0x00, 1, 2, 3, 4]),
        );
        let run = env.run_container(E1, &gre);
        assert_dropped(env, &run, &gre, DropReason::UnsupportedProtocol, Some(E1));
        // ICMP that is not an echo request (destination unreachable).
        let m = icmp(ICMP_DEST_UNREACH, 3, 0, 0, &[0x45; 28]);
        let unreach = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, FAR, PROTO_ICMP).build(&m),
        );
        let run = env.run_container(E1, &unreach);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        assert_eq!(run.out, unreach);
        assert_eq!(env.drop_count(DropReason::UnsupportedProtocol), 2);
        assert!(env.nat_out_entries().is_empty());
    });
}

#[test]
fn masquerade_port_exhaustion_drops_the_extra_flow() {
    with_env(|env| {
        let up = env.ifx(UPLINK_IF);
        env.set_config(dataplane_common::Config {
            uplink_ifindex: up,
            uplink_ip: UPLINK_IP,
            nat_port_min: 62000,
            nat_port_max: 62001,
            _pad: 0,
        });
        let mut ports = Vec::new();
        for sport in [30001, 30002] {
            let pkt = tcp_from(E1, FAR, sport, 80, TCP_SYN);
            let run = env.run_container(E1, &pkt);
            assert_eq!(run.verdict, TC_ACT_REDIRECT, "flow from {sport}");
            let p = View(&run.out).sport();
            assert!((62000..=62001).contains(&p));
            ports.push(p);
        }
        ports.sort_unstable();
        assert_eq!(ports, vec![62000, 62001]);
        let pkt = tcp_from(E1, FAR, 30003, 80, TCP_SYN);
        let run = env.run_container(E1, &pkt);
        assert_dropped(env, &run, &pkt, DropReason::NatExhausted, Some(E1));
        // The ports are per destination: another destination still works.
        let other = tcp_from(E1, NEXT_HOP, 30003, 80, TCP_SYN);
        let run = env.run_container(E1, &other);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(env.nat_out_entries().len(), 3);
    });
}

#[test]
fn masquerade_with_unresolved_neighbour_uses_redirect_neigh() {
    with_env(|env| {
        let pkt = udp_from(E1, UNRESOLVED, 5353, 53, true);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let v = View(&run.out);
        v.assert_checksums();
        // MACs are left for bpf_redirect_neigh() to fill in.
        assert_eq!(v.dst_mac(), E1.host_mac);
        assert_eq!(v.src_mac(), E1.mac);
        assert_eq!(v.ip_src(), UPLINK_IP);
        assert_eq!(v.ttl(), 63);
        let port = nat_port_of(&run);
        assert_nat_pair(env, flow(E1.ip, UNRESOLVED, 5353, 53, PROTO_UDP), port);
    });
}

#[test]
fn routed_traffic_not_for_the_uplink_goes_to_the_stack() {
    with_env(|env| {
        let cases = [
            // Blackhole route.
            BLACKHOLED,
            // A local address of the host (the uplink address).
            UPLINK_IP,
            // Routed through another host interface.
            OTHER_NET_HOST,
        ];
        for dst in cases {
            let pkt = tcp_from(E1, dst, 40000, 80, TCP_SYN);
            let run = env.run_container(E1, &pkt);
            assert_eq!(run.verdict, TC_ACT_OK, "to {dst:?}");
            assert_eq!(run.out, pkt, "to {dst:?}");
        }
        // Forwarding disabled on the ingress device.
        env.set_forwarding(E1.host, false);
        let pkt = tcp_from(E1, FAR, 40000, 80, TCP_SYN);
        let run = env.run_container(E1, &pkt);
        assert_passed_unchanged(&run, &pkt);
        env.set_forwarding(E1.host, true);
        // No uplink configured.
        env.set_config(dataplane_common::Config::default());
        let run = env.run_container(E1, &pkt);
        assert_passed_unchanged(&run, &pkt);
        assert!(env.nat_out_entries().is_empty());
        assert!(env.nat_in_entries().is_empty());
        env.assert_no_drops();
    });
}

// ---------------------------------------------------------------------------
// 8. Reverse translation on the uplink
// ---------------------------------------------------------------------------

fn reply_tcp(sport: u16, nat_port: u16, flags: u8, ttl: u8) -> Vec<u8> {
    let seg = tcp(
        NEXT_HOP,
        UPLINK_IP,
        sport,
        nat_port,
        flags,
        b"HTTP/1.0 200 OK\r\n",
    );
    eth(
        UPLINK_MAC,
        NEXT_HOP_MAC,
        ETH_P_IP,
        &Ip4::new(NEXT_HOP, UPLINK_IP, PROTO_TCP)
            .ttl(ttl)
            .build(&seg),
    )
}

#[test]
fn uplink_reply_is_translated_back_to_the_container() {
    with_env(|env| {
        let port = masq_tcp(env, NEXT_HOP, 40000, 80, TCP_SYN);
        let pkt = reply_tcp(80, port, TCP_SYN | TCP_ACK, 64);
        let run = env.run_uplink(&pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let v = View(&run.out);
        v.assert_checksums();
        assert_eq!(v.ip_dst(), E1.ip);
        assert_eq!(v.dport(), 40000);
        assert_eq!(v.ttl(), 63);
        let seg = tcp(
            NEXT_HOP,
            E1.ip,
            80,
            40000,
            TCP_SYN | TCP_ACK,
            b"HTTP/1.0 200 OK\r\n",
        );
        let want = eth(
            E1.mac,
            E1.host_mac,
            ETH_P_IP,
            &Ip4::new(NEXT_HOP, E1.ip, PROTO_TCP).ttl(63).build(&seg),
        );
        assert_eq!(run.out, want);
        let s = env.stats(E1);
        assert_eq!((s.rx_packets, s.rx_bytes), (1, pkt.len() as u64));
        env.assert_no_drops();
    });
}

#[test]
fn uplink_reply_to_a_hand_inserted_nat_entry() {
    with_env(|env| {
        let rev = flow(FAR, UPLINK_IP, 443, 61005, PROTO_TCP);
        env.nat_in
            .insert(
                rev,
                NatEntry {
                    addr: E2.ip,
                    port: 51000,
                    flags: 0,
                    last_seen_ns: 1,
                },
                0,
            )
            .unwrap();
        let seg = tcp(FAR, UPLINK_IP, 443, 61005, TCP_ACK, b"");
        let pkt = eth(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            ETH_P_IP,
            &Ip4::new(FAR, UPLINK_IP, PROTO_TCP).ttl(50).build(&seg),
        );
        let run = env.run_uplink(&pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let want = eth(
            E2.mac,
            E2.host_mac,
            ETH_P_IP,
            &Ip4::new(FAR, E2.ip, PROTO_TCP)
                .ttl(49)
                .build(&tcp(FAR, E2.ip, 443, 51000, TCP_ACK, b"")),
        );
        assert_eq!(run.out, want);
        View(&run.out).assert_checksums();
        let e = env.nat_in.get(&rev, 0).unwrap();
        assert!(e.last_seen_ns > 1, "last_seen refreshed");
        assert_eq!(env.stats(E2).rx_packets, 1);
        // An RST marks the flow closing.
        let seg = tcp(FAR, UPLINK_IP, 443, 61005, 0x04, b"");
        let rst = eth(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            ETH_P_IP,
            &Ip4::new(FAR, UPLINK_IP, PROTO_TCP).build(&seg),
        );
        assert_eq!(env.run_uplink(&rst).verdict, TC_ACT_REDIRECT);
        let e = env.nat_in.get(&rev, 0).unwrap();
        assert_eq!(e.flags & NAT_F_CLOSING, NAT_F_CLOSING);
    });
}

#[test]
fn uplink_udp_replies_are_translated_back() {
    with_env(|env| {
        for with_csum in [true, false] {
            let sport = if with_csum { 5353 } else { 5354 };
            let pkt = udp_from(E1, FAR, sport, 53, with_csum);
            let run = env.run_container(E1, &pkt);
            assert_eq!(run.verdict, TC_ACT_REDIRECT);
            let port = nat_port_of(&run);
            let dg = udp(FAR, UPLINK_IP, 53, port, b"answer", with_csum);
            let reply = eth(
                UPLINK_MAC,
                NEXT_HOP_MAC,
                ETH_P_IP,
                &Ip4::new(FAR, UPLINK_IP, PROTO_UDP).build(&dg),
            );
            let run = env.run_uplink(&reply);
            assert_eq!(run.verdict, TC_ACT_REDIRECT);
            let want = eth(
                E1.mac,
                E1.host_mac,
                ETH_P_IP,
                &Ip4::new(FAR, E1.ip, PROTO_UDP)
                    .ttl(63)
                    .build(&udp(FAR, E1.ip, 53, sport, b"answer", with_csum)),
            );
            assert_eq!(run.out, want, "UDP reply (checksum: {with_csum})");
            View(&run.out).assert_checksums();
        }
        assert_eq!(env.stats(E1).rx_packets, 2);
        env.assert_no_drops();
    });
}

#[test]
fn uplink_icmp_echo_reply_is_translated_back() {
    with_env(|env| {
        let m = icmp(ICMP_ECHO_REQUEST, 0, 0x4242, 9, b"abcdefgh");
        let pkt = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, FAR, PROTO_ICMP).build(&m),
        );
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let id = nat_port_of(&run);
        let reply = eth(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            ETH_P_IP,
            &Ip4::new(FAR, UPLINK_IP, PROTO_ICMP).build(&icmp(
                ICMP_ECHO_REPLY,
                0,
                id,
                9,
                b"abcdefgh",
            )),
        );
        let run = env.run_uplink(&reply);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let want = eth(
            E1.mac,
            E1.host_mac,
            ETH_P_IP,
            &Ip4::new(FAR, E1.ip, PROTO_ICMP).ttl(63).build(&icmp(
                ICMP_ECHO_REPLY,
                0,
                0x4242,
                9,
                b"abcdefgh",
            )),
        );
        assert_eq!(run.out, want);
        View(&run.out).assert_checksums();
        env.assert_no_drops();
    });
}

#[test]
fn uplink_traffic_without_translation_goes_to_the_stack() {
    with_env(|env| {
        let port = masq_tcp(env, NEXT_HOP, 40000, 80, TCP_SYN);
        let unused = if port == NAT_MAX { NAT_MIN } else { port + 1 };
        let cases = vec![
            // No NAT entry for this port.
            reply_tcp(80, unused, TCP_SYN | TCP_ACK, 64),
            // Right port, wrong remote port.
            reply_tcp(81, port, TCP_SYN | TCP_ACK, 64),
            // TTL 1: the stack answers.
            reply_tcp(80, port, TCP_SYN | TCP_ACK, 1),
            // To another address than the uplink's.
            {
                let seg = tcp(NEXT_HOP, [10, 77, 0, 3], 80, port, TCP_ACK, b"");
                eth(
                    UPLINK_MAC,
                    NEXT_HOP_MAC,
                    ETH_P_IP,
                    &Ip4::new(NEXT_HOP, [10, 77, 0, 3], PROTO_TCP).build(&seg),
                )
            },
            // A later fragment of a datagram whose first fragment was not
            // translated (maybe the host's own).
            eth(
                UPLINK_MAC,
                NEXT_HOP_MAC,
                ETH_P_IP,
                &Ip4::new(NEXT_HOP, UPLINK_IP, PROTO_TCP)
                    .frag(IP_MF | 3)
                    .build(&[0; 16]),
            ),
            // ICMP echo request to the host itself.
            eth(
                UPLINK_MAC,
                NEXT_HOP_MAC,
                ETH_P_IP,
                &Ip4::new(NEXT_HOP, UPLINK_IP, PROTO_ICMP).build(&icmp(
                    ICMP_ECHO_REQUEST,
                    0,
                    port,
                    1,
                    b"",
                )),
            ),
            // ARP, IPv6.
            eth(
                BCAST,
                NEXT_HOP_MAC,
                ETH_P_ARP,
                &arp(ARP_REQUEST, NEXT_HOP_MAC, NEXT_HOP, [0; 6], UPLINK_IP),
            ),
            eth(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV6, &[0x60; 48]),
            // Broken IPv4: left to the stack, not counted.
            {
                let mut p = reply_tcp(80, port, TCP_ACK, 64);
                p[ETH_LEN] = 0x44; // IHL 4
                p
            },
        ];
        for (i, pkt) in cases.iter().enumerate() {
            let run = env.run_uplink(pkt);
            assert_eq!(run.verdict, TC_ACT_OK, "case {i}");
            assert_eq!(&run.out, pkt, "case {i}");
        }
        assert_eq!(env.stats(E1).rx_packets, 0);
        env.assert_no_drops();
    });
}

#[test]
fn uplink_reply_for_a_removed_container_is_dropped() {
    with_env(|env| {
        let port = masq_tcp(env, NEXT_HOP, 40000, 80, TCP_SYN);
        env.remove_endpoint(E1);
        let pkt = reply_tcp(80, port, TCP_SYN | TCP_ACK, 64);
        let run = env.run_uplink(&pkt);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        assert_eq!(run.out, pkt);
        env.assert_only_drop(DropReason::NoRoute);
    });
}

#[test]
fn own_subnet_non_endpoint_destinations_are_not_masqueraded() {
    with_env(|env| {
        // The subnet broadcast is sent to the Ethernet broadcast address
        // without ARP; the network address and an unassigned address can be
        // addressed to the host MAC by hand. None of them is beyond the
        // network: they must not leave through the uplink.
        for dst in [[172, 20, 255, 255], [172, 20, 0, 0], [172, 20, 0, 99]] {
            let mut pkt = udp_from(E1, dst, 137, 137, true);
            if dst == [172, 20, 255, 255] {
                pkt[0..6].copy_from_slice(&BCAST);
            }
            let run = env.run_container(E1, &pkt);
            assert_ne!(
                run.verdict, TC_ACT_REDIRECT,
                "to {dst:?}: redirected as {:02x?}",
                run.out
            );
            assert_eq!(run.out, pkt, "to {dst:?}");
        }
        assert!(env.nat_out_entries().is_empty());
    });
}

/// An ICMP "fragmentation needed" from a router about a masqueraded flow:
/// the outer destination and the embedded source (address and port) are
/// translated back to the container's, checksums (outer IP, embedded IP,
/// ICMP) fixed, and it is delivered, so path-MTU discovery works behind the
/// masquerade.
#[test]
fn uplink_icmp_error_about_a_masqueraded_flow_is_translated_back() {
    with_env(|env| {
        let port = masq_tcp(env, FAR, 40000, 443, TCP_SYN);
        // The first 8 bytes of the TCP header as the router quotes them.
        let quoted = |src: [u8; 4], sport: u16| {
            let seg = tcp(src, FAR, sport, 443, TCP_SYN, b"");
            Ip4::new(src, FAR, PROTO_TCP).build(&seg[..8])
        };
        let err = |dst: [u8; 4], src: [u8; 4], sport: u16, ttl: u8| {
            eth(
                UPLINK_MAC,
                NEXT_HOP_MAC,
                ETH_P_IP,
                &Ip4::new(NEXT_HOP, dst, PROTO_ICMP)
                    .ttl(ttl)
                    // type 3 code 4: fragmentation needed, next-hop MTU 1400
                    .build(&icmp(ICMP_DEST_UNREACH, 4, 0, 1400, &quoted(src, sport))),
            )
        };
        let pkt = err(UPLINK_IP, UPLINK_IP, port, 64);
        let run = env.run_uplink(&pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT, "delivered to the container");
        let mut want = err(E1.ip, E1.ip, 40000, 63);
        want[0..6].copy_from_slice(&E1.mac);
        want[6..12].copy_from_slice(&E1.host_mac);
        assert_eq!(run.out, want, "translated ICMP error");
        let v = View(&run.out);
        v.assert_checksums();
        let inner = &v.l4()[8..28];
        assert_eq!(inet_csum(&[inner]), 0, "embedded IP checksum");
        assert_eq!(env.stats(E1).rx_packets, 1);
        env.assert_no_drops();

        // About a flow that was never masqueraded: to the stack, unchanged.
        let other = err(UPLINK_IP, UPLINK_IP, port.wrapping_add(1), 64);
        assert_passed_unchanged(&env.run_uplink(&other), &other);
    });
}

//! BPF_PROG_TEST_RUN tests of the masquerade: containers' traffic to
//! beyond the host translated in `dp_from_container`, and the replies
//! translated back on the uplink (`dp_from_uplink`).
//!
//! Same fixture as `prog_run.rs` (a private namespace per test, a freshly
//! loaded object with unpinned maps); packets built by hand and compared
//! byte for byte, checksums checked with the RFC 1071 routine of `pkt.rs`.
//! Needs root.

use dataplane_common::{DropReason, FlowKey, NatEntry, NAT_F_CLOSING};
use dataplane_tests::prog_run::{frames::*, harness::*, pkt::*};

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

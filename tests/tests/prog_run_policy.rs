//! BPF_PROG_TEST_RUN tests of port publishing and network policy:
//! the XDP program on the uplink (early drops, published-port DNAT), the TC
//! delivery of DNATed packets, the reverse translation of replies and hairpin
//! connections in `dp_from_container`, `--link` on icc=false networks, and
//! destinations inside a container's own subnet.
//!
//! Same fixture as `prog_run.rs` (a private namespace per test, a freshly
//! loaded object with unpinned maps). Expected packets are built by hand and
//! compared byte for byte; checksums are verified with the independent
//! RFC 1071 routine of `pkt.rs`. Needs root.
use dataplane_common::DropReason;
use dataplane_tests::prog_run::{frames::*, harness::*, pkt::*};

/// A client beyond the next hop.
const CLIENT: [u8; 4] = FAR;
const CPORT: u16 = 40000;
/// Another address of the host (for exact-address publishing).
const HOST_IP2: [u8; 4] = [10, 77, 0, 3];
/// An address on the uplink's subnet that is not the host's.
const NOT_HOST: [u8; 4] = [10, 77, 0, 9];
const GW_A: [u8; 4] = NETWORKS[0].gateway;
// ---------------------------------------------------------------------------
// 1. XDP on the uplink
// ---------------------------------------------------------------------------

#[test]
fn xdp_drops_direct_access_to_container_addresses() {
    with_env(|env| {
        publish_8080(env);
        let cases = [
            (outside_tcp(E1.ip, CPORT, 80, TCP_SYN, b""), E1),
            // Even on the container port that is published.
            (outside_tcp(E1.ip, CPORT, 8080, TCP_SYN, b""), E1),
            (outside_udp(E3.ip, 5353, 53, true), E3),
            (
                from_outside(
                    &Ip4::new(CLIENT, E2.ip, PROTO_ICMP),
                    &icmp(ICMP_ECHO_REQUEST, 0, 7, 1, b"ping"),
                ),
                E2,
            ),
            // A later fragment carries no ports but is still for a container.
            (
                from_outside(
                    &Ip4::new(CLIENT, E2.ip, PROTO_UDP).frag(100),
                    b"fragment body...",
                ),
                E2,
            ),
        ];
        for (i, (pkt, _)) in cases.iter().enumerate() {
            let run = env.run_xdp(pkt);
            assert_xdp_dropped(&run, pkt, &format!("case {i}"));
        }
        assert_drops(env, DropReason::DirectAccessFromOutside, cases.len() as u64);
        assert_ep_drops(env, E1, DropReason::DirectAccessFromOutside, 2);
        assert_ep_drops(env, E2, DropReason::DirectAccessFromOutside, 2);
        assert_ep_drops(env, E3, DropReason::DirectAccessFromOutside, 1);
        for e in [E1, E2, E3] {
            let s = env.stats(e);
            assert_eq!((s.rx_packets, s.tx_packets), (0, 0));
        }
        assert!(ct_entries(env).is_empty(), "no translation recorded");
    });
}

#[test]
fn xdp_drops_loopback_destinations_even_published_ones() {
    with_env(|env| {
        publish_8080(env);
        // Published on 127.0.0.1 only (`-p 127.0.0.1:8081:80`).
        publish(env, [127, 0, 0, 1], 8081, PROTO_TCP, E1.ip, 80);
        let cases = [
            outside_tcp([127, 0, 0, 1], CPORT, 8081, TCP_SYN, b""),
            outside_tcp([127, 0, 0, 1], CPORT, 8080, TCP_SYN, b""),
            outside_tcp([127, 0, 0, 1], CPORT, 22, TCP_SYN, b""),
            outside_udp([127, 1, 2, 3], 5353, 53, true),
            from_outside(
                &Ip4::new(CLIENT, [127, 0, 0, 1], PROTO_ICMP),
                &icmp(ICMP_ECHO_REQUEST, 0, 7, 1, b"ping"),
            ),
        ];
        for (i, pkt) in cases.iter().enumerate() {
            let run = env.run_xdp(pkt);
            assert_xdp_dropped(&run, pkt, &format!("case {i}"));
        }
        assert_drops(env, DropReason::LoopbackFromOutside, cases.len() as u64);
        // Not counted on any endpoint.
        for e in ENDPOINTS {
            assert_ep_drops(env, e, DropReason::LoopbackFromOutside, 0);
        }
        assert!(ct_entries(env).is_empty());
    });
}

/// A TCP SYN to uplinkIP:8080 is translated to E1:80 (client address
/// preserved); the reply translation is recorded. Returns the XDP output.

#[test]
fn xdp_dnats_a_wildcard_published_port_and_tc_delivers_it() {
    with_env(|env| {
        publish_8080(env);
        let out = xdp_syn_to_8080(env, b"", TCP_SYN);
        assert_eq!(ct_entries(env).len(), 1, "one DP_CT entry: the reply");
        env.assert_no_drops();

        // 2. dp_from_uplink delivers the translated packet into E1.
        let run = env.run_uplink(&out);
        assert_eq!(run.verdict, TC_ACT_REDIRECT, "redirected to E1's peer");
        let mut want = out.clone();
        want[0..6].copy_from_slice(&E1.mac);
        want[6..12].copy_from_slice(&E1.host_mac);
        assert_eq!(run.out, want, "delivered frame");
        let s = env.stats(E1);
        assert_eq!((s.rx_packets, s.rx_bytes), (1, out.len() as u64));
        assert_eq!(s.tx_packets, 0);

        // The next segment of the connection (with data): same translation,
        // the entry is refreshed, not duplicated.
        let before = env
            .ct
            .get(&flow(E1.ip, CLIENT, 80, CPORT, PROTO_TCP), 0)
            .unwrap()
            .last_seen_ns;
        let out2 = xdp_syn_to_8080(env, b"GET / HTTP/1.0\r\n\r\n", TCP_ACK);
        let after = env
            .ct
            .get(&flow(E1.ip, CLIENT, 80, CPORT, PROTO_TCP), 0)
            .unwrap()
            .last_seen_ns;
        assert!(after >= before);
        assert_eq!(ct_entries(env).len(), 1);
        let run = env.run_uplink(&out2);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(&run.out[0..12], &[E1.mac, E1.host_mac].concat()[..]);
        assert_eq!(&run.out[12..], &out2[12..]);
        assert_eq!(env.stats(E1).rx_packets, 2);
        env.assert_no_drops();
        assert!(env.nat_in_entries().is_empty() && env.nat_out_entries().is_empty());
    });
}

#[test]
fn xdp_exact_host_address_mapping_matches_only_that_address() {
    with_env(|env| {
        add_host_ip(env, UPLINK_IP);
        add_host_ip(env, HOST_IP2);
        publish(env, HOST_IP2, 8080, PROTO_TCP, E1.ip, 80);

        // Another host address, same port: not published there.
        let pkt = outside_tcp(UPLINK_IP, CPORT, 8080, TCP_SYN, b"");
        let run = env.run_xdp(&pkt);
        assert_xdp_pass_unchanged(&run, &pkt, "uplink address");
        assert!(ct_entries(env).is_empty());

        let pkt = outside_tcp(HOST_IP2, CPORT, 8080, TCP_SYN, b"");
        let run = env.run_xdp(&pkt);
        assert_eq!(run.verdict, XDP_PASS);
        let want = from_outside(
            &Ip4::new(CLIENT, E1.ip, PROTO_TCP).ttl(63),
            &tcp(CLIENT, E1.ip, CPORT, 80, TCP_SYN, b""),
        );
        assert_eq!(run.out, want);
        View(&run.out).assert_checksums();
        assert_ct(
            env,
            flow(E1.ip, CLIENT, 80, CPORT, PROTO_TCP),
            HOST_IP2,
            8080,
            CLIENT,
            CPORT,
        );
        assert_eq!(ct_entries(env).len(), 1);
        env.assert_no_drops();
    });
}

#[test]
fn xdp_wildcard_mapping_needs_a_host_address_and_the_right_port_and_protocol() {
    with_env(|env| {
        publish_8080(env);
        let cases = [
            (
                "not a host address",
                outside_tcp(NOT_HOST, CPORT, 8080, TCP_SYN, b""),
            ),
            (
                "unpublished port",
                outside_tcp(UPLINK_IP, CPORT, 8081, TCP_SYN, b""),
            ),
            ("other protocol", outside_udp(UPLINK_IP, CPORT, 8080, true)),
            (
                "ICMP",
                from_outside(
                    &Ip4::new(CLIENT, UPLINK_IP, PROTO_ICMP),
                    &icmp(ICMP_ECHO_REQUEST, 0, 8080, 1, b"ping"),
                ),
            ),
        ];
        for (what, pkt) in &cases {
            let run = env.run_xdp(pkt);
            assert_xdp_pass_unchanged(&run, pkt, what);
        }
        assert!(ct_entries(env).is_empty());
        env.assert_no_drops();
    });
}

fn xdp_udp(with_csum: bool) {
    with_env(move |env| {
        add_host_ip(env, UPLINK_IP);
        publish(env, [0; 4], 5353, PROTO_UDP, E2.ip, 53);
        let payload = b"a published datagram";
        let mut pkt = from_outside(
            &Ip4::new(CLIENT, UPLINK_IP, PROTO_UDP),
            &udp(CLIENT, UPLINK_IP, CPORT, 5353, payload, with_csum),
        );
        let run = env.run_xdp(&pkt);
        assert_eq!(run.verdict, XDP_PASS);
        let want = from_outside(
            &Ip4::new(CLIENT, E2.ip, PROTO_UDP).ttl(63),
            &udp(CLIENT, E2.ip, CPORT, 53, payload, with_csum),
        );
        assert_eq!(run.out, want, "DNATed datagram");
        let v = View(&run.out);
        v.assert_checksums();
        if !with_csum {
            assert_eq!(v.udp_csum_field(), 0, "no checksum stays no checksum");
        }
        assert_ct(
            env,
            flow(E2.ip, CLIENT, 53, CPORT, PROTO_UDP),
            UPLINK_IP,
            5353,
            CLIENT,
            CPORT,
        );

        // Padded to the Ethernet minimum: padding left alone, checksum right.
        let short = b"x";
        pkt = from_outside(
            &Ip4::new(CLIENT, UPLINK_IP, PROTO_UDP),
            &udp(CLIENT, UPLINK_IP, CPORT + 1, 5353, short, with_csum),
        );
        pkt.resize(60, 0);
        let run = env.run_xdp(&pkt);
        assert_eq!(run.verdict, XDP_PASS);
        let mut want = from_outside(
            &Ip4::new(CLIENT, E2.ip, PROTO_UDP).ttl(63),
            &udp(CLIENT, E2.ip, CPORT + 1, 53, short, with_csum),
        );
        want.resize(60, 0);
        assert_eq!(run.out, want, "padded datagram");
        View(&run.out).assert_checksums();
        env.assert_no_drops();
    });
}

#[test]
fn xdp_dnats_udp_with_checksum() {
    xdp_udp(true);
}

#[test]
fn xdp_dnats_udp_without_checksum_keeps_it_zero() {
    xdp_udp(false);
}

#[test]
fn xdp_dnats_tcp_with_ip_options() {
    with_env(|env| {
        publish_8080(env);
        // Router alert + NOP NOP NOP EOL.
        let opts = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00];
        let payload = b"data after options";
        let pkt = from_outside(
            &Ip4::new(CLIENT, UPLINK_IP, PROTO_TCP).options(&opts),
            &tcp(CLIENT, UPLINK_IP, CPORT, 8080, TCP_ACK, payload),
        );
        let run = env.run_xdp(&pkt);
        assert_eq!(run.verdict, XDP_PASS);
        let want = from_outside(
            &Ip4::new(CLIENT, E1.ip, PROTO_TCP).options(&opts).ttl(63),
            &tcp(CLIENT, E1.ip, CPORT, 80, TCP_ACK, payload),
        );
        assert_eq!(run.out, want, "DNATed frame with options");
        View(&run.out).assert_checksums();
        assert_ct(
            env,
            flow(E1.ip, CLIENT, 80, CPORT, PROTO_TCP),
            UPLINK_IP,
            8080,
            CLIENT,
            CPORT,
        );
    });
}

#[test]
fn xdp_ttl_one_and_later_fragments_go_to_the_stack_unchanged() {
    with_env(|env| {
        publish_8080(env);
        let seg = tcp(CLIENT, UPLINK_IP, CPORT, 8080, TCP_SYN, b"0123456789abcdef");
        let cases = [
            ("ttl 1", Ip4::new(CLIENT, UPLINK_IP, PROTO_TCP).ttl(1)),
            ("ttl 0", Ip4::new(CLIENT, UPLINK_IP, PROTO_TCP).ttl(0)),
            (
                "later fragment",
                Ip4::new(CLIENT, UPLINK_IP, PROTO_TCP).frag(3),
            ),
            (
                "last fragment",
                Ip4::new(CLIENT, UPLINK_IP, PROTO_TCP).frag(IP_MF | 3),
            ),
        ];
        for (what, ip) in &cases {
            let pkt = from_outside(ip, &seg);
            let run = env.run_xdp(&pkt);
            assert_xdp_pass_unchanged(&run, &pkt, what);
        }
        // (First fragments are translated like whole packets: see
        // prog_run_frag.rs.)
        assert!(ct_entries(env).is_empty(), "nothing translated");
        env.assert_no_drops();
    });
}

#[test]
fn xdp_passes_arp_ipv6_and_truncated_frames_to_the_stack() {
    with_env(|env| {
        publish_8080(env);
        let syn = outside_tcp(UPLINK_IP, CPORT, 8080, TCP_SYN, b"");
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "ipv6",
                eth(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV6, &[0x60; 60]),
            ),
            (
                "arp",
                eth(
                    [0xff; 6],
                    NEXT_HOP_MAC,
                    ETH_P_ARP,
                    &arp(ARP_REQUEST, NEXT_HOP_MAC, NEXT_HOP, [0; 6], UPLINK_IP),
                ),
            ),
            ("ethernet header only", syn[..ETH_LEN].to_vec()),
            ("ip header cut", syn[..ETH_LEN + 10].to_vec()),
            ("tcp header cut", syn[..ETH_LEN + 20 + 12].to_vec()),
        ];
        // IHL pointing beyond the frame.
        let mut ip = Ip4::new(CLIENT, UPLINK_IP, PROTO_TCP);
        ip.ihl = Some(15);
        cases.push(("ihl beyond frame", from_outside(&ip, &[0u8; 20])));
        // A UDP header cut short, to a published UDP port.
        publish(env, [0; 4], 5353, PROTO_UDP, E2.ip, 53);
        let dg = outside_udp(UPLINK_IP, CPORT, 5353, true);
        cases.push(("udp header cut", dg[..ETH_LEN + 20 + 5].to_vec()));
        for (what, pkt) in &cases {
            let run = env
                .try_run_xdp(Some(UPLINK_IF), pkt)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_xdp_pass_unchanged(&run, pkt, what);
        }
        assert!(ct_entries(env).is_empty());
        env.assert_no_drops();
    });
}

/// A packet for a container address whose L4 header is cut short must not get
/// past the direct-access filter either (the host stack forwards IPv4 without
/// looking at L4 headers).
#[test]
fn xdp_truncated_l4_to_a_container_address_is_dropped() {
    with_env(|env| {
        let syn = outside_tcp(E1.ip, CPORT, 80, TCP_SYN, b"");
        // IPv4 total length consistent with the cut: a well-formed IPv4
        // packet carrying 12 bytes of TCP header.
        let mut ip = Ip4::new(CLIENT, E1.ip, PROTO_TCP);
        ip.tot_len = Some(20 + 12);
        let pkt = from_outside(&ip, &syn[ETH_LEN + 20..ETH_LEN + 32]);
        let run = env.run_xdp(&pkt);
        assert_xdp_dropped(&run, &pkt, "truncated TCP to E1");
        assert_drops(env, DropReason::DirectAccessFromOutside, 1);
        assert_ep_drops(env, E1, DropReason::DirectAccessFromOutside, 1);
    });
}

/// Two host ports publishing the same container port (`-p 8080:80 -p
/// 8081:80`): a client that reuses its source port for the second one (after
/// the first connection ended) must get replies from the port it connected to.
#[test]
fn xdp_reply_translation_follows_the_latest_connection() {
    with_env(|env| {
        publish_8080(env);
        publish(env, [0; 4], 8081, PROTO_TCP, E1.ip, 80);
        let _ = xdp_syn_to_8080(env, b"", TCP_SYN);
        // The first connection ends.
        let fin = tcp_from(E1, CLIENT, 80, CPORT, TCP_FIN | TCP_ACK);
        assert_eq!(env.run_container(E1, &fin).verdict, TC_ACT_REDIRECT);
        let pkt = outside_tcp(UPLINK_IP, CPORT, 8081, TCP_SYN, b"");
        let run = env.run_xdp(&pkt);
        assert_eq!(run.verdict, XDP_PASS);
        assert_eq!(View(&run.out).dport(), 80);
        let synack = tcp_from(E1, CLIENT, 80, CPORT, TCP_SYN | TCP_ACK);
        let run = env.run_container(E1, &synack);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(
            View(&run.out).sport(),
            8081,
            "the SYN-ACK must come from the port the client connected to"
        );
        assert_ct(
            env,
            flow(E1.ip, CLIENT, 80, CPORT, PROTO_TCP),
            UPLINK_IP,
            8081,
            CLIENT,
            CPORT,
        );
    });
}

// ---------------------------------------------------------------------------
// 3. Replies of published-port connections
// ---------------------------------------------------------------------------

#[test]
fn container_reply_of_a_published_connection_is_reverse_translated() {
    with_env(|env| {
        publish_8080(env);
        let _ = xdp_syn_to_8080(env, b"", TCP_SYN);

        let pkt = tcp_from(E1, CLIENT, 80, CPORT, TCP_SYN | TCP_ACK);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT, "out of the uplink");
        let v = View(&run.out);
        v.assert_checksums();
        assert_eq!(v.ip_src(), UPLINK_IP);
        assert_eq!(v.sport(), 8080);
        assert_eq!(v.ip_dst(), CLIENT);
        assert_eq!(v.dport(), CPORT);
        assert_eq!(v.ttl(), 63);
        let want = eth(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IP,
            &Ip4::new(UPLINK_IP, CLIENT, PROTO_TCP).ttl(63).build(&tcp(
                UPLINK_IP,
                CLIENT,
                8080,
                CPORT,
                TCP_SYN | TCP_ACK,
                b"",
            )),
        );
        assert_eq!(run.out, want, "reverse-translated reply");
        assert!(
            env.nat_out_entries().is_empty(),
            "a published-port reply is not masqueraded"
        );
        assert!(env.nat_in_entries().is_empty());
        assert_eq!(ct_entries(env).len(), 1);
        assert_eq!(env.stats(E1).tx_packets, 1);
        env.assert_no_drops();

        // Another connection of the container (not a reply) is masqueraded.
        let other = tcp_from(E1, CLIENT, 80, CPORT + 1, TCP_SYN | TCP_ACK);
        let run = env.run_container(E1, &other);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let v = View(&run.out);
        assert!((NAT_MIN..=NAT_MAX).contains(&v.sport()));
        assert_eq!(env.nat_out_entries().len(), 1);
    });
}

#[test]
fn container_udp_reply_of_a_published_port_keeps_a_zero_checksum() {
    with_env(|env| {
        add_host_ip(env, UPLINK_IP);
        publish(env, [0; 4], 5353, PROTO_UDP, E2.ip, 53);
        let q = outside_udp(UPLINK_IP, CPORT, 5353, true);
        assert_eq!(env.run_xdp(&q).verdict, XDP_PASS);
        for with_csum in [true, false] {
            let payload = b"answer";
            let pkt = frame_from(
                E2,
                &Ip4::new(E2.ip, CLIENT, PROTO_UDP),
                &udp(E2.ip, CLIENT, 53, CPORT, payload, with_csum),
            );
            let run = env.run_container(E2, &pkt);
            assert_eq!(run.verdict, TC_ACT_REDIRECT);
            let want = eth(
                NEXT_HOP_MAC,
                UPLINK_MAC,
                ETH_P_IP,
                &Ip4::new(UPLINK_IP, CLIENT, PROTO_UDP)
                    .ttl(63)
                    .build(&udp(UPLINK_IP, CLIENT, 5353, CPORT, payload, with_csum)),
            );
            assert_eq!(run.out, want, "udp reply with_csum={with_csum}");
            View(&run.out).assert_checksums();
        }
        assert!(env.nat_out_entries().is_empty());
        env.assert_no_drops();
    });
}

// ---------------------------------------------------------------------------
// 4. Hairpin
// ---------------------------------------------------------------------------

/// Container `from` opens `sport` -> uplinkIP:8080 (published to E1:80);
/// returns the source port E1 sees.
fn hairpin_syn(env: &Env, from: EpDef, sport: u16) -> u16 {
    let pkt = tcp_from(from, UPLINK_IP, sport, 8080, TCP_SYN);
    let run = env.run_container(from, &pkt);
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "hairpin is delivered to E1");
    let v = View(&run.out);
    v.assert_checksums();
    assert_eq!(v.ip_src(), GW_A, "source = E1's network gateway");
    assert_eq!(v.ip_dst(), E1.ip);
    assert_eq!(v.dport(), 80);
    let port = v.sport();
    // From the NAT range only: disjoint from the ephemeral ports the host's
    // own connections from the gateway use.
    assert!(
        (NAT_MIN..=NAT_MAX).contains(&port),
        "hairpin source port {port} (client port {sport})"
    );
    let want = to_endpoint(
        E1,
        &Ip4::new(GW_A, E1.ip, PROTO_TCP).ttl(63),
        &tcp(GW_A, E1.ip, port, 80, TCP_SYN, b""),
    );
    assert_eq!(run.out, want, "hairpinned SYN");
    assert_ct(
        env,
        flow(from.ip, UPLINK_IP, sport, 8080, PROTO_TCP),
        GW_A,
        port,
        E1.ip,
        80,
    );
    assert_ct(
        env,
        flow(E1.ip, GW_A, 80, port, PROTO_TCP),
        UPLINK_IP,
        8080,
        from.ip,
        sport,
    );
    port
}

/// E1 answers the hairpinned connection at `port`; `to` gets it from
/// uplinkIP:8080 at `sport`.
fn hairpin_reply(env: &Env, port: u16, to: EpDef, sport: u16) {
    let pkt = tcp_from(E1, GW_A, 80, port, TCP_SYN | TCP_ACK);
    let run = env.run_container(E1, &pkt);
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "reply delivered to the client"
    );
    let want = to_endpoint(
        to,
        &Ip4::new(UPLINK_IP, to.ip, PROTO_TCP).ttl(63),
        &tcp(UPLINK_IP, to.ip, 8080, sport, TCP_SYN | TCP_ACK, b""),
    );
    assert_eq!(run.out, want, "translated reply");
    View(&run.out).assert_checksums();
}

#[test]
fn hairpin_from_another_network() {
    with_env(|env| {
        publish_8080(env);
        let port = hairpin_syn(env, E3, 40000);
        assert_eq!(ct_entries(env).len(), 2);
        assert_eq!(env.stats(E3).tx_packets, 1);
        assert_eq!(env.stats(E1).rx_packets, 1);

        // Retransmitted SYN: same translation, no new entries.
        assert_eq!(hairpin_syn(env, E3, 40000), port);
        assert_eq!(ct_entries(env).len(), 2);

        hairpin_reply(env, port, E3, 40000);
        assert_eq!(env.stats(E1).tx_packets, 1);
        assert_eq!(env.stats(E3).rx_packets, 1);
        assert!(env.nat_out_entries().is_empty(), "nothing masqueraded");
        env.assert_no_drops();
    });
}

#[test]
fn hairpin_same_client_port_gets_distinct_nat_ports() {
    with_env(|env| {
        publish_8080(env);
        let p3 = hairpin_syn(env, E3, 40000);
        // E2 (network A) uses the same source port: E1 must not see the same
        // gateway:port twice.
        let p2 = hairpin_syn(env, E2, 40000);
        assert_ne!(p2, p3);
        assert_eq!(ct_entries(env).len(), 4);
        hairpin_reply(env, p2, E2, 40000);
        hairpin_reply(env, p3, E3, 40000);
        env.assert_no_drops();
    });
}

#[test]
fn hairpin_to_the_containers_own_published_port() {
    with_env(|env| {
        publish_8080(env);
        let port = hairpin_syn(env, E1, 40001);
        hairpin_reply(env, port, E1, 40001);
        let s = env.stats(E1);
        assert_eq!((s.tx_packets, s.rx_packets), (2, 2));
        assert!(env.nat_out_entries().is_empty());
        env.assert_no_drops();
    });
}

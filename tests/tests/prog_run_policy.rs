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

use dataplane_common::{
    CtEntry, DropReason, EndpointKey, FlowKey, LinkKey, PortKey, PortTarget, CT_F_REPLY_DIR,
    NAT_F_CLOSING, NAT_F_REPLIED,
};
use dataplane_tests::prog_run::{harness::*, pkt::*};

/// A client beyond the next hop.
const CLIENT: [u8; 4] = FAR;
const CPORT: u16 = 40000;
/// Another address of the host (for exact-address publishing).
const HOST_IP2: [u8; 4] = [10, 77, 0, 3];
/// An address on the uplink's subnet that is not the host's.
const NOT_HOST: [u8; 4] = [10, 77, 0, 9];
const GW_A: [u8; 4] = NETWORKS[0].gateway;
const GW_NOICC: [u8; 4] = NETWORKS[2].gateway;

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

fn publish(env: &mut Env, host_ip: [u8; 4], port: u16, proto: u8, to: [u8; 4], to_port: u16) {
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

fn add_host_ip(env: &mut Env, ip: [u8; 4]) {
    env.host_ips.insert(EndpointKey { ip }, 1, 0).unwrap();
}

/// The usual setup: 0.0.0.0:8080/tcp -> E1:80, the uplink address is a host
/// address.
fn publish_8080(env: &mut Env) {
    add_host_ip(env, UPLINK_IP);
    publish(env, [0; 4], 8080, PROTO_TCP, E1.ip, 80);
}

/// A frame arriving on the uplink from the next hop.
fn from_outside(ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IP, &ip.build(l4))
}

fn outside_tcp(dst: [u8; 4], sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    from_outside(
        &Ip4::new(CLIENT, dst, PROTO_TCP),
        &tcp(CLIENT, dst, sport, dport, flags, payload),
    )
}

fn outside_udp(dst: [u8; 4], sport: u16, dport: u16, with_csum: bool) -> Vec<u8> {
    from_outside(
        &Ip4::new(CLIENT, dst, PROTO_UDP),
        &udp(CLIENT, dst, sport, dport, b"published udp", with_csum),
    )
}

fn frame_from(e: EpDef, ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(e.host_mac, e.mac, ETH_P_IP, &ip.build(l4))
}

fn tcp_from(e: EpDef, dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    frame_from(
        e,
        &Ip4::new(e.ip, dst, PROTO_TCP),
        &tcp(e.ip, dst, sport, dport, flags, b""),
    )
}

fn udp_from(e: EpDef, dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    frame_from(
        e,
        &Ip4::new(e.ip, dst, PROTO_UDP),
        &udp(e.ip, dst, sport, dport, b"linked udp", true),
    )
}

/// What endpoint `to` receives: `ip`/`l4` behind its MACs.
fn to_endpoint(to: EpDef, ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(to.mac, to.host_mac, ETH_P_IP, &ip.build(l4))
}

fn ct_entries(env: &Env) -> Vec<(FlowKey, CtEntry)> {
    env.ct.iter().map(Result::unwrap).collect()
}

fn assert_ct(env: &Env, key: FlowKey, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) {
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

fn assert_xdp_pass_unchanged(run: &Run, input: &[u8], what: &str) {
    assert_eq!(run.verdict, XDP_PASS, "{what}: verdict");
    assert_eq!(run.out, input, "{what}: frame must be unchanged");
}

fn assert_xdp_dropped(run: &Run, input: &[u8], what: &str) {
    assert_eq!(run.verdict, XDP_DROP, "{what}: verdict");
    assert_eq!(run.out, input, "{what}: a dropped frame is not modified");
}

/// Every global drop counter: `reason` has `n`, the others 0.
fn assert_drops(env: &Env, reason: DropReason, n: u64) {
    for r in DropReason::ALL {
        let want = if r == reason { n } else { 0 };
        assert_eq!(env.drop_count(r), want, "global drop counter {}", r.name());
    }
}

/// Endpoint drop counters: `reason` has `n`, the others 0.
fn assert_ep_drops(env: &Env, e: EpDef, reason: DropReason, n: u64) {
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
fn xdp_syn_to_8080(env: &Env, payload: &[u8], flags: u8) -> Vec<u8> {
    let pkt = outside_tcp(UPLINK_IP, CPORT, 8080, flags, payload);
    let run = env.run_xdp(&pkt);
    assert_eq!(run.verdict, XDP_PASS, "DNATed packet goes on to TC");
    let v = View(&run.out);
    v.assert_checksums();
    assert_eq!(v.ip_dst(), E1.ip);
    assert_eq!(v.ip_src(), CLIENT, "client address preserved");
    assert_eq!(v.dport(), 80);
    assert_eq!(v.sport(), CPORT);
    assert_eq!(v.ttl(), 63);
    let want = from_outside(
        &Ip4::new(CLIENT, E1.ip, PROTO_TCP).ttl(63),
        &tcp(CLIENT, E1.ip, CPORT, 80, flags, payload),
    );
    assert_eq!(run.out, want, "DNATed frame (MACs untouched by XDP)");
    assert_ct(
        env,
        flow(E1.ip, CLIENT, 80, CPORT, PROTO_TCP),
        UPLINK_IP,
        8080,
        CLIENT,
        CPORT,
    );
    run.out
}

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

// ---------------------------------------------------------------------------
// 5. Links on an icc=false network
// ---------------------------------------------------------------------------

/// A third endpoint on the icc=false network, on the fixture's spare veth.
const S3: EpDef = EpDef {
    host: STRAY_IF,
    ctr: "h7p",
    net: NET_NOICC,
    ip: [172, 22, 0, 4],
    mac: [0x02, 0xc0, 0, 0, 7, 0x02],
    host_mac: [0x02, 0x40, 0, 0, 7, 0x01],
};
const S1: EpDef = E4;
const S2: EpDef = E5;

fn link(env: &mut Env, src: EpDef, dst: EpDef, port: u16, proto: u8) {
    env.links
        .insert(link_key(src, dst, port, proto), 1, 0)
        .unwrap();
}

fn link_key(src: EpDef, dst: EpDef, port: u16, proto: u8) -> LinkKey {
    LinkKey {
        src: src.ip,
        dst: dst.ip,
        port,
        proto,
        _pad: 0,
    }
}

fn assert_delivered(run: &Run, input: &[u8], to: EpDef, what: &str) {
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "{what}: verdict");
    let mut want = input.to_vec();
    want[0..6].copy_from_slice(&to.mac);
    want[6..12].copy_from_slice(&to.host_mac);
    assert_eq!(run.out, want, "{what}: delivered frame");
}

fn assert_tc_dropped(run: &Run, input: &[u8], what: &str) {
    assert_eq!(run.verdict, TC_ACT_SHOT, "{what}: verdict");
    assert_eq!(run.out, input, "{what}: dropped frame unchanged");
}

#[test]
fn link_allows_the_linked_port_and_its_replies_only() {
    with_env(|env| {
        env.add_endpoint(S3);
        link(env, S2, S1, 5000, PROTO_TCP);
        link(env, S2, S1, 0, 0);

        // s2 -> s1:5000: allowed, reply state recorded.
        let syn = tcp_from(S2, S1.ip, 45000, 5000, TCP_SYN);
        let run = env.run_container(S2, &syn);
        assert_delivered(&run, &syn, S1, "s2 -> s1:5000");
        let reply_key = flow(S1.ip, S2.ip, 5000, 45000, PROTO_TCP);
        assert!(
            env.policy_ct.get(&reply_key, 0).is_ok(),
            "DP_POLICY_CT has the reply {reply_key:?}"
        );
        assert_eq!(env.policy_ct.iter().count(), 1);

        // The reply s1:5000 -> s2:45000 is allowed.
        let synack = tcp_from(S1, S2.ip, 5000, 45000, TCP_SYN | TCP_ACK);
        let run = env.run_container(S1, &synack);
        assert_delivered(&run, &synack, S2, "reply s1 -> s2");
        env.assert_no_drops();

        let mut n = 0;
        let denied = [
            (
                "s1 -> s2 new connection",
                S1,
                tcp_from(S1, S2.ip, 46000, 7000, TCP_SYN),
            ),
            (
                "s1:5000 -> s2 other port",
                S1,
                tcp_from(S1, S2.ip, 5000, 45001, TCP_ACK),
            ),
            (
                "s1 -> s2:45000 from another port",
                S1,
                tcp_from(S1, S2.ip, 5001, 45000, TCP_SYN),
            ),
            (
                "s2 -> s1:6000",
                S2,
                tcp_from(S2, S1.ip, 45000, 6000, TCP_SYN),
            ),
            ("s2 -> s1:5000/udp", S2, udp_from(S2, S1.ip, 45000, 5000)),
            (
                "icmp s2 -> s1",
                S2,
                frame_from(
                    S2,
                    &Ip4::new(S2.ip, S1.ip, PROTO_ICMP),
                    &icmp(ICMP_ECHO_REQUEST, 0, 9, 1, b"ping"),
                ),
            ),
        ];
        for (what, from, pkt) in &denied {
            let run = env.run_container(*from, pkt);
            assert_tc_dropped(&run, pkt, what);
            n += 1;
            assert_drops(env, DropReason::LinkPortNotAllowed, n);
        }
        assert_ep_drops(env, S1, DropReason::LinkPortNotAllowed, 3);
        assert_ep_drops(env, S2, DropReason::LinkPortNotAllowed, 3);

        // No link at all: icc_disabled.
        let pkt = tcp_from(S3, S1.ip, 45000, 5000, TCP_SYN);
        let run = env.run_container(S3, &pkt);
        assert_tc_dropped(&run, &pkt, "s3 -> s1:5000");
        assert_eq!(env.drop_count(DropReason::IccDisabled), 1);
        assert_ep_drops(env, S3, DropReason::IccDisabled, 1);
        // Nor the other way.
        let pkt = tcp_from(S1, S3.ip, 45000, 5000, TCP_SYN);
        let run = env.run_container(S1, &pkt);
        assert_tc_dropped(&run, &pkt, "s1 -> s3:5000");
        assert_eq!(env.drop_count(DropReason::IccDisabled), 2);

        // The gateway is reachable regardless.
        let pkt = tcp_from(S3, GW_NOICC, 45000, 53, TCP_SYN);
        let run = env.run_container(S3, &pkt);
        assert_eq!(run.verdict, TC_ACT_OK);
        assert_eq!(run.out, pkt);

        let s = env.stats(S1);
        assert_eq!(s.rx_packets, 1, "only the linked SYN reached s1");
        assert_eq!(env.stats(S2).rx_packets, 1, "only the reply reached s2");

        // Unlinked: the links and the connection state are removed.
        env.links
            .remove(&link_key(S2, S1, 5000, PROTO_TCP))
            .unwrap();
        env.links.remove(&link_key(S2, S1, 0, 0)).unwrap();
        env.policy_ct.remove(&reply_key).unwrap();
        let run = env.run_container(S2, &syn);
        assert_tc_dropped(&run, &syn, "s2 -> s1:5000 after unlink");
        assert_eq!(env.drop_count(DropReason::IccDisabled), 3);
        let run = env.run_container(S1, &synack);
        assert_tc_dropped(&run, &synack, "reply after unlink");
        assert_eq!(env.drop_count(DropReason::IccDisabled), 4);
        assert_eq!(env.drop_count(DropReason::LinkPortNotAllowed), n);
        assert!(env.policy_ct.iter().next().is_none(), "no state recreated");
    });
}

#[test]
fn link_allows_udp_on_a_linked_udp_port() {
    with_env(|env| {
        link(env, S2, S1, 5353, PROTO_UDP);
        link(env, S2, S1, 0, 0);
        let q = udp_from(S2, S1.ip, 45000, 5353);
        let run = env.run_container(S2, &q);
        assert_delivered(&run, &q, S1, "udp s2 -> s1:5353");
        let a = udp_from(S1, S2.ip, 5353, 45000);
        let run = env.run_container(S1, &a);
        assert_delivered(&run, &a, S2, "udp reply");
        // TCP on that port is not linked.
        let pkt = tcp_from(S2, S1.ip, 45000, 5353, TCP_SYN);
        let run = env.run_container(S2, &pkt);
        assert_tc_dropped(&run, &pkt, "tcp s2 -> s1:5353");
        assert_drops(env, DropReason::LinkPortNotAllowed, 1);
    });
}

// ---------------------------------------------------------------------------
// 6. Own subnet, not an endpoint
// ---------------------------------------------------------------------------

#[test]
fn own_subnet_non_endpoint_is_no_route_and_broadcast_goes_to_the_stack() {
    with_env(|env| {
        let mut n = 0;
        for dst in [[172, 20, 0, 0], [172, 20, 0, 99], [172, 20, 200, 1]] {
            for pkt in [
                tcp_from(E1, dst, 40000, 80, TCP_SYN),
                udp_from(E1, dst, 137, 137),
            ] {
                let run = env.run_container(E1, &pkt);
                assert_tc_dropped(&run, &pkt, &format!("to {dst:?}"));
                n += 1;
                assert_drops(env, DropReason::NoRoute, n);
            }
        }
        assert_ep_drops(env, E1, DropReason::NoRoute, n);

        let mut pkt = udp_from(E1, [172, 20, 255, 255], 137, 137);
        pkt[0..6].copy_from_slice(&[0xff; 6]);
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_OK, "subnet broadcast");
        assert_eq!(run.out, pkt);
        assert_drops(env, DropReason::NoRoute, n);
        assert!(env.nat_out_entries().is_empty());
        assert!(ct_entries(env).is_empty());
    });
}

#[test]
fn xdp_drops_spoofed_sources_to_a_published_port() {
    with_env(|env| {
        publish_8080(env);
        // A container's address, the host's own address and a loopback
        // address never arrive from outside: the stack's rp_filter does not
        // see what the datapath delivers, so XDP refuses them.
        let sources = [E2.ip, UPLINK_IP, [127, 0, 0, 1]];
        for src in sources {
            let pkt = from_outside(
                &Ip4::new(src, UPLINK_IP, PROTO_TCP),
                &tcp(src, UPLINK_IP, CPORT, 8080, TCP_SYN, b""),
            );
            let run = env.run_xdp(&pkt);
            assert_xdp_dropped(&run, &pkt, &format!("source {src:?}"));
        }
        assert_drops(env, DropReason::SpoofedSource, sources.len() as u64);
        assert!(ct_entries(env).is_empty(), "no state from spoofed packets");
    });
}

#[test]
fn xdp_only_a_syn_replaces_a_live_reply_translation() {
    with_env(|env| {
        publish_8080(env);
        publish(env, [0; 4], 8081, PROTO_TCP, E1.ip, 80);
        let _ = xdp_syn_to_8080(env, b"", TCP_SYN);
        // A stray ACK from the same client port to the other published port
        // is translated, but must not redirect the live connection's replies.
        let ack = outside_tcp(UPLINK_IP, CPORT, 8081, TCP_ACK, b"x");
        assert_eq!(env.run_xdp(&ack).verdict, XDP_PASS);
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

/// DP_CT entries carry the state the agent's GC needs: the reply direction,
/// whether the container answered, and FIN/RST (short timeouts for
/// unanswered and closed flows, like the masquerade).
#[test]
fn ct_entries_track_replies_and_closing() {
    with_env(|env| {
        publish_8080(env);
        let _ = xdp_syn_to_8080(env, b"", TCP_SYN);
        let key = flow(E1.ip, CLIENT, 80, CPORT, PROTO_TCP);
        let flags = |env: &Env| env.ct.get(&key, 0).unwrap().flags;
        assert_eq!(
            flags(env),
            CT_F_REPLY_DIR,
            "new: reply direction, unanswered"
        );
        let synack = tcp_from(E1, CLIENT, 80, CPORT, TCP_SYN | TCP_ACK);
        assert_eq!(env.run_container(E1, &synack).verdict, TC_ACT_REDIRECT);
        assert_eq!(flags(env), CT_F_REPLY_DIR | NAT_F_REPLIED, "answered");
        let fin = outside_tcp(UPLINK_IP, CPORT, 8080, TCP_FIN | TCP_ACK, b"");
        assert_eq!(env.run_xdp(&fin).verdict, XDP_PASS);
        assert_eq!(
            flags(env),
            CT_F_REPLY_DIR | NAT_F_REPLIED | NAT_F_CLOSING,
            "closing"
        );
    });
}

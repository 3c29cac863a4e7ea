//! BPF_PROG_TEST_RUN tests of the IPv6 north-south paths of
//! `dp_from_uplink6`, reached as in the agent through the tail call of
//! `dp_from_uplink`: published ports on the host's IPv6 addresses (client
//! address kept, both directions tracked), replies of masqueraded flows,
//! routed networks' replies, direct access and spoofed sources, ICMPv6
//! errors translated through their quoted header, later fragments, and
//! extension headers. Checksums are checked with an independent
//! implementation over the IPv6 pseudo-header. Needs root.

use dataplane_common::{CtEntry6, DropReason, FlowKey6, NatEntry6, CT_F_REPLY_DIR};
use dataplane_tests::prog_run::{harness::*, pkt::*, v6n::*};

const CPORT: u16 = 40000;
const NAT_PORT: u16 = 61005;

fn assert_delivered6(env: &Env, run: &Run, e: EpDef) {
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "verdict");
    let v = View6(&run.out);
    assert_eq!(v.dst_mac(), e.mac, "delivered to the container's MAC");
    env.assert_no_drops();
}

#[test]
fn published_port_on_host_ipv6_reaches_container_with_client_address_kept() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        v6.publish([0; 16], 8080, PROTO_TCP, E1_6, 80);
        let l4 = tcp6(CLIENT6, HOST6, CPORT, 8080, TCP_SYN, b"");
        let pkt = frame6(&ip6(CLIENT6, HOST6, PROTO_TCP, 64, &[], &l4));
        let r = env.run_uplink(&pkt);
        assert_delivered6(env, &r, E1);
        let o = View6(&r.out);
        assert_eq!(o.src(), CLIENT6, "client address kept");
        assert_eq!(o.dst(), E1_6);
        assert_eq!((o.sport(0), o.dport(0)), (CPORT, 80));
        assert_eq!(o.hop_limit(), 63);
        o.assert_l4_csum(PROTO_TCP, 0);
        // The reply direction is recorded for egress6.
        let reply = FlowKey6::new(E1_6, CLIENT6, 80, CPORT, PROTO_TCP);
        let back = v6.ct6.get(&reply, 0).expect("reply entry");
        assert_eq!(
            (back.src, back.sport, back.dst, back.dport),
            (HOST6, 8080, CLIENT6, CPORT)
        );
        assert_ne!(back.flags & CT_F_REPLY_DIR, 0);
        // The next packet of the flow takes the tracked path.
        let l4 = tcp6(CLIENT6, HOST6, CPORT, 8080, TCP_ACK, b"hello");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, HOST6, PROTO_TCP, 64, &[], &l4)));
        assert_delivered6(env, &r, E1);
        View6(&r.out).assert_l4_csum(PROTO_TCP, 0);
    });
}

#[test]
fn published_port_on_one_host_address_is_not_open_on_another() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        let other = addr6([0xfd00, 0x77, 0, 0, 0, 0, 0, 9]);
        v6.host_ips6
            .insert(dataplane_common::Endpoint6Key { ip: other }, 1, 0)
            .unwrap();
        v6.publish(HOST6, 5353, PROTO_UDP, E2_6, 53);
        let l4 = udp6(CLIENT6, HOST6, CPORT, 5353, b"q");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, HOST6, PROTO_UDP, 64, &[], &l4)));
        assert_delivered6(env, &r, E2);
        let o = View6(&r.out);
        assert_eq!((o.dst(), o.dport(0)), (E2_6, 53));
        o.assert_l4_csum(PROTO_UDP, 0);
        // The same port on the other host address: the host's own.
        let l4 = udp6(CLIENT6, other, CPORT, 5353, b"q");
        let pkt = frame6(&ip6(CLIENT6, other, PROTO_UDP, 64, &[], &l4));
        let r = env.run_uplink(&pkt);
        assert_eq!(r.verdict, TC_ACT_OK);
        assert_eq!(r.out, pkt, "untouched");
    });
}

#[test]
fn direct_access_to_a_container_ipv6_address_is_dropped() {
    with_env(|env| {
        let _v6 = V6n::new(env);
        let l4 = tcp6(CLIENT6, E1_6, CPORT, 80, TCP_SYN, b"");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, E1_6, PROTO_TCP, 64, &[], &l4)));
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::DirectAccessFromOutside);
        assert_eq!(
            env.stats(E1).drops[DropReason::DirectAccessFromOutside as usize],
            1
        );
    });
}

#[test]
fn spoofed_sources_to_a_published_ipv6_port_are_dropped() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        v6.publish([0; 16], 8080, PROTO_TCP, E1_6, 80);
        let lo = addr6([0, 0, 0, 0, 0, 0, 0, 1]);
        for src in [E2_6, HOST6, lo] {
            let l4 = tcp6(src, HOST6, CPORT, 8080, TCP_SYN, b"");
            let r = env.run_uplink(&frame6(&ip6(src, HOST6, PROTO_TCP, 64, &[], &l4)));
            assert_eq!(r.verdict, TC_ACT_SHOT, "source {src:?}");
        }
        env.assert_only_drop(DropReason::SpoofedSource);
        assert!(v6.ct6_entries().is_empty(), "nothing tracked");
    });
}

#[test]
fn masqueraded_reply_is_translated_back_to_the_container() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        let key = FlowKey6::new(CLIENT6, HOST6, 443, NAT_PORT, PROTO_TCP);
        let back = NatEntry6 {
            addr: E1_6,
            port: CPORT,
            flags: 0,
            _pad: 0,
            last_seen_ns: 0,
        };
        v6.nat6_in.insert(key, back, 0).unwrap();
        let l4 = tcp6(CLIENT6, HOST6, 443, NAT_PORT, TCP_SYN | TCP_ACK, b"");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, HOST6, PROTO_TCP, 64, &[], &l4)));
        assert_delivered6(env, &r, E1);
        let o = View6(&r.out);
        assert_eq!((o.src(), o.dst()), (CLIENT6, E1_6));
        assert_eq!((o.sport(0), o.dport(0)), (443, CPORT));
        o.assert_l4_csum(PROTO_TCP, 0);
        let e = v6.nat6_in.get(&key, 0).unwrap();
        assert_ne!(e.flags & dataplane_common::NAT_F_REPLIED, 0, "reply seen");
    });
}

#[test]
fn masqueraded_echo_reply_gets_its_identifier_back() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        let key = FlowKey6::new(CLIENT6, HOST6, 0, NAT_PORT, PROTO_ICMPV6);
        let back = NatEntry6 {
            addr: E1_6,
            port: 77,
            flags: 0,
            _pad: 0,
            last_seen_ns: 0,
        };
        v6.nat6_in.insert(key, back, 0).unwrap();
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&NAT_PORT.to_be_bytes());
        let l4 = icmp6(CLIENT6, HOST6, 129, 0, rest, b"ping");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, HOST6, PROTO_ICMPV6, 64, &[], &l4)));
        assert_delivered6(env, &r, E1);
        let o = View6(&r.out);
        assert_eq!(o.dst(), E1_6);
        assert_eq!(u16::from_be_bytes([o.l4(0)[4], o.l4(0)[5]]), 77);
        o.assert_l4_csum(PROTO_ICMPV6, 0);
    });
}

#[test]
fn routed_network_reply_is_delivered_untranslated_only_for_an_open_flow() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        // The identity entry egress6 records for a routed flow's replies.
        let key = FlowKey6::new(CLIENT6, E1_6, 443, CPORT, PROTO_TCP);
        let ct = CtEntry6 {
            src: CLIENT6,
            dst: E1_6,
            sport: 443,
            dport: CPORT,
            ..Default::default()
        };
        v6.ct6.insert(key, ct, 0).unwrap();
        let l4 = tcp6(CLIENT6, E1_6, 443, CPORT, TCP_ACK, b"x");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, E1_6, PROTO_TCP, 64, &[], &l4)));
        assert_delivered6(env, &r, E1);
        let o = View6(&r.out);
        assert_eq!(
            (o.src(), o.dst(), o.sport(0), o.dport(0)),
            (CLIENT6, E1_6, 443, CPORT)
        );
        assert_eq!(o.hop_limit(), 63);
        o.assert_l4_csum(PROTO_TCP, 0);
        // Another port of the same container: direct access.
        let l4 = tcp6(CLIENT6, E1_6, 443, CPORT + 1, TCP_ACK, b"x");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, E1_6, PROTO_TCP, 64, &[], &l4)));
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::DirectAccessFromOutside);
    });
}

/// An ICMPv6 error from `src` to `dst` quoting the packet `quoted_ip`.
fn icmp6_error(src: [u8; 16], dst: [u8; 16], typ: u8, rest: [u8; 4], quoted_ip: &[u8]) -> Vec<u8> {
    let l4 = icmp6(src, dst, typ, 0, rest, quoted_ip);
    frame6(&ip6(src, dst, PROTO_ICMPV6, 64, &[], &l4))
}

#[test]
fn packet_too_big_about_a_masqueraded_flow_reaches_the_container() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        let key = FlowKey6::new(CLIENT6, HOST6, 443, NAT_PORT, PROTO_TCP);
        let back = NatEntry6 {
            addr: E1_6,
            port: CPORT,
            flags: 0,
            _pad: 0,
            last_seen_ns: 0,
        };
        v6.nat6_in.insert(key, back, 0).unwrap();
        // What left the host: HOST6:NAT_PORT -> CLIENT6:443.
        let q = ip6(
            HOST6,
            CLIENT6,
            PROTO_TCP,
            63,
            &[],
            &tcp6(HOST6, CLIENT6, NAT_PORT, 443, TCP_ACK, &[7; 64]),
        );
        let router = addr6([0x2001, 0xdb8, 0x1, 0, 0, 0, 0, 1]);
        let pkt = icmp6_error(router, HOST6, 2, 1280u32.to_be_bytes(), &q);
        let r = env.run_uplink(&pkt);
        assert_delivered6(env, &r, E1);
        let o = View6(&r.out);
        assert_eq!((o.src(), o.dst()), (router, E1_6));
        let quoted = &o.l4(0)[8..];
        assert_eq!(&quoted[8..24], &E1_6, "quoted source");
        assert_eq!(&quoted[24..40], &CLIENT6, "quoted destination");
        assert_eq!(
            u16::from_be_bytes([quoted[40], quoted[41]]),
            CPORT,
            "quoted source port"
        );
        assert_eq!(&o.l4(0)[4..8], &1280u32.to_be_bytes(), "MTU kept");
        o.assert_l4_csum(PROTO_ICMPV6, 0);
    });
}

#[test]
fn port_unreachable_from_a_client_about_a_published_flow_reaches_the_container() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        v6.publish([0; 16], 5353, PROTO_UDP, E2_6, 53);
        // The flow in: CLIENT6:CPORT -> [HOST6]:5353, then the client's
        // error about the container's reply as translated.
        let l4 = udp6(CLIENT6, HOST6, CPORT, 5353, b"q");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, HOST6, PROTO_UDP, 64, &[], &l4)));
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let q = ip6(
            HOST6,
            CLIENT6,
            PROTO_UDP,
            63,
            &[],
            &udp6(HOST6, CLIENT6, 5353, CPORT, b"answer"),
        );
        let r = env.run_uplink(&icmp6_error(CLIENT6, HOST6, 1, [0; 4], &q));
        assert_delivered6(env, &r, E2);
        let o = View6(&r.out);
        assert_eq!(o.dst(), E2_6);
        let quoted = &o.l4(0)[8..];
        assert_eq!(&quoted[8..24], &E2_6);
        assert_eq!(u16::from_be_bytes([quoted[40], quoted[41]]), 53);
        o.assert_l4_csum(PROTO_ICMPV6, 0);
    });
}

#[test]
fn icmpv6_error_about_no_flow_goes_to_the_stack_and_spoofed_ones_are_dropped() {
    with_env(|env| {
        let _v6 = V6n::new(env);
        let q = ip6(
            HOST6,
            CLIENT6,
            PROTO_TCP,
            63,
            &[],
            &tcp6(HOST6, CLIENT6, 1234, 443, TCP_ACK, b""),
        );
        let pkt = icmp6_error(CLIENT6, HOST6, 1, [0; 4], &q);
        let r = env.run_uplink(&pkt);
        assert_eq!((r.verdict, &r.out), (TC_ACT_OK, &pkt));
        let r = env.run_uplink(&icmp6_error(E1_6, HOST6, 1, [0; 4], &q));
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::SpoofedSource);
    });
}

#[test]
fn later_fragments_of_a_published_datagram_follow_the_first() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        v6.publish([0; 16], 5353, PROTO_UDP, E2_6, 53);
        let data: Vec<u8> = (0..3000).map(|i| (i * 7) as u8).collect();
        let dgram = udp6(CLIENT6, HOST6, CPORT, 5353, &data);
        let (a, b) = dgram.split_at(1448);
        let f1 = frame6(&ip6(
            CLIENT6,
            HOST6,
            NH_FRAGMENT,
            64,
            &ext_frag(PROTO_UDP, 0, true, 0xabcd),
            a,
        ));
        let f2 = frame6(&ip6(
            CLIENT6,
            HOST6,
            NH_FRAGMENT,
            64,
            &ext_frag(PROTO_UDP, 1448, false, 0xabcd),
            b,
        ));
        // The later one first: no translation known yet, the stack's.
        let r = env.run_uplink(&f2);
        assert_eq!((r.verdict, &r.out), (TC_ACT_OK, &f2));
        let r1 = env.run_uplink(&f1);
        assert_delivered6(env, &r1, E2);
        let r2 = env.run_uplink(&f2);
        assert_delivered6(env, &r2, E2);
        let (o1, o2) = (View6(&r1.out), View6(&r2.out));
        assert_eq!((o1.dst(), o2.dst()), (E2_6, E2_6));
        assert_eq!((o1.src(), o2.src()), (CLIENT6, CLIENT6));
        // The reassembled datagram has a right checksum for the new addresses.
        let mut whole = o1.l4(8).to_vec();
        whole.extend_from_slice(o2.l4(8));
        assert_eq!(u16::from_be_bytes([whole[2], whole[3]]), 53);
        assert_eq!(
            csum6(CLIENT6, E2_6, PROTO_UDP, &whole),
            0,
            "datagram checksum"
        );
        assert_eq!(&whole[8..], &data[..]);
    });
}

#[test]
fn extension_headers_are_skipped_and_too_many_are_malformed() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        v6.publish([0; 16], 8080, PROTO_TCP, E1_6, 80);
        let l4 = tcp6(CLIENT6, HOST6, CPORT, 8080, TCP_SYN, b"");
        let mut ext = ext_opts(NH_DSTOPTS);
        ext.extend(ext_opts(PROTO_TCP));
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, HOST6, NH_HOP, 64, &ext, &l4)));
        assert_delivered6(env, &r, E1);
        let o = View6(&r.out);
        assert_eq!((o.dst(), o.dport(16)), (E1_6, 80));
        o.assert_l4_csum(PROTO_TCP, 16);
        // Five options headers before TCP, to a container: refused.
        let mut ext = Vec::new();
        for _ in 0..4 {
            ext.extend(ext_opts(NH_DSTOPTS));
        }
        ext.extend(ext_opts(PROTO_TCP));
        let l4 = tcp6(CLIENT6, E1_6, CPORT, 80, TCP_SYN, b"");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, E1_6, NH_DSTOPTS, 64, &ext, &l4)));
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::Malformed);
        // A truncated TCP header to a host address: the stack's to judge.
        let pkt = frame6(&ip6(CLIENT6, HOST6, PROTO_TCP, 64, &[], &l4[..10]));
        assert_eq!(env.run_uplink(&pkt).verdict, TC_ACT_OK);
    });
}

// ---- From a container to beyond the host: `dp_egress6`, reached through
// `dp_from_container` -> `dp_from_container6` -> `dp_egress6` ----

use dataplane_tests::prog_run::ip6::{ip6_of, setup6, FAR6, UPLINK_IP6};

/// A frame from endpoint `e` (its own MACs and IPv6 address) carrying `l4`.
fn from_ep(e: EpDef, dst: [u8; 16], proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(
        e.host_mac,
        e.mac,
        ETH_P_IPV6,
        &ip6(ip6_of(e), dst, proto, 64, &[], l4),
    )
}

fn egress_env(env: &mut Env, masq: bool) -> V6n {
    let mut m6 = setup6(env);
    if masq {
        m6.set_net_flags(NET_A, dataplane_common::NET6_F_MASQ);
    }
    let mut v6 = V6n::new(env);
    let up = env.ifx(UPLINK_IF);
    v6.host_ifs6
        .insert(up, dataplane_common::HostIf6 { ip: UPLINK_IP6 }, 0)
        .unwrap();
    v6.host_ips6
        .insert(dataplane_common::Endpoint6Key { ip: UPLINK_IP6 }, 1, 0)
        .unwrap();
    drop(m6);
    v6
}

#[test]
fn masqueraded_network_leaves_with_the_uplink_ipv6_address() {
    with_env(|env| {
        let v6 = egress_env(env, true);
        let l4 = tcp6(ip6_of(E1), FAR6, CPORT, 443, TCP_SYN, b"");
        let r = env.run_container(E1, &from_ep(E1, FAR6, PROTO_TCP, &l4));
        assert_eq!(r.verdict, TC_ACT_REDIRECT, "out of the uplink");
        env.assert_no_drops();
        let o = View6(&r.out);
        assert_eq!(o.dst_mac(), NEXT_HOP_MAC);
        assert_eq!((o.src(), o.dst()), (UPLINK_IP6, FAR6));
        let sport = o.sport(0);
        assert!(
            (NAT_MIN..=NAT_MAX).contains(&sport),
            "port {sport} of the range"
        );
        assert_eq!(o.hop_limit(), 63);
        o.assert_l4_csum(PROTO_TCP, 0);
        let back = v6
            .nat6_in
            .get(&FlowKey6::new(FAR6, UPLINK_IP6, 443, sport, PROTO_TCP), 0)
            .expect("reverse entry");
        assert_eq!((back.addr, back.port), (ip6_of(E1), CPORT));
        // The reply comes back in through dp_from_uplink6.
        let l4 = tcp6(FAR6, UPLINK_IP6, 443, sport, TCP_SYN | TCP_ACK, b"");
        let r = env.run_uplink(&frame6(&ip6(FAR6, UPLINK_IP6, PROTO_TCP, 64, &[], &l4)));
        assert_delivered6(env, &r, E1);
        let o = View6(&r.out);
        assert_eq!((o.dst(), o.dport(0)), (ip6_of(E1), CPORT));
        o.assert_l4_csum(PROTO_TCP, 0);
        // What cannot be translated is refused, never routed untranslated.
        let l4 = [0u8; 8];
        let r = env.run_container(E1, &from_ep(E1, FAR6, 47, &l4));
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::UnsupportedProtocol);
    });
}

#[test]
fn routed_network_leaves_untranslated_and_opens_its_reply_path() {
    with_env(|env| {
        let v6 = egress_env(env, false);
        let l4 = udp6(ip6_of(E1), FAR6, CPORT, 53, b"q");
        let r = env.run_container(E1, &from_ep(E1, FAR6, PROTO_UDP, &l4));
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        assert_eq!(View6(&r.out).src(), ip6_of(E1));
        let key = FlowKey6::new(FAR6, ip6_of(E1), 53, CPORT, PROTO_UDP);
        assert!(v6.ct6.get(&key, 0).is_ok(), "reply path recorded");
        let l4 = udp6(FAR6, ip6_of(E1), 53, CPORT, b"a");
        let r = env.run_uplink(&frame6(&ip6(FAR6, ip6_of(E1), PROTO_UDP, 64, &[], &l4)));
        assert_delivered6(env, &r, E1);
    });
}

#[test]
fn published_port_reply_and_port_unreachable_leave_from_the_host_address() {
    with_env(|env| {
        let mut v6 = egress_env(env, true);
        let me = ip6_of(E1);
        v6.publish([0; 16], 5353, PROTO_UDP, me, 53);
        let l4 = udp6(CLIENT6, UPLINK_IP6, CPORT, 5353, b"q");
        let r = env.run_uplink(&frame6(&ip6(CLIENT6, UPLINK_IP6, PROTO_UDP, 64, &[], &l4)));
        assert_delivered6(env, &r, E1);
        // The container's reply: from the published address and port.
        let l4 = udp6(me, CLIENT6, 53, CPORT, b"answer");
        let r = env.run_container(E1, &from_ep(E1, CLIENT6, PROTO_UDP, &l4));
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let o = View6(&r.out);
        assert_eq!((o.src(), o.sport(0)), (UPLINK_IP6, 5353));
        assert_eq!((o.dst(), o.dport(0)), (CLIENT6, CPORT));
        o.assert_l4_csum(PROTO_UDP, 0);
        // Nobody listening: its port unreachable quotes the packet it got.
        let q = ip6(
            CLIENT6,
            me,
            PROTO_UDP,
            63,
            &[],
            &udp6(CLIENT6, me, CPORT, 53, b"q"),
        );
        let l4 = icmp6(me, CLIENT6, 1, 4, [0; 4], &q);
        let r = env.run_container(E1, &from_ep(E1, CLIENT6, PROTO_ICMPV6, &l4));
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        env.assert_no_drops();
        let o = View6(&r.out);
        assert_eq!((o.src(), o.dst()), (UPLINK_IP6, CLIENT6));
        let quoted = &o.l4(0)[8..];
        assert_eq!(&quoted[24..40], &UPLINK_IP6, "quoted destination");
        assert_eq!(u16::from_be_bytes([quoted[42], quoted[43]]), 5353);
        o.assert_l4_csum(PROTO_ICMPV6, 0);
    });
}

/// A small deterministic generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u8
    }
}

#[test]
fn truncated_and_garbled_ipv6_from_outside_never_reaches_a_container() {
    with_env(|env| {
        let mut v6 = V6n::new(env);
        v6.publish([0; 16], 8080, PROTO_TCP, E1_6, 80);
        // Every truncation of a valid packet to a published port: delivered
        // only whole.
        let l4 = tcp6(CLIENT6, HOST6, CPORT, 8080, TCP_SYN, b"");
        let whole = frame6(&ip6(CLIENT6, HOST6, PROTO_TCP, 64, &[], &l4));
        let mut ran = 0;
        for len in 14..whole.len() {
            // (The kernel refuses frames too short to carry anything.)
            if let Ok(r) = env.try_run_uplink(&whole[..len]) {
                assert_ne!(r.verdict, TC_ACT_REDIRECT, "truncated to {len} bytes");
                ran += 1;
            }
        }
        // (It wants a whole IPv6 header: the cuts through the TCP header run.)
        assert!(ran >= 19, "only {ran} truncations ran");
        assert_eq!(env.run_uplink(&whole).verdict, TC_ACT_REDIRECT);
        // Garbage after a valid IPv6 header to a container's address: never
        // delivered (nothing of it is tracked).
        let mut rng = Lcg(16);
        for i in 0..300 {
            let n = usize::from(rng.next()) % 96;
            let body: Vec<u8> = (0..n).map(|_| rng.next()).collect();
            let nh = [
                PROTO_TCP,
                PROTO_UDP,
                PROTO_ICMPV6,
                NH_HOP,
                NH_FRAGMENT,
                NH_DSTOPTS,
                43,
            ][i % 7];
            let pkt = frame6(&ip6(CLIENT6, E1_6, nh, 64, &[], &body));
            if let Ok(r) = env.try_run_uplink(&pkt) {
                assert_ne!(r.verdict, TC_ACT_REDIRECT, "garbage {i} was delivered");
            }
        }
    });
}

//! BPF_PROG_TEST_RUN tests of `--link` on icc=false networks, destinations
//! inside a container's own subnet, spoofed sources and reply-translation
//! takeover on the uplink, and the state bits of `DP_CT` entries.
//!
//! Same fixture as `prog_run.rs`. Needs root.

use dataplane_common::{DropReason, LinkKey, CT_F_REPLY_DIR, NAT_F_CLOSING, NAT_F_REPLIED};
use dataplane_tests::prog_run::{frames::*, harness::*, pkt::*};

/// A client beyond the next hop.
const CLIENT: [u8; 4] = FAR;
const CPORT: u16 = 40000;
const GW_NOICC: [u8; 4] = NETWORKS[2].gateway;
fn udp_linked_from(e: EpDef, dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    frame_from(
        e,
        &Ip4::new(e.ip, dst, PROTO_UDP),
        &udp(e.ip, dst, sport, dport, b"linked udp", true),
    )
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
            (
                "s2 -> s1:5000/udp",
                S2,
                udp_linked_from(S2, S1.ip, 45000, 5000),
            ),
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
        let q = udp_linked_from(S2, S1.ip, 45000, 5353);
        let run = env.run_container(S2, &q);
        assert_delivered(&run, &q, S1, "udp s2 -> s1:5353");
        let a = udp_linked_from(S1, S2.ip, 5353, 45000);
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
                udp_linked_from(E1, dst, 137, 137),
            ] {
                let run = env.run_container(E1, &pkt);
                assert_tc_dropped(&run, &pkt, &format!("to {dst:?}"));
                n += 1;
                assert_drops(env, DropReason::NoRoute, n);
            }
        }
        assert_ep_drops(env, E1, DropReason::NoRoute, n);

        let mut pkt = udp_linked_from(E1, [172, 20, 255, 255], 137, 137);
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

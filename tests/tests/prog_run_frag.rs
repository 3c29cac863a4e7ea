//! BPF_PROG_TEST_RUN tests of IPv4 fragments on every translated path:
//! masquerade out and its replies, published ports in (XDP + TC) and their
//! replies, hairpin; fragments in order, a later fragment whose first is
//! missing, overlapping and duplicate fragments, tiny first fragments.
//!
//! Datagrams are built whole, with an independent checksum, then cut into
//! fragments; what the programs emit is reassembled here and compared with
//! the datagram built independently with the translated addresses and ports
//! (so the first fragment's L4 checksum fix is checked over the whole
//! datagram). Needs root.

use dataplane_common::{DropReason, FragEntry, FragKey, PortKey, PortTarget};
use dataplane_tests::prog_run::{harness::*, pkt::*};

const CLIENT: [u8; 4] = FAR;
const CPORT: u16 = 40000;
const GW_A: [u8; 4] = NETWORKS[0].gateway;

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// Cut the L4 datagram `l4` into IPv4 fragments of at most `size` data
/// bytes (a multiple of 8), each with `ip`'s header, in order.
fn fragments(ip: &Ip4, l4: &[u8], size: usize) -> Vec<Vec<u8>> {
    assert_eq!(size % 8, 0);
    let mut v = Vec::new();
    let mut off = 0;
    while off < l4.len() {
        let end = (off + size).min(l4.len());
        let mf = if end < l4.len() { IP_MF } else { 0 };
        let h = ip.clone().frag(mf | (off / 8) as u16);
        v.push(h.build(&l4[off..end]));
        off = end;
    }
    v
}

/// An IPv4 header with identification `id` (fragment bits set later).
fn ip_id(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16) -> Ip4 {
    let mut ip = Ip4::new(src, dst, proto).frag(0);
    ip.id = id;
    ip
}

fn from_ep(e: EpDef, ip_pkt: &[u8]) -> Vec<u8> {
    eth(e.host_mac, e.mac, ETH_P_IP, ip_pkt)
}

fn from_outside(ip_pkt: &[u8]) -> Vec<u8> {
    eth(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IP, ip_pkt)
}

/// The L4 datagram the fragments in `frames` carry, put together by offset.
fn reassemble(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in frames {
        let ip = &f[ETH_LEN..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let off = usize::from(u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff) * 8;
        let data = &ip[ihl..tot];
        if v.len() < off + data.len() {
            v.resize(off + data.len(), 0);
        }
        v[off..off + data.len()].copy_from_slice(data);
    }
    v
}

/// Every output fragment: the given addresses, TTL decremented, the
/// identification and fragment word kept, a valid header checksum.
fn assert_headers(outs: &[Vec<u8>], ins: &[Vec<u8>], src: [u8; 4], dst: [u8; 4]) {
    for (i, (o, inp)) in outs.iter().zip(ins).enumerate() {
        let v = View(o);
        assert_eq!(v.ip_src(), src, "fragment {i}: source");
        assert_eq!(v.ip_dst(), dst, "fragment {i}: destination");
        assert_eq!(v.ttl(), 63, "fragment {i}: TTL");
        assert_eq!(
            o[ETH_LEN + 4..ETH_LEN + 8],
            inp[ETH_LEN + 4..ETH_LEN + 8],
            "fragment {i}: id and fragment word"
        );
        assert_eq!(inet_csum(&[v.ip_header()]), 0, "fragment {i}: IP checksum");
    }
}

fn run_all(env: &Env, e: EpDef, frames: &[Vec<u8>], verdict: u32) -> Vec<Vec<u8>> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let r = env.run_container(e, f);
            assert_eq!(r.verdict, verdict, "fragment {i}: verdict");
            r.out
        })
        .collect()
}

fn frag_entry(env: &Env, src: [u8; 4], dst: [u8; 4], id: u16, proto: u8) -> FragEntry {
    let k = FragKey {
        src,
        dst,
        id,
        proto,
        _pad: 0,
    };
    env.frags
        .get(&k, 0)
        .unwrap_or_else(|e| panic!("no DP_FRAGS entry for {k:?}: {e:?}"))
}

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
        .insert(dataplane_common::EndpointKey { ip: UPLINK_IP }, 1, 0)
        .unwrap();
}

/// Masquerade a fragmented UDP datagram from E1 (fragments of 48 bytes,
/// in order): returns the masquerade port.
fn masq_fragments(env: &Env, id: u16, body: &[u8]) -> u16 {
    let dg = udp(E1.ip, FAR, 5353, 53, body, true);
    let ins: Vec<Vec<u8>> = fragments(&ip_id(E1.ip, FAR, PROTO_UDP, id), &dg, 48)
        .iter()
        .map(|p| from_ep(E1, p))
        .collect();
    assert!(ins.len() >= 3);
    let outs = run_all(env, E1, &ins, TC_ACT_REDIRECT);
    for o in &outs {
        assert_eq!(View(o).dst_mac(), NEXT_HOP_MAC);
        assert_eq!(View(o).src_mac(), UPLINK_MAC);
    }
    assert_headers(&outs, &ins, UPLINK_IP, FAR);
    let port = u16::from_be_bytes([outs[0][ETH_LEN + 20], outs[0][ETH_LEN + 21]]);
    assert!((NAT_MIN..=NAT_MAX).contains(&port), "NAT port {port}");
    assert_eq!(
        reassemble(&outs),
        udp(UPLINK_IP, FAR, port, 53, body, true),
        "the datagram as the receiver reassembles it"
    );
    let e = frag_entry(env, E1.ip, FAR, id, PROTO_UDP);
    assert_eq!((e.src, e.dst), (UPLINK_IP, FAR));
    port
}

#[test]
fn masquerade_fragments_in_order_are_translated_alike() {
    with_env(|env| {
        let port = masq_fragments(env, 0x4321, &payload(120));
        // Another datagram of the same flow: the same port.
        assert_eq!(masq_fragments(env, 0x4322, &payload(100)), port);
        assert_eq!(env.nat_out_entries().len(), 1);
        env.assert_no_drops();
        assert_eq!(env.stats(E1).tx_packets, 6);
    });
}

#[test]
fn icmp_echo_fragments_are_masqueraded() {
    with_env(|env| {
        let body = payload(100);
        let m = icmp(ICMP_ECHO_REQUEST, 0, 0x7777, 1, &body);
        let ins: Vec<Vec<u8>> = fragments(&ip_id(E1.ip, FAR, PROTO_ICMP, 9), &m, 56)
            .iter()
            .map(|p| from_ep(E1, p))
            .collect();
        let outs = run_all(env, E1, &ins, TC_ACT_REDIRECT);
        assert_headers(&outs, &ins, UPLINK_IP, FAR);
        let id = u16::from_be_bytes([outs[0][ETH_LEN + 24], outs[0][ETH_LEN + 25]]);
        assert!((NAT_MIN..=NAT_MAX).contains(&id));
        assert_eq!(reassemble(&outs), icmp(ICMP_ECHO_REQUEST, 0, id, 1, &body));
        env.assert_no_drops();
    });
}

#[test]
fn later_fragment_without_its_first_is_dropped_and_counted() {
    with_env(|env| {
        let dg = udp(E1.ip, FAR, 5353, 53, &payload(120), true);
        let frags = fragments(&ip_id(E1.ip, FAR, PROTO_UDP, 0x1111), &dg, 48);
        // The first fragment is missing: the second cannot be translated.
        let later = from_ep(E1, &frags[1]);
        let r = env.run_container(E1, &later);
        assert_eq!(r.verdict, TC_ACT_SHOT);
        assert_eq!(r.out, later, "a dropped frame is not modified");
        env.assert_only_drop(DropReason::FragmentWithoutFirst);
        let s = env.stats(E1);
        assert_eq!(s.drops[DropReason::FragmentWithoutFirst as usize], 1);
        // Another datagram's first fragment does not help it (other id).
        masq_fragments(env, 0x2222, &payload(120));
        let r = env.run_container(E1, &later);
        assert_eq!(r.verdict, TC_ACT_SHOT);
        assert_eq!(env.drop_count(DropReason::FragmentWithoutFirst), 2);
        // A later fragment to another destination with a known id neither.
        let other = udp(E1.ip, NEXT_HOP, 5353, 53, &payload(120), true);
        let f = fragments(&ip_id(E1.ip, NEXT_HOP, PROTO_UDP, 0x2222), &other, 48);
        let r = env.run_container(E1, &from_ep(E1, &f[1]));
        assert_eq!(r.verdict, TC_ACT_SHOT);
        assert_eq!(env.drop_count(DropReason::FragmentWithoutFirst), 3);
    });
}

#[test]
fn duplicate_and_overlapping_fragments_get_the_same_translation() {
    with_env(|env| {
        let body = payload(120);
        let dg = udp(E1.ip, FAR, 5353, 53, &body, true);
        let ip = ip_id(E1.ip, FAR, PROTO_UDP, 0x3333);
        let frags = fragments(&ip, &dg, 48);
        let first = from_ep(E1, &frags[0]);
        let r1 = env.run_container(E1, &first);
        assert_eq!(r1.verdict, TC_ACT_REDIRECT);
        // The same first fragment again (a retransmission by the network):
        // byte for byte the same output.
        let r2 = env.run_container(E1, &first);
        assert_eq!(r2.verdict, TC_ACT_REDIRECT);
        assert_eq!(r2.out, r1.out);
        // A fragment overlapping the first one's data (offset 16 bytes,
        // 48 bytes long) and one overlapping the second: translated like
        // the others (the receiver decides what to do with overlaps; Linux
        // discards the datagram).
        for off in [16usize, 56] {
            let h = ip.clone().frag(IP_MF | (off / 8) as u16);
            let f = from_ep(E1, &h.build(&dg[off..off + 48]));
            let r = env.run_container(E1, &f);
            assert_eq!(r.verdict, TC_ACT_REDIRECT, "overlap at {off}");
            assert_headers(
                std::slice::from_ref(&r.out),
                std::slice::from_ref(&f),
                UPLINK_IP,
                FAR,
            );
            assert_eq!(r.out[ETH_LEN + 20..], f[ETH_LEN + 20..], "payload kept");
        }
        env.assert_no_drops();
    });
}

#[test]
fn tiny_first_fragments_are_malformed_and_their_rest_is_dropped() {
    with_env(|env| {
        // A TCP first fragment with only 8 bytes of TCP header (RFC 1858:
        // the flags would be in the next fragment).
        let seg = tcp(E1.ip, FAR, 40000, 80, TCP_SYN, &payload(40));
        let ip = ip_id(E1.ip, FAR, PROTO_TCP, 0x4444);
        let frags = fragments(&ip, &seg, 8);
        let first = from_ep(E1, &frags[0]);
        let r = env.run_container(E1, &first);
        assert_eq!(r.verdict, TC_ACT_SHOT);
        assert_eq!(r.out, first);
        env.assert_only_drop(DropReason::Malformed);
        let r = env.run_container(E1, &from_ep(E1, &frags[1]));
        assert_eq!(r.verdict, TC_ACT_SHOT);
        assert_eq!(env.drop_count(DropReason::FragmentWithoutFirst), 1);
        assert!(env.nat_out_entries().is_empty(), "nothing translated");
        // A UDP first fragment of exactly its 8-byte header has the ports:
        // it is translated, and the rest follows.
        let dg = udp(E1.ip, FAR, 5353, 53, &payload(40), true);
        let ins: Vec<Vec<u8>> = fragments(&ip_id(E1.ip, FAR, PROTO_UDP, 0x4445), &dg, 8)
            .iter()
            .map(|p| from_ep(E1, p))
            .collect();
        let outs = run_all(env, E1, &ins, TC_ACT_REDIRECT);
        let port = u16::from_be_bytes([outs[0][ETH_LEN + 20], outs[0][ETH_LEN + 21]]);
        assert_eq!(
            reassemble(&outs),
            udp(UPLINK_IP, FAR, port, 53, &payload(40), true)
        );
        assert_eq!(env.drop_count(DropReason::Malformed), 1);
        assert_eq!(env.drop_count(DropReason::FragmentWithoutFirst), 1);
    });
}

#[test]
fn fragmented_masquerade_replies_are_translated_back() {
    with_env(|env| {
        let port = masq_fragments(env, 0x5555, &payload(100));
        let body = payload(150);
        let dg = udp(FAR, UPLINK_IP, 53, port, &body, true);
        let ins: Vec<Vec<u8>> = fragments(&ip_id(FAR, UPLINK_IP, PROTO_UDP, 0x9999), &dg, 64)
            .iter()
            .map(|p| from_outside(p))
            .collect();
        let mut outs = Vec::new();
        for (i, f) in ins.iter().enumerate() {
            // XDP leaves them alone (not a published port)...
            let x = env.run_xdp(f);
            assert_eq!((x.verdict, &x.out), (XDP_PASS, f), "fragment {i}: XDP");
            // ...TC translates and delivers them.
            let r = env.run_uplink(f);
            assert_eq!(r.verdict, TC_ACT_REDIRECT, "fragment {i}: verdict");
            assert_eq!(View(&r.out).dst_mac(), E1.mac);
            assert_eq!(View(&r.out).src_mac(), E1.host_mac);
            outs.push(r.out);
        }
        assert_headers(&outs, &ins, FAR, E1.ip);
        assert_eq!(reassemble(&outs), udp(FAR, E1.ip, 53, 5353, &body, true));
        // A later fragment of a datagram nothing translated: maybe the
        // host's own, for the stack to reassemble.
        let stray = fragments(&ip_id(FAR, UPLINK_IP, PROTO_UDP, 0x9998), &dg, 64);
        let f = from_outside(&stray[1]);
        let r = env.run_uplink(&f);
        assert_eq!((r.verdict, r.out), (TC_ACT_OK, f));
        env.assert_no_drops();
    });
}

#[test]
fn fragments_to_a_published_udp_port_and_back() {
    with_env(|env| {
        publish(env, 5353, PROTO_UDP, E2.ip, 53);
        let query = payload(200);
        let dg = udp(CLIENT, UPLINK_IP, CPORT, 5353, &query, true);
        let ins: Vec<Vec<u8>> = fragments(&ip_id(CLIENT, UPLINK_IP, PROTO_UDP, 0x6666), &dg, 80)
            .iter()
            .map(|p| from_outside(p))
            .collect();
        let mut outs = Vec::new();
        for (i, f) in ins.iter().enumerate() {
            let x = env.run_xdp(f);
            assert_eq!(x.verdict, XDP_PASS, "fragment {i}: XDP");
            if i == 0 {
                // The first one is translated by XDP...
                assert_eq!(View(&x.out).ip_dst(), E2.ip);
            } else {
                // ...the later ones by TC.
                assert_eq!(&x.out, f, "fragment {i}: untouched by XDP");
            }
            let r = env.run_uplink(&x.out);
            assert_eq!(r.verdict, TC_ACT_REDIRECT, "fragment {i}: delivered");
            assert_eq!(View(&r.out).dst_mac(), E2.mac);
            outs.push(r.out);
        }
        assert_headers(&outs, &ins, CLIENT, E2.ip);
        assert_eq!(
            reassemble(&outs),
            udp(CLIENT, E2.ip, CPORT, 53, &query, true)
        );
        let e = frag_entry(env, CLIENT, UPLINK_IP, 0x6666, PROTO_UDP);
        assert_eq!((e.src, e.dst), (CLIENT, E2.ip));

        // The container's 3,000-byte answer, fragmented by its stack.
        let answer = payload(3000);
        let dg = udp(E2.ip, CLIENT, 53, CPORT, &answer, true);
        let ins: Vec<Vec<u8>> = fragments(&ip_id(E2.ip, CLIENT, PROTO_UDP, 0x0101), &dg, 1480)
            .iter()
            .map(|p| from_ep(E2, p))
            .collect();
        assert_eq!(ins.len(), 3);
        let outs = run_all(env, E2, &ins, TC_ACT_REDIRECT);
        for o in &outs {
            assert_eq!(View(o).dst_mac(), NEXT_HOP_MAC);
        }
        assert_headers(&outs, &ins, UPLINK_IP, CLIENT);
        assert_eq!(
            reassemble(&outs),
            udp(UPLINK_IP, CLIENT, 5353, CPORT, &answer, true)
        );
        // A later fragment straight to the container address is still
        // direct access (XDP drops it before anything else).
        let direct = from_outside(
            &ip_id(CLIENT, E2.ip, PROTO_UDP, 0x6666)
                .frag(10)
                .build(&payload(16)),
        );
        let x = env.run_xdp(&direct);
        assert_eq!(x.verdict, XDP_DROP);
        let r = env.run_uplink(&direct);
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::DirectAccessFromOutside);
    });
}

#[test]
fn hairpin_fragments_reach_the_published_container_and_come_back() {
    with_env(|env| {
        publish(env, 5353, PROTO_UDP, E2.ip, 53);
        let body = payload(300);
        let dg = udp(E1.ip, UPLINK_IP, 4444, 5353, &body, true);
        let ins: Vec<Vec<u8>> = fragments(&ip_id(E1.ip, UPLINK_IP, PROTO_UDP, 0x7070), &dg, 128)
            .iter()
            .map(|p| from_ep(E1, p))
            .collect();
        let outs = run_all(env, E1, &ins, TC_ACT_REDIRECT);
        for o in &outs {
            assert_eq!(View(o).dst_mac(), E2.mac);
        }
        assert_headers(&outs, &ins, GW_A, E2.ip);
        let nat_port = u16::from_be_bytes([outs[0][ETH_LEN + 20], outs[0][ETH_LEN + 21]]);
        assert_eq!(
            reassemble(&outs),
            udp(GW_A, E2.ip, nat_port, 53, &body, true)
        );
        // The answer, fragmented, back to E1 as from the published address.
        let answer = payload(400);
        let dg = udp(E2.ip, GW_A, 53, nat_port, &answer, true);
        let ins: Vec<Vec<u8>> = fragments(&ip_id(E2.ip, GW_A, PROTO_UDP, 0x0202), &dg, 160)
            .iter()
            .map(|p| from_ep(E2, p))
            .collect();
        let outs = run_all(env, E2, &ins, TC_ACT_REDIRECT);
        for o in &outs {
            assert_eq!(View(o).dst_mac(), E1.mac);
        }
        assert_headers(&outs, &ins, UPLINK_IP, E1.ip);
        assert_eq!(
            reassemble(&outs),
            udp(UPLINK_IP, E1.ip, 5353, 4444, &answer, true)
        );
        env.assert_no_drops();
    });
}

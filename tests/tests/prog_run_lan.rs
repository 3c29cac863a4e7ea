//! BPF_PROG_TEST_RUN tests of `lan` networks: proxy ARP on the parent,
//! delivery only from the parent, XDP passing them to TC, and the
//! container's side (ARP for any LAN address, untranslated egress). Needs
//! root.

use dataplane_common::{DropReason, EndpointKey, EP_F_LAN};
use dataplane_tests::prog_run::{harness::*, pkt::*};

const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    eth(
        [0xff; 6],
        sha,
        ETH_P_ARP,
        &arp(ARP_REQUEST, sha, spa, [0; 6], tpa),
    )
}

fn outside_udp(dst: [u8; 4]) -> Vec<u8> {
    let dg = udp(NEXT_HOP, dst, 40000, 53, b"x", true);
    eth(
        UPLINK_MAC,
        NEXT_HOP_MAC,
        ETH_P_IP,
        &Ip4::new(NEXT_HOP, dst, PROTO_UDP).build(&dg),
    )
}

#[test]
fn proxy_arp_on_the_parent_for_lan_containers_only() {
    with_env(|env| {
        env.make_lan(NET_B, UPLINK_IF, UPLINK_MAC);
        let entry = env.endpoints.get(&EndpointKey { ip: E3.ip }, 0).unwrap();
        assert_ne!(entry.flags & EP_F_LAN, 0);
        // For a lan container: answered with the parent's MAC, sent back out.
        let r = env.run_uplink(&arp_request(NEXT_HOP_MAC, NEXT_HOP, E3.ip));
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let want = eth(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_ARP,
            &arp(ARP_REPLY, UPLINK_MAC, E3.ip, NEXT_HOP_MAC, NEXT_HOP),
        );
        assert_eq!(&r.out[..want.len()], &want[..]);
        // For a bridge container or an unknown address: the stack's.
        for tpa in [E1.ip, [10, 77, 0, 99]] {
            let req = arp_request(NEXT_HOP_MAC, NEXT_HOP, tpa);
            let r = env.run_uplink(&req);
            assert_eq!(r.verdict, TC_ACT_OK);
            assert_eq!(r.out, req);
        }
        // Not on the network's parent: not answered.
        let r = env.run_uplink_on(OTHER_IF, &arp_request(NEXT_HOP_MAC, NEXT_HOP, E3.ip));
        assert_eq!(r.verdict, TC_ACT_OK);
        // Gratuitous ARP and replies are left alone.
        let r = env.run_uplink(&arp_request(NEXT_HOP_MAC, E3.ip, E3.ip));
        assert_eq!(r.verdict, TC_ACT_OK);
        env.assert_no_drops();
    });
}

#[test]
fn lan_traffic_is_delivered_only_from_the_parent() {
    with_env(|env| {
        env.make_lan(NET_B, UPLINK_IF, UPLINK_MAC);
        let pkt = outside_udp(E3.ip);
        // XDP hands it to TC untouched.
        let x = env.run_xdp(&pkt);
        assert_eq!(x.verdict, XDP_PASS);
        assert_eq!(x.out, pkt);
        // TC delivers it into the container, untranslated, MACs set.
        let r = env.run_uplink(&pkt);
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let p = View(&r.out);
        assert_eq!((p.dst_mac(), p.src_mac()), (E3.mac, E3.host_mac));
        assert_eq!((p.ip_src(), p.ip_dst()), (NEXT_HOP, E3.ip));
        assert_eq!(p.ttl(), View(&pkt).ttl());
        env.assert_no_drops();
        // From another interface: direct access.
        let r = env.run_uplink_on(OTHER_IF, &pkt);
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::DirectAccessFromOutside);
        // A bridge container stays unreachable from the LAN.
        let x = env.run_xdp(&outside_udp(E1.ip));
        assert_eq!(x.verdict, XDP_DROP);
    });
}

#[test]
fn lan_containers_answer_for_the_lan_and_leave_untranslated() {
    with_env(|env| {
        // NET_B's subnet is 172.21.0.0/16; its "LAN" here is reached
        // through the fixture's routes, the point is what the program does.
        env.make_lan(NET_B, UPLINK_IF, UPLINK_MAC);
        // ARP for any address of the LAN is answered with the host-side MAC.
        let peer = [172, 21, 9, 9];
        let r = env.run_container(E3, &arp_request(E3.mac, E3.ip, peer));
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let want = eth(
            E3.mac,
            E3.host_mac,
            ETH_P_ARP,
            &arp(ARP_REPLY, E3.host_mac, peer, E3.mac, E3.ip),
        );
        assert_eq!(&r.out[..want.len()], &want[..]);
        // A bridge network's container gets no answer for such an address.
        let r = env.run_container(E1, &arp_request(E1.mac, E1.ip, [172, 20, 9, 9]));
        assert_eq!(r.verdict, TC_ACT_OK);
        // Out of the uplink untranslated (the bridge network masquerades).
        let dg = udp(E3.ip, FAR, 40000, 53, b"x", true);
        let pkt = eth(
            E3.host_mac,
            E3.mac,
            ETH_P_IP,
            &Ip4::new(E3.ip, FAR, PROTO_UDP).build(&dg),
        );
        let r = env.run_container(E3, &pkt);
        assert_eq!(r.verdict, TC_ACT_REDIRECT);
        let p = View(&r.out);
        assert_eq!(p.ip_src(), E3.ip, "lan traffic is not masqueraded");
        assert_eq!(p.dst_mac(), NEXT_HOP_MAC);
        assert!(env.nat_out_entries().is_empty());
        // Spoofed sources are still dropped.
        let spoof = udp([172, 21, 0, 99], FAR, 40000, 53, b"x", true);
        let pkt = eth(
            E3.host_mac,
            E3.mac,
            ETH_P_IP,
            &Ip4::new([172, 21, 0, 99], FAR, PROTO_UDP).build(&spoof),
        );
        let r = env.run_container(E3, &pkt);
        assert_eq!(r.verdict, TC_ACT_SHOT);
        env.assert_only_drop(DropReason::SpoofedSource);
    });
}

//! BPF_PROG_TEST_RUN tests of host interfaces besides the uplink
//! (`DP_HOST_IFS`): traffic the route lookup sends out of one is
//! masqueraded to that interface's address, and its replies arriving there
//! are translated back. Needs root.

use dataplane_common::{FlowKey, HostIf};
use dataplane_tests::prog_run::{harness::*, pkt::*};

/// The address of `OTHER_IF` in the fixture.
const OTHER_IP: [u8; 4] = [192, 0, 2, 1];

fn syn_from_e1(dst: [u8; 4]) -> Vec<u8> {
    let seg = tcp(E1.ip, dst, 40000, 80, TCP_SYN, b"");
    eth(
        E1.host_mac,
        E1.mac,
        ETH_P_IP,
        &Ip4::new(E1.ip, dst, PROTO_TCP).build(&seg),
    )
}

#[test]
fn traffic_out_of_another_host_interface_is_masqueraded_to_its_address() {
    with_env(|env| {
        // Not served: left to the stack (as before the agent knew it).
        let pkt = syn_from_e1(OTHER_NET_HOST);
        let run = env.run_container(E1, &pkt);
        assert_eq!((run.verdict, &run.out), (TC_ACT_OK, &pkt));
        // Served.
        let oth = env.ifx(OTHER_IF);
        env.host_ifs
            .insert(oth, HostIf { ip: OTHER_IP }, 0)
            .unwrap();
        let run = env.run_container(E1, &pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let v = View(&run.out);
        v.assert_checksums();
        assert_eq!(v.ip_src(), OTHER_IP);
        assert_eq!(v.dst_mac(), OTHER_NEXT_HOP_MAC);
        let port = v.sport();
        assert!((NAT_MIN..=NAT_MAX).contains(&port));
        let rev = FlowKey::new(OTHER_NET_HOST, OTHER_IP, 80, port, PROTO_TCP);
        let back = env.nat_in.get(&rev, 0).unwrap();
        assert_eq!((back.addr, back.port), (E1.ip, 40000));
        // Through the uplink: still the uplink's address.
        let run = env.run_container(E1, &syn_from_e1(FAR));
        assert_eq!(View(&run.out).ip_src(), UPLINK_IP);
        // The reply, arriving on that interface, goes back to E1.
        let seg = tcp(OTHER_NET_HOST, OTHER_IP, 80, port, TCP_SYN | TCP_ACK, b"");
        let reply = eth(
            [0x02, 0, 0, 0, 0, 0x01],
            OTHER_NEXT_HOP_MAC,
            ETH_P_IP,
            &Ip4::new(OTHER_NET_HOST, OTHER_IP, PROTO_TCP).build(&seg),
        );
        let run = env.run_uplink(&reply);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let v = View(&run.out);
        v.assert_checksums();
        assert_eq!((v.ip_dst(), v.dport()), (E1.ip, 40000));
        env.assert_no_drops();
    });
}

//! BPF_PROG_TEST_RUN tests of the `tcx` uplink mode: `dp_tc_uplink` alone
//! must give every packet from outside the outcome `dp_xdp_uplink` followed
//! by `dp_from_uplink` gives it (the `xdp-*` modes): direct access and
//! loopback destinations dropped, spoofed sources dropped, published ports
//! translated (whole packets and fragments) and delivered, the rest passed
//! untouched, with the same counters and `DP_CT`/`DP_FRAGS` state, on the
//! uplink and on another host interface. Each mode runs in a fresh fixture
//! (`with_env`); the expected outcome kinds are also stated, so that a
//! fault shared by both paths fails too. Needs root.

use std::sync::mpsc;

use dataplane_common::{DropReason, EndpointKey, HostIf, PortKey, PortTarget};
use dataplane_tests::prog_run::{harness::*, pkt::*};

/// The address of `OTHER_IF` in the fixture.
const OTHER_IP: [u8; 4] = [192, 0, 2, 1];
const CLIENT: [u8; 4] = FAR;
const CPORT: u16 = 40000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// dp_xdp_uplink, then dp_from_uplink on what it passed.
    Xdp,
    /// dp_tc_uplink alone.
    Tcx,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Drop,
    Pass(Vec<u8>),
    Redirect(Vec<u8>),
}

impl Outcome {
    fn kind(&self) -> char {
        match self {
            Outcome::Drop => 'D',
            Outcome::Pass(_) => 'P',
            Outcome::Redirect(_) => 'R',
        }
    }
}

/// Counters and tables after a scenario: global drops, per-endpoint
/// counters, `DP_CT` and `DP_FRAGS` entries (timestamps left out).
#[derive(Debug, PartialEq, Eq)]
struct State {
    drops: Vec<u64>,
    eps: Vec<(u64, u64, u64, Vec<u64>)>,
    ct: Vec<String>,
    frags: Vec<String>,
}

fn state(env: &Env) -> State {
    let mut ct: Vec<String> = env
        .ct
        .iter()
        .map(Result::unwrap)
        .map(|(k, mut v)| {
            v.last_seen_ns = 0;
            format!("{k:?} {v:?}")
        })
        .collect();
    ct.sort();
    let mut frags: Vec<String> = env
        .frags
        .iter()
        .map(Result::unwrap)
        .map(|(k, mut v)| {
            v.first_seen_ns = 0;
            format!("{k:?} {v:?}")
        })
        .collect();
    frags.sort();
    State {
        drops: env.all_drops(),
        eps: ENDPOINTS
            .iter()
            .map(|e| {
                let s = env.stats(*e);
                (s.rx_packets, s.rx_bytes, s.tx_packets, s.drops.to_vec())
            })
            .collect(),
        ct,
        frags,
    }
}

fn through(env: &Env, mode: Mode, ifname: &str, pkt: &[u8]) -> Outcome {
    let tc = match mode {
        Mode::Tcx => env.run_tc_uplink_on(ifname, pkt),
        Mode::Xdp => {
            let x = env
                .try_run_xdp(Some(ifname), pkt)
                .expect("BPF_PROG_TEST_RUN dp_xdp_uplink");
            if x.verdict == XDP_DROP {
                return Outcome::Drop;
            }
            assert_eq!(x.verdict, XDP_PASS, "XDP verdict");
            env.run_uplink_on(ifname, &x.out)
        }
    };
    match tc.verdict {
        TC_ACT_SHOT => Outcome::Drop,
        TC_ACT_OK => Outcome::Pass(tc.out),
        TC_ACT_REDIRECT => Outcome::Redirect(tc.out),
        v => panic!("unexpected TC verdict {v}"),
    }
}

fn publish(env: &mut Env, host_ip: [u8; 4], port: u16, proto: u8, to: [u8; 4], to_port: u16) {
    let key = PortKey {
        ip: host_ip,
        port,
        proto,
        _pad: 0,
    };
    let t = PortTarget {
        ip: to,
        port: to_port,
        _pad: 0,
    };
    env.ports.insert(key, t, 0).unwrap();
}

/// Host addresses, the second interface served, and the published ports:
/// 8080/tcp -> E1:80 and 9053/udp -> E3:53 on every host address,
/// 8081/tcp -> E2:81 on OTHER_IP only.
fn setup(env: &mut Env) {
    for ip in [UPLINK_IP, OTHER_IP] {
        env.host_ips.insert(EndpointKey { ip }, 1, 0).unwrap();
    }
    let oth = env.ifx(OTHER_IF);
    env.host_ifs
        .insert(oth, HostIf { ip: OTHER_IP }, 0)
        .unwrap();
    publish(env, [0; 4], 8080, PROTO_TCP, E1.ip, 80);
    publish(env, [0; 4], 9053, PROTO_UDP, E3.ip, 53);
    publish(env, OTHER_IP, 8081, PROTO_TCP, E2.ip, 81);
}

fn frame(ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    eth(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IP, &ip.build(l4))
}

fn tcp_to(src: [u8; 4], dst: [u8; 4], dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(
        &Ip4::new(src, dst, PROTO_TCP),
        &tcp(src, dst, CPORT, dport, flags, payload),
    )
}

fn udp_to(dst: [u8; 4], dport: u16, with_csum: bool) -> Vec<u8> {
    frame(
        &Ip4::new(CLIENT, dst, PROTO_UDP),
        &udp(CLIENT, dst, CPORT, dport, b"published udp", with_csum),
    )
}

/// The packets of one interface whose address is `host`, with the outcome
/// kind each must have (D drop, P pass, R redirect into a container).
fn catalogue(host: [u8; 4]) -> Vec<(&'static str, Vec<u8>, char)> {
    let mut tagged = tcp_to(CLIENT, host, 8080, TCP_SYN, b"");
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    // A UDP datagram to the published port in two fragments.
    let dg = udp(CLIENT, host, CPORT, 9053, &[7u8; 24], true);
    let first = frame(&Ip4::new(CLIENT, host, PROTO_UDP).frag(IP_MF), &dg[..16]);
    let later = frame(&Ip4::new(CLIENT, host, PROTO_UDP).frag(2), &dg[16..]);
    let exact = tcp_to(CLIENT, OTHER_IP, 8081, TCP_SYN, b"");
    vec![
        (
            "published tcp syn",
            tcp_to(CLIENT, host, 8080, TCP_SYN, b""),
            'R',
        ),
        (
            "published tcp data",
            tcp_to(CLIENT, host, 8080, TCP_ACK, b"GET / HTTP/1.0\r\n\r\n"),
            'R',
        ),
        ("published udp", udp_to(host, 9053, true), 'R'),
        ("published udp, no checksum", udp_to(host, 9053, false), 'R'),
        ("first fragment, published udp", first, 'R'),
        ("later fragment, published udp", later, 'R'),
        ("exact-address mapping", exact, 'R'),
        (
            "exact mapping on another address",
            tcp_to(CLIENT, UPLINK_IP, 8081, TCP_SYN, b""),
            'P',
        ),
        (
            "unpublished host port",
            tcp_to(CLIENT, host, 22, TCP_SYN, b""),
            'P',
        ),
        (
            "published port, TTL 1",
            frame(
                &Ip4::new(CLIENT, host, PROTO_TCP).ttl(1),
                &tcp(CLIENT, host, CPORT, 8080, TCP_SYN, b""),
            ),
            'P',
        ),
        ("direct tcp", tcp_to(CLIENT, E1.ip, 80, TCP_SYN, b""), 'D'),
        ("direct udp", udp_to(E3.ip, 53, true), 'D'),
        (
            "direct icmp",
            frame(
                &Ip4::new(CLIENT, E2.ip, PROTO_ICMP),
                &icmp(ICMP_ECHO_REQUEST, 0, 7, 1, b"ping"),
            ),
            'D',
        ),
        (
            "direct later fragment",
            frame(
                &Ip4::new(CLIENT, E2.ip, PROTO_UDP).frag(100),
                b"fragment body...",
            ),
            'D',
        ),
        (
            "loopback published",
            tcp_to(CLIENT, [127, 0, 0, 1], 8080, TCP_SYN, b""),
            'D',
        ),
        ("loopback udp", udp_to([127, 1, 2, 3], 9053, true), 'D'),
        (
            "spoofed: a container",
            tcp_to(E2.ip, host, 8080, TCP_SYN, b""),
            'D',
        ),
        (
            "spoofed: a host address",
            tcp_to(UPLINK_IP, host, 8080, TCP_SYN, b""),
            'D',
        ),
        (
            "spoofed: loopback",
            tcp_to([127, 0, 0, 5], host, 8080, TCP_SYN, b""),
            'D',
        ),
        ("vlan tagged", tagged, 'D'),
    ]
}

/// Every packet of the catalogue through `mode` on `ifname`, in one fresh
/// fixture: the outcomes and the state after.
fn run_mode(mode: Mode, ifname: &'static str, host: [u8; 4]) -> (Vec<Outcome>, State) {
    let (tx, rx) = mpsc::channel();
    with_env(move |env| {
        setup(env);
        let outs: Vec<Outcome> = catalogue(host)
            .iter()
            .map(|(_, p, _)| through(env, mode, ifname, p))
            .collect();
        tx.send((outs, state(env))).unwrap();
    });
    rx.recv().unwrap()
}

fn same_outcomes_on(ifname: &'static str, host: [u8; 4]) {
    let (xdp, xdp_state) = run_mode(Mode::Xdp, ifname, host);
    let (tcx, tcx_state) = run_mode(Mode::Tcx, ifname, host);
    for (i, (what, pkt, kind)) in catalogue(host).iter().enumerate() {
        assert_eq!(tcx[i].kind(), *kind, "{ifname}: {what}: tcx outcome");
        assert_eq!(tcx[i], xdp[i], "{ifname}: {what}: tcx vs xdp outcome");
        match &tcx[i] {
            Outcome::Pass(out) => assert_eq!(out, pkt, "{what}: passed untouched"),
            // A fragment's L4 checksum covers the whole datagram.
            Outcome::Redirect(out) if !what.contains("fragment") => View(out).assert_checksums(),
            Outcome::Redirect(_) | Outcome::Drop => {}
        }
    }
    assert_eq!(tcx_state, xdp_state, "{ifname}: counters and tables");
    let drops =
        |r: DropReason| tcx_state.drops[DropReason::ALL.iter().position(|x| *x == r).unwrap()];
    assert_eq!(drops(DropReason::DirectAccessFromOutside), 4);
    assert_eq!(drops(DropReason::LoopbackFromOutside), 2);
    assert_eq!(drops(DropReason::SpoofedSource), 3);
    assert_eq!(drops(DropReason::VlanTagged), 1);
}

#[test]
fn tc_uplink_matches_xdp_then_tc_on_the_uplink() {
    same_outcomes_on(UPLINK_IF, UPLINK_IP);
}

#[test]
fn tc_uplink_matches_xdp_then_tc_on_another_host_interface() {
    same_outcomes_on(OTHER_IF, OTHER_IP);
}

/// The translation itself, checked byte for byte: a SYN to the wildcard
/// published port becomes the container's frame (client address kept, TTL
/// decremented, container MACs) and the reply translation is recorded.
#[test]
fn tc_uplink_translates_and_delivers_a_published_port_in_one_pass() {
    with_env(|env| {
        setup(env);
        let pkt = tcp_to(CLIENT, UPLINK_IP, 8080, TCP_SYN, b"");
        let run = env.run_tc_uplink_on(UPLINK_IF, &pkt);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let want = eth(
            E1.mac,
            E1.host_mac,
            ETH_P_IP,
            &Ip4::new(CLIENT, E1.ip, PROTO_TCP)
                .ttl(63)
                .build(&tcp(CLIENT, E1.ip, CPORT, 80, TCP_SYN, b"")),
        );
        assert_eq!(run.out, want);
        let reply = dataplane_common::FlowKey::new(E1.ip, CLIENT, 80, CPORT, PROTO_TCP);
        let ct = env.ct.get(&reply, 0).unwrap();
        assert_eq!(
            (ct.src, ct.sport, ct.dst, ct.dport),
            (UPLINK_IP, 8080, CLIENT, CPORT)
        );
        assert_eq!(env.stats(E1).rx_packets, 1);
        env.assert_no_drops();
    });
}

/// A masquerade reply arriving on the uplink (its port in the masquerade
/// range, where no port is ever published) goes back to the container in
/// one pass, as through XDP + dp_from_uplink.
#[test]
fn tc_uplink_delivers_masquerade_replies() {
    with_env(|env| {
        setup(env);
        let seg = tcp(E1.ip, FAR, 40000, 80, TCP_SYN, b"");
        let out = eth(
            E1.host_mac,
            E1.mac,
            ETH_P_IP,
            &Ip4::new(E1.ip, FAR, PROTO_TCP).build(&seg),
        );
        let run = env.run_container(E1, &out);
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let port = View(&run.out).sport();
        assert!((NAT_MIN..=NAT_MAX).contains(&port));
        let reply = frame(
            &Ip4::new(FAR, UPLINK_IP, PROTO_TCP),
            &tcp(FAR, UPLINK_IP, 80, port, TCP_SYN | TCP_ACK, b""),
        );
        let tcx = through(env, Mode::Tcx, UPLINK_IF, &reply);
        let xdp = through(env, Mode::Xdp, UPLINK_IF, &reply);
        assert_eq!(tcx, xdp);
        let Outcome::Redirect(got) = tcx else {
            panic!("masquerade reply not delivered: {tcx:?}");
        };
        let v = View(&got);
        v.assert_checksums();
        assert_eq!((v.ip_dst(), v.dport(), v.dst_mac()), (E1.ip, 40000, E1.mac));
        env.assert_no_drops();
    });
}

//! Isolation between containers and from the outside (issue 5): icc on and
//! off, cross-network drops, multi-homed containers, `--link` on icc=false
//! networks, published ports across networks, anti-spoofing, direct access
//! from outside, internal networks. Every denial is checked together with the
//! drop counter that must move, and no firewall rule is ever involved.

use std::{thread, time::Duration};

use dataplane_tests::{ip_bytes, python, run_timeout, sh_ok, stdout, wait_until, Bg, Host, Ns};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    Tcp,
    Udp,
    Icmp,
}

/// One reachability check: `from` (a container, with the network of the
/// endpoint it sends from) to `ip:port`.
#[derive(Debug, Clone)]
struct Case {
    from: String,
    net: String,
    ip: String,
    port: u16,
}

fn case(from: &str, net: &str, ip: &str, port: u16) -> Case {
    Case {
        from: from.into(),
        net: net.into(),
        ip: ip.into(),
        port,
    }
}

fn reach(h: &Host, c: &Case, p: P, expect: bool) -> bool {
    let ns = Ns::c(&c.from);
    match p {
        P::Tcp => h.tcp_ok(&ns, &c.ip, c.port),
        P::Udp => h.udp_ok(&ns, &c.ip, c.port),
        // Retry positives; a single probe is enough to show a denial.
        P::Icmp if expect => h.ping(&ns, &c.ip),
        P::Icmp => h.ping_once(&ns, &c.ip),
    }
}

/// Run the checks concurrently; results in order.
fn reach_all(h: &Host, p: P, cases: &[Case], expect: bool) -> Vec<bool> {
    thread::scope(|s| {
        let hs: Vec<_> = cases
            .iter()
            .map(|c| s.spawn(move || reach(h, c, p, expect)))
            .collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

fn allowed(h: &Host, p: P, cases: &[Case]) {
    let res = reach_all(h, p, cases, true);
    let bad: Vec<&Case> = cases
        .iter()
        .zip(&res)
        .filter(|(_, ok)| !**ok)
        .map(|(c, _)| c)
        .collect();
    assert!(
        bad.is_empty(),
        "{p:?} should be allowed but failed: {bad:?}"
    );
}

/// The checks must all fail, and `reason` must be counted on every sender's
/// endpoint (and in its network's drops).
fn denied(h: &Host, p: P, reason: &str, cases: &[Case]) {
    let before: Vec<(u64, u64)> = cases
        .iter()
        .map(|c| {
            (
                drops(h, &c.from, &c.net, reason),
                net_drops(h, &c.net, reason),
            )
        })
        .collect();
    let res = reach_all(h, p, cases, false);
    let bad: Vec<&Case> = cases
        .iter()
        .zip(&res)
        .filter(|(_, ok)| **ok)
        .map(|(c, _)| c)
        .collect();
    assert!(bad.is_empty(), "{p:?} should be denied but worked: {bad:?}");
    for (c, (b, nb)) in cases.iter().zip(before) {
        let a = drops(h, &c.from, &c.net, reason);
        assert!(
            a > b,
            "{p:?} {c:?}: {reason} on {}/{} did not move ({b} -> {a}); counters: {}",
            c.from,
            c.net,
            h.endpoint(&c.from, &c.net)["counters"]
        );
        let na = net_drops(h, &c.net, reason);
        assert!(
            na > nb && na >= a,
            "{p:?} {c:?}: network {} drops {reason} {nb} -> {na} (endpoint {a})",
            c.net
        );
    }
}

fn drop_count(v: &Value, reason: &str, what: &str) -> u64 {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: no drops object"))
        .get(reason)
        .unwrap_or_else(|| panic!("{what}: no drop reason {reason:?} in {v}"))
        .as_u64()
        .unwrap()
}

/// A drop counter of a container's endpoint on `net`.
fn drops(h: &Host, c: &str, net: &str, reason: &str) -> u64 {
    drop_count(
        &h.endpoint(c, net)["counters"]["drops"],
        reason,
        &format!("{c}/{net}"),
    )
}

fn net_drops(h: &Host, net: &str, reason: &str) -> u64 {
    drop_count(&h.inspect_network(net)["drops"], reason, net)
}

/// The agent's global drop counters (`GET /v1/drops`).
fn global_drops(h: &Host) -> Value {
    let sock = h.socket.display().to_string();
    let out = sh_ok(
        "curl",
        &[
            "-sf",
            "--max-time",
            "10",
            "--unix-socket",
            &sock,
            "http://x/v1/drops",
        ],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("/v1/drops {out:?}: {e}"))
}

fn ip_on(h: &Host, c: &str, net: &str) -> String {
    h.endpoint(c, net)["ip"].as_str().unwrap().to_string()
}

fn gateway(h: &Host, net: &str) -> String {
    h.inspect_network(net)["gateway"]
        .as_str()
        .unwrap()
        .to_string()
}

/// No iptables rule and no nftables rule in the host namespace.
fn assert_no_firewall(h: &Host) {
    let o = h.host_exec(&["iptables-save"]);
    assert!(o.status.success(), "iptables-save: {o:?}");
    let ipt = stdout(&o);
    let rules: Vec<&str> = ipt.lines().filter(|l| l.starts_with("-A")).collect();
    assert!(rules.is_empty(), "iptables rules: {rules:?}");
    let o = h.host_exec(&["nft", "list", "ruleset"]);
    assert!(o.status.success(), "nft: {o:?}");
    let nft = stdout(&o);
    let rules: Vec<&str> = nft
        .lines()
        .map(str::trim)
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("table ")
                || l.starts_with("chain ")
                || l.starts_with("type ")
                || l.starts_with("policy ")
                || *l == "}")
        })
        .collect();
    assert!(rules.is_empty(), "nft rules: {rules:?}");
}

fn servers(h: &Host, c: &str, tcp: &[u16], udp: &[u16]) -> Vec<Bg> {
    let ns = Ns::c(c);
    let mut v: Vec<Bg> = tcp
        .iter()
        .map(|p| h.tcp_server(&ns, "0.0.0.0", *p))
        .collect();
    v.extend(udp.iter().map(|p| h.udp_server(&ns, "0.0.0.0", *p)));
    v
}

#[test]
fn icc_and_cross_network_matrix() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "--icc=false",
        "--subnet",
        "10.81.0.0/24",
        "noicc",
    ]);
    h.ok(&["network", "create", "--subnet", "10.82.0.0/24", "other"]);
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "b"]);
    h.ok(&["container", "create", "--network", "noicc", "n1"]);
    h.ok(&["container", "create", "--network", "noicc", "n2"]);
    h.ok(&["container", "create", "--network", "other", "o1"]);
    // Multi-homed: on bridge and on other.
    h.ok(&["container", "create", "m"]);
    h.ok(&["network", "connect", "other", "m"]);
    let ip_a = h.ip_of("a");
    let ip_b = h.ip_of("b");
    let ip_n1 = h.ip_of("n1");
    let ip_n2 = h.ip_of("n2");
    let ip_o1 = h.ip_of("o1");
    let ip_m_br = ip_on(&h, "m", "bridge");
    let ip_m_other = ip_on(&h, "m", "other");
    let mut srv = Vec::new();
    for c in ["a", "b", "n1", "n2", "o1", "m"] {
        srv.push((c, servers(&h, c, &[7000], &[7001])));
    }
    let peers = |c: &str| -> Vec<String> {
        let s = &srv.iter().find(|(n, _)| *n == c).unwrap().1;
        s.iter().flat_map(dataplane_tests::Bg::lines).collect()
    };

    // Same network, icc=true: everything allowed, both ways.
    for p in [P::Tcp, P::Udp, P::Icmp] {
        let port = if p == P::Udp { 7001 } else { 7000 };
        allowed(
            &h,
            p,
            &[
                case("a", "bridge", &ip_b, port),
                case("b", "bridge", &ip_a, port),
            ],
        );
    }
    // A multi-homed container reaches both of its networks, and is reached
    // from both.
    for p in [P::Tcp, P::Udp, P::Icmp] {
        let port = if p == P::Udp { 7001 } else { 7000 };
        allowed(
            &h,
            p,
            &[
                case("m", "bridge", &ip_a, port),
                case("m", "other", &ip_o1, port),
                case("a", "bridge", &ip_m_br, port),
                case("o1", "other", &ip_m_other, port),
            ],
        );
    }
    assert!(peers("a").contains(&ip_m_br), "a: {:?}", peers("a"));
    assert!(peers("o1").contains(&ip_m_other), "o1: {:?}", peers("o1"));

    // icc=false: denied, counted on the sender; cross-network: denied both
    // ways, counted on the sender.
    for p in [P::Tcp, P::Udp, P::Icmp] {
        let port = if p == P::Udp { 7001 } else { 7000 };
        thread::scope(|s| {
            s.spawn(|| {
                denied(
                    &h,
                    p,
                    "icc_disabled",
                    &[
                        case("n1", "noicc", &ip_n2, port),
                        case("n2", "noicc", &ip_n1, port),
                    ],
                );
            });
            s.spawn(|| {
                denied(
                    &h,
                    p,
                    "cross_network",
                    &[
                        case("a", "bridge", &ip_o1, port),
                        case("o1", "other", &ip_a, port),
                        // Through a network the sender is not on, even to a
                        // multi-homed container.
                        case("b", "bridge", &ip_m_other, port),
                    ],
                );
            });
        });
    }
    for (c, not_from) in [
        ("n1", vec![&ip_n2]),
        ("n2", vec![&ip_n1]),
        ("o1", vec![&ip_a]),
        ("a", vec![&ip_o1]),
        ("m", vec![&ip_b]),
    ] {
        let got = peers(c);
        for ip in not_from {
            assert!(!got.contains(ip), "{c} saw a denied peer {ip}: {got:?}");
        }
    }
    // Receivers did not count the sender's drops.
    assert_eq!(drops(&h, "n2", "noicc", "cross_network"), 0);
    assert_eq!(drops(&h, "o1", "other", "icc_disabled"), 0);
    // Each container still reaches its gateway.
    assert!(h.ping(&Ns::c("n1"), "10.81.0.1"));
    assert!(h.ping(&Ns::c("o1"), "10.82.0.1"));
    assert_no_firewall(&h);
}

#[test]
fn link_on_icc_disabled_network() {
    let h = Host::start_with(&["--icc=false"]);
    // Links open ports on the default bridge only (as Docker).
    h.ok(&[
        "container",
        "create",
        "--network",
        "bridge",
        "--expose",
        "5000",
        "--expose",
        "5001/udp",
        "s1",
    ]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "bridge",
        "--link",
        "s1:db",
        "s2",
    ]);
    h.ok(&["container", "create", "--network", "bridge", "s3"]);
    let ip1 = h.ip_of("s1");
    let ip2 = h.ip_of("s2");
    let ip3 = h.ip_of("s3");
    let s1_srv = servers(&h, "s1", &[5000, 5002], &[5001, 5003]);
    let _s2_srv = servers(&h, "s2", &[5000, 6000], &[5001]);

    // The policy map is typed and holds the link.
    let links = h.map_entries("DP_LINKS");
    for (port, proto) in [(5000u64, 6u64), (5001, 17), (0, 0)] {
        assert!(
            links.iter().any(|(k, _)| k["src"] == ip_bytes(&ip2)
                && k["dst"] == ip_bytes(&ip1)
                && k["port"].as_u64() == Some(port)
                && k["proto"].as_u64() == Some(proto)),
            "no DP_LINKS {ip2} -> {ip1} {port}/{proto}: {links:?}"
        );
    }
    assert!(
        links
            .iter()
            .all(|(k, _)| k["src"] == ip_bytes(&ip2) && k["dst"] == ip_bytes(&ip1)),
        "unexpected DP_LINKS entries: {links:?}"
    );
    let v = h.inspect_container("s2");
    assert!(
        v["links"].to_string().contains("s1"),
        "inspect links: {}",
        v["links"]
    );

    // The exposed ports, with their replies.
    assert!(h.tcp_ok(&Ns::c("s2"), &ip1, 5000), "s2 -> s1:5000/tcp");
    assert!(h.udp_ok(&Ns::c("s2"), &ip1, 5001), "s2 -> s1:5001/udp");
    assert_eq!(s1_srv[0].lines(), vec![ip2.clone()]);
    assert!(s1_srv[2].lines().contains(&ip2));
    // The replies were allowed statefully.
    let pct = h.map_entries("DP_POLICY_CT");
    for (port, proto) in [(5000u64, 6u64), (5001, 17)] {
        assert!(
            pct.iter().any(|(k, _)| k["src"] == ip_bytes(&ip1)
                && k["dst"] == ip_bytes(&ip2)
                && k["sport"].as_u64() == Some(port)
                && k["proto"].as_u64() == Some(proto)),
            "no DP_POLICY_CT reply entry for {port}/{proto}: {pct:?}"
        );
    }

    // Non-exposed ports, the reverse direction and ICMP: link_port_not_allowed;
    // an unlinked container: icc_disabled.
    for (p, s1_port, s2_ports) in [
        (P::Tcp, 5002, vec![5000, 6000]),
        (P::Udp, 5003, vec![5001]),
        (P::Icmp, 0, vec![0]),
    ] {
        let mut link_cases = vec![case("s2", "bridge", &ip1, s1_port)];
        link_cases.extend(
            s2_ports
                .iter()
                .map(|port| case("s1", "bridge", &ip2, *port)),
        );
        let icc_port = match p {
            P::Tcp => 5000,
            P::Udp => 5001,
            P::Icmp => 0,
        };
        thread::scope(|s| {
            s.spawn(|| denied(&h, p, "link_port_not_allowed", &link_cases));
            s.spawn(|| {
                denied(
                    &h,
                    p,
                    "icc_disabled",
                    &[
                        case("s3", "bridge", &ip1, icc_port),
                        case("s1", "bridge", &ip3, icc_port),
                    ],
                );
            });
        });
    }
    assert!(s1_srv[1].lines().is_empty(), "5002 reached");
    assert!(s1_srv[3].lines().is_empty(), "5003 reached");
    assert!(!s1_srv[0].lines().contains(&ip3), "s3 reached s1:5000");

    // Remove the linking container and recreate it without the link: new
    // connections are denied at once, nothing restarted.
    h.ok(&["container", "rm", "s2"]);
    assert!(
        h.map_entries("DP_LINKS").is_empty(),
        "DP_LINKS after rm: {:?}",
        h.map_entries("DP_LINKS")
    );
    h.ok(&["container", "create", "--network", "bridge", "s2"]);
    let new_ip2 = h.ip_of("s2");
    for (p, port) in [(P::Tcp, 5000), (P::Udp, 5001)] {
        denied(&h, p, "icc_disabled", &[case("s2", "bridge", &ip1, port)]);
    }
    assert!(h.map_entries("DP_LINKS").is_empty());
    let seen = s1_srv[0].lines();
    assert_eq!(seen, vec![ip2.clone()], "s1:5000 peers (new s2 {new_ip2})");

    // And a link added again opens it again (the policy follows the state).
    h.ok(&["container", "rm", "s2"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "bridge",
        "--link",
        "s1",
        "s2",
    ]);
    assert!(h.tcp_ok(&Ns::c("s2"), &ip1, 5000), "relinked s2 -> s1:5000");
    assert_no_firewall(&h);
}

#[test]
fn published_ports_are_reachable_across_networks_through_the_host_address() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.84.0.0/24", "neta"]);
    h.ok(&["network", "create", "--subnet", "10.85.0.0/24", "netb"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "neta",
        "-p",
        "8080:80",
        "-p",
        "8081:81/udp",
        "srv",
    ]);
    h.ok(&["container", "create", "--network", "netb", "cli"]);
    let ip_srv = h.ip_of("srv");
    let gw_a = gateway(&h, "neta");
    let srv = servers(&h, "srv", &[80], &[81]);
    let cli = Ns::c("cli");

    // Hairpin through the host's address: allowed, seen from A's gateway.
    assert!(h.tcp_ok(&cli, &h.uplink_ip, 8080), "cli -> uplink:8080");
    assert!(h.udp_ok(&cli, &h.uplink_ip, 8081), "cli -> uplink:8081/udp");
    assert_eq!(srv[0].lines(), vec![gw_a.clone()]);
    assert!(
        srv[1].lines().iter().all(|p| *p == gw_a),
        "{:?}",
        srv[1].lines()
    );

    // Directly to A's address: cross_network.
    for (p, port) in [(P::Tcp, 80), (P::Udp, 81), (P::Icmp, 0)] {
        denied(
            &h,
            p,
            "cross_network",
            &[case("cli", "netb", &ip_srv, port)],
        );
    }
    let ip_cli = h.ip_of("cli");
    let all: Vec<String> = srv.iter().flat_map(dataplane_tests::Bg::lines).collect();
    assert!(!all.contains(&ip_cli), "srv saw cli directly: {all:?}");
    // The published port still works afterwards.
    assert!(h.tcp_ok(&cli, &h.uplink_ip, 8080));
    assert_no_firewall(&h);
}

/// Sends the frames described in argv[1] (JSON list of
/// [src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload]) out of eth0.
const SENDP: &str = r#"
import json, sys
from scapy.all import Ether, IP, UDP, sendp
for smac, dmac, sip, dip, sport, dport, payload in json.loads(sys.argv[1]):
    sendp(Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip) / UDP(sport=sport, dport=dport) / payload.encode(),
          iface="eth0", verbose=0)
print("SENT", flush=True)
"#;

/// UDP receiver: appends "peer_ip payload" lines to argv[3].
const UDP_RECORDER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
while True:
    d, a = s.recvfrom(65535)
    with open(sys.argv[3], "a") as f:
        f.write("%s %s\n" % (a[0], d.decode(errors="replace")))
"#;

#[test]
fn spoofed_source_ip_or_mac_from_a_container_is_dropped() {
    let h = Host::start();
    h.ok(&["container", "create", "attacker"]);
    h.ok(&["container", "create", "victim"]);
    h.ok(&["container", "create", "other"]);
    let ip_att = h.ip_of("attacker");
    let ip_vic = h.ip_of("victim");
    let ip_other = h.ip_of("other");
    let gw = gateway(&h, "bridge");
    let ep = h.endpoint("attacker", "bridge");
    let mac = ep["mac"].as_str().unwrap().to_string();
    let hif = ep["host_interface"].as_str().unwrap().to_string();
    let host_mac = h.link_json(&Ns::Host, &hif)["address"]
        .as_str()
        .unwrap()
        .to_string();
    let file = h.dir.join(format!("spoof-{}", h.next()));
    let f = file.display().to_string();
    let mut rec = h.spawn_in(
        &Ns::c("victim"),
        &[python(), "-c", UDP_RECORDER, "0.0.0.0", "9999", &f],
    );
    rec.wait_line("READY", Duration::from_secs(10));
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&file)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    };

    let before = drops(&h, "attacker", "bridge", "spoofed_source");
    let bcast = "ff:ff:ff:ff:ff:ff";
    let fake_mac = "02:42:de:ad:be:ef";
    let frames = json!([
        [
            mac,
            host_mac,
            ip_other,
            ip_vic,
            40000,
            9999,
            "spoof-other-ip"
        ],
        [
            mac,
            bcast,
            ip_other,
            ip_vic,
            40001,
            9999,
            "spoof-other-ip-bcast"
        ],
        [mac, host_mac, gw, ip_vic, 40002, 9999, "spoof-gateway-ip"],
        [fake_mac, host_mac, ip_att, ip_vic, 40003, 9999, "spoof-mac"],
        [fake_mac, bcast, ip_other, ip_vic, 40004, 9999, "spoof-both"],
        // Control, last: the attacker's own addresses.
        [mac, host_mac, ip_att, ip_vic, 40005, 9999, "control"],
    ]);
    let o = run_timeout(
        &mut h.cmd_in(
            &Ns::c("attacker"),
            &[python(), "-c", SENDP, &frames.to_string()],
        ),
        Duration::from_mins(1),
    );
    assert!(
        o.status.success() && stdout(&o).contains("SENT"),
        "scapy failed: {o:?}"
    );
    let want = format!("{ip_att} control");
    assert!(
        wait_until(Duration::from_secs(5), || lines().contains(&want)),
        "the control packet did not arrive: {:?}",
        lines()
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(), vec![want], "spoofed packets were delivered");
    let after = drops(&h, "attacker", "bridge", "spoofed_source");
    assert!(
        after >= before + 5,
        "spoofed_source on attacker {before} -> {after}"
    );
    assert!(net_drops(&h, "bridge", "spoofed_source") >= after);
    // Not blamed on the containers whose addresses were used.
    assert_eq!(drops(&h, "other", "bridge", "spoofed_source"), 0);
    assert_eq!(drops(&h, "victim", "bridge", "spoofed_source"), 0);
    // The attacker's normal traffic is unaffected.
    assert!(h.ping(&Ns::c("attacker"), &ip_vic));
    assert_no_firewall(&h);
}

#[test]
fn outside_cannot_reach_containers_directly_but_the_host_can() {
    let h = Host::start();
    h.ok(&["container", "create", "c"]);
    let ip = h.ip_of("c");
    let srv = servers(&h, "c", &[8080], &[8081]);
    let r = h.outside_exec(&["ip", "route", "add", "172.17.0.0/16", "via", &h.uplink_ip]);
    assert!(r.status.success(), "{r:?}");
    let reason = "direct_access_from_outside";
    let before = drops(&h, "c", "bridge", reason);
    let gbefore = drop_count(&global_drops(&h), reason, "/v1/drops");
    let out = Ns::Outside;
    let res = thread::scope(|s| {
        let t = s.spawn(|| h.tcp_ok(&out, &ip, 8080));
        let u = s.spawn(|| h.udp_ok(&out, &ip, 8081));
        let i = s.spawn(|| h.ping_once(&out, &ip));
        [t.join().unwrap(), u.join().unwrap(), i.join().unwrap()]
    });
    assert_eq!(res, [false; 3], "outside reached {ip} (tcp, udp, icmp)");
    let after = drops(&h, "c", "bridge", reason);
    // At least one SYN, three datagrams and one echo request.
    assert!(after >= before + 5, "{reason} on c: {before} -> {after}");
    let gafter = drop_count(&global_drops(&h), reason, "/v1/drops");
    assert!(
        gafter >= gbefore + 5,
        "/v1/drops {reason}: {gbefore} -> {gafter}"
    );
    assert!(net_drops(&h, "bridge", reason) >= after);
    let all: Vec<String> = srv.iter().flat_map(dataplane_tests::Bg::lines).collect();
    assert!(all.is_empty(), "container saw {all:?}");

    // The host itself keeps direct access.
    assert!(h.ping(&Ns::Host, &ip), "host cannot ping {ip}");
    assert!(h.tcp_ok(&Ns::Host, &ip, 8080), "host TCP to {ip}");
    assert!(h.udp_ok(&Ns::Host, &ip, 8081), "host UDP to {ip}");
    assert_eq!(drops(&h, "c", "bridge", reason), after);
    assert_no_firewall(&h);
}

#[test]
fn internal_network_reaches_only_its_network_and_gateway() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.86.0.0/24",
        "int",
    ]);
    h.ok(&["container", "create", "--network", "int", "i1"]);
    h.ok(&["container", "create", "--network", "int", "i2"]);
    h.ok(&["container", "create", "-p", "8080:80", "pub"]);
    h.ok(&["container", "create", "ctl"]);
    let ip2 = h.ip_of("i2");
    let i1 = Ns::c("i1");
    let _i2_srv = servers(&h, "i2", &[7000], &[7001]);
    let pub_srv = servers(&h, "pub", &[80], &[]);
    let _out_tcp = h.tcp_server(&Ns::Outside, "0.0.0.0", 9000);
    let _out_udp = h.udp_server(&Ns::Outside, "0.0.0.0", 9001);

    // Inside the network, and to the gateway.
    allowed(&h, P::Tcp, &[case("i1", "int", &ip2, 7000)]);
    allowed(&h, P::Udp, &[case("i1", "int", &ip2, 7001)]);
    allowed(
        &h,
        P::Icmp,
        &[
            case("i1", "int", &ip2, 0),
            case("i1", "int", "10.86.0.1", 0),
        ],
    );
    // Control: the published port works from a normal container.
    assert!(h.tcp_ok(&Ns::c("ctl"), &h.uplink_ip, 8080));
    assert_eq!(pub_srv[0].lines().len(), 1);

    // A default route makes packets reach the datapath, which drops them.
    for c in ["i1", "i2"] {
        h.exec_ok(c, &["ip", "route", "add", "default", "via", "10.86.0.1"]);
    }
    let r = "internal_network";
    let (o, up) = (h.outside_ip.clone(), h.uplink_ip.clone());
    thread::scope(|s| {
        s.spawn(|| denied(&h, P::Tcp, r, &[case("i1", "int", &o, 9000)]));
        s.spawn(|| denied(&h, P::Udp, r, &[case("i2", "int", &o, 9001)]));
    });
    denied(&h, P::Icmp, r, &[case("i1", "int", &o, 0)]);
    // The published port of another container through the host address.
    denied(&h, P::Tcp, r, &[case("i1", "int", &up, 8080)]);
    assert_eq!(pub_srv[0].lines().len(), 1, "{:?}", pub_srv[0].lines());
    // Still fine inside.
    assert!(h.tcp_ok(&i1, &ip2, 7000));
    assert_no_firewall(&h);
}

fn sorted_links(h: &Host) -> Vec<String> {
    let mut v: Vec<String> = h
        .map_entries("DP_LINKS")
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    v.sort();
    v
}

/// Link policy follows `network connect` and the linked container being
/// recreated, without a restart: the datapath holds what a restarted agent
/// would compute.
#[test]
fn link_policy_follows_changes_without_restart() {
    let mut h = Host::start_with(&["--icc=false"]);
    // Links open ports on the default bridge only (as Docker).
    h.ok(&[
        "container",
        "create",
        "--network",
        "bridge",
        "--expose",
        "5000",
        "s1",
    ]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "bridge",
        "--link",
        "s1",
        "s2",
    ]);
    let ip2 = h.ip_of("s2");

    // The linked container leaves the network and comes back on a new IP.
    h.ok(&["network", "disconnect", "bridge", "s1"]);
    assert!(sorted_links(&h).is_empty(), "{:?}", sorted_links(&h));
    // A filler takes s1's old address (the lowest free), so s1 gets a new one.
    h.ok(&["container", "create", "filler"]);
    h.ok(&["network", "connect", "bridge", "s1"]);
    let new1 = h.ip_of("s1");
    let links = h.map_entries("DP_LINKS");
    assert!(
        links.iter().any(|(k, _)| k["src"] == ip_bytes(&ip2)
            && k["dst"] == ip_bytes(&new1)
            && k["port"].as_u64() == Some(5000)),
        "no DP_LINKS entry after network connect: {links:?}"
    );
    let _srv = servers(&h, "s1", &[5000], &[]);
    assert!(
        h.tcp_ok(&Ns::c("s2"), &new1, 5000),
        "s2 -> reconnected s1:5000 denied"
    );

    // The linked container is removed and created again.
    h.ok(&["container", "rm", "s1"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "bridge",
        "--expose",
        "5000",
        "s1",
    ]);
    let live = sorted_links(&h);
    h.stop_agent();
    h.start_agent();
    assert_eq!(live, sorted_links(&h), "DP_LINKS differ after a restart");
}

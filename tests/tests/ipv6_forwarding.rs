//! IPv6 between containers and with the host, through real namespaces
//! (issue 16, east-west): dual-stack containers find each other by
//! neighbour discovery answered in eBPF (with the host-side MAC, like ARP)
//! and talk over ICMPv6 and TCP; a different network and `--icc=false` deny
//! IPv6 exactly as they deny IPv4, with the same drop counters, and a
//! `--link` (keyed by the IPv4 identities) opens its ports over IPv6 too,
//! and an internal network keeps IPv6 inside; the host and a container
//! reach each other over IPv6.

use std::time::Duration;

use dataplane_tests::{python, Bg, Host, Ns};

/// A dual-stack TCP echo server (one AF_INET6 socket, IPv4 mapped) on
/// port argv[1] that appends each peer's address to argv[2].
const TCP6_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(64)
print("READY", flush=True)
def handle(c, a):
    with open(sys.argv[2], "a") as f:
        f.write(a[0] + "\n")
    f = c.makefile("rwb")
    try:
        for line in f:
            f.write(line)
            f.flush()
    except Exception:
        pass
    c.close()
while True:
    c, a = s.accept()
    threading.Thread(target=handle, args=(c, a), daemon=True).start()
"#;

const PORT: u16 = 7000;

fn server6(h: &Host, ns: &Ns, port: u16) -> Bg {
    let file = h.run_dir().join(format!("peers6-{}", h.next()));
    let mut bg = h.spawn_in(
        ns,
        &[
            python(),
            "-c",
            TCP6_SERVER,
            &port.to_string(),
            &file.display().to_string(),
        ],
    );
    bg.file = Some(file);
    bg.wait_line("READY", Duration::from_secs(10));
    bg
}

fn dual(h: &Host, name: &str, v4: &str, v6: &str, extra: &[&str]) {
    let mut args = vec![
        "network", "create", "--ipv6", "--subnet", v4, "--subnet", v6,
    ];
    args.extend_from_slice(extra);
    args.push(name);
    h.ok(&args);
}

fn ip6_on(h: &Host, c: &str, net: &str) -> String {
    let ep = h.endpoint(c, net);
    let ip = ep["GlobalIPv6Address"].as_str().unwrap_or_default();
    assert!(!ip.is_empty(), "{c} has no IPv6 address on {net}: {ep}");
    ip.to_string()
}

fn ip4_on(h: &Host, c: &str, net: &str) -> String {
    h.endpoint(c, net)["ip"].as_str().unwrap().to_string()
}

fn drops(h: &Host, c: &str, net: &str, reason: &str) -> u64 {
    let ep = h.endpoint(c, net);
    ep["counters"]["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("{c}/{net}: no drop counter {reason}: {ep}"))
}

/// The MAC of a host-side interface.
fn host_mac(h: &Host, ifname: &str) -> String {
    let out = h.run_ok(
        &Ns::Host,
        &["cat", &format!("/sys/class/net/{ifname}/address")],
    );
    out.trim().to_string()
}

#[test]
fn dual_stack_containers_reach_each_other_over_ipv6() {
    let h = Host::start();
    dual(&h, "dual", "10.63.0.0/24", "fd00:63::/64", &[]);
    h.ok(&["container", "create", "--network", "dual", "a"]);
    h.ok(&["container", "create", "--network", "dual", "b"]);
    let (a6, b6) = (ip6_on(&h, "a", "dual"), ip6_on(&h, "b", "dual"));
    let srv = server6(&h, &Ns::c("b"), PORT);

    assert!(h.ping(&Ns::c("a"), &b6), "ping6 a -> b ({b6})");
    assert!(h.tcp_ok(&Ns::c("a"), &b6, PORT), "TCP over IPv6 a -> b");
    assert!(
        srv.lines().contains(&a6),
        "b saw its peer by a's own IPv6 address: {:?}",
        srv.lines()
    );
    // IPv4 between them still works, to the same dual-stack socket.
    let b4 = ip4_on(&h, "b", "dual");
    assert!(h.tcp_ok(&Ns::c("a"), &b4, PORT), "TCP over IPv4 a -> b");

    // a learnt b's address from the advertisement made in eBPF: b is at
    // a's host-side veth MAC (no bridge, no proxy NDP in the stack).
    let hif = h.endpoint("a", "dual")["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    let mac = host_mac(&h, &hif);
    let neigh = h.exec_ok("a", &["ip", "-6", "neigh", "show", &b6]);
    assert!(
        neigh.contains(&format!("lladdr {mac}")),
        "a's neighbour entry for {b6} should name {mac}: {neigh:?}"
    );
    let rx = h.endpoint("b", "dual")["counters"]["rx_packets"]
        .as_u64()
        .unwrap();
    assert!(rx > 0, "b's endpoint counted what the datapath delivered");
}

#[test]
fn other_network_and_icc_false_deny_ipv6_as_ipv4() {
    let h = Host::start();
    dual(&h, "d1", "10.64.0.0/24", "fd00:64::/64", &[]);
    dual(&h, "d2", "10.65.0.0/24", "fd00:65::/64", &[]);
    dual(
        &h,
        "noicc",
        "10.66.0.0/24",
        "fd00:66::/64",
        &["--icc=false"],
    );
    h.ok(&["container", "create", "--network", "d1", "x"]);
    h.ok(&["container", "create", "--network", "d2", "y"]);
    h.ok(&["container", "create", "--network", "noicc", "n1"]);
    h.ok(&["container", "create", "--network", "noicc", "n2"]);
    let sy = server6(&h, &Ns::c("y"), PORT);
    let sn = server6(&h, &Ns::c("n2"), PORT);

    let cases = [
        ("x", "d1", "y", "d2", "cross_network"),
        ("n1", "noicc", "n2", "noicc", "icc_disabled"),
    ];
    for (from, net, to, to_net, reason) in cases {
        for (family, dst) in [
            ("IPv6", ip6_on(&h, to, to_net)),
            ("IPv4", ip4_on(&h, to, to_net)),
        ] {
            let before = drops(&h, from, net, reason);
            assert!(
                !h.tcp_ok(&Ns::c(from), &dst, PORT),
                "{family} TCP {from} -> {to} ({dst}) should be denied"
            );
            assert!(
                !h.ping_once(&Ns::c(from), &dst),
                "{family} ping {from} -> {to} ({dst}) should be denied"
            );
            let after = drops(&h, from, net, reason);
            assert!(
                after > before,
                "{family} {from} -> {to}: {reason} did not move ({before} -> {after})"
            );
        }
    }
    assert!(sy.lines().is_empty(), "y saw peers: {:?}", sy.lines());
    assert!(sn.lines().is_empty(), "n2 saw peers: {:?}", sn.lines());
    // Each container still reaches its own gateway over IPv6 (the denials
    // above are the policy, not a broken IPv6 path).
    for (c, net) in [("x", "d1"), ("n1", "noicc")] {
        let gw = h.endpoint(c, net)["IPv6Gateway"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(h.ping(&Ns::c(c), &gw), "{c} pings its gateway {gw}");
    }
}

#[test]
fn host_and_container_talk_over_ipv6() {
    let h = Host::start();
    dual(&h, "dual", "10.67.0.0/24", "fd00:67::/64", &[]);
    h.ok(&["container", "create", "--network", "dual", "c"]);
    let c6 = ip6_on(&h, "c", "dual");
    let gw6 = h.endpoint("c", "dual")["IPv6Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let sc = server6(&h, &Ns::c("c"), PORT);
    let sh = server6(&h, &Ns::Host, PORT + 1);

    // Host -> container.
    assert!(h.ping(&Ns::Host, &c6), "ping6 host -> {c6}");
    assert!(h.tcp_ok(&Ns::Host, &c6, PORT), "TCP host -> {c6}");
    assert!(!sc.lines().is_empty(), "the container saw the host");
    // Container -> host (its gateway address).
    assert!(h.ping(&Ns::c("c"), &gw6), "ping6 container -> {gw6}");
    assert!(
        h.tcp_ok(&Ns::c("c"), &gw6, PORT + 1),
        "TCP container -> host"
    );
    assert!(
        sh.lines().contains(&c6),
        "the host saw the container's own address: {:?}",
        sh.lines()
    );
}

#[test]
fn link_on_icc_disabled_network_covers_ipv6() {
    // The default network, dual stack, with icc off; links are keyed by the
    // IPv4 identities and apply to both families.
    let h = Host::start_with(&["--icc=false", "--ipv6"]);
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
        "s1:db",
        "s2",
    ]);
    h.ok(&["container", "create", "--network", "bridge", "s3"]);
    let s1 = ip6_on(&h, "s1", "bridge");
    let s2 = ip6_on(&h, "s2", "bridge");
    let srv1 = server6(&h, &Ns::c("s1"), 5000);
    let _srv1b = server6(&h, &Ns::c("s1"), 5002);
    let srv2 = server6(&h, &Ns::c("s2"), 5000);

    // The linking container opens the exposed port (and its replies flow).
    assert!(h.tcp_ok(&Ns::c("s2"), &s1, 5000), "s2 -> s1:5000 over IPv6");
    assert!(srv1.lines().contains(&s2), "{:?}", srv1.lines());
    // Not another port, not the other way, not an unlinked container.
    let denied = [
        ("s2", s1.clone(), 5002, "link_port_not_allowed"),
        ("s1", s2.clone(), 5000, "link_port_not_allowed"),
        ("s3", s1.clone(), 5000, "icc_disabled"),
    ];
    for (from, dst, port, reason) in denied {
        let before = drops(&h, from, "bridge", reason);
        assert!(
            !h.tcp_ok(&Ns::c(from), &dst, port),
            "{from} -> [{dst}]:{port} should be denied"
        );
        let after = drops(&h, from, "bridge", reason);
        assert!(after > before, "{from}: {reason} did not move");
    }
    assert!(srv2.lines().is_empty(), "s2 saw peers: {:?}", srv2.lines());
}

#[test]
fn internal_network_keeps_ipv6_inside() {
    let h = Host::start();
    dual(&h, "int", "10.68.0.0/24", "fd00:68::/64", &["--internal"]);
    h.ok(&["container", "create", "--network", "int", "i1"]);
    h.ok(&["container", "create", "--network", "int", "i2"]);
    let i2 = ip6_on(&h, "i2", "int");
    let _srv = server6(&h, &Ns::c("i2"), PORT);
    assert!(
        h.ping(&Ns::c("i1"), &i2),
        "ping6 inside the internal network"
    );
    assert!(h.tcp_ok(&Ns::c("i1"), &i2, PORT), "TCP inside the network");

    // The container has no default route there; one it adds itself does
    // not get it out.
    let gw = h.endpoint("i1", "int")["IPv6Gateway"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!gw.is_empty(), "the internal network has an IPv6 gateway");
    h.exec_ok(
        "i1",
        &["ip", "-6", "route", "replace", "default", "via", &gw],
    );
    let before = drops(&h, "i1", "int", "internal_network");
    assert!(!h.ping_once(&Ns::c("i1"), "2001:db8:68::1"));
    assert!(!h.tcp_ok(&Ns::c("i1"), "2001:db8:68::1", 80));
    let after = drops(&h, "i1", "int", "internal_network");
    assert!(after >= before + 2, "internal_network {before} -> {after}");
}

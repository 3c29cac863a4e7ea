//! Dual-stack overlay networks across two simulated hosts (etcd in the
//! underlay namespace): IPv6 addresses derived from the IPv4 ones and
//! announced in the cluster, ping6 and TCP over IPv6 across hosts through
//! the VXLAN device (NDP for remote peers answered in eBPF), remote
//! `DP_ENDPOINTS6` entries, forged inner IPv6 sources from the wrong node
//! dropped, cross-network and `--icc=false` denied over IPv6, bad input.

use std::{net::Ipv6Addr, time::Duration};

use dataplane_tests::{
    assert_error,
    ipv6::endpoints6_entry,
    multihost::Cluster,
    multihost6::{dual_overlay, forge6, ip6_on, tcp6_server, udp6_sink},
    wait_until, Ns,
};

fn wait_listed(c: &Cluster, i: usize, name: &str) -> bool {
    wait_until(Duration::from_secs(10), || {
        c.h(i)
            .ls("network")
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == name && n["driver"] == "overlay")
    })
}

fn drops(c: &Cluster, i: usize, reason: &str) -> u64 {
    c.h(i).global_drops()[reason].as_u64().unwrap_or(0)
}

/// The IPv6 address the rule gives: the IPv6 prefix with the IPv4 host part.
fn derived(v6_prefix: &str, v4: &str, v4_prefix_len: u32) -> String {
    let ip: std::net::Ipv4Addr = v4.parse().unwrap();
    let host = u32::from(ip) & (u32::MAX >> v4_prefix_len);
    let p: Ipv6Addr = v6_prefix.parse().unwrap();
    Ipv6Addr::from(u128::from(p) | u128::from(host)).to_string()
}

#[test]
fn dual_stack_overlay_carries_ipv6_between_hosts() {
    let mut c = Cluster::start(2, &[]);
    dual_overlay(&c, 1, "ov6", "10.96.0.0/16", "fd00:96::/64", &[]);
    assert!(wait_listed(&c, 2, "ov6"), "ov6 not listed on h2");
    // The other node materialised the IPv6 side from the cluster record.
    let net = c.h(2).inspect_network("ov6");
    assert_eq!(net["EnableIPv6"], true, "{net}");
    assert!(net.to_string().contains("fd00:96::/64"), "{net}");

    c.h(1)
        .ok(&["container", "create", "--network", "ov6", "c1"]);
    c.h(2)
        .ok(&["container", "create", "--network", "ov6", "c2"]);
    let (c1, c2) = (c.h(1).ip_of("c1"), c.h(2).ip_of("c2"));
    let (c1_6, c2_6) = (ip6_on(c.h(1), "c1", "ov6"), ip6_on(c.h(2), "c2", "ov6"));
    // IPv6 addresses follow the IPv4 ones (unique across the cluster).
    assert_eq!(c1_6, derived("fd00:96::", &c1, 16));
    assert_eq!(c2_6, derived("fd00:96::", &c2, 16));
    assert_ne!(c1_6, c2_6);

    // Each node holds the other's endpoint in DP_ENDPOINTS6, flagged
    // remote, with its IPv4 record.
    assert!(
        wait_until(Duration::from_secs(10), || endpoints6_entry(c.h(1), &c2_6)
            .is_some()),
        "h1 has no DP_ENDPOINTS6 entry for {c2_6}; h1 log:\n{}",
        c.h(1).log()
    );
    let e = endpoints6_entry(c.h(1), &c2_6).unwrap();
    assert_eq!(e["flags"].as_u64().unwrap() & 1, 1, "not remote: {e}");
    assert_eq!(e["ifindex"], 0, "{e}");

    // ping6 both ways, TCP over IPv6 with the client's own address seen.
    assert!(
        wait_until(Duration::from_secs(10), || c
            .h(1)
            .ping_once(&Ns::c("c1"), &c2_6)),
        "ping6 c1 -> c2 ({c2_6}); h1 log:\n{}",
        c.h(1).log()
    );
    assert!(c.h(2).ping(&Ns::c("c2"), &c1_6), "ping6 c2 -> c1");
    let srv = tcp6_server(c.h(2), &Ns::c("c2"), 7000);
    assert!(
        c.h(1).tcp_ok(&Ns::c("c1"), &c2_6, 7000),
        "TCP over IPv6 c1 -> c2"
    );
    assert!(
        srv.lines().contains(&c1_6),
        "c2 saw its peer by c1's IPv6 address: {:?}",
        srv.lines()
    );
    drop(srv);
    // Bulk TCP over IPv6 (GSO segments through the overlay) completes.
    let mut bulk = c.h(2).spawn_in(
        &Ns::c("c2"),
        &[
            "sh",
            "-c",
            "echo READY; socat -u TCP6-LISTEN:7100,reuseaddr - | wc -c",
        ],
    );
    bulk.wait_line("READY", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let send = format!("head -c 8388608 /dev/zero | socat -u - TCP6:[{c2_6}]:7100");
    c.h(1).exec_ok("c1", &["sh", "-c", &send]);
    bulk.wait_line("8388608", Duration::from_secs(20));

    // After h1's agent restarts, its remote IPv6 entry is there and IPv6
    // flows.
    c.h_mut(1).stop_agent();
    c.h_mut(1).start_agent_with(&[
        "--cluster-store",
        dataplane_tests::multihost::STORE,
        "--node-name",
        "h1",
    ]);
    assert!(
        c.h(1).ping(&Ns::c("c1"), &c2_6),
        "ping6 after h1's agent restarted"
    );
    assert!(endpoints6_entry(c.h(1), &c2_6).is_some());
    // The remote peer's neighbour entry: answered in eBPF with c1's
    // host-side MAC (no NDP crosses the overlay).
    let neigh = c.h(1).exec_ok("c1", &["ip", "-6", "neigh", "show", &c2_6]);
    let hif = c.h(1).endpoint("c1", "ov6")["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    let mac = c.h(1).run_ok(
        &Ns::Host,
        &["cat", &format!("/sys/class/net/{hif}/address")],
    );
    assert!(neigh.contains(mac.trim()), "{neigh} vs {mac}");
    // IPv4 on the same network still works.
    assert!(c.h(1).ping(&Ns::c("c1"), &c2), "ping c1 -> c2 over IPv4");

    // Forged VXLAN from node h1's underlay address into c2: the real c1 as
    // inner source is delivered (the forgery itself works), an address h1
    // does not host (unknown, or c2's own, hosted by h2) is dropped.
    let vni = c.h(2).map_entries("DP_OV_VNIS")[0].0.as_u64().unwrap();
    let sink = udp6_sink(c.h(2), &Ns::c("c2"), 7300);
    forge6(&c, "192.0.2.11", "192.0.2.12", vni, &c1_6, &c2_6, 7300);
    assert!(
        wait_until(Duration::from_secs(5), || sink.lines().contains(&c1_6)),
        "a VXLAN frame from h1 with c1's IPv6 source was not delivered: {:?} {}",
        sink.lines(),
        c.h(2).global_drops()
    );
    let before = drops(&c, 2, "spoofed_source");
    let unknown = derived("fd00:96::", "10.96.200.7", 16);
    forge6(&c, "192.0.2.11", "192.0.2.12", vni, &unknown, &c2_6, 7300);
    forge6(&c, "192.0.2.11", "192.0.2.12", vni, &c2_6, &c2_6, 7300);
    assert!(
        wait_until(Duration::from_secs(5), || drops(&c, 2, "spoofed_source")
            >= before + 6),
        "forged inner IPv6 sources not counted: {}",
        c.h(2).global_drops()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sink.lines().iter().all(|l| *l == c1_6),
        "a forged IPv6 source reached the container: {:?}",
        sink.lines()
    );
    drop(sink);

    // A removed remote endpoint leaves the other node's IPv6 map, and its
    // address is unreachable from there.
    c.h(2).ok(&["container", "rm", "c2"]);
    assert!(
        wait_until(Duration::from_secs(10), || endpoints6_entry(c.h(1), &c2_6)
            .is_none()),
        "h1 kept {c2_6} in DP_ENDPOINTS6"
    );
    assert!(!c.h(1).ping_once(&Ns::c("c1"), &c2_6));
}

#[test]
fn dual_stack_overlay_isolation_and_bad_input() {
    let c = Cluster::start(2, &[]);
    dual_overlay(&c, 1, "ova6", "10.97.0.0/16", "fd00:97::/64", &[]);
    dual_overlay(&c, 1, "ovb6", "10.98.0.0/16", "fd00:98::/64", &[]);
    dual_overlay(
        &c,
        1,
        "ovi6",
        "10.99.0.0/16",
        "fd00:99::/64",
        &["--icc=false"],
    );
    for n in ["ova6", "ovb6", "ovi6"] {
        assert!(wait_listed(&c, 2, n), "{n} not listed on h2");
    }
    for (i, name, net) in [
        (1, "a1", "ova6"),
        (2, "a2", "ova6"),
        (2, "b2", "ovb6"),
        (1, "i1", "ovi6"),
        (2, "i2", "ovi6"),
    ] {
        c.h(i).ok(&["container", "create", "--network", net, name]);
    }
    let a2 = ip6_on(c.h(2), "a2", "ova6");
    let b2 = ip6_on(c.h(2), "b2", "ovb6");
    let i2 = ip6_on(c.h(2), "i2", "ovi6");
    assert!(
        wait_until(Duration::from_secs(10), || c
            .h(1)
            .ping_once(&Ns::c("a1"), &a2)),
        "same network across hosts over IPv6"
    );
    // Another overlay network: dropped at the sender.
    let before = drops(&c, 1, "cross_network");
    assert!(
        !c.h(1).ping(&Ns::c("a1"), &b2),
        "ova6 reached ovb6 over IPv6"
    );
    assert!(drops(&c, 1, "cross_network") > before);
    // --icc=false holds across hosts over IPv6.
    assert!(wait_until(Duration::from_secs(10), || endpoints6_entry(
        c.h(1),
        &i2
    )
    .is_some()));
    let before = drops(&c, 1, "icc_disabled");
    assert!(
        !c.h(1).ping(&Ns::c("i1"), &i2),
        "icc=false crossed hosts over IPv6"
    );
    assert!(drops(&c, 1, "icc_disabled") > before);

    // Bad input: one line, nothing created.
    let h = c.h(1);
    let e = h.fail(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--ipv6",
        "--subnet",
        "10.100.0.0/24",
        "x1",
    ]);
    assert_error(&e, &["needs an IPv6 --subnet"]);
    let e = h.fail(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--ipv6",
        "--subnet",
        "10.100.0.0/16",
        "--subnet",
        "fd00:100::/120",
        "x2",
    ]);
    assert_error(&e, &["too small", "at most /112"]);
    let e = h.fail(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--ipv6",
        "--subnet",
        "10.100.0.0/16",
        "--subnet",
        "fd00:97::/80",
        "x3",
    ]);
    assert_error(&e, &["fd00:97::/80", "overlaps"]);
    let e = h.fail(&[
        "container",
        "create",
        "--network",
        "ova6",
        "--ip6",
        "fd00:97::99",
        "x4",
    ]);
    assert_error(&e, &["follows the IPv4"]);
    let nets = h.ls("network").to_string();
    for n in ["x1", "x2", "x3"] {
        assert!(
            !nets.contains(&format!("\"{n}\"")),
            "{n} was created: {nets}"
        );
    }
    assert!(!h.ls("container").to_string().contains("\"x4\""));
}

#[test]
fn dual_stack_overlay_drops_ipv6_too_big_for_the_underlay() {
    let c = Cluster::start(2, &[]);
    // --mtu 1500 on the containers, but the overlay carries 1450.
    dual_overlay(
        &c,
        1,
        "ovm6",
        "10.101.0.0/16",
        "fd00:101::/64",
        &["--mtu", "1500"],
    );
    assert!(wait_listed(&c, 2, "ovm6"));
    c.h(1)
        .ok(&["container", "create", "--network", "ovm6", "m1"]);
    c.h(2)
        .ok(&["container", "create", "--network", "ovm6", "m2"]);
    let m2 = ip6_on(c.h(2), "m2", "ovm6");
    assert!(wait_until(Duration::from_secs(10), || c
        .h(1)
        .ping_once(&Ns::c("m1"), &m2)));
    // 1500 bytes of IPv6 (1452 of ICMPv6 payload): dropped and counted,
    // never sent unencapsulated.
    let before = drops(&c, 1, "untranslatable_fragment");
    let big = c
        .h(1)
        .exec("m1", &["ping", "-n", "-c1", "-W2", "-s", "1452", &m2]);
    assert!(
        !big.status.success(),
        "a 1500-byte IPv6 packet crossed a 1450 overlay"
    );
    assert!(drops(&c, 1, "untranslatable_fragment") > before);
    // What fits goes through (1450 bytes of IPv6).
    let fits = c
        .h(1)
        .exec("m1", &["ping", "-n", "-c1", "-W2", "-s", "1402", &m2]);
    assert!(
        fits.status.success(),
        "a 1450-byte IPv6 packet did not cross"
    );
}

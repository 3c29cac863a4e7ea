//! Docker fidelity (issue 20): the same CLI inputs give what Docker 20.10
//! gives. A table of inputs (accepted or refused, with the message) through
//! the CLI, and namespace tests for the behavioural differences: the default
//! route follows Docker's rule, `--link` opens nothing on user networks,
//! `enable_ip_masquerade=false`, the default hostname, and host ports of the
//! masquerade range published and reachable from outside.

use dataplane_tests::{Host, Ns};
use serde_json::Value;

/// What a table row expects.
enum Want {
    /// Accepted.
    Ok,
    /// Refused with a message containing this.
    Err(&'static str),
}

/// The table: each row is a CLI command and what Docker does with it.
/// Rows run in order on one agent; earlier rows make the state later ones use.
const TABLE: &[(&[&str], Want)] = &[
    // -o / --opt on network create, as Docker users write them.
    (
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "--subnet",
            "10.91.0.0/24",
            "optnet",
        ],
        Want::Ok,
    ),
    (
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.enable_ip_masquerade=maybe",
            "badopt",
        ],
        Want::Err("expected true or false"),
    ),
    (
        &[
            "network",
            "create",
            "--icc=true",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "badopt",
        ],
        Want::Err("disagree"),
    ),
    (
        &["network", "create", "-o", "bridge.name=x", "badopt"],
        Want::Err("unknown network option"),
    ),
    // Predefined networks: Docker's messages.
    (
        &["network", "create", "host"],
        Want::Err("network with name host already exists"),
    ),
    (
        &["network", "create", "none"],
        Want::Err("network with name none already exists"),
    ),
    (
        &["network", "rm", "bridge"],
        Want::Err("bridge is a pre-defined network and cannot be removed"),
    ),
    (
        &["network", "rm", "host"],
        Want::Err("host is a pre-defined network and cannot be removed"),
    ),
    (&["network", "inspect", "host"], Want::Ok),
    (&["network", "inspect", "none"], Want::Ok),
    // Container names: no 64-character cap.
    (
        &["container", "create", "_a"],
        Want::Err("invalid container name"),
    ),
    (&["container", "create", "ab"], Want::Ok),
    (
        &[
            "container",
            "create",
            "c0123456789012345678901234567890123456789012345678901234567890123456789",
        ],
        Want::Ok,
    ),
    // --ip only on networks with a user-configured subnet.
    (
        &["container", "create", "--ip", "172.17.0.50", "ipdefault"],
        Want::Err("user specified IP address is supported on user defined networks only"),
    ),
    (&["network", "create", "auto"], Want::Ok),
    (
        &[
            "container",
            "create",
            "--network",
            "auto",
            "--ip",
            "172.18.0.50",
            "ipauto",
        ],
        Want::Err("networks with user configured subnets"),
    ),
    (
        &[
            "container",
            "create",
            "--network",
            "optnet",
            "--ip",
            "10.91.0.50",
            "ipuser",
        ],
        Want::Ok,
    ),
    // container:NAME conflicts, and joining a joiner.
    (
        &[
            "container",
            "create",
            "--network",
            "container:ab",
            "--hostname",
            "x",
            "j1",
        ],
        Want::Err("conflicting options: hostname and the network mode"),
    ),
    (
        &[
            "container",
            "create",
            "--network",
            "container:ab",
            "--expose",
            "80",
            "j1",
        ],
        Want::Err("conflicting options: port exposing"),
    ),
    (
        &["container", "create", "--network", "container:ab", "j1"],
        Want::Ok,
    ),
    (
        &["container", "create", "--network", "container:j1", "j2"],
        Want::Ok,
    ),
    // -p forms Docker accepts.
    (&["container", "create", "-p", ":80", "p1"], Want::Ok),
    (&["container", "create", "-p", "0:81", "p2"], Want::Ok),
    (
        &["container", "create", "-p", "8124:80/TCP", "p3"],
        Want::Ok,
    ),
    (
        &["container", "create", "-p", "8125:80/sctp", "p4"],
        Want::Err("publishing SCTP ports is not supported"),
    ),
    (
        &["container", "create", "-p", "8126:80/icmp", "p4"],
        Want::Err("unknown protocol"),
    ),
    // Host ports of the masquerade range can be published.
    (&["container", "create", "-p", "61234:80", "p5"], Want::Ok),
    (
        &["container", "create", "-p", "65535:80/udp", "p6"],
        Want::Ok,
    ),
    // -P with an explicit mapping of an exposed port: published once.
    (
        &[
            "container",
            "create",
            "-P",
            "-p",
            "8120:80",
            "--expose",
            "80",
            "--expose",
            "90",
            "pp",
        ],
        Want::Ok,
    ),
    // --ip-range without --gateway: gateway stays the subnet's first address.
    (
        &[
            "network",
            "create",
            "--subnet",
            "10.92.0.0/24",
            "--ip-range",
            "10.92.0.128/25",
            "ranged",
        ],
        Want::Ok,
    ),
    // Several names at once.
    (
        &["network", "create", "--subnet", "10.93.0.0/24", "r1"],
        Want::Ok,
    ),
    (
        &["network", "create", "--subnet", "10.94.0.0/24", "r2"],
        Want::Ok,
    ),
    (&["network", "rm", "r1", "r2"], Want::Ok),
    (&["container", "rm", "p1", "p2"], Want::Ok),
    // Better than Docker (kept): refused at create time.
    (
        &["container", "create", "-p", "80:0", "bad1"],
        Want::Err("must be 1-65535"),
    ),
    (
        &["network", "create", "--mtu", "20", "bad2"],
        Want::Err("MTU 20 out of range"),
    ),
    (
        &[
            "container",
            "create",
            "--network",
            "host",
            "-p",
            "80",
            "bad3",
        ],
        Want::Err("cannot publish ports with network mode host"),
    ),
    (
        &["container", "rm", "ab"],
        Want::Err("share its network namespace"),
    ),
];

fn run_table(h: &Host) {
    for (args, want) in TABLE {
        let o = h.cli(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        match want {
            Want::Ok => assert!(o.status.success(), "{args:?} refused: {err}"),
            Want::Err(m) => {
                assert!(!o.status.success(), "{args:?} accepted");
                assert!(err.contains(m), "{args:?}: {err:?} lacks {m:?}");
                assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
            }
        }
    }
}

fn ports(h: &Host, c: &str) -> Vec<(u64, u64, String)> {
    h.inspect_container(c)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["container_port"].as_u64().unwrap(),
                m["host_port"].as_u64().unwrap(),
                m["proto"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn cli_inputs_are_accepted_or_refused_as_docker() {
    let h = Host::start();
    run_table(&h);

    // What the accepted rows made.
    let optnet = h.inspect_network("optnet");
    assert_eq!(optnet["icc"], false);
    assert_eq!(optnet["mtu"], 1400);
    let host = h.inspect_network("host");
    assert_eq!(host["driver"], "host");
    assert!(host["subnet"].is_null());
    assert_eq!(h.inspect_network("none")["driver"], "null");
    let names: Vec<String> = h
        .ls("network")
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    for n in ["bridge", "host", "none"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    for n in ["r1", "r2"] {
        assert!(!names.contains(&n.to_string()), "{n} removed: {names:?}");
    }
    // Random host ports for :80 and 0:80 (p1, p2 removed; check via a new one).
    h.ok(&["container", "create", "-p", ":80", "p7"]);
    assert_ne!(ports(&h, "p7")[0].1, 0);
    assert_eq!(ports(&h, "p3"), vec![(80, 8124, "tcp".into())]);
    assert_eq!(ports(&h, "p5"), vec![(80, 61234, "tcp".into())]);
    // -P: 80 once (the explicit 8120), 90 on a random port.
    let pp = ports(&h, "pp");
    assert_eq!(pp.iter().filter(|p| p.0 == 80).count(), 1, "{pp:?}");
    assert!(pp.contains(&(80, 8120, "tcp".into())), "{pp:?}");
    assert_eq!(pp.len(), 2, "{pp:?}");
    // container port NAME PORT[/PROTO].
    assert_eq!(
        h.ok(&["container", "port", "pp", "80/tcp"]).trim(),
        "0.0.0.0:8120"
    );
    assert!(h
        .fail(&["container", "port", "pp", "80/udp"])
        .contains("no public port '80/udp'"));
    // ls shows exposed ports nothing publishes.
    h.ok(&["container", "create", "--expose", "7000", "ex"]);
    let ls = h.ok(&["container", "ls"]);
    let line = ls.lines().find(|l| l.contains(" ex ")).unwrap();
    assert!(line.contains("7000/tcp"), "{line}");
    // The joiner of a joiner shares the first one's namespace.
    let ab = h.inspect_container("ab");
    assert_eq!(h.inspect_container("j2")["netns"], ab["netns"]);
    // --ip-range without --gateway.
    assert_eq!(h.inspect_network("ranged")["gateway"], "10.92.0.1");
    // disconnect --force is accepted.
    h.ok(&["network", "connect", "optnet", "ex"]);
    h.ok(&["network", "disconnect", "--force", "optnet", "ex"]);
}

#[test]
fn addresses_and_pools_are_reused_as_docker() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.95.0.0/24", "n"]);
    for c in ["a1", "a2", "a3"] {
        h.ok(&["container", "create", "--network", "n", c]);
    }
    assert_eq!(h.ip_of("a2"), "10.95.0.3");
    h.ok(&["container", "rm", "a2"]);
    // The lowest free address comes back.
    h.ok(&["container", "create", "--network", "n", "a4"]);
    assert_eq!(h.ip_of("a4"), "10.95.0.3");
    // Default pools in sequence: a removed pool is not handed out again at once.
    h.ok(&["network", "create", "d1"]);
    h.ok(&["network", "create", "d2"]);
    let s1 = h.inspect_network("d1")["subnet"].clone();
    let s2 = h.inspect_network("d2")["subnet"].clone();
    h.ok(&["network", "rm", "d1"]);
    h.ok(&["network", "create", "d3"]);
    let s3 = h.inspect_network("d3")["subnet"].clone();
    assert_ne!(s3, s1, "d1's pool is not reused at once");
    assert_ne!(s3, s2);
}

#[test]
fn subnet_over_the_hosts_own_addresses_is_refused() {
    let h = Host::start();
    let (a, b, c, _) = {
        let o: Vec<u8> = h.uplink_ip.split('.').map(|x| x.parse().unwrap()).collect();
        (o[0], o[1], o[2], o[3])
    };
    let subnet = format!("{a}.{b}.{c}.0/24");
    let err = h.fail(&["network", "create", "--subnet", &subnet, "clash"]);
    assert!(err.contains("an address or route of this host"), "{err}");
    assert!(h.cli(&["network", "inspect", "clash"]).status.code() == Some(4));
}

fn default_route(h: &Host, c: &str) -> String {
    let o = h.exec(c, &["ip", "-4", "route", "show", "default"]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn default_route_moves_by_dockers_rule() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.96.0.0/24", "u1"]);
    h.ok(&["network", "create", "--subnet", "10.97.0.0/24", "aa"]);
    h.ok(&["container", "create", "--network", "u1", "c"]);
    assert!(default_route(&h, "c").contains("via 10.96.0.1"));
    // aa sorts before u1: it takes the default route.
    h.ok(&["network", "connect", "aa", "c"]);
    let r = default_route(&h, "c");
    assert!(r.contains("via 10.97.0.1"), "{r}");
    assert_eq!(h.endpoint("c", "aa")["gateway"], "10.97.0.1");
    // And back when aa goes.
    h.ok(&["network", "disconnect", "aa", "c"]);
    assert!(default_route(&h, "c").contains("via 10.96.0.1"));
    // The container still gets out through the uplink.
    let _srv = h.tcp_server(&Ns::Outside, &h.outside_ip, 7100);
    assert!(h.tcp_ok(&Ns::c("c"), &h.outside_ip, 7100));
}

#[test]
fn hostname_is_the_short_id() {
    let h = Host::start();
    h.ok(&["container", "create", "c1"]);
    h.ok(&["container", "create", "--hostname", "web", "c2"]);
    let id = h.inspect_container("c1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = String::from_utf8_lossy(&h.exec("c1", &["hostname"]).stdout)
        .trim()
        .to_string();
    assert_eq!(got, id[..12]);
    let got = String::from_utf8_lossy(&h.exec("c2", &["hostname"]).stdout)
        .trim()
        .to_string();
    assert_eq!(got, "web");
}

#[test]
fn link_on_user_network_opens_nothing_with_icc_off() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "--subnet",
        "10.98.0.0/24",
        "lk",
    ]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "lk",
        "--expose",
        "5000",
        "s1",
    ]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "lk",
        "--link",
        "s1:db",
        "s2",
    ]);
    let ip1 = h.ip_of("s1");
    let _srv = h.tcp_server(&Ns::c("s1"), "0.0.0.0", 5000);
    assert!(h.map_entries("DP_LINKS").is_empty());
    assert!(!h.tcp_ok(&Ns::c("s2"), &ip1, 5000), "link opened icc=false");
}

#[test]
fn published_port_in_the_masquerade_range_is_reachable_from_outside() {
    let h = Host::start();
    let info: Value =
        serde_json::from_str(&h.ok(&["info", "--format", "json"])).unwrap_or_default();
    let lo = info["nat_port_range"][0].as_u64().unwrap_or(61000);
    let port = u16::try_from(lo + 7).unwrap();
    let spec = format!("{port}:80");
    h.ok(&["container", "create", "-p", &spec, "web"]);
    let _srv = h.tcp_server(&Ns::c("web"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, port));
    // Masquerade from another container still works alongside.
    h.ok(&["container", "create", "cl"]);
    let _out = h.tcp_server(&Ns::Outside, &h.outside_ip, 7200);
    for _ in 0..20 {
        assert!(h.tcp_ok(&Ns::c("cl"), &h.outside_ip, 7200));
    }
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, port));
}

#[test]
fn masquerade_off_leaves_the_container_address() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "--subnet",
        "10.99.0.0/24",
        "nomasq",
    ]);
    assert_eq!(h.inspect_network("nomasq")["masquerade"], false);
    h.ok(&["container", "create", "--network", "nomasq", "c"]);
    h.ok(&["container", "create", "m"]);
    let ip = h.ip_of("c");
    let srv = h.udp_server(&Ns::Outside, &h.outside_ip, 7300);
    // One datagram each; the server records the source it saw.
    let send = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('{}', 7300))",
        h.outside_ip
    );
    // The masqueraded one with an echo round trip (retried); then the
    // un-NATed one (last: the outside has no route back to it, and the echo
    // server's reply fails).
    assert!(h.udp_ok(&Ns::c("m"), &h.outside_ip, 7300));
    h.exec_ok("c", &[dataplane_tests::python(), "-c", &send]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = srv.lines();
    assert!(seen.contains(&ip), "un-NATed source {ip} in {seen:?}");
    assert!(seen.contains(&h.uplink_ip), "masqueraded {seen:?}");
}

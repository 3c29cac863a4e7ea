//! IPv6 dual stack, the agent's side (issue 16): `network create --ipv6`
//! with a second `--subnet`, `--ip6`, the agent's `--ipv6`/`--fixed-cidr-v6`;
//! the addresses and routes in the container's namespace and on the host,
//! the IPv6 maps (`DP_ENDPOINTS6`, `DP_IF_ENDPOINTS6`, `DP_NETWORKS6`), the
//! inspect fields with Docker's names, bad input that changes nothing,
//! restarts, tamper repair, and IPv6 traffic between the host and
//! containers. Names and CNI: `ipv6_model_names.rs`.

use std::{net::Ipv6Addr, process::Command, time::Duration};

use dataplane_tests::{ipv6::*, *};
use serde_json::json;

const REPAIR: Duration = Duration::from_secs(5);

#[test]
fn dual_stack_endpoint_has_ipv6_address_routes_and_map_entries() {
    let h = Host::start();
    dual(&h, "dual", "10.61.0.0/24", "fd00:61::/64");
    h.ok(&["network", "create", "--subnet", "10.62.0.0/24", "plain"]);
    h.ok(&["container", "create", "--network", "dual", "a"]);
    h.ok(&["container", "create", "--network", "plain", "p"]);

    // Inspect: Docker's names.
    let ep = h.endpoint("a", "dual");
    assert_eq!(ep["GlobalIPv6Address"], "fd00:61::2", "{ep}");
    assert_eq!(ep["GlobalIPv6PrefixLen"], 64);
    assert_eq!(ep["IPv6Gateway"], "fd00:61::1");
    let n = h.inspect_network("dual");
    assert_eq!(n["EnableIPv6"], true, "{n}");
    let cfg = n["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(cfg.len(), 2, "{n}");
    assert_eq!(cfg[0]["Subnet"], "10.61.0.0/24");
    assert_eq!(cfg[1]["Subnet"], "fd00:61::/64");
    assert_eq!(cfg[1]["Gateway"], "fd00:61::1");
    assert_eq!(n["gateway_mode_ipv6"], "nat", "ULA subnets are masqueraded");
    assert_eq!(n["containers"][0]["ip6"], "fd00:61::2");
    let pn = h.inspect_network("plain");
    assert_eq!(pn["EnableIPv6"], false);
    assert_eq!(pn["IPAM"]["Config"].as_array().unwrap().len(), 1);
    assert_eq!(h.endpoint("p", "plain")["GlobalIPv6Address"], "");

    // Inside the container: the address (no DAD) and the default route.
    let addr = h.exec_ok("a", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("inet6 fd00:61::2/64"), "{addr}");
    assert!(
        !addr.contains("fd00:61::2/64 scope global tentative"),
        "{addr}"
    );
    let routes = h.exec_ok("a", &["ip", "-6", "route"]);
    assert!(
        routes.contains("default via fd00:61::1 dev eth0"),
        "{routes}"
    );
    // The IPv4-only container has no IPv6 on its interface.
    let paddr = h.exec_ok("p", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(!paddr.contains("inet6"), "{paddr}");

    // On the host: the gateway on dp0, a /128 route via the veth, IPv6 on
    // the dual-stack veth only.
    let a_if = host_if(&h, "a", "dual");
    let gw = h.run_ok(&Ns::Host, &["ip", "-6", "addr", "show", "dev", "dp0"]);
    assert!(gw.contains("inet6 fd00:61::1/128"), "{gw}");
    let r = h.run_ok(&Ns::Host, &["ip", "-6", "route", "show", "fd00:61::2"]);
    assert!(r.contains(&format!("dev {a_if}")), "{r}");
    assert!(!host_ipv6_disabled(&h, &a_if));
    assert!(host_ipv6_disabled(&h, &host_if(&h, "p", "plain")));

    // Maps: the IPv6 address maps to the endpoint's IPv4 record.
    let ip4 = h.ip_of("a");
    let v6 = endpoints6_entry(&h, "fd00:61::2").expect("no DP_ENDPOINTS6 entry");
    assert_eq!(Some(v6), endpoints_entry(&h, &ip4));
    let ifidx = h.host_ifindex(&a_if);
    let ife = h.map_entries("DP_IF_ENDPOINTS6");
    assert!(
        ife.iter()
            .any(|(k, v)| *k == json!(ifidx) && v["ip"] == v6_bytes("fd00:61::2")),
        "{ife:?}"
    );
    let nets = h.map_entries("DP_NETWORKS6");
    assert_eq!(nets.len(), 1, "{nets:?}");
    assert_eq!(nets[0].1["subnet"], v6_bytes("fd00:61::"));
    assert_eq!(nets[0].1["gateway"], v6_bytes("fd00:61::1"));
    assert_eq!(nets[0].1["prefix_len"], 64);
    assert_eq!(nets[0].1["flags"], 1, "NET6_F_MASQ");

    // Removing the container and the network takes everything away.
    h.ok(&["container", "rm", "a"]);
    assert!(endpoints6_entry(&h, "fd00:61::2").is_none());
    assert!(h.map_entries("DP_IF_ENDPOINTS6").is_empty());
    h.ok(&["network", "rm", "dual"]);
    assert!(h.map_entries("DP_NETWORKS6").is_empty());
    let gw = h.run_ok(&Ns::Host, &["ip", "-6", "addr", "show", "dev", "dp0"]);
    assert!(!gw.contains("fd00:61::1"), "{gw}");
}

#[test]
fn ip6_static_default_subnets_routed_and_internal_networks() {
    let h = Host::start();
    dual(&h, "dual", "10.63.0.0/24", "fd00:63::/64");
    h.ok(&[
        "container",
        "create",
        "--network",
        "dual",
        "--ip6",
        "fd00:63::10",
        "s",
    ]);
    assert_eq!(h.endpoint("s", "dual")["GlobalIPv6Address"], "fd00:63::10");
    // The next automatic address skips nothing it need not.
    h.ok(&["container", "create", "--network", "dual", "t"]);
    assert_eq!(h.endpoint("t", "dual")["GlobalIPv6Address"], "fd00:63::2");
    // --ip6 on connect.
    dual(&h, "dual2", "10.64.0.0/24", "2001:db8:64::/64");
    h.ok(&[
        "network",
        "connect",
        "--ip6",
        "2001:db8:64::99",
        "dual2",
        "t",
    ]);
    assert_eq!(
        h.endpoint("t", "dual2")["GlobalIPv6Address"],
        "2001:db8:64::99"
    );
    let addr = h.exec_ok("t", &["ip", "-6", "addr"]);
    assert!(addr.contains("2001:db8:64::99/64"), "{addr}");
    // A global subnet is routed, unless the option says nat.
    assert_eq!(h.inspect_network("dual2")["gateway_mode_ipv6"], "routed");
    h.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "2001:db8:65::/64",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv6=nat",
        "natted",
    ]);
    assert_eq!(h.inspect_network("natted")["gateway_mode_ipv6"], "nat");

    // --ipv6 without an IPv6 subnet: the first free default one.
    h.ok(&["network", "create", "--ipv6", "auto6"]);
    let n = h.inspect_network("auto6");
    assert_eq!(n["IPAM"]["Config"][1]["Subnet"], "fd00:dead:1::/64", "{n}");
    h.ok(&["network", "create", "--ipv6", "auto6b"]);
    assert_eq!(
        h.inspect_network("auto6b")["IPAM"]["Config"][1]["Subnet"],
        "fd00:dead:2::/64"
    );
    h.ok(&["container", "create", "--network", "auto6", "u"]);
    assert_eq!(
        h.endpoint("u", "auto6")["GlobalIPv6Address"],
        "fd00:dead:1::2"
    );

    // Internal: the address, but no default route (as IPv4).
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--ipv6",
        "--subnet",
        "fd00:66::/64",
        "intern",
    ]);
    h.ok(&["container", "create", "--network", "intern", "i"]);
    let addr = h.exec_ok("i", &["ip", "-6", "addr"]);
    assert!(addr.contains("fd00:66::2/64"), "{addr}");
    let routes = h.exec_ok("i", &["ip", "-6", "route"]);
    assert!(!routes.contains("default"), "{routes}");
}

#[test]
fn bad_ipv6_inputs_get_one_line_errors_and_change_nothing() {
    let h = Host::start();
    dual(&h, "dual", "10.67.0.0/24", "fd00:67::/64");
    h.ok(&["network", "create", "--subnet", "10.68.0.0/24", "plain"]);
    h.ok(&["network", "create", "--ipv6", "auto6"]);
    h.ok(&["container", "create", "--network", "dual", "a"]);
    h.ok(&["container", "create", "--network", "plain", "c"]);
    // An IPv6 prefix of the host's own (on its uplink).
    h.run_ok(
        &Ns::Host,
        &[
            "ip",
            "addr",
            "add",
            "2001:db8:80::5/64",
            "dev",
            &h.uplink,
            "nodad",
        ],
    );
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::1/64",
                "n",
            ],
            &["host bits", "fd00:70::/64"],
        ),
        (
            &["network", "create", "--subnet", "fd00:70::/64", "n"],
            &["needs --ipv6"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/64",
                "--gateway",
                "fd00:71::1",
                "n",
            ],
            &["gateway", "outside"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/64",
                "--subnet",
                "fd00:71::/64",
                "n",
            ],
            &["--subnet", "more than once"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/127",
                "n",
            ],
            &["too small"],
        ),
        (
            &["network", "create", "--ipv6", "--subnet", "zz::/64", "n"],
            &["invalid IPv6 CIDR"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/64",
                "--ip-range",
                "fd00:72::/80",
                "n",
            ],
            &["ip-range", "outside"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/64",
                "-o",
                "com.docker.network.bridge.gateway_mode_ipv6=bogus",
                "n",
            ],
            &["gateway_mode_ipv6", "nat or routed"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:67::/80",
                "n",
            ],
            &["overlaps", "dual"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "2001:db8:80::/48",
                "n",
            ],
            &["overlaps 2001:db8:80::/64", "of this host"],
        ),
        (
            &["network", "create", "--ipv6", "--driver", "lan", "n"],
            &["--ipv6", "not supported"],
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "dual",
                "--ip6",
                "fd00:99::5",
                "x",
            ],
            &["outside subnet"],
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "dual",
                "--ip6",
                "fd00:67::1",
                "x",
            ],
            &["gateway"],
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "dual",
                "--ip6",
                "fd00:67::2",
                "x",
            ],
            &["already in use"],
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "dual",
                "--ip6",
                "nonsense",
                "x",
            ],
            &["invalid IPv6 address"],
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "plain",
                "--ip6",
                "fd00:67::9",
                "x",
            ],
            &["no IPv6"],
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "host",
                "--ip6",
                "fd00:67::9",
                "x",
            ],
            &["network mode"],
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "auto6",
                "--ip6",
                "fd00:dead:1::9",
                "x",
            ],
            &["user configured subnets"],
        ),
        (
            &["network", "connect", "--ip6", "fd00:67::2", "dual", "c"],
            &["already in use"],
        ),
        (
            &["network", "connect", "--ip6", "fd00:67::9", "plain", "a"],
            &["no IPv6"],
        ),
    ];
    for (args, needles) in cases {
        let before = h.snapshot();
        let err = h.fail(args);
        assert_error(&err, needles);
        assert_eq!(h.snapshot(), before, "{args:?} changed something");
    }
}

#[test]
fn ipv6_state_survives_an_agent_restart() {
    let mut h = Host::start();
    dual(&h, "dual", "10.69.0.0/24", "fd00:69::/64");
    h.ok(&["container", "create", "--network", "dual", "a"]);
    h.ok(&["container", "create", "--network", "dual", "b"]);
    let endpoints = |h: &Host| {
        let mut v = h.inspect_container("b")["endpoints"].clone();
        v[0].as_object_mut().unwrap().remove("counters");
        v
    };
    let before = endpoints(&h);
    let entry = endpoints6_entry(&h, "fd00:69::3").unwrap();
    h.stop_agent();
    h.start_agent();
    assert_eq!(endpoints(&h), before);
    assert_eq!(endpoints6_entry(&h, "fd00:69::3"), Some(entry));
    assert_eq!(h.inspect_network("dual")["EnableIPv6"], true);
    let addr = h.exec_ok("b", &["ip", "-6", "addr"]);
    assert!(addr.contains("fd00:69::3/64"), "{addr}");
    // IPAM remembers what is taken.
    h.ok(&["container", "create", "--network", "dual", "c"]);
    assert_eq!(h.endpoint("c", "dual")["GlobalIPv6Address"], "fd00:69::4");
}

#[test]
fn deleted_endpoints6_entry_and_gateway_are_restored() {
    let h = Host::start();
    dual(&h, "dual", "10.71.0.0/24", "fd00:71::/64");
    h.ok(&["container", "create", "--network", "dual", "a"]);
    let entry = endpoints6_entry(&h, "fd00:71::2").unwrap();
    let map = h.map_path("DP_ENDPOINTS6").display().to_string();
    let key: Vec<String> = "fd00:71::2"
        .parse::<Ipv6Addr>()
        .unwrap()
        .octets()
        .iter()
        .map(u8::to_string)
        .collect();
    let mut args = vec!["map", "delete", "pinned", map.as_str(), "key"];
    args.extend(key.iter().map(String::as_str));
    assert!(!h.log().contains("repairing: IPv6 map entries"));
    // (The reconciler may put it back before a look could see it gone.)
    sh_ok("bpftool", &args);
    assert!(
        wait_until(REPAIR, || endpoints6_entry(&h, "fd00:71::2")
            == Some(entry.clone())),
        "DP_ENDPOINTS6 entry not restored; log:\n{}",
        h.log()
    );
    assert!(
        wait_until(REPAIR, || h.log().contains("repairing: IPv6 map entries")),
        "no repair logged:\n{}",
        h.log()
    );
    // The gateway address and the host route come back too.
    h.run_ok(
        &Ns::Host,
        &["ip", "addr", "del", "fd00:71::1/128", "dev", "dp0"],
    );
    h.run_ok(&Ns::Host, &["ip", "-6", "route", "del", "fd00:71::2/128"]);
    assert!(
        wait_until(REPAIR, || {
            let a = h.run_ok(&Ns::Host, &["ip", "-6", "addr", "show", "dev", "dp0"]);
            let r = h.run_ok(&Ns::Host, &["ip", "-6", "route", "show", "fd00:71::2"]);
            a.contains("fd00:71::1/128") && r.contains("dev dp")
        }),
        "IPv6 gateway or route not restored; log:\n{}",
        h.log()
    );
}

#[test]
fn agent_ipv6_flags_make_the_default_network_dual_stack() {
    let mut h = Host::start_with(&["--ipv6"]);
    let n = h.inspect_network("bridge");
    assert_eq!(n["EnableIPv6"], true, "{n}");
    assert_eq!(n["IPAM"]["Config"][1]["Subnet"], "fd00:dead:1::/64");
    h.ok(&["container", "create", "a"]);
    assert_eq!(
        h.endpoint("a", "bridge")["GlobalIPv6Address"],
        "fd00:dead:1::2"
    );
    let addr = h.exec_ok("a", &["ip", "-6", "addr"]);
    assert!(addr.contains("fd00:dead:1::2/64"), "{addr}");
    // --ip6 on the default network is refused, as --ip.
    assert_error(
        &h.fail(&["container", "create", "--ip6", "fd00:dead:1::9", "x"]),
        &["user defined networks only"],
    );
    // New flags while a container uses it: kept; once unused: re-made.
    h.stop_agent();
    h.start_agent_with(&["--ipv6", "--fixed-cidr-v6", "fd00:74::/64"]);
    assert_eq!(
        h.inspect_network("bridge")["IPAM"]["Config"][1]["Subnet"],
        "fd00:dead:1::/64"
    );
    h.ok(&["container", "rm", "a"]);
    h.stop_agent();
    h.start_agent_with(&["--ipv6", "--fixed-cidr-v6", "fd00:74::/64"]);
    assert_eq!(
        h.inspect_network("bridge")["IPAM"]["Config"][1]["Subnet"],
        "fd00:74::/64"
    );
    h.ok(&["container", "create", "b"]);
    assert_eq!(h.endpoint("b", "bridge")["GlobalIPv6Address"], "fd00:74::2");
    h.ok(&["container", "rm", "b"]);
    h.stop_agent();
    h.start_agent();
    assert_eq!(h.inspect_network("bridge")["EnableIPv6"], false);
    assert!(h.map_entries("DP_NETWORKS6").is_empty());
}

#[test]
fn bad_ipv6_agent_flags_stop_the_agent_with_one_line() {
    let h = Host::new_namespaces_only();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--fixed-cidr-v6", "fd00:75::/64"],
            &["--fixed-cidr-v6", "needs --ipv6"],
        ),
        (
            &["--ipv6", "--fixed-cidr-v6", "fd00:75::1/64"],
            &["--fixed-cidr-v6", "host bits"],
        ),
        (
            &["--ipv6", "--fixed-cidr-v6", "fd00:75::/127"],
            &["--fixed-cidr-v6", "/126"],
        ),
        (
            &["--ipv6", "--fixed-cidr-v6", "10.0.0.0/8"],
            &["--fixed-cidr-v6"],
        ),
    ];
    for (args, needles) in cases {
        let o = run(Command::new(dataplane_bin())
            .arg("agent")
            .args(h.agent_args())
            .args(*args));
        assert!(!o.status.success(), "{args:?} accepted");
        assert_error(&stderr(&o), needles);
        assert!(!h.state_dir().exists(), "{args:?} left state behind");
    }
}

/// Packets the datapath counted from `c`'s endpoint on `net`.
fn tx_packets(h: &Host, c: &str, net: &str) -> u64 {
    h.endpoint(c, net)["counters"]["tx_packets"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn host_and_containers_reach_each_other_over_ipv6() {
    let h = Host::start();
    dual(&h, "dual", "10.76.0.0/24", "fd00:76::/64");
    h.ok(&["container", "create", "--network", "dual", "a"]);
    h.ok(&["container", "create", "--network", "dual", "b"]);
    let (a6, b6) = ("fd00:76::2", "fd00:76::3");
    assert!(h.ping(&Ns::Host, a6), "host cannot ping {a6}");
    let before = tx_packets(&h, "a", "dual");
    assert!(h.ping(&Ns::c("a"), b6), "a cannot ping {b6}");
    assert!(h.ping(&Ns::c("b"), a6), "b cannot ping {a6}");
    assert!(
        tx_packets(&h, "a", "dual") > before,
        "a's pings did not go through its program"
    );
    // The gateway answers too (NDP in eBPF, then the host's stack).
    assert!(
        h.ping(&Ns::c("a"), "fd00:76::1"),
        "a cannot ping its gateway"
    );
}

#[test]
fn deleted_dual_stack_veth_is_recreated_with_its_ipv6_side() {
    let h = Host::start();
    dual(&h, "dual", "10.77.0.0/24", "fd00:77::/64");
    h.ok(&["container", "create", "--network", "dual", "a"]);
    h.ok(&["container", "create", "--network", "dual", "b"]);
    let (a6, b6) = ("fd00:77::2", "fd00:77::3");
    assert!(h.ping(&Ns::c("a"), b6));
    let ifname = host_if(&h, "a", "dual");
    let old_index = h.host_ifindex(&ifname);
    h.run_ok(&Ns::Host, &["ip", "link", "del", &ifname]);
    // The endpoint is re-made: IPv6 address and route inside, IPv6 maps
    // pointing at the new veth, and traffic both ways.
    assert!(
        wait_until(Duration::from_secs(10), || {
            h.run_in(&Ns::Host, &["ip", "link", "show", &ifname])
                .status
                .success()
                && h.ping_once(&Ns::c("a"), b6)
        }),
        "endpoint not re-made; log:\n{}",
        h.log()
    );
    let new_index = h.host_ifindex(&ifname);
    assert_ne!(new_index, old_index);
    assert!(
        wait_until(REPAIR, || h
            .map_entries("DP_IF_ENDPOINTS6")
            .iter()
            .any(|(k, v)| *k == json!(new_index) && v["ip"] == v6_bytes(a6))),
        "DP_IF_ENDPOINTS6 does not follow the new veth"
    );
    assert_eq!(
        endpoints6_entry(&h, a6).unwrap()["ifindex"],
        json!(new_index)
    );
    let addr = h.exec_ok("a", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("fd00:77::2/64"), "{addr}");
    assert!(!host_ipv6_disabled(&h, &ifname));
    assert!(h.ping(&Ns::c("b"), a6));
    assert!(h.ping(&Ns::Host, a6));
}

#[test]
fn ipv6_default_route_moves_with_a_disconnect() {
    let h = Host::start();
    dual(&h, "aa", "10.78.0.0/24", "fd00:78::/64");
    dual(&h, "bb", "10.79.0.0/24", "fd00:79::/64");
    h.ok(&["container", "create", "--network", "bb", "c"]);
    h.ok(&["network", "connect", "aa", "c"]);
    // Docker's rule: the network first by name carries the default route.
    let routes = h.exec_ok("c", &["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains("via fd00:78::1"), "{routes}");
    let table = h.ok(&["container", "ls"]);
    assert!(table.contains("fd00:79::2/64"), "{table}");
    h.ok(&["network", "disconnect", "aa", "c"]);
    let routes = h.exec_ok("c", &["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains("via fd00:79::1"), "{routes}");
}

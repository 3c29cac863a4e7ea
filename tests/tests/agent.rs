//! Node agent foundation: networks, containers, modes, IPAM, validation,
//! concurrency and restart, each against a real agent in its own namespaces.

use std::collections::BTreeSet;

use dataplane_tests::{assert_error, Host, Ns};
use serde_json::Value;

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

/// `ip -j addr show dev DEV` inside a container: (ip, prefix) pairs of IPv4.
fn addrs(h: &Host, c: &str, dev: &str) -> Vec<(String, u64)> {
    let out = h.exec_ok(c, &["ip", "-j", "-4", "addr", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["local"].as_str().unwrap().to_string(),
                        i["prefixlen"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn ip_u32(ip: &str) -> u32 {
    u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap())
}

/// Names of the agent's host-side veths (`dp` + 8 hex) in the host namespace.
fn host_veths(h: &Host) -> BTreeSet<String> {
    let out = dataplane_tests::sh_ok("ip", &["-n", &h.host_ns, "-o", "link"]);
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.len() == 10 && n.starts_with("dp"))
        .collect()
}

#[test]
fn default_bridge_network_exists_at_first_start() {
    let h = Host::start();
    let n = h.inspect_network("bridge");
    assert_eq!(n["name"], "bridge");
    assert_eq!(n["subnet"], "172.17.0.0/16");
    assert_eq!(n["gateway"], "172.17.0.1");
    assert_eq!(n["driver"], "bridge");
    assert_eq!(n["mtu"], 1500);
    assert!(names(&h.ls("network")).contains(&"bridge".to_string()));
    // The gateway lives in the host namespace.
    let a = dataplane_tests::sh_ok("ip", &["-n", &h.host_ns, "-o", "-4", "addr"]);
    assert!(a.contains("172.17.0.1/32"), "no gateway address: {a}");
    // The default network cannot be removed.
    let e = h.fail(&["network", "rm", "bridge"]);
    assert_error(&e, &["bridge"]);
    // A container without --network lands on it.
    h.ok(&["container", "create", "c"]);
    assert_eq!(h.endpoint("c", "bridge")["ip"], "172.17.0.2");
}

#[test]
fn network_create_ls_inspect_rm() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.50.0.0/24",
        "--gateway",
        "10.50.0.254",
        "--ip-range",
        "10.50.0.128/25",
        "--mtu",
        "1400",
        "n1",
    ]);
    let table = h.ok(&["network", "ls"]);
    assert!(
        table.lines().any(|l| l.starts_with("n1 ")),
        "n1 not listed: {table}"
    );
    let ls = h.ls("network");
    // bridge, n1 and the predefined host and none.
    assert_eq!(names(&ls).len(), 4, "{ls}");
    let n = h.inspect_network("n1");
    assert_eq!(n["name"], "n1");
    assert_eq!(n["driver"], "bridge");
    assert_eq!(n["subnet"], "10.50.0.0/24");
    assert_eq!(n["gateway"], "10.50.0.254");
    assert_eq!(n["ip_range"], "10.50.0.128/25");
    assert_eq!(n["mtu"], 1400);
    assert_eq!(n["internal"], false);
    assert_eq!(n["icc"], true);
    assert_eq!(n["containers"], Value::Array(vec![]));
    let a = dataplane_tests::sh_ok("ip", &["-n", &h.host_ns, "-o", "-4", "addr"]);
    assert!(a.contains("10.50.0.254/32"), "no gateway address: {a}");

    // Without --subnet a network gets one from the default pools.
    h.ok(&["network", "create", "--internal", "auto"]);
    let auto = h.inspect_network("auto");
    assert_eq!(auto["subnet"], "172.18.0.0/16");
    assert_eq!(auto["gateway"], "172.18.0.1");
    assert_eq!(auto["internal"], true);

    assert_eq!(h.ok(&["network", "rm", "n1"]).trim(), "n1");
    assert!(!names(&h.ls("network")).contains(&"n1".to_string()));
    let e = h.fail(&["network", "inspect", "n1"]);
    assert_error(&e, &["n1", "not found"]);
    let a = dataplane_tests::sh_ok("ip", &["-n", &h.host_ns, "-o", "-4", "addr"]);
    assert!(!a.contains("10.50.0.254/"), "gateway left behind: {a}");
    h.ok(&["network", "rm", "auto"]);
    assert_eq!(names(&h.ls("network")), vec!["bridge", "host", "none"]);
}

#[test]
fn container_on_network() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.60.0.0/24",
        "--gateway",
        "10.60.0.3",
        "--mtu",
        "1450",
        "n",
    ]);
    let id = h.ok(&["container", "create", "--network", "n", "c1"]);
    assert_eq!(id.trim().len(), 64, "id: {id:?}");
    h.ok(&["container", "create", "--network", "n", "c2"]);
    h.ok(&["container", "create", "--network", "n", "c3"]);
    // In order, skipping the gateway (.3).
    assert_eq!(h.ip_of("c1"), "10.60.0.1");
    assert_eq!(h.ip_of("c2"), "10.60.0.2");
    assert_eq!(h.ip_of("c3"), "10.60.0.4");
    h.ok(&[
        "container",
        "create",
        "--network",
        "n",
        "--ip",
        "10.60.0.200",
        "st",
    ]);
    assert_eq!(h.ip_of("st"), "10.60.0.200");

    for (c, ip) in [
        ("c1", "10.60.0.1"),
        ("c3", "10.60.0.4"),
        ("st", "10.60.0.200"),
    ] {
        let ns = h.run_dir().join("netns").join(c);
        assert!(ns.exists(), "{} missing", ns.display());
        let v = h.inspect_container(c);
        assert_eq!(v["netns"], ns.display().to_string());
        assert_eq!(v["network_mode"], "bridge");
        let ep = &v["endpoints"][0];
        assert_eq!(ep["interface"], "eth0");
        assert_eq!(ep["prefix_len"], 24);
        assert_eq!(ep["gateway"], "10.60.0.3");
        assert_eq!(ep["mtu"], 1450);
        assert_eq!(addrs(&h, c, "eth0"), vec![(ip.to_string(), 24)]);
        let o: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
        let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
        assert_eq!(ep["mac"], mac);
        let eth0 = h.link_json(&Ns::c(c), "eth0");
        assert_eq!(eth0["address"], mac);
        assert_eq!(eth0["mtu"], 1450);
        assert!(flags(&eth0).contains(&"UP".to_string()), "{eth0}");
        let host_if = ep["host_interface"].as_str().unwrap();
        let peer = h.link_json(&Ns::Host, host_if);
        assert_eq!(peer["mtu"], 1450, "host side {peer}");
        assert!(flags(&peer).contains(&"UP".to_string()), "{peer}");
        let lo = h.link_json(&Ns::c(c), "lo");
        assert!(flags(&lo).contains(&"UP".to_string()), "lo down: {lo}");
        let r: Value =
            serde_json::from_str(&h.exec_ok(c, &["ip", "-j", "route", "show", "default"])).unwrap();
        assert_eq!(r[0]["gateway"], "10.60.0.3", "{r}");
        assert_eq!(r[0]["dev"], "eth0", "{r}");
    }
    let members = h.inspect_network("n")["containers"].clone();
    assert_eq!(members.as_array().unwrap().len(), 4, "{members}");

    // --ip-range: automatic addresses come from the range only.
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.61.0.0/24",
        "--ip-range",
        "10.61.0.16/28",
        "r",
    ]);
    for i in 0..3 {
        let name = format!("r{i}");
        h.ok(&["container", "create", "--network", "r", &name]);
        let ip = ip_u32(&h.ip_of(&name));
        assert!(
            ip >= ip_u32("10.61.0.16") && ip <= ip_u32("10.61.0.31"),
            "{name} got {} outside the range",
            std::net::Ipv4Addr::from(ip)
        );
    }

    // rm removes the namespace, the veth and the membership.
    let host_if = h.endpoint("c1", "n")["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.ok(&["container", "rm", "c1"]).trim(), "c1");
    assert!(!h.run_dir().join("netns/c1").exists());
    assert!(!host_veths(&h).contains(&host_if));
    assert!(!names(&h.ls("container")).contains(&"c1".to_string()));
    assert_error(&h.fail(&["container", "inspect", "c1"]), &["c1"]);
}

#[test]
fn host_mode_container_shares_host_interfaces() {
    let h = Host::start();
    let before = host_veths(&h);
    h.ok(&["container", "create", "--network", "host", "hc"]);
    assert_eq!(host_veths(&h), before, "host mode created a veth");
    let v = h.inspect_container("hc");
    assert_eq!(v["network_mode"], "host");
    assert_eq!(v["endpoints"], Value::Array(vec![]));
    let links = h.exec_ok("hc", &["ip", "-o", "link"]);
    assert!(
        links.contains(&format!(" {}@", h.uplink)),
        "no uplink {} in {links}",
        h.uplink
    );
    let a = h.exec_ok("hc", &["ip", "-o", "-4", "addr"]);
    assert!(a.contains(&format!("{}/24", h.uplink_ip)), "{a}");
    assert!(!h.run_dir().join("netns/hc").exists());
    // --ip makes no sense without a network.
    let e = h.fail(&[
        "container",
        "create",
        "--network",
        "host",
        "--ip",
        "10.0.0.2",
        "x",
    ]);
    assert_error(&e, &["--ip"]);
    h.ok(&["container", "rm", "hc"]);
    // The host namespace survives the removal.
    assert!(h.ping_once(&Ns::Host, &h.outside_ip));
}

#[test]
fn none_mode_container_has_only_loopback() {
    let h = Host::start();
    let before = host_veths(&h);
    h.ok(&["container", "create", "--network", "none", "nc"]);
    assert_eq!(host_veths(&h), before, "none mode created a veth");
    assert!(h.run_dir().join("netns/nc").exists());
    let v = h.inspect_container("nc");
    assert_eq!(v["network_mode"], "none");
    assert_eq!(v["endpoints"], Value::Array(vec![]));
    let out = h.exec_ok("nc", &["ip", "-j", "link"]);
    let links: Value = serde_json::from_str(&out).unwrap();
    let links = links.as_array().unwrap();
    assert_eq!(links.len(), 1, "{out}");
    assert_eq!(links[0]["ifname"], "lo");
    assert!(flags(&links[0]).contains(&"UP".to_string()), "{out}");
    // lo works.
    assert!(h.ping_once(&Ns::c("nc"), "127.0.0.1"));
    h.ok(&["container", "rm", "nc"]);
    assert!(!h.run_dir().join("netns/nc").exists());
}

#[test]
fn container_mode_shares_the_target_namespace() {
    let h = Host::start();
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "--network", "container:a", "s"]);
    let ip = h.ip_of("a");
    let v = h.inspect_container("s");
    assert_eq!(v["network_mode"], "container:a");
    assert_eq!(v["endpoints"][0]["ip"], ip.as_str());
    let la = h.exec_ok("a", &["ip", "-o", "addr", "show", "dev", "eth0"]);
    let ls = h.exec_ok("s", &["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(la.contains(&format!("{ip}/16")), "{la}");
    assert_eq!(la, ls);
    // Sharing a sharer shares the same namespace (as Docker).
    h.ok(&["container", "create", "--network", "container:s", "s2"]);
    assert_eq!(h.inspect_container("s2")["netns"], v["netns"]);
    h.ok(&["container", "rm", "s2"]);
    let e = h.fail(&["container", "create", "--network", "container:ghost", "s3"]);
    assert_error(&e, &["ghost"]);

    let before = h.snapshot();
    let e = h.fail(&["container", "rm", "a"]);
    assert_error(&e, &["a", "s", "share"]);
    assert_eq!(before, h.snapshot());
    assert_eq!(h.ip_of("a"), ip);

    h.ok(&["container", "rm", "s"]);
    // a is untouched by removing the sharer.
    assert_eq!(
        h.exec_ok("a", &["ip", "-o", "addr", "show", "dev", "eth0"]),
        la
    );
    h.ok(&["container", "rm", "a"]);
    assert!(!h.run_dir().join("netns/a").exists());
    assert_eq!(h.ls("container"), Value::Array(vec![]));
}

#[test]
fn connect_adds_and_disconnect_removes_an_endpoint() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.62.0.0/24", "n2"]);
    h.ok(&["container", "create", "c"]);
    h.ok(&["network", "connect", "n2", "c"]);
    let ep = h.endpoint("c", "n2");
    assert_eq!(ep["interface"], "eth1");
    assert_eq!(ep["ip"], "10.62.0.2");
    assert_eq!(addrs(&h, "c", "eth1"), vec![("10.62.0.2".to_string(), 24)]);
    // The default route stays on the first network.
    let r: Value =
        serde_json::from_str(&h.exec_ok("c", &["ip", "-j", "route", "show", "default"])).unwrap();
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["dev"], "eth0");
    let members = h.inspect_network("n2")["containers"].clone();
    assert_eq!(members[0]["container"], "c");
    assert_eq!(members[0]["ip"], "10.62.0.2");
    // Connecting twice is refused.
    let e = h.fail(&["network", "connect", "n2", "c"]);
    assert_error(&e, &["c", "n2"]);

    let host_if = ep["host_interface"].as_str().unwrap().to_string();
    h.ok(&["network", "disconnect", "n2", "c"]);
    assert!(
        !h.exec("c", &["ip", "link", "show", "dev", "eth1"])
            .status
            .success(),
        "eth1 still there"
    );
    assert!(!host_veths(&h).contains(&host_if));
    let v = h.inspect_container("c");
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["endpoints"][0]["network"], "bridge");
    assert_eq!(h.inspect_network("n2")["containers"], Value::Array(vec![]));
    let e = h.fail(&["network", "disconnect", "n2", "c"]);
    assert_error(&e, &["c", "n2"]);

    // The address is free again.
    h.ok(&["container", "create", "d"]);
    h.ok(&["network", "connect", "--ip", "10.62.0.2", "n2", "d"]);
    assert_eq!(h.endpoint("d", "n2")["ip"], "10.62.0.2");
    assert_eq!(addrs(&h, "d", "eth1"), vec![("10.62.0.2".to_string(), 24)]);
    // And c can come back (with another address).
    h.ok(&["network", "connect", "n2", "c"]);
    let ip = h.endpoint("c", "n2")["ip"].as_str().unwrap().to_string();
    assert_ne!(ip, "10.62.0.2");
    assert!(h.ping(&Ns::c("c"), "10.62.0.2"));

    // Disconnecting the network that carries the default route moves it to
    // the remaining endpoint, as Docker does.
    h.ok(&["network", "disconnect", "bridge", "c"]);
    let r: Value =
        serde_json::from_str(&h.exec_ok("c", &["ip", "-j", "route", "show", "default"])).unwrap();
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["dev"], "eth1");
    assert_eq!(r[0]["gateway"], "10.62.0.1");
    assert!(
        h.ping(&Ns::c("c"), &h.outside_ip),
        "no way out after the move"
    );
}

#[test]
fn bad_inputs_change_nothing() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.70.0.0/24", "base"]);
    h.ok(&["network", "create", "--subnet", "10.71.0.0/30", "tiny"]);
    h.ok(&["container", "create", "--network", "base", "c1"]);
    h.ok(&["container", "create", "--network", "tiny", "t1"]);
    assert_eq!(h.ip_of("t1"), "10.71.0.2");
    let c1_ip = h.ip_of("c1");
    let long = "a".repeat(65);
    // Container names have no 64-character cap (as Docker); the namespace file
    // named after one limits them to 200.
    let too_long = "c".repeat(201);

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["network", "create", "--subnet", "10.0.0.0/33", "x"],
            vec!["10.0.0.0/33"],
        ),
        (
            vec!["network", "create", "--subnet", "abc", "x"],
            vec!["abc"],
        ),
        (
            vec!["network", "create", "--subnet", "10.1.2.3/24", "x"],
            vec!["10.1.2.3/24", "host bits"],
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.80.0.0/24",
                "--gateway",
                "10.81.0.1",
                "x",
            ],
            vec!["10.81.0.1", "gateway"],
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.80.0.0/24",
                "--ip-range",
                "10.81.0.0/24",
                "x",
            ],
            vec!["10.81.0.0/24", "ip-range"],
        ),
        (
            vec!["network", "create", "--subnet", "10.70.0.0/16", "x"],
            vec!["overlaps", "base"],
        ),
        (
            vec!["network", "create", "--subnet", "10.70.0.128/25", "x"],
            vec!["overlaps", "base"],
        ),
        (
            vec!["network", "create", "--subnet", "10.90.0.0/24", "base"],
            vec!["base", "exists"],
        ),
        (
            vec!["container", "create", "--network", "base", "c1"],
            vec!["c1", "exists"],
        ),
        (
            vec!["container", "create", "--network", "nope", "x"],
            vec!["nope", "not found"],
        ),
        (vec!["container", "rm", "ghost"], vec!["ghost", "not found"]),
        (
            vec!["network", "connect", "base", "ghost"],
            vec!["ghost", "not found"],
        ),
        (
            vec!["network", "connect", "nope", "c1"],
            vec!["nope", "not found"],
        ),
        (
            vec![
                "container",
                "create",
                "--network",
                "base",
                "--ip",
                "10.99.0.5",
                "x",
            ],
            vec!["10.99.0.5", "outside"],
        ),
        (
            vec![
                "container",
                "create",
                "--network",
                "base",
                "--ip",
                "10.70.0.1",
                "x",
            ],
            vec!["10.70.0.1", "gateway"],
        ),
        (
            vec![
                "container",
                "create",
                "--network",
                "base",
                "--ip",
                c1_ip.as_str(),
                "x",
            ],
            vec![c1_ip.as_str(), "in use"],
        ),
        (
            vec![
                "container",
                "create",
                "--network",
                "base",
                "--ip",
                "10.70.0.300",
                "x",
            ],
            vec!["10.70.0.300"],
        ),
        (
            vec!["container", "create", "--network", "tiny", "t2"],
            vec!["10.71.0.0/30"],
        ),
        (
            vec!["network", "create", "--mtu", "67", "x"],
            vec!["67", "mtu"],
        ),
        (
            vec!["network", "create", "--mtu", "65536", "x"],
            vec!["65536", "mtu"],
        ),
        (vec!["network", "rm", "base"], vec!["base", "c1"]),
        (vec!["network", "rm", "nope"], vec!["nope", "not found"]),
        (vec!["network", "create", "--", "-bad"], vec!["-bad"]),
        (vec!["network", "create", "has space"], vec!["has space"]),
        (
            vec!["network", "create", long.as_str()],
            vec![long.as_str()],
        ),
        (vec!["container", "create", "--", "-bad"], vec!["-bad"]),
        (vec!["container", "create", "has space"], vec!["has space"]),
        (
            vec!["container", "create", too_long.as_str()],
            vec![too_long.as_str()],
        ),
        // Docker's words: the predefined network exists.
        (
            vec!["network", "create", "host"],
            vec!["host", "already exists"],
        ),
        (
            vec!["network", "create", "--driver", "overlay", "x"],
            vec!["overlay"],
        ),
        (
            vec!["network", "create", "--gateway", "10.5.0.1", "x"],
            vec!["--subnet"],
        ),
    ];
    for (args, needles) in &cases {
        let before = h.snapshot();
        let o = h.cli(args);
        assert!(
            !o.status.success(),
            "{args:?} succeeded: {}",
            dataplane_tests::stdout(&o)
        );
        // Exit codes by kind (README, "Exit codes"): 3 invalid argument,
        // 4 not found, 5 conflict, 6 unavailable (an exhausted pool).
        let has = |w: &str| needles.iter().any(|n| n.contains(w));
        let expected = if has("not found") {
            4
        } else if has("in use") || has("overlaps") || has("exists") || has("c1") {
            5
        } else if has("10.71.0.0/30") {
            6
        } else {
            3
        };
        assert_eq!(
            o.status.code(),
            Some(expected),
            "{args:?}: exit {}",
            o.status
        );
        assert_error(&dataplane_tests::stderr(&o), needles);
        let after = h.snapshot();
        assert_eq!(before, after, "{args:?} changed something");
    }
    // Everything still works afterwards.
    h.ok(&["container", "create", "--network", "base", "x"]);
    assert!(h.ping(&Ns::c("x"), &c1_ip));
}

#[test]
fn parallel_creates_get_distinct_ips() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.63.0.0/24", "p"]);
    let ips: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..10)
            .map(|i| {
                let h = &h;
                s.spawn(move || {
                    let name = format!("c{i}");
                    h.ok(&["container", "create", "--network", "p", &name]);
                    name
                })
            })
            .collect();
        let names: Vec<String> = hs.into_iter().map(|j| j.join().unwrap()).collect();
        names.iter().map(|n| h.ip_of(n)).collect()
    });
    let set: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(set.len(), 10, "duplicate IPs: {ips:?}");
    for ip in &ips {
        let v = ip_u32(ip);
        assert!(
            v >= ip_u32("10.63.0.2") && v <= ip_u32("10.63.0.11"),
            "{ip}"
        );
    }
    assert_eq!(
        h.inspect_network("p")["containers"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(h.map_entries("DP_ENDPOINTS").len(), 10);
    // Each one really has its address.
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("c{i}");
        assert_eq!(addrs(&h, &name, "eth0"), vec![(ip.clone(), 24)]);
    }
}

fn without_counters(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("counters");
                m.remove("drops");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn restart_keeps_networks_containers_and_veths() {
    let mut h = Host::start();
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.64.0.0/24",
        "--mtu",
        "1400",
        "r1",
    ]);
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.65.0.0/24",
        "--internal",
        "r2",
    ]);
    h.ok(&["container", "create", "--network", "r1", "a"]);
    h.ok(&["container", "create", "--network", "r1", "b"]);
    h.ok(&["network", "connect", "r2", "b"]);
    h.ok(&["container", "create", "--network", "none", "n"]);
    h.ok(&["container", "create", "--network", "container:a", "s"]);
    let nets = without_counters(h.ls("network"));
    let ctrs = without_counters(h.ls("container"));
    let veths = host_veths(&h);
    assert_eq!(veths.len(), 3);
    let a_addr = h.exec_ok("a", &["ip", "-o", "addr", "show", "dev", "eth0"]);

    h.stop_agent();
    assert!(h.fail(&["info"]).contains("Error"));
    // Namespaces and veths outlive the agent.
    for c in ["a", "b", "n"] {
        assert!(h.run_dir().join("netns").join(c).exists(), "{c} netns gone");
    }
    assert_eq!(host_veths(&h), veths);

    h.start_agent();
    assert_eq!(without_counters(h.ls("network")), nets);
    assert_eq!(without_counters(h.ls("container")), ctrs);
    assert_eq!(host_veths(&h), veths);
    assert_eq!(
        h.exec_ok("a", &["ip", "-o", "addr", "show", "dev", "eth0"]),
        a_addr
    );
    // Allocation continues where it was.
    h.ok(&["container", "create", "--network", "r1", "c"]);
    assert_eq!(h.ip_of("c"), "10.64.0.4");
    assert!(h.ping(&Ns::c("c"), &h.ip_of("a")));
    // A second restart after a change.
    let ctrs = without_counters(h.ls("container"));
    h.stop_agent();
    h.start_agent();
    assert_eq!(without_counters(h.ls("container")), ctrs);
}

#[test]
fn two_agents_are_independent() {
    let h1 = Host::start();
    let h2 = Host::start();
    assert_ne!(h1.host_ns, h2.host_ns);
    h1.ok(&["network", "create", "--subnet", "10.66.0.0/24", "only1"]);
    h2.ok(&["network", "create", "--subnet", "10.66.0.0/24", "only2"]);
    h1.ok(&["container", "create", "--network", "only1", "x"]);
    h2.ok(&["container", "create", "--network", "only2", "x"]);
    h1.ok(&["container", "create", "--network", "only1", "y"]);
    assert_eq!(h1.ip_of("x"), "10.66.0.2");
    assert_eq!(h2.ip_of("x"), "10.66.0.2");
    assert!(!names(&h1.ls("network")).contains(&"only2".to_string()));
    assert!(!names(&h2.ls("network")).contains(&"only1".to_string()));
    assert_eq!(h1.ls("container").as_array().unwrap().len(), 2);
    assert_eq!(h2.ls("container").as_array().unwrap().len(), 1);
    assert!(h1.ping(&Ns::c("x"), "10.66.0.3"));
    assert!(!h2.ping_once(&Ns::c("x"), "10.66.0.3"));
    assert!(h1.ping(&Ns::c("x"), &h1.outside_ip));
    assert!(h2.ping(&Ns::c("x"), &h2.outside_ip));
    h2.ok(&["container", "rm", "x"]);
    assert_eq!(h1.ip_of("x"), "10.66.0.2");
    assert!(h1.ping(&Ns::c("x"), "10.66.0.3"));
}

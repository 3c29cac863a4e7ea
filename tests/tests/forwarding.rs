//! The eBPF forwarding path: container<->container, host<->container,
//! masquerade to the outside, internal networks, MTU, maps following the
//! state, no iptables, forwarding across agent restarts, counters.

use std::time::Duration;

use dataplane_tests::{ip_bytes, wait_until, Host, Ns};
use serde_json::Value;

fn counters(h: &Host, c: &str) -> Value {
    h.inspect_container(c)["endpoints"][0]["counters"].clone()
}

fn host_if(h: &Host, c: &str, net: &str) -> String {
    h.endpoint(c, net)["host_interface"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn containers_on_one_network_reach_each_other() {
    let h = Host::start();
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "b"]);
    let (ip_a, ip_b) = (h.ip_of("a"), h.ip_of("b"));
    let (a, b) = (Ns::c("a"), Ns::c("b"));
    assert!(h.ping(&a, &ip_b), "a cannot ping b");
    assert!(h.ping(&b, &ip_a), "b cannot ping a");

    let tcp = h.tcp_server(&b, "0.0.0.0", 8080);
    assert!(h.tcp_ok(&a, &ip_b, 8080), "TCP a -> b failed");
    // No translation between containers.
    assert_eq!(tcp.lines(), vec![ip_a.clone()]);

    let udp = h.udp_server(&b, "0.0.0.0", 8081);
    assert!(h.udp_ok(&a, &ip_b, 8081), "UDP a -> b failed");
    assert_eq!(udp.lines()[0], ip_a);

    // Nothing listens on another port: refused, not hanging.
    assert!(!h.tcp_ok(&a, &ip_b, 8082));
}

#[test]
fn host_and_gateway_reach_containers() {
    let h = Host::start();
    h.ok(&["container", "create", "c"]);
    let ip = h.ip_of("c");
    let c = Ns::c("c");
    // Host namespace -> container.
    assert!(h.ping(&Ns::Host, &ip), "host cannot ping {ip}");
    let _srv = h.tcp_server(&c, "0.0.0.0", 8080);
    assert!(
        h.tcp_ok(&Ns::Host, &ip, 8080),
        "TCP host -> container failed"
    );
    // Container -> its gateway (a server in the host namespace bound on it).
    assert!(h.ping(&c, "172.17.0.1"));
    let gw = h.tcp_server(&Ns::Host, "172.17.0.1", 9090);
    assert!(
        h.tcp_ok(&c, "172.17.0.1", 9090),
        "TCP container -> gateway failed"
    );
    assert_eq!(gw.lines(), vec![ip]);
}

#[test]
fn outbound_masquerade() {
    let h = Host::start();
    h.ok(&["container", "create", "c"]);
    let ip = h.ip_of("c");
    let c = Ns::c("c");
    let info: Value = serde_json::from_str(&h.ok(&["info"])).unwrap();
    assert_eq!(info["uplink"], h.uplink.as_str());
    assert_eq!(info["uplink_ip"], h.uplink_ip.as_str());

    assert!(h.ping(&c, &h.outside_ip), "ping to the outside failed");
    let tcp = h.tcp_server(&Ns::Outside, "0.0.0.0", 9000);
    assert!(
        h.tcp_ok(&c, &h.outside_ip, 9000),
        "TCP to the outside failed"
    );
    assert_eq!(
        tcp.lines(),
        vec![h.uplink_ip.clone()],
        "TCP not masqueraded"
    );
    let udp = h.udp_server(&Ns::Outside, "0.0.0.0", 9001);
    assert!(
        h.udp_ok(&c, &h.outside_ip, 9001),
        "UDP to the outside failed"
    );
    let peers = udp.lines();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| *p == h.uplink_ip),
        "UDP not masqueraded: {peers:?}"
    );

    let nat = h.map_entries("DP_NAT_OUT");
    let mine: Vec<&(Value, Value)> = nat
        .iter()
        .filter(|(k, _)| k["src"] == ip_bytes(&ip))
        .collect();
    assert!(!mine.is_empty(), "no DP_NAT_OUT entry for {ip}: {nat:?}");
    for (k, v) in &mine {
        assert_eq!(v["addr"], ip_bytes(&h.uplink_ip), "{k} -> {v}");
        assert_eq!(k["dst"], ip_bytes(&h.outside_ip), "{k} -> {v}");
    }
    let protos: Vec<u64> = mine
        .iter()
        .map(|(k, _)| k["proto"].as_u64().unwrap())
        .collect();
    for p in [1, 6, 17] {
        assert!(
            protos.contains(&p),
            "no NAT entry for proto {p}: {protos:?}"
        );
    }
    // The reverse direction knows them too.
    assert!(!h.map_entries("DP_NAT_IN").is_empty());
    // The outside cannot reach the container's address directly.
    let r = h.outside_exec(&["ip", "route", "add", "172.17.0.0/16", "via", &h.uplink_ip]);
    assert!(r.status.success());
    let _srv = h.tcp_server(&c, "0.0.0.0", 8080);
    assert!(!h.tcp_ok(&Ns::Outside, &ip, 8080), "outside reached {ip}");
}

#[test]
fn internal_network_is_isolated() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.67.0.0/24",
        "int",
    ]);
    h.ok(&["container", "create", "--network", "int", "i1"]);
    h.ok(&["container", "create", "--network", "int", "i2"]);
    let ip2 = h.ip_of("i2");
    let i1 = Ns::c("i1");
    // No default route on an internal network.
    let r = h.exec_ok("i1", &["ip", "route", "show", "default"]);
    assert!(
        r.trim().is_empty(),
        "default route on internal network: {r}"
    );
    assert!(h.ping(&i1, &ip2), "i1 cannot reach i2");
    assert!(h.ping(&i1, "10.67.0.1"), "i1 cannot reach its gateway");
    let _srv = h.tcp_server(&Ns::c("i2"), "0.0.0.0", 8080);
    assert!(h.tcp_ok(&i1, &ip2, 8080));

    // Even with a route the datapath drops outbound traffic.
    h.exec_ok("i1", &["ip", "route", "add", "default", "via", "10.67.0.1"]);
    let before = counters(&h, "i1")["drops"]["internal_network"]
        .as_u64()
        .unwrap();
    let _out = h.tcp_server(&Ns::Outside, "0.0.0.0", 9000);
    assert!(!h.ping_once(&i1, &h.outside_ip), "internal reached outside");
    assert!(
        !h.tcp_ok(&i1, &h.outside_ip, 9000),
        "internal TCP reached outside"
    );
    let after = counters(&h, "i1")["drops"]["internal_network"]
        .as_u64()
        .unwrap();
    assert!(after > before, "internal_network drops {before} -> {after}");
    let net_drops = h.inspect_network("int")["drops"]["internal_network"]
        .as_u64()
        .unwrap();
    assert!(net_drops >= after);
    // A container on a normal network still gets out.
    h.ok(&["container", "create", "ext"]);
    assert!(h.ping(&Ns::c("ext"), &h.outside_ip));
}

#[test]
fn mtu_is_applied_end_to_end() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "--mtu",
        "1400",
        "--subnet",
        "10.68.0.0/24",
        "m",
    ]);
    h.ok(&["container", "create", "--network", "m", "m1"]);
    h.ok(&["container", "create", "--network", "m", "m2"]);
    for c in ["m1", "m2"] {
        assert_eq!(h.link_json(&Ns::c(c), "eth0")["mtu"], 1400);
        assert_eq!(
            h.link_json(&Ns::Host, &host_if(&h, c, "m"))["mtu"],
            1400,
            "host side of {c}"
        );
    }
    let ip2 = h.ip_of("m2");
    let m1 = Ns::c("m1");
    let ok = (0..3).any(|_| {
        h.run_in(
            &m1,
            &["ping", "-n", "-c1", "-W1", "-M", "do", "-s", "1372", &ip2],
        )
        .status
        .success()
    });
    assert!(ok, "1372-byte DF ping failed");
    let big = h.run_in(
        &m1,
        &["ping", "-n", "-c1", "-W1", "-M", "do", "-s", "1400", &ip2],
    );
    assert!(!big.status.success(), "1400-byte DF ping went through");
}

#[test]
fn maps_follow_the_desired_state() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.69.0.0/24", "n2"]);
    h.ok(&["container", "create", "c"]);
    let ip = h.ip_of("c");
    let hif = host_if(&h, "c", "bridge");
    let idx = h.host_ifindex(&hif);
    let has_ep = |ip: &str| {
        h.map_entries("DP_ENDPOINTS")
            .iter()
            .any(|(k, _)| k["ip"] == ip_bytes(ip))
    };
    let has_if = |idx: u64| {
        h.map_entries("DP_IF_ENDPOINTS")
            .iter()
            .any(|(k, _)| k.as_u64() == Some(idx))
    };
    let eps = h.map_entries("DP_ENDPOINTS");
    let (_, v) = eps
        .iter()
        .find(|(k, _)| k["ip"] == ip_bytes(&ip))
        .unwrap_or_else(|| panic!("{ip} not in DP_ENDPOINTS: {eps:?}"));
    assert_eq!(v["ifindex"].as_u64(), Some(idx));
    assert!(has_if(idx), "ifindex {idx} not in DP_IF_ENDPOINTS");
    let pin = h.link_pin("dp_from_container", &hif);
    assert!(pin.exists(), "{} missing", pin.display());

    // A second endpoint.
    h.ok(&["network", "connect", "n2", "c"]);
    let ip2 = h.endpoint("c", "n2")["ip"].as_str().unwrap().to_string();
    let hif2 = host_if(&h, "c", "n2");
    let idx2 = h.host_ifindex(&hif2);
    assert!(has_ep(&ip2) && has_if(idx2));
    let pin2 = h.link_pin("dp_from_container", &hif2);
    assert!(pin2.exists());
    h.ok(&["network", "disconnect", "n2", "c"]);
    assert!(!has_ep(&ip2), "{ip2} still in DP_ENDPOINTS");
    assert!(!has_if(idx2), "{idx2} still in DP_IF_ENDPOINTS");
    assert!(!pin2.exists(), "{} still pinned", pin2.display());
    assert!(has_ep(&ip) && has_if(idx) && pin.exists());

    h.ok(&["container", "rm", "c"]);
    assert!(!has_ep(&ip), "{ip} still in DP_ENDPOINTS");
    assert!(!has_if(idx), "{idx} still in DP_IF_ENDPOINTS");
    assert!(!pin.exists(), "{} still pinned", pin.display());
    assert!(h.map_entries("DP_ENDPOINTS").is_empty());
}

#[test]
fn uplink_programs_are_pinned_bpf_links() {
    let h = Host::start();
    for p in dataplane_tests::uplink_programs() {
        let pin = h.link_pin(p, &h.uplink);
        assert!(pin.exists(), "{} missing", pin.display());
    }
    let mut links: Vec<String> = std::fs::read_dir(h.bpffs.join("links"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    links.sort();
    // A fresh agent: the uplink's programs of its uplink mode and the
    // socket programs (IPv4 and IPv6) on the cgroup, nothing else.
    let mut want: Vec<String> = ["connect", "recvmsg", "sendmsg"]
        .iter()
        .flat_map(|op| ["4", "6"].map(|v| format!("dp_sock_{op}{v}@cgroup")))
        .collect();
    want.extend(
        dataplane_tests::uplink_programs()
            .iter()
            .map(|p| format!("{p}@{}", h.uplink)),
    );
    want.sort();
    assert_eq!(links, want);
    let cfg = h.map_entries("DP_CONFIG");
    assert_eq!(cfg.len(), 1, "{cfg:?}");
    assert_eq!(cfg[0].1["uplink_ip"], ip_bytes(&h.uplink_ip));
    assert_eq!(
        cfg[0].1["uplink_ifindex"].as_u64(),
        Some(h.host_ifindex(&h.uplink))
    );
}

/// Lines of `nft list ruleset` that are rules (anything but empty tables/chains).
fn nft_rules(ruleset: &str) -> Vec<String> {
    ruleset
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
        .map(str::to_string)
        .collect()
}

#[test]
fn no_iptables_or_nftables_rules_are_made() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.72.0.0/24", "n"]);
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "--network", "n", "b"]);
    assert!(h.ping(&Ns::c("a"), &h.outside_ip));
    assert!(h.ping(&Ns::c("b"), &h.outside_ip));
    assert!(h.ping(&Ns::c("a"), "172.17.0.1"));
    let _srv = h.tcp_server(&Ns::Outside, "0.0.0.0", 9000);
    assert!(h.tcp_ok(&Ns::c("b"), &h.outside_ip, 9000));

    let o = h.host_exec(&["iptables-save"]);
    assert!(o.status.success(), "{}", dataplane_tests::stderr(&o));
    let ipt = dataplane_tests::stdout(&o);
    let rules: Vec<&str> = ipt.lines().filter(|l| l.starts_with("-A")).collect();
    assert!(rules.is_empty(), "iptables rules: {rules:?}");
    let o = h.host_exec(&["nft", "list", "ruleset"]);
    assert!(o.status.success(), "{}", dataplane_tests::stderr(&o));
    let rules = nft_rules(&dataplane_tests::stdout(&o));
    assert!(rules.is_empty(), "nft rules: {rules:?}");
    // No Linux bridge either.
    let br = dataplane_tests::sh_ok(
        "ip",
        &["-n", &h.host_ns, "-o", "link", "show", "type", "bridge"],
    );
    assert!(br.trim().is_empty(), "bridge devices: {br}");
}

#[test]
fn restart_keeps_live_tcp_connection() {
    let mut h = Host::start();
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "b"]);
    let ip_b = h.ip_of("b");
    let _srv = h.tcp_server(&Ns::c("b"), "0.0.0.0", 7000);
    let report = h.dir.join("stream.json");
    let r = report.display().to_string();
    let mut client = h.spawn_in(
        &Ns::c("a"),
        &[
            dataplane_tests::python(),
            "-c",
            dataplane_tests::TCP_STREAM_CLIENT,
            &ip_b,
            "7000",
            "6",
            &r,
        ],
    );
    client.wait_line("CONNECTED", Duration::from_secs(10));
    // Traffic flows for a while before, during and after the agent's
    // downtime: these sleeps are the scenario, not waits for a condition.
    std::thread::sleep(Duration::from_secs(1));
    h.stop_agent();
    std::thread::sleep(Duration::from_secs(1));
    h.start_agent();
    let st = client.wait(Duration::from_secs(20));
    assert!(st.is_some(), "client did not finish");
    let res: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap())
        .unwrap_or_else(|e| panic!("no report ({e}); client stderr: {}", client.take_stderr()));
    eprintln!("stream client: {res}");
    assert_eq!(res["error"], Value::Null, "{res}");
    let sent = res["sent"].as_u64().unwrap();
    assert!(sent >= 30, "only {sent} lines sent: {res}");
    assert_eq!(res["received"].as_u64(), Some(sent), "{res}");
    assert!(res["stall"].as_f64().unwrap() < 1.0, "stalled: {res}");
    // Forwarding after the restart.
    assert!(h.ping(&Ns::c("a"), &ip_b));
    assert!(h.ping(&Ns::c("a"), &h.outside_ip));
    h.ok(&["container", "create", "c"]);
    assert!(h.ping(&Ns::c("c"), &ip_b));
}

#[test]
fn endpoint_counters_count_traffic() {
    let h = Host::start();
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "b"]);
    let ip_b = h.ip_of("b");
    let c0 = counters(&h, "a");
    assert!(c0.is_object(), "no counters: {c0}");
    assert!(h.ping(&Ns::c("a"), &ip_b));
    let _srv = h.tcp_server(&Ns::c("b"), "0.0.0.0", 8080);
    assert!(h.tcp_ok(&Ns::c("a"), &ip_b, 8080));
    let ok = wait_until(Duration::from_secs(3), || {
        let c = counters(&h, "a");
        c["tx_packets"].as_u64().unwrap() > 0 && c["rx_packets"].as_u64().unwrap() > 0
    });
    let ca = counters(&h, "a");
    assert!(ok, "counters of a did not move: {ca}");
    assert!(ca["tx_bytes"].as_u64().unwrap() > 0 && ca["rx_bytes"].as_u64().unwrap() > 0);
    let cb = counters(&h, "b");
    assert!(
        cb["tx_packets"].as_u64().unwrap() > 0 && cb["rx_packets"].as_u64().unwrap() > 0,
        "counters of b did not move: {cb}"
    );
}

/// Bulk TCP (GSO-sized segments) through the masquerade and between
/// containers completes: regression test for segments larger than the MTU
/// being handed to the stack untranslated.
#[test]
fn bulk_tcp_completes() {
    let h = Host::start();
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "b"]);
    let ip_b = h.ip_of("b");
    for (server_ns, target) in [
        (Ns::Outside, h.outside_ip.clone()),
        (Ns::c("b"), ip_b.clone()),
    ] {
        let mut srv = h.spawn_in(&server_ns, &["iperf3", "-s", "-1", "-p", "5299"]);
        assert!(
            wait_until(Duration::from_secs(5), || {
                h.exec(
                    "a",
                    &["iperf3", "-c", &target, "-p", "5299", "-n", "1", "-J"],
                )
                .status
                .code()
                .is_some()
            }),
            "no iperf3 server"
        );
        let _ = srv.wait(Duration::from_secs(5));
        let mut srv = h.spawn_in(&server_ns, &["iperf3", "-s", "-1", "-p", "5299"]);
        assert!(
            wait_until(Duration::from_secs(5), || {
                !h.run_in(&server_ns, &["ss", "-Hltn", "sport = :5299"])
                    .stdout
                    .is_empty()
            }),
            "iperf3 server not listening"
        );
        // 200 MB in at most 20 s: the broken path ran at a few hundred kbit/s.
        let out = h.exec(
            "a",
            &[
                "timeout", "20", "iperf3", "-c", &target, "-p", "5299", "-n", "200M", "-J",
            ],
        );
        assert!(
            out.status.success(),
            "bulk TCP to {target} did not complete: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        // The client sent everything (TCP delivered it: the run ended within
        // the timeout). The server's count, reported back to the client, is
        // sampled when the test ends and can miss the last few MB on a busy
        // machine, so it only has to show that the bulk got through.
        let sent = v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
        let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        assert!(sent >= 200_000_000, "sent {sent} bytes to {target}");
        assert!(
            received >= 180_000_000,
            "the server counted only {received} of {sent} bytes from {target}"
        );
        let _ = srv.wait(Duration::from_secs(5));
    }
}

//! Overlay networks across three simulated hosts (namespaces; etcd in the
//! underlay namespace): listing, reachability (ICMP, TCP, UDP, bulk TCP),
//! the VXLAN datapath's shape (UDP on the underlay, no FDB, no bridge, no
//! iptables), isolation, forged VXLAN, outside access, removal and reuse,
//! concurrent creates, agent restarts, etcd outages and bad input.

use std::{thread, time::Duration};

use dataplane_tests::{
    multihost::{Cluster, UNDERLAY_IP},
    run, stderr, stdout, wait_until, Ns,
};
use serde_json::Value;

/// Waits until `network ls` of host `i` lists `name`.
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

/// Creates container `name` on host `i` in network `net`; returns its IP.
fn container(c: &Cluster, i: usize, net: &str, name: &str) -> String {
    c.h(i).ok(&["container", "create", "--network", net, name]);
    c.h(i).ip_of(name)
}

fn drops(c: &Cluster, i: usize, reason: &str) -> u64 {
    c.h(i).global_drops()[reason].as_u64().unwrap_or(0)
}

#[test]
fn overlay_network_spans_three_hosts_with_vxlan_and_no_bridge() {
    let c = Cluster::start(3, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.90.0.0/16",
        "ov1",
    ]);
    for i in 2..=3 {
        assert!(wait_listed(&c, i, "ov1"), "ov1 not listed on h{i}");
    }
    let ips: Vec<String> = (1..=3)
        .map(|i| container(&c, i, "ov1", &format!("c{i}")))
        .collect();
    // Distinct addresses from the nodes' blocks.
    assert_ne!(ips[0], ips[1]);
    assert_ne!(ips[1], ips[2]);
    // The overlay MTU: the uplink's 1500 minus 50.
    let link = c.h(1).exec_ok("c1", &["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1450 "), "{link}");

    // Every pair, both ways: ICMP, TCP, UDP.
    let servers: Vec<_> = (1..=3)
        .map(|i| {
            let n = Ns::c(&format!("c{i}"));
            (
                c.h(i).tcp_server(&n, "0.0.0.0", 7000),
                c.h(i).udp_server(&n, "0.0.0.0", 7001),
            )
        })
        .collect();
    for a in 1..=3 {
        for b in 1..=3 {
            if a == b {
                continue;
            }
            let from = Ns::c(&format!("c{a}"));
            let ip = &ips[b - 1];
            assert!(
                wait_until(Duration::from_secs(10), || c.h(a).ping_once(&from, ip)),
                "c{a} (h{a}) cannot ping c{b} {ip}; h{a} log:\n{}",
                c.h(a).log()
            );
            assert!(c.h(a).tcp_ok(&from, ip, 7000), "TCP c{a} -> c{b}");
            assert!(c.h(a).udp_ok(&from, ip, 7001), "UDP c{a} -> c{b}");
        }
    }
    drop(servers);

    // Bulk TCP across hosts completes (8 MiB through the overlay).
    let n2 = Ns::c("c2");
    let mut sink = c.h(2).spawn_in(
        &n2,
        &[
            "sh",
            "-c",
            "echo READY; socat -u TCP-LISTEN:7100,reuseaddr - | wc -c",
        ],
    );
    sink.wait_line("READY", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(300));
    let send = format!("head -c 8388608 /dev/zero | socat -u - TCP:{}:7100", ips[1]);
    c.h(1).exec_ok("c1", &["sh", "-c", &send]);
    sink.wait_line("8388608", Duration::from_secs(20));

    // The underlay carries UDP to the VXLAN port.
    let cap = c.underlay_cmd(&[
        "timeout", "10", "tcpdump", "-c1", "-n", "-i", "br0", "udp", "dst", "port", "4789",
    ]);
    let mut cap = cap;
    let cap = cap
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(800));
    for _ in 0..5 {
        c.h(1).ping_once(&Ns::c("c1"), &ips[2]);
    }
    let out = cap.wait_with_output_compat();
    assert!(out.contains("4789"), "no VXLAN on the underlay: {out}");

    for i in 1..=3 {
        let h = c.h(i);
        // No FDB entries on the VXLAN device, no bridge, no iptables rules.
        let fdb = h.run_ok(&Ns::Host, &["bridge", "fdb", "show", "dev", "dpvxlan0"]);
        assert!(fdb.trim().is_empty(), "h{i} FDB: {fdb}");
        let bridges = h.run_ok(&Ns::Host, &["ip", "-o", "link", "show", "type", "bridge"]);
        assert!(bridges.trim().is_empty(), "h{i} bridges: {bridges}");
        let rules = h.run_ok(&Ns::Host, &["iptables-save"]);
        assert!(!rules.contains("-A "), "h{i} iptables: {rules}");
        // The VXLAN device is in external mode.
        let d = h.run_ok(&Ns::Host, &["ip", "-d", "link", "show", "dpvxlan0"]);
        assert!(d.contains("external"), "{d}");
    }

    // node ls: three nodes up, one endpoint each, the local one marked.
    let nodes: Value =
        serde_json::from_str(&c.h(2).ok(&["node", "ls", "--format", "json"])).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["name"], format!("h{}", i + 1));
        assert_eq!(n["address"], format!("192.0.2.{}", 11 + i));
        assert_eq!(n["state"], "up");
        assert_eq!(n["endpoints"], 1);
        assert_eq!(n["local"], i == 1);
    }
    let table = c.h(1).ok(&["node", "ls"]);
    assert!(
        table.contains("h1 *") && table.contains("192.0.2.13"),
        "{table}"
    );

    // The overlay maps are typed in bpftool.
    let remote = c.h(1).map_dump("DP_OV_REMOTE");
    let s = remote.to_string();
    assert!(
        s.contains("net_id") && s.contains("vni") && s.contains("node"),
        "{s}"
    );
}

trait WaitOutput {
    fn wait_with_output_compat(self) -> String;
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_compat(self) -> String {
        let o = self.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

#[test]
fn overlay_networks_are_isolated_across_hosts_and_keep_icc_and_internal() {
    let c = Cluster::start(2, &[]);
    let h1 = c.h(1);
    h1.ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.91.0.0/16",
        "ova",
    ]);
    h1.ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.92.0.0/16",
        "ovb",
    ]);
    h1.ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--icc=false",
        "--subnet",
        "10.93.0.0/16",
        "ovi",
    ]);
    h1.ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--internal",
        "--subnet",
        "10.94.0.0/16",
        "ovn",
    ]);
    for n in ["ova", "ovb", "ovi", "ovn"] {
        assert!(wait_listed(&c, 2, n));
    }
    let a1 = container(&c, 1, "ova", "a1");
    let a2 = container(&c, 2, "ova", "a2");
    let b2 = container(&c, 2, "ovb", "b2");
    let _i1 = container(&c, 1, "ovi", "i1");
    let i2 = container(&c, 2, "ovi", "i2");
    let _n1 = container(&c, 1, "ovn", "n1");
    let n2 = container(&c, 2, "ovn", "n2");
    let ping = |i: usize, from: &str, ip: &str| c.h(i).ping(&Ns::c(from), ip);
    assert!(
        wait_until(Duration::from_secs(10), || c
            .h(1)
            .ping_once(&Ns::c("a1"), &a2)),
        "same network across hosts"
    );
    assert!(ping(2, "a2", &a1));
    // Another overlay network: dropped at the sender (cross_network).
    let before = drops(&c, 1, "cross_network");
    assert!(!ping(1, "a1", &b2), "ova reached ovb");
    assert!(drops(&c, 1, "cross_network") > before);
    // --icc=false holds across hosts.
    let before = drops(&c, 1, "icc_disabled");
    assert!(!ping(1, "i1", &i2), "icc=false crossed hosts");
    assert!(drops(&c, 1, "icc_disabled") > before);
    // --internal: the peer on the other host, but not the outside.
    assert!(
        wait_until(Duration::from_secs(10), || c
            .h(1)
            .ping_once(&Ns::c("n1"), &n2)),
        "internal network peers"
    );
    assert!(
        !ping(1, "n1", UNDERLAY_IP),
        "internal network reached the outside"
    );
}

#[test]
fn overlay_packets_too_big_for_the_underlay_get_fragmentation_needed() {
    let c = Cluster::start(2, &[]);
    // --mtu 1500 on the containers, but the overlay carries 1450.
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--mtu",
        "1500",
        "--subnet",
        "10.102.0.0/16",
        "ovm",
    ]);
    assert!(wait_listed(&c, 2, "ovm"));
    let _m1 = container(&c, 1, "ovm", "m1");
    let m2 = container(&c, 2, "ovm", "m2");
    assert!(wait_until(Duration::from_secs(10), || c
        .h(1)
        .ping_once(&Ns::c("m1"), &m2)));
    // A DF packet of 1500 bytes: the sender hears "fragmentation needed"
    // with the overlay MTU (not silence).
    let o = c.h(1).exec(
        "m1",
        &["ping", "-n", "-c1", "-W2", "-M", "do", "-s", "1472", &m2],
    );
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("mtu = 1450") || out.contains("mtu=1450"),
        "no fragmentation needed: {out}"
    );
    // Then the path MTU is known and a 1450-byte packet goes through.
    assert!(c
        .h(1)
        .exec(
            "m1",
            &["ping", "-n", "-c1", "-W2", "-M", "do", "-s", "1422", &m2]
        )
        .status
        .success());
}

#[test]
fn forged_vxlan_from_a_non_node_is_dropped_and_counted() {
    let c = Cluster::start(2, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.95.0.0/16",
        "ovf",
    ]);
    assert!(wait_listed(&c, 2, "ovf"));
    let a1 = container(&c, 1, "ovf", "a1");
    let a2 = container(&c, 2, "ovf", "a2");
    assert!(wait_until(Duration::from_secs(10), || c
        .h(1)
        .ping_once(&Ns::c("a1"), &a2)));
    let vni = c.h(2).map_entries("DP_OV_VNIS")[0].0.as_u64().unwrap();
    let srv = c.h(2).udp_server(&Ns::c("a2"), "0.0.0.0", 7300);
    // A non-node underlay address (added to the underlay's bridge).
    let o = run(&mut c.underlay_cmd(&["ip", "addr", "add", "192.0.2.99/24", "dev", "br0"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let forge = |src: &str, inner_src: &str| {
        let script = format!(
            "from scapy.all import *\n\
             p = IP(src='{src}', dst='192.0.2.12')/UDP(sport=40000, dport=4789)/VXLAN(vni={vni}, flags=8)/\
             Ether(src='02:42:00:00:00:01', dst='02:42:00:00:00:02')/IP(src='{inner_src}', dst='{a2}')/UDP(sport=5555, dport=7300)/Raw(b'forged')\n\
             send(p, count=3, verbose=False)\n"
        );
        let o = run(&mut c.underlay_cmd(&["/usr/bin/python3", "-c", &script]));
        assert!(o.status.success(), "scapy: {}{}", stderr(&o), stdout(&o));
    };
    let before = drops(&c, 2, "overlay_unknown_node");
    forge("192.0.2.99", &a1);
    assert!(
        wait_until(Duration::from_secs(5), || drops(
            &c,
            2,
            "overlay_unknown_node"
        ) >= before + 3),
        "forged VXLAN from a non-node not counted: {}",
        c.h(2).global_drops()
    );
    // From a real node's address, but with an inner source that node does
    // not host: anti-spoofing against the endpoint registry.
    let before = drops(&c, 2, "spoofed_source");
    forge("192.0.2.11", "10.95.200.7");
    assert!(wait_until(Duration::from_secs(5), || drops(
        &c,
        2,
        "spoofed_source"
    ) >= before + 3));
    thread::sleep(Duration::from_millis(300));
    assert!(
        srv.lines().is_empty(),
        "a forged packet reached the container: {:?}",
        srv.lines()
    );
}

#[test]
fn overlay_containers_reach_outside_and_publish_ports_on_their_host() {
    let c = Cluster::start(2, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.96.0.0/16",
        "ovo",
    ]);
    c.h(1).ok(&[
        "container",
        "create",
        "--network",
        "ovo",
        "-p",
        "8080:7400",
        "web",
    ]);
    let _srv = c.h(1).tcp_server(&Ns::c("web"), "0.0.0.0", 7400);
    // Masquerade: the underlay sees the host's address.
    let out = c.h(1).tcp_server(&Ns::Outside, UNDERLAY_IP, 7401);
    assert!(c.h(1).tcp_ok(&Ns::c("web"), UNDERLAY_IP, 7401));
    assert!(
        out.lines().iter().any(|l| l.starts_with("192.0.2.11")),
        "not masqueraded: {:?}",
        out.lines()
    );
    // Published on h1's address, reached from the underlay.
    assert!(c.h(1).tcp_ok(&Ns::Outside, "192.0.2.11", 8080));
}

#[test]
fn removed_overlay_container_is_unreachable_everywhere_and_its_ip_reusable() {
    let c = Cluster::start(2, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.97.0.0/24",
        "ovr",
    ]);
    assert!(wait_listed(&c, 2, "ovr"));
    let a1 = container(&c, 1, "ovr", "a1");
    let _a2 = container(&c, 2, "ovr", "a2");
    assert!(wait_until(Duration::from_secs(10), || c
        .h(2)
        .ping_once(&Ns::c("a2"), &a1)));
    c.h(1).ok(&["container", "rm", "a1"]);
    assert!(
        wait_until(Duration::from_secs(10), || !c
            .h(2)
            .ping_once(&Ns::c("a2"), &a1)),
        "removed container still reachable"
    );
    // h2's maps forget it.
    assert!(wait_until(Duration::from_secs(10), || {
        !c.h(2)
            .map_dump("DP_OV_REMOTE")
            .to_string()
            .contains("remote")
            && c.h(2).map_entries("DP_OV_REMOTE").is_empty()
    }));
    // The same address is handed out again (h1's block), reachable again.
    let again = container(&c, 1, "ovr", "a1b");
    assert_eq!(again, a1);
    assert!(wait_until(Duration::from_secs(10), || c
        .h(2)
        .ping_once(&Ns::c("a2"), &again)));
    // A network in use somewhere in the cluster cannot be removed; once
    // empty, removing it on one host removes it everywhere.
    let e = c.h(2).fail(&["network", "rm", "ovr"]);
    assert!(e.contains("endpoint"), "{e}");
    c.h(1).ok(&["container", "rm", "a1b"]);
    let e = c.h(2).fail(&["network", "rm", "ovr"]);
    assert!(e.contains("endpoint"), "{e}");
    c.h(2).ok(&["container", "rm", "a2"]);
    c.h(2).ok(&["network", "rm", "ovr"]);
    assert!(
        wait_until(Duration::from_secs(10), || !c
            .h(1)
            .ok(&["network", "ls"])
            .contains("ovr")),
        "ovr still listed on h1"
    );
}

#[test]
fn concurrent_overlay_creates_on_two_hosts_never_share_an_ip() {
    let c = Cluster::start(2, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.98.0.0/24",
        "ovc",
    ]);
    assert!(wait_listed(&c, 2, "ovc"));
    let ips: Vec<Vec<String>> = thread::scope(|s| {
        let hs: Vec<_> = (1..=2)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    (0..6)
                        .map(|k| container(c, i, "ovc", &format!("x{i}{k}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<&String> = ips.iter().flatten().collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "shared addresses: {ips:?}");
}

#[test]
fn cross_host_tcp_survives_agent_restarts_and_etcd_outages() {
    let mut c = Cluster::start(2, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.99.0.0/16",
        "ovk",
    ]);
    assert!(wait_listed(&c, 2, "ovk"));
    let _a1 = container(&c, 1, "ovk", "a1");
    let a2 = container(&c, 2, "ovk", "a2");
    let _srv = c.h(2).tcp_server(&Ns::c("a2"), "0.0.0.0", 7500);
    assert!(wait_until(Duration::from_secs(10), || c.h(1).tcp_ok(
        &Ns::c("a1"),
        &a2,
        7500
    )));
    // One long-lived connection: a line every 100 ms, echoed; the count of
    // echoes is written to a file.
    let counter = c.h(1).dir.join("echoes");
    let script = format!(
        "import socket,time,sys\n\
         s=socket.create_connection(('{a2}',7500),timeout=5)\n\
         print('READY',flush=True)\n\
         for i in range(10**6):\n\
         \x20   s.sendall(b'x'*10+b'\\n'); d=s.recv(100)\n\
         \x20   if not d: sys.exit(1)\n\
         \x20   open('{}','w').write(str(i))\n\
         \x20   time.sleep(0.1)\n",
        counter.display()
    );
    let mut conn = c
        .h(1)
        .spawn_in(&Ns::c("a1"), &["/usr/bin/python3", "-c", &script]);
    conn.wait_line("READY", Duration::from_secs(10));
    let echoes = || {
        std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Each phase is watched for 2 s, and the connection must have moved by
    // 5 more echoes (0.5 s of traffic) within 5 s: a loaded CI machine can
    // delay a 100 ms sleeper by a second; a lost connection or a blackout
    // beyond TCP's first retransmissions fails.
    let progress = |conn: &mut dataplane_tests::Bg| {
        let n = echoes();
        thread::sleep(Duration::from_secs(2));
        let moved = wait_until(Duration::from_secs(3), || echoes() > n + 5);
        assert!(conn.running(), "connection died: {}", conn.take_stderr());
        assert!(moved, "connection stalled at {n} for 5 s");
    };
    progress(&mut conn);
    // SIGTERM and restart of both agents.
    for i in 1..=2 {
        c.h_mut(i).stop_agent();
        progress(&mut conn);
        let name = format!("h{i}");
        c.h_mut(i).start_agent_with(&[
            "--cluster-store",
            dataplane_tests::multihost::STORE,
            "--node-name",
            &name,
        ]);
        progress(&mut conn);
    }
    // SIGKILL.
    c.h_mut(2).kill_agent();
    progress(&mut conn);
    c.h_mut(2).start_agent_with(&[
        "--cluster-store",
        dataplane_tests::multihost::STORE,
        "--node-name",
        "h2",
    ]);
    progress(&mut conn);
    // etcd down: traffic keeps flowing; operations needing etcd fail clearly.
    c.stop_etcd();
    progress(&mut conn);
    let e = c.h(1).fail(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.100.0.0/16",
        "ovz",
    ]);
    assert!(e.contains("cluster store"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // etcd back: a new container on h2 is reachable from h1.
    c.start_etcd();
    progress(&mut conn);
    let a3 = wait_create(&c, 2, "ovk", "a3");
    let _s3 = c.h(2).tcp_server(&Ns::c("a3"), "0.0.0.0", 7501);
    assert!(
        wait_until(Duration::from_secs(20), || c.h(1).tcp_ok(
            &Ns::c("a1"),
            &a3,
            7501
        )),
        "new container after etcd returned not reachable; h1 log:\n{}",
        c.h(1).log()
    );
    progress(&mut conn);
}

/// `container create` retried until the agent's etcd client reconnected.
fn wait_create(c: &Cluster, i: usize, net: &str, name: &str) -> String {
    let ok = wait_until(Duration::from_secs(30), || {
        c.h(i)
            .cli(&["container", "create", "--network", net, name])
            .status
            .success()
    });
    assert!(
        ok,
        "container create never succeeded; log:\n{}",
        c.h(i).log()
    );
    c.h(i).ip_of(name)
}

#[test]
fn overlay_bad_input_is_one_line_and_changes_nothing() {
    // Without a cluster store: refused.
    let h = dataplane_tests::Host::start();
    let e = h.fail(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.90.0.0/16",
        "ov",
    ]);
    assert!(e.contains("cluster store"), "{e}");
    assert!(
        !h.ok(&["network", "ls"]).contains("ov "),
        "network created anyway"
    );
    drop(h);

    let c = Cluster::start(2, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.101.0.0/16",
        "ovx",
    ]);
    assert!(wait_listed(&c, 2, "ovx"));
    // Overlapping subnet, from the other host.
    let e = c.h(2).fail(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.101.128.0/17",
        "ovy",
    ]);
    assert!(e.contains("overlaps"), "{e}");
    assert!(!c.h(1).ok(&["network", "ls"]).contains("ovy"));
    // Agent start failures on h2: unreachable etcd, VXLAN port in use.
    let mut c = c;
    c.h_mut(2).stop_agent();
    let h = c.h(2);
    let start = |store: &str| {
        run(h.cli_cmd(&[]).args([
            "agent",
            "--netns",
            &h.netns_path(),
            "--state-dir",
            &h.state_dir().display().to_string(),
            "--run-dir",
            &h.run_dir().display().to_string(),
            "--bpffs",
            &h.bpffs.display().to_string(),
            "--cluster-store",
            store,
            "--node-name",
            "h2",
        ]))
    };
    h.run_ok(&Ns::Host, &["ip", "link", "del", "dpvxlan0"]);
    let out = start("etcd://192.0.2.250:2379");
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("Error:") && last.contains("cluster store"),
        "{err}"
    );
    let links = h.run_ok(&Ns::Host, &["ip", "-o", "link"]);
    assert!(!links.contains("dpvxlan0"), "{links}");
    // A host socket holds UDP 4789.
    let mut sock = h.spawn_in(
        &Ns::Host,
        &[
            "/usr/bin/python3",
            "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',4789))\nprint('READY',flush=True)\ntime.sleep(60)",
        ],
    );
    sock.wait_line("READY", Duration::from_secs(5));
    let out = start(dataplane_tests::multihost::STORE);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("Error:") && last.contains("4789") && last.contains("in use"),
        "{err}"
    );
    let links = h.run_ok(&Ns::Host, &["ip", "-o", "link"]);
    assert!(!links.contains("dpvxlan0"), "{links}");
}

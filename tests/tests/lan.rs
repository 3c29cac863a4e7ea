//! `lan` networks: containers with addresses of the host's LAN (the
//! uplink's segment to the outside namespace here), reached from the LAN by
//! address with the real source kept, no port mapping, no masquerade, no
//! Linux bridge; isolation, restart and bad input.

use dataplane_tests::{assert_error, Host, Ns};

/// `10.200.N.0/24` of this test world, and its `.x` address.
fn lan(h: &Host) -> (String, impl Fn(u8) -> String) {
    let prefix = h.uplink_ip.rsplit_once('.').unwrap().0.to_string();
    (format!("{prefix}.0/24"), move |x| format!("{prefix}.{x}"))
}

fn create_lan(h: &Host) {
    let (subnet, at) = lan(h);
    h.ok(&[
        "network",
        "create",
        "--driver",
        "lan",
        "--parent",
        &h.uplink,
        "--subnet",
        &subnet,
        "--ip-range",
        &format!("{}/25", at(128)),
        "--gateway",
        &h.outside_ip,
        "lan1",
    ]);
}

#[test]
fn lan_containers_are_reached_from_the_lan_by_address() {
    let mut h = Host::start();
    create_lan(&h);
    let n = h.inspect_network("lan1");
    assert_eq!(n["driver"], "lan");
    assert_eq!(n["parent"], h.uplink.as_str());
    // The gateway is the LAN's router: the host does not take its address.
    let addrs = h.run_ok(&Ns::Host, &["ip", "-o", "-4", "addr"]);
    assert!(!addrs.contains(&format!("{}/", h.outside_ip)), "{addrs}");

    h.ok(&["container", "create", "--network", "lan1", "web"]);
    let ip = h.ip_of("web");
    let (_, at) = lan(&h);
    assert!(ip.starts_with(&at(1)[..at(1).len() - 1]), "{ip}");

    // From the LAN: by address, the client's address kept.
    let srv = h.tcp_server(&Ns::c("web"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &ip, 80));
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()]);
    // Proxy ARP in eBPF: the LAN sees the container's address at the
    // parent's MAC.
    let neigh = h.run_ok(&Ns::Outside, &["ip", "neigh", "show", &ip]);
    let mac = h.link_json(&Ns::Host, &h.uplink)["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(neigh.contains(&mac), "{neigh} vs {mac}");

    // To the LAN: the container's own address (no masquerade).
    let out = h.tcp_server(&Ns::Outside, &h.outside_ip, 7000);
    assert!(h.tcp_ok(&Ns::c("web"), &h.outside_ip, 7000));
    assert_eq!(out.lines(), vec![ip.clone()]);
    // UDP and ICMP too.
    let _u = h.udp_server(&Ns::c("web"), "0.0.0.0", 5353);
    assert!(h.udp_ok(&Ns::Outside, &ip, 5353));
    assert!(h.ping(&Ns::Outside, &ip));
    assert!(h.ping(&Ns::c("web"), &h.outside_ip));

    // The host reaches it too (macvlan cannot).
    assert!(h.tcp_ok(&Ns::Host, &ip, 80));

    // Isolation: a container of another network cannot reach it.
    h.ok(&["container", "create", "other"]);
    assert!(!h.tcp_ok(&Ns::c("other"), &ip, 80));
    // Direct access to a bridge container from the LAN stays dropped.
    let other_ip = h.ip_of("other");
    let _o = h.tcp_server(&Ns::c("other"), "0.0.0.0", 81);
    h.run_ok(
        &Ns::Outside,
        &[
            "ip",
            "route",
            "add",
            &format!("{other_ip}/32"),
            "via",
            &h.uplink_ip,
        ],
    );
    assert!(!h.tcp_ok(&Ns::Outside, &other_ip, 81));

    // Anti-spoofing: another LAN address from the container is dropped.
    let spoof = at(250);
    h.exec_ok(
        "web",
        &["ip", "addr", "add", &format!("{spoof}/32"), "dev", "eth0"],
    );
    let send = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{spoof}', 0)); s.sendto(b'x', ('{}', 7300))",
        h.outside_ip
    );
    let spoofed_srv = h.udp_server(&Ns::Outside, &h.outside_ip, 7300);
    h.exec_ok("web", &[dataplane_tests::python(), "-c", &send]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(spoofed_srv.lines().is_empty(), "{:?}", spoofed_srv.lines());
    let drops = h.inspect_container("web").to_string();
    assert!(drops.contains("spoofed_source"), "{drops}");

    // Counters move.
    let c = &h.endpoint("web", "lan1")["counters"];
    assert!(c["rx_packets"].as_u64().unwrap() > 0, "{c}");

    // Restart: still reachable.
    h.stop_agent();
    h.start_agent();
    assert!(h.tcp_ok(&Ns::Outside, &ip, 80));
}

#[test]
fn bad_lan_networks_change_nothing() {
    let h = Host::start();
    let (subnet, at) = lan(&h);
    let before = h.snapshot();
    let range = format!("{}/25", at(128));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--subnet", &subnet], vec!["--parent"]),
        (
            vec!["--parent", "nosuch0", "--subnet", &subnet],
            vec!["nosuch0", "not found"],
        ),
        (vec!["--parent", &h.uplink], vec!["--subnet"]),
        (
            vec!["--parent", &h.uplink, "--subnet", "10.77.0.0/24"],
            vec!["10.77.0.0/24", "not a LAN of"],
        ),
        (
            vec!["--parent", &h.uplink, "--subnet", &subnet],
            vec!["host's own address", &h.uplink_ip],
        ),
        (
            vec![
                "--parent",
                &h.uplink,
                "--subnet",
                &subnet,
                "--ip-range",
                "10.1.0.0/25",
            ],
            vec!["10.1.0.0/25"],
        ),
        (
            vec![
                "--parent",
                &h.uplink,
                "--subnet",
                &subnet,
                "--ip-range",
                &range,
                "--internal",
            ],
            vec!["--internal"],
        ),
        (
            vec!["--parent", "dp0", "--subnet", &subnet, "--ip-range", &range],
            vec!["dp0"],
        ),
    ];
    for (args, needles) in &cases {
        let mut full = vec!["network", "create", "--driver", "lan"];
        full.extend(args.iter().copied());
        full.push("badlan");
        let e = h.fail(&full);
        assert_error(&e, needles);
    }
    let e = h.fail(&["network", "create", "--parent", &h.uplink, "br2"]);
    assert_error(&e, &["--parent", "lan"]);
    assert_eq!(before, h.snapshot());
}

/// Deletes a namespace the test made, even when it fails.
struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A second LAN on another host interface (not the uplink).
#[test]
fn a_lan_on_a_second_interface() {
    let h = Host::start();
    let n = h.next();
    let lan_ns = format!("{}-l{n}", h.id);
    let (hif, lif) = (
        format!("l{}h{n}", std::process::id() % 10000),
        format!("l{}o{n}", std::process::id() % 10000),
    );
    dataplane_tests::sh_ok("ip", &["netns", "add", &lan_ns]);
    let _g = Guard(lan_ns.clone());
    dataplane_tests::sh_ok(
        "ip",
        &[
            "link", "add", &hif, "netns", &h.host_ns, "type", "veth", "peer", "name", &lif,
            "netns", &lan_ns,
        ],
    );
    let octet = 100 + n % 100;
    let (host_ip, peer_ip) = (format!("10.201.{octet}.2"), format!("10.201.{octet}.1"));
    h.run_ok(
        &Ns::Host,
        &["ip", "addr", "add", &format!("{host_ip}/24"), "dev", &hif],
    );
    h.run_ok(&Ns::Host, &["ip", "link", "set", &hif, "up"]);
    let peer_cidr = format!("{peer_ip}/24");
    for args in [
        ["addr", "add", peer_cidr.as_str(), "dev", lif.as_str()],
        ["link", "set", lif.as_str(), "up", ""],
        ["link", "set", "lo", "up", ""],
    ] {
        let mut a = vec!["-n", lan_ns.as_str()];
        a.extend(args.iter().copied().filter(|s| !s.is_empty()));
        dataplane_tests::sh_ok("ip", &a);
    }
    h.ok(&[
        "network",
        "create",
        "--driver",
        "lan",
        "-o",
        &format!("parent={hif}"),
        "--subnet",
        &format!("10.201.{octet}.0/24"),
        "--ip-range",
        &format!("10.201.{octet}.64/26"),
        "--gateway",
        &peer_ip,
        "lan2",
    ]);
    h.ok(&["container", "create", "--network", "lan2", "web"]);
    let ip = h.ip_of("web");
    let srv = h.tcp_server(&Ns::c("web"), "0.0.0.0", 80);
    let client = |dst: &str| {
        let o = dataplane_tests::run(std::process::Command::new("ip").args([
            "netns",
            "exec",
            &lan_ns,
            dataplane_tests::python(),
            "-c",
            dataplane_tests::TCP_CLIENT,
            dst,
            "80",
            "2",
        ]));
        o.status.success()
    };
    assert!(client(&ip), "log:\n{}", h.log());
    assert_eq!(srv.lines(), vec![peer_ip.clone()]);
    // Reached from the uplink's side it is direct access (wrong parent).
    h.run_ok(
        &Ns::Outside,
        &[
            "ip",
            "route",
            "add",
            &format!("{ip}/32"),
            "via",
            &h.uplink_ip,
        ],
    );
    assert!(!h.tcp_ok(&Ns::Outside, &ip, 80));
    // The parent carries the uplink's programs (as every host interface
    // with an address does).
    for p in dataplane_tests::uplink_programs() {
        assert!(h.link_pin(p, &hif).exists(), "{p}@{hif}");
    }
    h.ok(&["container", "rm", "web"]);
    h.ok(&["network", "rm", "lan2"]);
}

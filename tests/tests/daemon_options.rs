//! dockerd's daemon-wide options on the agent: `--mtu`, `--fixed-cidr`,
//! `--ip-masq`, `--ip`, `--dns`, `--dns-search`, `--default-address-pool`, and
//! the refusal of `-b/--bridge` and `--iptables`.

use std::{process::Command, time::Duration};

use dataplane_tests::{assert_error, dataplane_bin, python, run, stderr, Host, Ns};

#[test]
fn default_network_follows_mtu_fixed_cidr_and_ip_masq() {
    let mut h = Host::start_with(&[
        "--mtu",
        "1400",
        "--fixed-cidr",
        "172.17.9.0/24",
        "--ip-masq=false",
    ]);
    let n = h.inspect_network("bridge");
    assert_eq!(n["mtu"], 1400, "{n}");
    assert_eq!(n["masquerade"], false, "{n}");
    assert_eq!(n["ip_range"], "172.17.9.0/24", "{n}");
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "b"]);
    let (ip_a, ip_b) = (h.ip_of("a"), h.ip_of("b"));
    for ip in [&ip_a, &ip_b] {
        assert!(ip.starts_with("172.17.9."), "{ip} not in --fixed-cidr");
    }
    let link = h.exec_ok("a", &["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1400"), "{link}");
    // Containers still reach each other on it.
    let _srv = h.tcp_server(&Ns::c("b"), "0.0.0.0", 7100);
    assert!(h.tcp_ok(&Ns::c("a"), &ip_b, 7100));
    // --ip-masq=false: traffic leaves with the container's own address.
    let srv = h.udp_server(&Ns::Outside, &h.outside_ip, 7300);
    let send = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('{}', 7300))",
        h.outside_ip
    );
    h.exec_ok("a", &[python(), "-c", &send]);
    assert!(
        dataplane_tests::wait_until(Duration::from_secs(3), || srv.lines().contains(&ip_a)),
        "un-NATed source {ip_a} not seen: {:?}",
        srv.lines()
    );

    // A restart with other flags re-creates the unused default network only
    // when no container is on it.
    h.stop_agent();
    h.start_agent_with(&["--mtu", "1300"]);
    assert_eq!(h.inspect_network("bridge")["mtu"], 1400, "kept while used");
    assert!(h.log().contains("keeps its old settings"), "{}", h.log());
    h.ok(&["container", "rm", "a"]);
    h.ok(&["container", "rm", "b"]);
    h.stop_agent();
    h.start_agent_with(&["--mtu", "1300"]);
    let n = h.inspect_network("bridge");
    assert_eq!(n["mtu"], 1300, "{n}");
    assert_eq!(n["masquerade"], true, "{n}");
    assert!(n["ip_range"].is_null(), "{n}");
    h.ok(&["container", "create", "c"]);
    assert!(h
        .exec_ok("c", &["ip", "-o", "link", "show", "eth0"])
        .contains("mtu 1300"));
}

#[test]
fn ip_flag_is_the_default_host_address_of_published_ports() {
    // A second address on the uplink: ports published without an address
    // bind only there.
    let h = Host::new_namespaces_only();
    let second = format!("{}.3", h.uplink_ip.rsplit_once('.').unwrap().0);
    h.run_ok(
        &Ns::Host,
        &[
            "ip",
            "addr",
            "add",
            &format!("{second}/24"),
            "dev",
            &h.uplink,
        ],
    );
    let mut h = h;
    h.start_agent_with(&["--ip", &second]);
    h.ok(&["container", "create", "-p", "8080:80", "web"]);
    let ports = h.ok(&["container", "port", "web"]);
    assert!(ports.contains(&format!("{second}:8080")), "{ports}");
    let _srv = h.tcp_server(&Ns::c("web"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &second, 8080));
    assert!(!h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080));
    // An explicit host address still wins.
    let spec = format!("{}:8081:80", h.uplink_ip);
    h.ok(&["container", "create", "-p", &spec, "web2"]);
    let _srv2 = h.tcp_server(&Ns::c("web2"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8081));
}

#[test]
fn dns_flags_are_the_default_of_containers() {
    let h = Host::start_with(&["--dns", "10.0.0.53", "--dns-search", "corp.example"]);
    // Default network: the servers go into resolv.conf.
    h.ok(&["container", "create", "a"]);
    let rc = h.exec_ok("a", &["cat", "/etc/resolv.conf"]);
    assert!(rc.contains("nameserver 10.0.0.53"), "{rc}");
    assert!(rc.contains("search corp.example"), "{rc}");
    // A container's own flags win.
    h.ok(&["container", "create", "--dns", "10.0.0.54", "b"]);
    let rc = h.exec_ok("b", &["cat", "/etc/resolv.conf"]);
    assert!(
        rc.contains("nameserver 10.0.0.54") && !rc.contains("10.0.0.53"),
        "{rc}"
    );
    // A user network: the embedded resolver, whose upstream is the daemon's.
    h.ok(&["network", "create", "--subnet", "10.98.0.0/24", "u"]);
    h.ok(&["container", "create", "--network", "u", "c"]);
    let rc = h.exec_ok("c", &["cat", "/etc/resolv.conf"]);
    assert!(rc.contains("nameserver 127.0.0.11"), "{rc}");
    assert!(rc.contains("search corp.example"), "{rc}");
    let inspect = h.inspect_container("c").to_string();
    assert!(inspect.contains("10.0.0.53"), "{inspect}");
}

#[test]
fn default_address_pool_gives_automatic_subnets() {
    let h = Host::start_with(&[
        "--default-address-pool",
        "base=10.123.0.0/16,size=24",
        "--default-address-pool",
        "base=10.124.0.0/23,size=24",
    ]);
    let mut subnets = Vec::new();
    for i in 0..3 {
        let name = format!("n{i}");
        h.ok(&["network", "create", &name]);
        subnets.push(
            h.inspect_network(&name)["subnet"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(subnets, ["10.123.0.0/24", "10.123.1.0/24", "10.123.2.0/24"]);
    h.ok(&["container", "create", "--network", "n1", "c"]);
    assert!(h.ip_of("c").starts_with("10.123.1."));
}

#[test]
fn bad_daemon_options_stop_the_agent_with_one_line() {
    let h = Host::new_namespaces_only();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--fixed-cidr", "10.1.0.0/24"],
            &["--fixed-cidr", "not inside"],
        ),
        (
            &["--fixed-cidr", "172.17.0.5/24"],
            &["--fixed-cidr", "host bits"],
        ),
        (&["--mtu", "10"], &["--mtu"]),
        (
            &["--default-address-pool", "base=10.0.0.0/16"],
            &["--default-address-pool"],
        ),
        (
            &["--default-address-pool", "base=10.0.0.0/16,size=8"],
            &["size"],
        ),
        (&["--dns", "not-an-ip"], &["--dns"]),
        (&["--ip", "224.0.0.1"], &["--ip"]),
        (&["-b", "docker0"], &["--bridge", "no", "Linux bridge"]),
        (&["--bridge=none"], &["--bridge", "Linux bridge"]),
        (&["--iptables=false"], &["--iptables", "iptables"]),
    ];
    for (args, needles) in cases {
        let o = run(Command::new(dataplane_bin())
            .arg("agent")
            .args(h.agent_args())
            .args(*args));
        assert!(!o.status.success(), "{args:?} accepted");
        assert_error(&stderr(&o), needles);
        assert!(!h.state_dir().exists(), "{args:?} left state behind");
        assert!(!h.socket.exists(), "{args:?} left a socket");
    }
}

//! Port publishing (`-p`, `-P`, `--expose`): real packets from the outside
//! namespace, the host namespace and containers through published ports,
//! host-IP and localhost-only bindings, host port reservations, bad input,
//! the DP_PORTS map, agent restarts and a thousand ports on one container.

use std::time::{Duration, Instant};

use dataplane_tests::{
    assert_error, ip_bytes, ports_util::*, python, run_timeout, wait_until, Host, Ns,
};

#[test]
fn tcp_and_udp_from_outside_keep_the_client_address() {
    let h = Host::start();
    h.ok(&[
        "container",
        "create",
        "web",
        "-p",
        "8080:80",
        "-p",
        "9090:90/udp",
    ]);
    let c = Ns::c("web");
    let mut lines = port_lines(&h, "web");
    lines.sort();
    assert_eq!(
        lines,
        vec!["80/tcp -> 0.0.0.0:8080", "90/udp -> 0.0.0.0:9090"],
        "container port"
    );
    let tcp = h.tcp_server(&c, "0.0.0.0", 80);
    let udp = h.udp_server(&c, "0.0.0.0", 90);
    assert!(
        h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "outside -> {}:8080/tcp failed",
        h.uplink_ip
    );
    assert_eq!(tcp.lines(), vec![h.outside_ip.clone()], "TCP peer");
    assert!(
        h.udp_ok(&Ns::Outside, &h.uplink_ip, 9090),
        "outside -> {}:9090/udp failed",
        h.uplink_ip
    );
    let peers = udp.lines();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| *p == h.outside_ip),
        "UDP peer must be the outside address: {peers:?}"
    );
    // The protocols are not mixed up.
    assert!(!h.udp_ok(&Ns::Outside, &h.uplink_ip, 8080));
    assert!(!h.tcp_ok(&Ns::Outside, &h.uplink_ip, 9090));
    assert_eq!(tcp.lines().len(), 1);

    // From the host namespace itself: the uplink address and 127.0.0.1.
    for ip in [h.uplink_ip.as_str(), "127.0.0.1"] {
        assert!(
            h.tcp_ok(&Ns::Host, ip, 8080),
            "host -> {ip}:8080/tcp failed"
        );
        assert!(
            h.udp_ok(&Ns::Host, ip, 9090),
            "host -> {ip}:9090/udp failed"
        );
    }
    let tcp_peers = tcp.lines();
    assert_eq!(tcp_peers.len(), 3, "{tcp_peers:?}");
    assert!(
        tcp_peers[1..].iter().all(|p| p == "172.17.0.1"),
        "host connections must come from the gateway: {tcp_peers:?}"
    );
    let udp_peers = udp.lines();
    assert!(
        udp_peers.iter().any(|p| p == "172.17.0.1"),
        "host datagrams must come from the gateway: {udp_peers:?}"
    );
}

#[test]
fn port_ranges() {
    let h = Host::start();
    h.ok(&["container", "create", "r", "-p", "8000-8002:80-82"]);
    let c = Ns::c("r");
    let srvs: Vec<_> = (80..=82).map(|p| h.tcp_server(&c, "0.0.0.0", p)).collect();
    let mut lines = port_lines(&h, "r");
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "80/tcp -> 0.0.0.0:8000",
            "81/tcp -> 0.0.0.0:8001",
            "82/tcp -> 0.0.0.0:8002"
        ]
    );
    for (hp, srv) in (8000..=8002).zip(&srvs) {
        assert!(
            h.tcp_ok(&Ns::Outside, &h.uplink_ip, hp),
            "outside -> :{hp} failed"
        );
        assert_eq!(srv.lines(), vec![h.outside_ip.clone()], "server of :{hp}");
    }

    // A host range for one container port: one port of the range is used.
    h.ok(&["container", "create", "one", "-p", "18000-18010:80"]);
    let ports = ports_json(&h, "one");
    assert_eq!(ports.len(), 1, "{ports:?}");
    let hp = ports[0]["host_port"].as_u64().unwrap() as u16;
    assert!((18000..=18010).contains(&hp), "{hp} not in 18000-18010");
    assert_eq!(ports[0]["container_port"], 80);
    assert_eq!(ports[0]["proto"], "tcp");
    assert_eq!(ports[0]["host_ip"], "0.0.0.0");
    assert_eq!(
        port_lines(&h, "one"),
        vec![format!("80/tcp -> 0.0.0.0:{hp}")]
    );
    let srv = h.tcp_server(&Ns::c("one"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, hp), "outside -> :{hp}");
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()]);
    // The other ports of the range lead nowhere.
    let other = if hp == 18000 { 18001 } else { 18000 };
    assert!(!h.tcp_ok(&Ns::Outside, &h.uplink_ip, other));
}

#[test]
fn random_host_ports_and_publish_all() {
    let h = Host::start();
    let (lo, hi) = local_port_range(&h);
    h.ok(&["container", "create", "rnd", "-p", "80"]);
    let hp = host_port(&h, "rnd", 80, "tcp");
    assert!(
        (lo..=hi).contains(&hp),
        "random port {hp} not in the host's range {lo}-{hi}"
    );
    assert_eq!(
        port_lines(&h, "rnd"),
        vec![format!("80/tcp -> 0.0.0.0:{hp}")]
    );
    let srv = h.tcp_server(&Ns::c("rnd"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, hp), "outside -> :{hp}");
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()]);

    // -P publishes every exposed port on a random port.
    h.ok(&[
        "container",
        "create",
        "all",
        "--expose",
        "80",
        "--expose",
        "53/udp",
        "-P",
    ]);
    let ports = ports_json(&h, "all");
    assert_eq!(ports.len(), 2, "{ports:?}");
    let tcp_hp = host_port(&h, "all", 80, "tcp");
    let udp_hp = host_port(&h, "all", 53, "udp");
    for p in [tcp_hp, udp_hp] {
        assert!((lo..=hi).contains(&p), "{p} not in {lo}-{hi}");
    }
    let c = Ns::c("all");
    let tcp = h.tcp_server(&c, "0.0.0.0", 80);
    let udp = h.udp_server(&c, "0.0.0.0", 53);
    assert!(
        h.tcp_ok(&Ns::Outside, &h.uplink_ip, tcp_hp),
        "-P tcp :{tcp_hp}"
    );
    assert!(
        h.udp_ok(&Ns::Outside, &h.uplink_ip, udp_hp),
        "-P udp :{udp_hp}"
    );
    assert_eq!(tcp.lines(), vec![h.outside_ip.clone()]);
    assert_eq!(udp.lines()[0], h.outside_ip);
    let v = h.inspect_container("all");
    assert_eq!(v["ports"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["expose"].as_array().unwrap().len(), 2, "{v}");

    // -P without anything exposed publishes nothing.
    let before = h.map_entries("DP_PORTS").len();
    h.ok(&["container", "create", "none", "-P"]);
    assert!(ports_json(&h, "none").is_empty());
    assert!(port_lines(&h, "none").is_empty());
    assert_eq!(h.map_entries("DP_PORTS").len(), before);
}

#[test]
fn host_ip_binding() {
    let h = Host::start();
    let second = same_subnet(&h.uplink_ip, 3);
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
    h.ok(&[
        "container",
        "create",
        "b",
        "-p",
        &format!("{second}:8080:80"),
    ]);
    assert_eq!(
        port_lines(&h, "b"),
        vec![format!("80/tcp -> {second}:8080")]
    );
    let srv = h.tcp_server(&Ns::c("b"), "0.0.0.0", 80);
    assert!(
        h.tcp_ok(&Ns::Outside, &second, 8080),
        "outside -> {second}:8080 failed"
    );
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()]);
    assert!(
        !h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "{}:8080 must not be published",
        h.uplink_ip
    );
    assert_eq!(srv.lines().len(), 1, "the primary IP reached the container");
    // From the host and from a container: that address only.
    h.ok(&["container", "create", "peer"]);
    assert!(h.tcp_ok(&Ns::Host, &second, 8080), "host -> {second}:8080");
    assert!(
        h.tcp_ok(&Ns::c("peer"), &second, 8080),
        "peer -> {second}:8080"
    );
    assert!(
        !h.tcp_ok(&Ns::Host, "127.0.0.1", 8080),
        "host -> 127.0.0.1:8080"
    );
    assert!(
        !h.tcp_ok(&Ns::c("peer"), &h.uplink_ip, 8080),
        "peer -> primary:8080"
    );
    assert_eq!(
        srv.lines(),
        vec![
            h.outside_ip.clone(),
            "172.17.0.1".into(),
            "172.17.0.1".into()
        ]
    );
    // The key in DP_PORTS is that exact address.
    let entries = h.map_entries("DP_PORTS");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].0["ip"], ip_bytes(&second));

    // The same port on another address belongs to another container; on
    // every address (0.0.0.0) it conflicts.
    let err = h.fail(&["container", "create", "any", "-p", "8080:80"]);
    assert_error(&err, &["8080", "already published"]);
    h.ok(&[
        "container",
        "create",
        "prim",
        "-p",
        &format!("{}:8080:80", h.uplink_ip),
    ]);
    let prim = h.tcp_server(&Ns::c("prim"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080), "primary :8080");
    assert!(h.tcp_ok(&Ns::Outside, &second, 8080), "second :8080");
    assert_eq!(prim.lines(), vec![h.outside_ip.clone()]);
    assert_eq!(srv.lines().len(), 4);
}

#[test]
fn address_added_after_start_serves_wildcard_ports() {
    let h = Host::start();
    h.ok(&["container", "create", "w", "-p", "8080:80"]);
    let srv = h.tcp_server(&Ns::c("w"), "0.0.0.0", 80);
    let extra = same_subnet(&h.uplink_ip, 4);
    h.run_ok(
        &Ns::Host,
        &[
            "ip",
            "addr",
            "add",
            &format!("{extra}/24"),
            "dev",
            &h.uplink,
        ],
    );
    let t0 = Instant::now();
    let ok = wait_until(Duration::from_secs(15), || {
        h.tcp_ok(&Ns::Outside, &extra, 8080)
    });
    eprintln!("reachable {ok} after {:?}", t0.elapsed());
    assert!(ok);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()]);
}

/// Records (source IP) of every TCP packet to argv[2] seen on interface argv[1]
/// for argv[3] seconds into argv[4].
const SNIFFER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.1)
port = int(sys.argv[2])
seen = []
print("READY", flush=True)
end = time.time() + float(sys.argv[3])
while time.time() < end:
    try:
        d = s.recv(65535)
    except socket.timeout:
        continue
    if len(d) < 34 or d[12:14] != b"\x08\x00" or d[23] != 6:
        continue
    ihl = (d[14] & 15) * 4
    if int.from_bytes(d[14 + ihl + 2:14 + ihl + 4], "big") == port:
        seen.append(socket.inet_ntoa(d[26:30]))
with open(sys.argv[4], "w") as f:
    f.write("".join(x + "\n" for x in seen))
print("DONE", flush=True)
"#;

const CRAFTED_SYN: &str = r#"
import sys
from scapy.all import Ether, IP, TCP, sendp
p = Ether(dst=sys.argv[1]) / IP(src=sys.argv[2], dst="127.0.0.1") / TCP(sport=41234, dport=int(sys.argv[3]), flags="S")
sendp(p, iface=sys.argv[4], count=3, verbose=False)
"#;

#[test]
fn localhost_only_binding() {
    let h = Host::start();
    h.ok(&["container", "create", "lo", "-p", "127.0.0.1:8081:80"]);
    assert_eq!(port_lines(&h, "lo"), vec!["80/tcp -> 127.0.0.1:8081"]);
    let c = Ns::c("lo");
    let srv = h.tcp_server(&c, "0.0.0.0", 80);
    assert!(
        h.tcp_ok(&Ns::Host, "127.0.0.1", 8081),
        "host -> 127.0.0.1:8081 failed"
    );
    assert_eq!(srv.lines(), vec!["172.17.0.1".to_string()]);
    assert!(
        !h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8081),
        "outside reached a 127.0.0.1-only port"
    );
    // Neither the host nor a container reach it through the uplink address.
    h.ok(&["container", "create", "peer"]);
    assert!(
        !h.tcp_ok(&Ns::Host, &h.uplink_ip, 8081),
        "host reached a 127.0.0.1-only port on {}",
        h.uplink_ip
    );
    assert!(
        !h.tcp_ok(&Ns::c("peer"), &h.uplink_ip, 8081),
        "a container reached a 127.0.0.1-only port on {}",
        h.uplink_ip
    );
    assert_eq!(srv.lines().len(), 1);

    // A packet to 127.0.0.1:8081 put on the uplink by the outside.
    let ifname = h.endpoint("lo", "bridge")["interface"]
        .as_str()
        .unwrap()
        .to_string();
    let file = h.dir.join(format!("sniff-{}", h.next()));
    let f = file.display().to_string();
    let mut sniff = h.spawn_in(&c, &[python(), "-c", SNIFFER, &ifname, "80", "6", &f]);
    sniff.wait_line("READY", Duration::from_secs(10));
    let before = drop_count(&h, "loopback_from_outside");
    let mac = h.link_json(&Ns::Host, &h.uplink)["address"]
        .as_str()
        .unwrap()
        .to_string();
    let o = run_timeout(
        &mut h.cmd_in(
            &Ns::Outside,
            &[
                python(),
                "-c",
                CRAFTED_SYN,
                &mac,
                &h.outside_ip,
                "8081",
                &h.outside_if,
            ],
        ),
        Duration::from_mins(1),
    );
    assert!(
        o.status.success(),
        "scapy failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A real connection through the binding during the capture proves the
    // sniffer sees packets to port 80.
    assert!(h.tcp_ok(&Ns::Host, "127.0.0.1", 8081));
    assert!(
        wait_until(Duration::from_secs(5), || drop_count(
            &h,
            "loopback_from_outside"
        ) >= before + 3),
        "loopback_from_outside did not count the 3 crafted packets: before {before}, now {}",
        drop_count(&h, "loopback_from_outside")
    );
    sniff.wait_line("DONE", Duration::from_secs(15));
    let seen: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        seen.iter().any(|s| s == "172.17.0.1"),
        "the sniffer missed the real connection: {seen:?}"
    );
    assert!(
        !seen.contains(&h.outside_ip),
        "a packet to 127.0.0.1 from the outside reached the container: {seen:?}"
    );
    assert_eq!(srv.lines(), vec!["172.17.0.1", "172.17.0.1"]);
}

#[test]
fn hairpin_and_other_networks() {
    let h = Host::start();
    h.ok(&[
        "container",
        "create",
        "a",
        "-p",
        "8080:80",
        "-p",
        "8080:80/udp",
    ]);
    h.ok(&["container", "create", "b"]);
    h.ok(&["network", "create", "--subnet", "10.77.0.0/24", "other"]);
    h.ok(&["container", "create", "--network", "other", "x"]);
    let tcp = h.tcp_server(&Ns::c("a"), "0.0.0.0", 80);
    let udp = h.udp_server(&Ns::c("a"), "0.0.0.0", 80);
    let up = h.uplink_ip.clone();
    assert!(
        h.tcp_ok(&Ns::c("b"), &up, 8080),
        "b -> {up}:8080/tcp (hairpin)"
    );
    assert!(
        h.udp_ok(&Ns::c("b"), &up, 8080),
        "b -> {up}:8080/udp (hairpin)"
    );
    assert!(h.tcp_ok(&Ns::c("a"), &up, 8080), "a -> its own {up}:8080");
    assert!(
        h.tcp_ok(&Ns::c("x"), &up, 8080),
        "x (other network) -> {up}:8080"
    );
    assert!(
        h.udp_ok(&Ns::c("x"), &up, 8080),
        "x (other network) -> {up}:8080/udp"
    );
    // The server sees the target network's gateway.
    assert_eq!(tcp.lines(), vec!["172.17.0.1"; 3]);
    let peers = udp.lines();
    assert!(
        !peers.is_empty() && peers.iter().all(|p| p == "172.17.0.1"),
        "{peers:?}"
    );
    // A port published by a container of another network, reached from
    // the default network: the server sees its own network's gateway.
    h.ok(&[
        "container",
        "create",
        "--network",
        "other",
        "y",
        "-p",
        "8081:80",
    ]);
    let y = h.tcp_server(&Ns::c("y"), "0.0.0.0", 80);
    assert!(
        h.tcp_ok(&Ns::c("b"), &up, 8081),
        "b -> {up}:8081 (y on other)"
    );
    assert!(
        h.tcp_ok(&Ns::c("x"), &up, 8081),
        "x -> {up}:8081 (same network)"
    );
    assert!(h.tcp_ok(&Ns::c("y"), &up, 8081), "y -> its own {up}:8081");
    assert!(h.tcp_ok(&Ns::Outside, &up, 8081), "outside -> {up}:8081");
    assert_eq!(
        y.lines(),
        vec![
            "10.77.0.1".to_string(),
            "10.77.0.1".to_string(),
            "10.77.0.1".to_string(),
            h.outside_ip.clone()
        ]
    );
    // Direct access across networks stays forbidden.
    let ip_a = h.ip_of("a");
    assert!(
        !h.tcp_ok(&Ns::c("x"), &ip_a, 80),
        "x reached {ip_a}:80 directly"
    );
}

#[test]
fn removal_stops_traffic_and_frees_the_port() {
    let h = Host::start();
    h.ok(&[
        "container",
        "create",
        "gone",
        "-p",
        "8080:80",
        "-p",
        "8080:80/udp",
    ]);
    let ip = h.ip_of("gone");
    let entries = h.map_entries("DP_PORTS");
    assert_eq!(entries.len(), 2, "{entries:?}");
    for (k, v) in &entries {
        assert_eq!(k["ip"], ip_bytes("0.0.0.0"), "{k} {v}");
        assert_eq!(k["port"], 8080, "{k} {v}");
        assert_eq!(v["ip"], ip_bytes(&ip), "{k} {v}");
        assert_eq!(v["port"], 80, "{k} {v}");
    }
    let mut protos: Vec<u64> = entries
        .iter()
        .map(|(k, _)| k["proto"].as_u64().unwrap())
        .collect();
    protos.sort_unstable();
    assert_eq!(protos, vec![6, 17]);

    let srv = h.tcp_server(&Ns::c("gone"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080));
    assert_bind_in_use(&h, "0.0.0.0", 8080, "tcp");
    assert_bind_in_use(&h, "0.0.0.0", 8080, "udp");
    h.ok(&["container", "rm", "gone"]);
    drop(srv);
    assert!(
        h.map_entries("DP_PORTS").is_empty(),
        "DP_PORTS not emptied: {:?}",
        h.map_entries("DP_PORTS")
    );
    assert!(
        !h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "the port still answers after rm"
    );
    host_bind(&h, "0.0.0.0", 8080, "tcp").expect("host cannot bind 8080/tcp after rm");
    host_bind(&h, "0.0.0.0", 8080, "udp").expect("host cannot bind 8080/udp after rm");
    h.ok(&["container", "create", "x", "-p", "8080:80"]);
    let srv = h.tcp_server(&Ns::c("x"), "0.0.0.0", 80);
    assert!(
        h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "new owner of 8080"
    );
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()]);
}

//! IPv6 north-south through real namespaces (issue 16): an outside
//! namespace with IPv6 on the uplink link; masquerade of a ULA network (the
//! outside server sees the host's IPv6 address), a routed network (it sees
//! the container's), published ports on the host's IPv6 address with the
//! client address kept, hairpin, `[::1]` and the host address from the host
//! itself, direct access dropped, ICMPv6 port
//! unreachable for a published UDP port nobody listens on, and 4,000-byte
//! UDP datagrams (IPv6 fragments) both ways.

use std::time::Duration;

use dataplane_tests::*;

const HOST6: &str = "fd00:77::2";
const OUT6: &str = "fd00:77::1";

/// TCP echo server on IPv6: records its peers (argv[3]), echoes lines.
const TCP6_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("READY", flush=True)
def handle(c, a):
    with open(sys.argv[3], "a") as f:
        f.write(a[0] + "\n")
    f = c.makefile("rwb")
    for line in f:
        f.write(line)
        f.flush()
    c.close()
while True:
    c, a = s.accept()
    threading.Thread(target=handle, args=(c, a), daemon=True).start()
"#;

/// UDP echo server on IPv6: records its peers, echoes datagrams of any size.
const UDP6_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
while True:
    d, a = s.recvfrom(65535)
    with open(sys.argv[3], "a") as f:
        f.write(a[0] + "\n")
    s.sendto(d, a)
"#;

/// TCP client: connect, send a line, expect it back.
const TCP6_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"hello six\n")
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(4096)
    if not d:
        break
    buf += d
sys.exit(0 if buf == b"hello six\n" else 1)
"#;

/// UDP client: a connected socket sends argv[3] bytes and expects them
/// back; prints OK, REFUSED (an ICMPv6 port unreachable came back) or
/// TIMEOUT.
const UDP6_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(1)
s.connect((sys.argv[1], int(sys.argv[2])))
data = bytes((i * 7) % 251 for i in range(int(sys.argv[3])))
for i in range(3):
    try:
        s.send(data)
        d = s.recv(65535)
    except ConnectionRefusedError:
        print("REFUSED")
        sys.exit(0)
    except socket.timeout:
        continue
    print("OK" if d == data else "BAD")
    sys.exit(0)
print("TIMEOUT")
"#;

/// A server (killed on drop) and the file its peers are written to.
struct Srv {
    _bg: Bg,
    peers: std::path::PathBuf,
}

impl Srv {
    fn peers(&self) -> Vec<String> {
        std::fs::read_to_string(&self.peers)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn server(h: &Host, ns: &Ns, script: &str, bind: &str, port: u16) -> Srv {
    let file = h.dir.join(format!("peers6-{}", h.next()));
    let f = file.display().to_string();
    let p = port.to_string();
    let mut bg = h.spawn_in(ns, &[python(), "-c", script, bind, &p, &f]);
    bg.wait_line("READY", Duration::from_secs(10));
    Srv {
        _bg: bg,
        peers: file,
    }
}

fn tcp6_ok(h: &Host, ns: &Ns, ip: &str, port: u16) -> bool {
    let p = port.to_string();
    run_timeout(
        &mut h.cmd_in(ns, &[python(), "-c", TCP6_CLIENT, ip, &p]),
        Duration::from_secs(15),
    )
    .status
    .success()
}

fn udp6(h: &Host, ns: &Ns, ip: &str, port: u16, size: usize) -> String {
    let (p, n) = (port.to_string(), size.to_string());
    let o = run_timeout(
        &mut h.cmd_in(ns, &[python(), "-c", UDP6_CLIENT, ip, &p, &n]),
        Duration::from_secs(15),
    );
    stdout(&o).trim().to_string()
}

/// IPv6 on the uplink link: the host `HOST6`, the outside `OUT6` (its
/// default route back to the host for the routed subnets).
fn ipv6_uplink(h: &Host) {
    let (hn, on) = (h.host_ns.as_str(), h.out_ns.as_str());
    let ha = format!("{HOST6}/64");
    let oa = format!("{OUT6}/64");
    sh_ok(
        "ip",
        &[
            "-n", hn, "-6", "addr", "add", &ha, "dev", &h.uplink, "nodad",
        ],
    );
    sh_ok(
        "ip",
        &[
            "-n",
            on,
            "-6",
            "addr",
            "add",
            &oa,
            "dev",
            &h.outside_if,
            "nodad",
        ],
    );
    sh_ok(
        "ip",
        &["-n", hn, "-6", "route", "add", "default", "via", OUT6],
    );
    sh_ok(
        "ip",
        &[
            "-n",
            on,
            "-6",
            "route",
            "add",
            "2001:db8::/32",
            "via",
            HOST6,
        ],
    );
}

fn start() -> Host {
    let h = Host::start();
    ipv6_uplink(&h);
    h
}

fn dual(h: &Host, name: &str, v4: &str, v6: &str, extra: &[&str]) {
    let mut args = vec![
        "network", "create", "--ipv6", "--subnet", v4, "--subnet", v6,
    ];
    args.extend_from_slice(extra);
    args.push(name);
    h.ok(&args);
}

fn drops(h: &Host, reason: &str) -> u64 {
    h.global_drops()[reason].as_u64().unwrap_or(0)
}

/// Wait until `f` holds (the reconciler syncs the IPv6 maps after a change).
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..5 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

#[test]
fn ula_container_is_masqueraded_to_the_host_ipv6_address() {
    let h = start();
    dual(&h, "dual", "10.71.0.0/24", "fd00:71::/64", &[]);
    h.ok(&["container", "create", "--network", "dual", "a"]);
    let srv = server(&h, &Ns::Outside, TCP6_SERVER, "::", 9000);
    assert!(
        eventually(|| tcp6_ok(&h, &Ns::c("a"), OUT6, 9000)),
        "TCP over IPv6 from a ULA container to outside\ndrops {}\n{}",
        h.global_drops(),
        h.log()
    );
    assert_eq!(srv.peers()[0], HOST6, "the outside sees the host's address");
    // ICMPv6 echo goes through the masquerade too.
    assert!(h.ping(&Ns::c("a"), OUT6), "ping6 to outside");
    // The closed TCP flow's translation is collected by the flow GC (the
    // closing timeout, then the next GC pass): both directions.
    let tcp = |h: &Host, map: &str| {
        h.map_entries(map)
            .iter()
            .filter(|(k, _)| k["proto"] == 6)
            .count()
    };
    assert_eq!(tcp(&h, "DP_NAT6_OUT"), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while tcp(&h, "DP_NAT6_OUT") + tcp(&h, "DP_NAT6_IN") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "closed flow not collected"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn routed_network_container_reaches_outside_with_its_own_address_and_is_not_open() {
    let h = start();
    dual(&h, "rt", "10.72.0.0/24", "2001:db8:72::/64", &[]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "rt",
        "--ip6",
        "2001:db8:72::10",
        "r",
    ]);
    let srv = server(&h, &Ns::Outside, TCP6_SERVER, "::", 9001);
    assert!(
        eventually(|| tcp6_ok(&h, &Ns::c("r"), OUT6, 9001)),
        "TCP over IPv6 from a routed container\n{}",
        h.log()
    );
    assert_eq!(
        srv.peers()[0],
        "2001:db8:72::10",
        "the container's own address"
    );
    // A connection from outside to the container's address was not opened
    // by it: dropped.
    let _in = server(&h, &Ns::c("r"), TCP6_SERVER, "::", 80);
    let before = drops(&h, "direct_access_from_outside");
    assert!(
        !tcp6_ok(&h, &Ns::Outside, "2001:db8:72::10", 80),
        "direct access refused"
    );
    assert!(drops(&h, "direct_access_from_outside") > before);
}

#[test]
fn published_port_on_host_ipv6_keeps_client_address_and_hairpins() {
    let h = start();
    dual(&h, "dual", "10.73.0.0/24", "fd00:73::/64", &[]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "dual",
        "-p",
        "8080:80",
        "web",
    ]);
    h.ok(&["container", "create", "--network", "dual", "b"]);
    let srv = server(&h, &Ns::c("web"), TCP6_SERVER, "::", 80);
    let url = format!("[{HOST6}]:8080");
    assert!(
        eventually(|| tcp6_ok(&h, &Ns::Outside, HOST6, 8080)),
        "{url} from outside\n{}",
        h.log()
    );
    assert_eq!(srv.peers()[0], OUT6, "client address kept");
    // Hairpin: another container to the published host address.
    assert!(tcp6_ok(&h, &Ns::c("b"), HOST6, 8080), "hairpin to {url}");
    // From the host itself: [::1] and the host's IPv6 address (the socket
    // programs), the container sees a host address.
    assert!(
        tcp6_ok(&h, &Ns::Host, "::1", 8080),
        "[::1]:8080 from the host"
    );
    assert!(tcp6_ok(&h, &Ns::Host, HOST6, 8080), "{url} from the host");
    // Direct access to the container's address from outside: dropped.
    let ip6 = h.endpoint("web", "dual")["GlobalIPv6Address"]
        .as_str()
        .unwrap()
        .to_string();
    sh_ok(
        "ip",
        &[
            "-n",
            &h.out_ns,
            "-6",
            "route",
            "add",
            "fd00:73::/64",
            "via",
            HOST6,
        ],
    );
    let before = drops(&h, "direct_access_from_outside");
    assert!(!tcp6_ok(&h, &Ns::Outside, &ip6, 80));
    assert!(drops(&h, "direct_access_from_outside") > before);
    // A mapping bound to an IPv4 address has no IPv6 side; removing the
    // container unpublishes its IPv6 port.
    h.ok(&[
        "container",
        "create",
        "--network",
        "dual",
        "-p",
        "127.0.0.1:8081:80",
        "lo4",
    ]);
    let ports6 = |h: &Host| {
        h.map_entries("DP_PORTS6")
            .iter()
            .map(|(k, _)| k["port"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(eventually(|| ports6(&h) == vec![8080]), "{:?}", ports6(&h));
    h.ok(&["container", "rm", "web"]);
    assert!(eventually(|| ports6(&h).is_empty()), "{:?}", ports6(&h));
    assert!(!tcp6_ok(&h, &Ns::Outside, HOST6, 8080), "unpublished");
}

#[test]
fn published_udp_port_without_listener_answers_port_unreachable_and_fragments_cross() {
    let h = start();
    dual(&h, "dual", "10.74.0.0/24", "fd00:74::/64", &[]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "dual",
        "-p",
        "5353:53/udp",
        "-p",
        "5354:54/udp",
        "u",
    ]);
    // Nobody listens on 53: the container's ICMPv6 port unreachable,
    // translated, reaches the client's connected socket.
    assert!(
        eventually(|| udp6(&h, &Ns::Outside, HOST6, 5353, 10) == "REFUSED"),
        "ICMPv6 port unreachable through the published port\n{}",
        h.log()
    );
    // 4,000-byte datagrams both ways (fragmented by the senders).
    let srv = server(&h, &Ns::c("u"), UDP6_SERVER, "::", 54);
    assert_eq!(
        udp6(&h, &Ns::Outside, HOST6, 5354, 4000),
        "OK",
        "published, fragmented"
    );
    assert_eq!(srv.peers()[0], OUT6);
    let out = server(&h, &Ns::Outside, UDP6_SERVER, "::", 9002);
    assert_eq!(
        udp6(&h, &Ns::c("u"), OUT6, 9002, 4000),
        "OK",
        "masqueraded, fragmented"
    );
    assert_eq!(out.peers()[0], HOST6);
}

#[test]
fn agent_restart_keeps_a_masqueraded_ipv6_connection_and_a_published_port() {
    let mut h = start();
    dual(&h, "dual", "10.75.0.0/24", "fd00:75::/64", &[]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "dual",
        "-p",
        "8080:80",
        "a",
    ]);
    let _out = server(&h, &Ns::Outside, TCP6_SERVER, "::", 9003);
    let _web = server(&h, &Ns::c("a"), TCP6_SERVER, "::", 80);
    assert!(eventually(|| tcp6_ok(&h, &Ns::Outside, HOST6, 8080)));
    let report = h.dir.join("stream6.json");
    let r = report.display().to_string();
    let mut client = h.spawn_in(
        &Ns::c("a"),
        &[python(), "-c", TCP_STREAM_CLIENT, OUT6, "9003", "6", &r],
    );
    client.wait_line("CONNECTED", Duration::from_secs(10));
    // Traffic flows before, during and after the agent's downtime: these
    // sleeps are the scenario, not waits for a condition.
    std::thread::sleep(Duration::from_secs(1));
    h.stop_agent();
    std::thread::sleep(Duration::from_secs(1));
    h.start_agent();
    assert!(
        client.wait(Duration::from_secs(20)).is_some(),
        "client did not finish"
    );
    let res: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(res["error"], serde_json::Value::Null, "{res}");
    let sent = res["sent"].as_u64().unwrap();
    assert!(sent >= 30, "only {sent} lines sent: {res}");
    assert_eq!(res["received"].as_u64(), Some(sent), "{res}");
    // The published port still works after the restart.
    assert!(tcp6_ok(&h, &Ns::Outside, HOST6, 8080));
}

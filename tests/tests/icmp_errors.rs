//! ICMP errors through the datapath with real namespaces: a connected UDP
//! client gets ECONNREFUSED from a published UDP port nobody listens on
//! (from outside and from another container, through the hairpin), and a
//! traceroute-style probe from a container hears "time exceeded" from a
//! router beyond the masquerade.

use std::time::Duration;

use dataplane_tests::{python, run_timeout, sh_ok, Host, Ns};

/// Connected UDP socket: send, expect ECONNREFUSED on receive (5 tries).
const REFUSED_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(1)
for i in range(5):
    try:
        s.send(b"anyone there?")
        s.recv(100)
        print("ANSWER", flush=True)
        sys.exit(3)
    except ConnectionRefusedError:
        print("ECONNREFUSED", flush=True)
        sys.exit(0)
    except socket.timeout:
        continue
print("TIMEOUT", flush=True)
sys.exit(2)
"#;

/// One UDP probe with TTL argv[3] to argv[1]:argv[2]; prints the ICMP type
/// and the offender's address from the socket's error queue (IP_RECVERR).
const TTL_PROBE: &str = r#"
import select, socket, struct, sys, time
IP_RECVERR = 11
MSG_ERRQUEUE = 0x2000
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(sys.argv[3]))
for attempt in range(3):
    s.sendto(b"probe", (sys.argv[1], int(sys.argv[2])))
    end = time.time() + 1
    while time.time() < end:
        select.select([s], [], [], 0.1)
        try:
            _, anc, _, _ = s.recvmsg(512, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        for level, typ, data in anc:
            if level == socket.IPPROTO_IP and typ == IP_RECVERR:
                errno, origin, itype, code, pad, info, d = struct.unpack("=IBBBBII", data[:16])
                offender = socket.inet_ntoa(data[20:24])
                print("TYPE %d CODE %d FROM %s" % (itype, code, offender), flush=True)
                sys.exit(0)
print("NOTHING", flush=True)
sys.exit(2)
"#;

fn refused(h: &Host, ns: &Ns, ip: &str, port: u16) -> String {
    let p = port.to_string();
    let o = run_timeout(
        &mut h.cmd_in(ns, &[python(), "-c", REFUSED_CLIENT, ip, &p]),
        Duration::from_secs(20),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn published_udp_port_without_listener_refuses_connected_clients() {
    let h = Host::start();
    h.ok(&["container", "create", "s", "-p", "7401:7400/udp"]);
    // Nothing listens on 7400 in the container: its port unreachable
    // reaches the client as coming from the published address.
    assert_eq!(
        refused(&h, &Ns::Outside, &h.uplink_ip, 7401),
        "ECONNREFUSED"
    );
    // The same through the hairpin, from another container.
    h.ok(&["container", "create", "cli"]);
    assert_eq!(
        refused(&h, &Ns::c("cli"), &h.uplink_ip, 7401),
        "ECONNREFUSED"
    );
    // With a listener the client gets its answer (the test can tell).
    let _srv = h.udp_server(&Ns::c("s"), "0.0.0.0", 7400);
    assert_eq!(refused(&h, &Ns::Outside, &h.uplink_ip, 7401), "ANSWER");
}

#[test]
fn traceroute_hears_time_exceeded_from_beyond_the_masquerade() {
    let h = Host::start();
    // The outside namespace routes 198.51.100.0/24 on (a veth of its own): a
    // probe reaching it with TTL 1 gets "time exceeded" from it.
    let o = h.out_ns.clone();
    sh_ok(
        "ip",
        &[
            "-n", &o, "link", "add", "fwd0", "type", "veth", "peer", "name", "fwd1",
        ],
    );
    sh_ok("ip", &["-n", &o, "link", "set", "fwd0", "up"]);
    sh_ok("ip", &["-n", &o, "link", "set", "fwd1", "up"]);
    sh_ok(
        "ip",
        &["-n", &o, "route", "add", "198.51.100.0/24", "dev", "fwd0"],
    );
    h.run_ok(&Ns::Outside, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    h.ok(&["container", "create", "c"]);
    // TTL 2: the host forwards it (TTL 1 on the wire), the outside router
    // answers.
    let out = h.run_ok(
        &Ns::c("c"),
        &[python(), "-c", TTL_PROBE, "198.51.100.7", "33434", "2"],
    );
    assert_eq!(
        out.trim(),
        format!("TYPE 11 CODE 0 FROM {}", h.outside_ip),
        "second hop"
    );
}

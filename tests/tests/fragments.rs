//! IPv4 fragments through real namespaces: 4,000- and 60,000-byte UDP
//! datagrams both ways through the masquerade and through a published UDP
//! port (the senders' stacks fragment them at the 1500-byte MTU, the
//! receivers' stacks reassemble them), and a DNS-like exchange whose
//! 3,000-byte answer comes back fragmented.

use std::time::Duration;

use dataplane_tests::{python, run_timeout, Host, Ns};

/// Send one datagram of argv[3] bytes to argv[1]:argv[2] and expect the same
/// bytes back (3 tries). Prints the size received; exit 0 on success.
const SIZED_UDP_CLIENT: &str = r"
import socket, sys
n = int(sys.argv[3])
msg = bytes((i * 7 + 3) & 0xff for i in range(n))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(3):
    s.sendto(msg, (sys.argv[1], int(sys.argv[2])))
    try:
        d, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    print(len(d), flush=True)
    sys.exit(0 if d == msg else 1)
sys.exit(2)
";

/// A DNS-like server: answers every query with argv[3] bytes that start with
/// the query's first two bytes (the "id").
const BIG_ANSWER_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
n = int(sys.argv[3])
print("READY", flush=True)
while True:
    q, a = s.recvfrom(65535)
    s.sendto(q[:2] + bytes(i & 0xff for i in range(n - 2)), a)
"#;

/// A DNS-like client: a 40-byte query with id 0xbeef, expects the whole
/// answer of argv[3] bytes.
const SMALL_QUERY_CLIENT: &str = r#"
import socket, sys
n = int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(3):
    s.sendto(b"\xbe\xef" + b"q" * 38, (sys.argv[1], int(sys.argv[2])))
    try:
        d, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    ok = len(d) == n and d[:2] == b"\xbe\xef" and d[2:] == bytes(i & 0xff for i in range(n - 2))
    print(len(d), flush=True)
    sys.exit(0 if ok else 1)
sys.exit(2)
"#;

fn sized_echo(h: &Host, ns: &Ns, ip: &str, port: u16, size: usize) -> Result<(), String> {
    let (p, n) = (port.to_string(), size.to_string());
    let o = run_timeout(
        &mut h.cmd_in(ns, &[python(), "-c", SIZED_UDP_CLIENT, ip, &p, &n]),
        Duration::from_secs(20),
    );
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{size}-byte UDP echo {ns:?} -> {ip}:{port}: {:?} {} {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

fn drop_count(h: &Host, reason: &str) -> u64 {
    let d = h.global_drops();
    d[reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason} in {d}"))
}

#[test]
fn large_udp_datagrams_cross_the_masquerade_both_ways() {
    let h = Host::start();
    h.ok(&["container", "create", "c"]);
    let srv = h.udp_server(&Ns::Outside, "0.0.0.0", 9101);
    for size in [4000, 60000] {
        sized_echo(&h, &Ns::c("c"), &h.outside_ip, 9101, size).unwrap();
    }
    let peers = srv.lines();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| *p == h.uplink_ip),
        "not masqueraded: {peers:?}"
    );
    assert_eq!(drop_count(&h, "fragment_without_first"), 0);
    assert_eq!(drop_count(&h, "untranslatable_fragment"), 0);
}

#[test]
fn large_udp_datagrams_cross_a_published_udp_port_both_ways() {
    let h = Host::start();
    h.ok(&["container", "create", "s", "-p", "7301:7300/udp"]);
    let srv = h.udp_server(&Ns::c("s"), "0.0.0.0", 7300);
    for size in [4000, 60000] {
        sized_echo(&h, &Ns::Outside, &h.uplink_ip, 7301, size).unwrap();
    }
    // The container saw the client's own address (no source translation).
    let peers = srv.lines();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| *p == h.outside_ip),
        "client address not kept: {peers:?}"
    );
    // And from another container of the host (hairpin), 4,000 bytes.
    h.ok(&["container", "create", "cli"]);
    sized_echo(&h, &Ns::c("cli"), &h.uplink_ip, 7301, 4000).unwrap();
    assert_eq!(drop_count(&h, "fragment_without_first"), 0);
}

#[test]
fn dns_like_exchange_with_a_3000_byte_answer() {
    let h = Host::start();
    // A resolver outside, asked by a container (through the masquerade)...
    let mut out_srv = h.spawn_in(
        &Ns::Outside,
        &[python(), "-c", BIG_ANSWER_SERVER, "0.0.0.0", "5353", "3000"],
    );
    out_srv.wait_line("READY", Duration::from_secs(10));
    h.ok(&["container", "create", "c"]);
    let o = run_timeout(
        &mut h.cmd_in(
            &Ns::c("c"),
            &[
                python(),
                "-c",
                SMALL_QUERY_CLIENT,
                &h.outside_ip,
                "5353",
                "3000",
            ],
        ),
        Duration::from_secs(20),
    );
    assert!(
        o.status.success(),
        "3,000-byte answer through the masquerade: {:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    // ...and a resolver in a container, published, asked from outside.
    h.ok(&["container", "create", "dns", "-p", "5354:53/udp"]);
    let mut srv = h.spawn_in(
        &Ns::c("dns"),
        &[python(), "-c", BIG_ANSWER_SERVER, "0.0.0.0", "53", "3000"],
    );
    srv.wait_line("READY", Duration::from_secs(10));
    let o = run_timeout(
        &mut h.cmd_in(
            &Ns::Outside,
            &[
                python(),
                "-c",
                SMALL_QUERY_CLIENT,
                &h.uplink_ip,
                "5354",
                "3000",
            ],
        ),
        Duration::from_secs(20),
    );
    assert!(
        o.status.success(),
        "3,000-byte answer from a published port: {:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
}

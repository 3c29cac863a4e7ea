//! Port publishing, continued: host port reservations, bad specs, the
//! random range running out, restarts, a thousand ports on one container,
//! and ports following connect/disconnect.

use std::time::{Duration, Instant};

use dataplane_tests::{assert_error, ip_bytes, ports_util::*, python, run_timeout, Host, Ns};
use serde_json::Value;

#[test]
fn host_port_reservations() {
    let h = Host::start();
    // A host process holds 7777: it cannot be published.
    let holder = h.tcp_server(&Ns::Host, "0.0.0.0", 7777);
    let before = state(&h);
    let err = h.fail(&["container", "create", "c", "-p", "7777:80"]);
    assert_error(&err, &["7777", "already in use"]);
    assert_eq!(state(&h), before, "a failed publish changed the state");
    // The holder still works (the agent did not steal it).
    assert!(h.tcp_ok(&Ns::Host, "127.0.0.1", 7777));
    assert_eq!(holder.lines().len(), 1);

    // A published port cannot be bound by a host process.
    h.ok(&[
        "container",
        "create",
        "p",
        "-p",
        "7778:80",
        "-p",
        "7779:90/udp",
    ]);
    assert_bind_in_use(&h, "0.0.0.0", 7778, "tcp");
    assert_bind_in_use(&h, &h.uplink_ip, 7778, "tcp");
    assert_bind_in_use(&h, "127.0.0.1", 7778, "tcp");
    assert_bind_in_use(&h, "0.0.0.0", 7779, "udp");
    // Published and held ports do not leak into the other protocol.
    host_bind(&h, "0.0.0.0", 7778, "udp").expect("7778/udp is free");
}

#[test]
fn bad_specs_change_nothing() {
    let h = Host::start();
    h.ok(&["container", "create", "owner", "-p", "8080:80"]);
    h.ok(&["network", "create", "--internal", "intern"]);
    let before = state(&h);
    let cases: &[(&[&str], &[&str])] = &[
        (&["-p", "abc"], &["abc"]),
        (&["-p", "80:"], &["80:"]),
        (&["-p", "0"], &["port"]),
        (&["-p", "80:0"], &["port"]),
        (&["-p", "65536:80"], &["65536"]),
        (&["-p", "80:65536"], &["65536"]),
        (&["-p", "8000-8001:80-82"], &["range"]),
        (&["-p", "8080:81"], &["8080", "already published"]),
        (&["-p", "8080:81/tcp"], &["8080", "already published"]),
        (&["-p", "10.254.254.254:80:80"], &["10.254.254.254"]),
        (&["-p", "80/sctp"], &["sctp"]),
        (&["-p", "1.2.3:80:80"], &["1.2.3"]),
        // A good spec followed by a bad one: nothing is kept.
        (&["-p", "8090:80", "-p", "abc"], &["abc"]),
        (&["-p", "8091:80", "-p", "8080:81"], &["already published"]),
        (&["--expose", "0", "-P"], &["expose"]),
        (
            &["-p", "8092:80", "-p", "8092:81"],
            &["8092", "already published"],
        ),
        (
            &["-p", "8093-8094:80-81", "-p", "8094:82"],
            &["8094", "already published"],
        ),
        // Internal networks reach nothing beyond their network.
        (
            &["--network", "intern", "-p", "8095:80"],
            &["internal network intern"],
        ),
    ];
    for (i, (args, needles)) in cases.iter().enumerate() {
        let name = format!("bad{i}");
        let mut full = vec!["container", "create", name.as_str()];
        full.extend_from_slice(args);
        let err = h.fail(&full);
        assert_error(&err, needles);
        assert_eq!(state(&h), before, "{args:?} changed the state");
    }
    // Nothing stayed reserved.
    host_bind(&h, "0.0.0.0", 8090, "tcp").expect("8090 stayed reserved");
    for p in [8091, 8092, 8093, 8094] {
        host_bind(&h, "0.0.0.0", p, "tcp").unwrap_or_else(|e| panic!("{p} stayed reserved: {e}"));
    }
    assert_bind_in_use(&h, "0.0.0.0", 8080, "tcp");
    // The owner still answers.
    let _srv = h.tcp_server(&Ns::c("owner"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080));
}

#[test]
fn random_port_range_exhausted() {
    let h = Host::start_with(&["--port-range", "41000-41001"]);
    h.ok(&["container", "create", "r1", "-p", "80"]);
    h.ok(&["container", "create", "r2", "-p", "80"]);
    let mut got = vec![
        host_port(&h, "r1", 80, "tcp"),
        host_port(&h, "r2", 80, "tcp"),
    ];
    got.sort_unstable();
    assert_eq!(got, vec![41000, 41001]);
    let before = state(&h);
    let err = h.fail(&["container", "create", "r3", "-p", "80"]);
    assert_error(&err, &["41000-41001"]);
    assert_eq!(state(&h), before);
    // The same range still has room for the other protocol.
    h.ok(&["container", "create", "r4", "-p", "80/udp"]);
    let hp = host_port(&h, "r4", 80, "udp");
    assert!((41000..=41001).contains(&hp), "{hp}");
    let srv = h.tcp_server(&Ns::c("r1"), "0.0.0.0", 80);
    let hp1 = host_port(&h, "r1", 80, "tcp");
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, hp1));
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()]);
}

#[test]
fn published_ports_survive_agent_restart() {
    let mut h = Host::start();
    h.ok(&[
        "container",
        "create",
        "s",
        "-p",
        "8080:80",
        "-p",
        "9090:90/udp",
    ]);
    let tcp = h.tcp_server(&Ns::c("s"), "0.0.0.0", 80);
    let udp = h.udp_server(&Ns::c("s"), "0.0.0.0", 90);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080));
    let mapping = ports_json(&h, "s");
    let dp_ports = state(&h).dp_ports;
    h.stop_agent();
    // The pinned programs keep serving while the agent is down.
    assert!(
        h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "8080/tcp does not answer while the agent is down"
    );
    h.start_agent();
    assert_eq!(ports_json(&h, "s"), mapping);
    assert_eq!(state(&h).dp_ports, dp_ports);
    assert!(
        h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "8080/tcp does not answer after the restart"
    );
    assert!(
        h.udp_ok(&Ns::Outside, &h.uplink_ip, 9090),
        "9090/udp does not answer after the restart"
    );
    assert_eq!(tcp.lines(), vec![h.outside_ip.clone(); 3]);
    assert!(udp.lines().iter().all(|p| *p == h.outside_ip));
    assert_bind_in_use(&h, "0.0.0.0", 8080, "tcp");
    assert_bind_in_use(&h, "0.0.0.0", 9090, "udp");
    // And from the host itself.
    assert!(h.tcp_ok(&Ns::Host, "127.0.0.1", 8080));
    // The re-adopted reservations are released by rm.
    h.ok(&["container", "rm", "s"]);
    assert!(h.map_entries("DP_PORTS").is_empty());
    host_bind(&h, "0.0.0.0", 8080, "tcp").expect("8080/tcp still held after rm");
    host_bind(&h, "0.0.0.0", 9090, "udp").expect("9090/udp still held after rm");
}

/// Listens on every port of argv[1]-argv[2] and answers each connection
/// with the port it arrived on.
const MANY_SERVER: &str = r#"
import resource, selectors, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
sel = selectors.DefaultSelector()
for p in range(int(sys.argv[1]), int(sys.argv[2]) + 1):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p))
    s.listen(64)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, p)
print("READY", flush=True)
while True:
    for key, _ in sel.select():
        try:
            c, _ = key.fileobj.accept()
        except BlockingIOError:
            continue
        c.setblocking(True)
        try:
            c.sendall(b"%d\n" % key.data)
        except OSError:
            pass
        c.close()
"#;

/// Connects to argv[1]:argv[2]..=argv[3] and expects each to answer with
/// (port - argv[4]).
const MANY_CLIENT: &str = r#"
import socket, sys
from concurrent.futures import ThreadPoolExecutor
ip, lo, hi, off = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def one(p):
    err = None
    for _ in range(3):
        try:
            s = socket.create_connection((ip, p), timeout=2)
            s.settimeout(2)
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(64)
                if not d:
                    break
                buf += d
            s.close()
            if buf == b"%d\n" % (p - off):
                return None
            err = "%d answered %r" % (p, buf)
        except Exception as e:
            err = "%d: %r" % (p, e)
    return err
with ThreadPoolExecutor(16) as ex:
    errs = [e for e in ex.map(one, range(lo, hi + 1)) if e]
print(len(errs), errs[:10])
sys.exit(1 if errs else 0)
"#;

#[test]
fn thousand_published_ports() {
    let h = Host::start();
    let t0 = Instant::now();
    h.ok(&[
        "container",
        "create",
        "many",
        "-p",
        "21000-21999:20000-20999",
    ]);
    let publish_time = t0.elapsed();
    assert_eq!(ports_json(&h, "many").len(), 1000);
    assert_eq!(h.map_entries("DP_PORTS").len(), 1000);
    let mut srv = h.spawn_in(
        &Ns::c("many"),
        &[python(), "-c", MANY_SERVER, "20000", "20999"],
    );
    srv.wait_line("READY", Duration::from_secs(20));
    let t1 = Instant::now();
    let o = run_timeout(
        &mut h.cmd_in(
            &Ns::Outside,
            &[
                python(),
                "-c",
                MANY_CLIENT,
                &h.uplink_ip,
                "21000",
                "21999",
                "1000",
            ],
        ),
        Duration::from_mins(2),
    );
    let client_time = t1.elapsed();
    assert!(
        o.status.success(),
        "not every published port answered: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "client: {} in {client_time:?}, publish {publish_time:?}",
        String::from_utf8_lossy(&o.stdout).trim()
    );
    assert!(srv.running(), "the server died");
    assert!(
        publish_time < Duration::from_secs(20),
        "publishing 1000 ports took {publish_time:?}"
    );
    assert!(
        client_time < Duration::from_secs(30),
        "1000 connections took {client_time:?}"
    );
    h.ok(&["container", "rm", "many"]);
    assert!(h.map_entries("DP_PORTS").is_empty());
}

/// Published ports follow the container's first endpoint: after a
/// disconnect they are withdrawn (never left pointing at an address that
/// IPAM may hand out again), after a connect they lead to the new address.
#[test]
fn published_ports_follow_connect_and_disconnect() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.91.0.0/24", "other"]);
    h.ok(&["container", "create", "w", "-p", "8080:80"]);
    let old_ip = h.ip_of("w");
    let target = |h: &Host| -> Vec<Value> {
        h.map_entries("DP_PORTS")
            .into_iter()
            .map(|(_, v)| v["ip"].clone())
            .collect()
    };
    assert_eq!(target(&h), vec![ip_bytes(&old_ip)]);
    h.ok(&["network", "disconnect", "bridge", "w"]);
    assert!(target(&h).is_empty(), "ports still lead to {old_ip}");
    h.ok(&["network", "connect", "other", "w"]);
    let new_ip = h.ip_of("w");
    assert!(new_ip.starts_with("10.91.0."), "{new_ip}");
    assert_eq!(target(&h), vec![ip_bytes(&new_ip)]);
    let _srv = h.tcp_server(&Ns::c("w"), "0.0.0.0", 80);
    assert!(
        h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "published port does not reach the reconnected container"
    );
}

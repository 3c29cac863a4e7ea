//! Helpers of the dual-stack overlay tests (`tests/overlay_ipv6.rs`): dual
//! -stack cluster networks, containers' IPv6 addresses, a TCP server on
//! IPv6 that records its peers, and VXLAN frames with an inner IPv6 packet
//! forged from the underlay (scapy).

use std::time::Duration;

use crate::{multihost::Cluster, python, run, stderr, stdout, Bg, Host, Ns};

/// A TCP echo server on `[::]:PORT` writing each peer's address to FILE.
const TCP6_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(64)
print("READY", flush=True)
def handle(c, a):
    with open(sys.argv[2], "a") as f:
        f.write(a[0] + "\n")
    f = c.makefile("rwb")
    try:
        for line in f:
            f.write(line)
            f.flush()
    except Exception:
        pass
    c.close()
while True:
    c, a = s.accept()
    threading.Thread(target=handle, args=(c, a), daemon=True).start()
"#;

/// A UDP server on `[::]:PORT` writing every datagram's source to FILE.
const UDP6_SINK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
print("READY", flush=True)
while True:
    d, a = s.recvfrom(2048)
    with open(sys.argv[2], "a") as f:
        f.write(a[0] + "\n")
"#;

/// `network create --driver overlay --ipv6 --subnet V4 --subnet V6` on host
/// `i` (with `extra` flags).
pub fn dual_overlay(c: &Cluster, i: usize, name: &str, v4: &str, v6: &str, extra: &[&str]) {
    let mut args = vec![
        "network", "create", "--driver", "overlay", "--ipv6", "--subnet", v4, "--subnet", v6,
    ];
    args.extend_from_slice(extra);
    args.push(name);
    c.h(i).ok(&args);
}

/// The IPv6 address of container `c`'s endpoint on `net`.
pub fn ip6_on(h: &Host, c: &str, net: &str) -> String {
    let ep = h.endpoint(c, net);
    let ip = ep["GlobalIPv6Address"].as_str().unwrap_or_default();
    assert!(!ip.is_empty(), "{c} has no IPv6 address on {net}: {ep}");
    ip.to_string()
}

fn server(h: &Host, ns: &Ns, script: &str, port: u16) -> Bg {
    let file = h.run_dir().join(format!("peers6-{}", h.next()));
    let mut bg = h.spawn_in(
        ns,
        &[
            python(),
            "-c",
            script,
            &port.to_string(),
            &file.display().to_string(),
        ],
    );
    bg.file = Some(file);
    bg.wait_line("READY", Duration::from_secs(10));
    bg
}

/// A TCP echo server on IPv6 in `ns` that records its peers (`Bg::lines`).
pub fn tcp6_server(h: &Host, ns: &Ns, port: u16) -> Bg {
    server(h, ns, TCP6_SERVER, port)
}

/// A UDP sink on IPv6 in `ns` that records the sources it hears from.
pub fn udp6_sink(h: &Host, ns: &Ns, port: u16) -> Bg {
    server(h, ns, UDP6_SINK, port)
}

/// Sends 3 VXLAN frames from the underlay, from underlay address `src` to
/// node `dst` with `vni`, carrying IPv6/UDP from `inner_src` to
/// `inner_dst`:`port`.
pub fn forge6(
    c: &Cluster,
    src: &str,
    dst: &str,
    vni: u64,
    inner_src: &str,
    inner_dst: &str,
    port: u16,
) {
    let script = format!(
        "from scapy.all import *\n\
         p = IP(src='{src}', dst='{dst}')/UDP(sport=40000, dport=4789)/VXLAN(vni={vni}, flags=8)/\
         Ether(src='02:42:00:00:00:01', dst='02:42:00:00:00:02')/IPv6(src='{inner_src}', dst='{inner_dst}')/UDP(sport=5555, dport={port})/Raw(b'forged')\n\
         send(p, count=3, verbose=False)\n"
    );
    let o = run(&mut c.underlay_cmd(&["/usr/bin/python3", "-c", &script]));
    assert!(o.status.success(), "scapy: {}{}", stderr(&o), stdout(&o));
}

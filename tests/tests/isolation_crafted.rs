//! Crafted packets against the isolation promises (issue 18): VLAN-tagged
//! frames from a container and from outside, a container's raw packets to
//! 127.0.0.1 and class E, and direct access through a second host interface.
//! Frames are built with scapy and sent from raw sockets (a container has
//! CAP_NET_RAW); every attack has an untagged/ordinary control that does
//! arrive, so a test cannot pass because nothing is delivered at all.

use std::{process::Output, thread, time::Duration};

use dataplane_tests::{
    python, run_timeout, sh_ok, stdout, wait_until, Bg, Host, Ns, TCP_CLIENT, UDP_CLIENT,
};
use serde_json::{json, Value};

/// Sends the frames of argv[2] (JSON list of [src_mac, dst_mac, tags,
/// src_ip, dst_ip, sport, dport, payload], tags a list of [tpid, vlan id],
/// outermost first) out of interface argv[1] as UDP.
const SEND_TAGGED: &str = r#"
import json, struct, sys
from scapy.all import Ether, IP, UDP, Raw, sendp
for smac, dmac, tags, sip, dip, sport, dport, payload in json.loads(sys.argv[2]):
    inner = bytes(IP(src=sip, dst=dip) / UDP(sport=sport, dport=dport) / payload.encode())
    if tags:
        hdr = bytes(Ether(src=smac, dst=dmac, type=tags[0][0]))
        for i, (tpid, vid) in enumerate(tags):
            nxt = tags[i + 1][0] if i + 1 < len(tags) else 0x0800
            hdr += struct.pack("!HH", vid, nxt)
    else:
        hdr = bytes(Ether(src=smac, dst=dmac, type=0x0800))
    sendp(Raw(hdr + inner), iface=sys.argv[1], verbose=0)
print("SENT", flush=True)
"#;

/// UDP receiver: appends "peer_ip payload" lines to argv[3].
const UDP_RECORDER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
while True:
    d, a = s.recvfrom(65535)
    with open(sys.argv[3], "a") as f:
        f.write("%s %s\n" % (a[0], d.decode(errors="replace")))
"#;

const Q: u16 = 0x8100;
const AD: u16 = 0x88a8;

/// A recorder of UDP datagrams in `ns` on port `port`.
fn recorder(h: &Host, ns: &Ns, port: u16) -> Bg {
    let file = h.dir.join(format!("rec-{}", h.next()));
    let f = file.display().to_string();
    let p = port.to_string();
    let mut b = h.spawn_in(ns, &[python(), "-c", UDP_RECORDER, "0.0.0.0", &p, &f]);
    b.wait_line("READY", Duration::from_secs(10));
    b.file = Some(file);
    b
}

/// Payloads a recorder saw.
fn payloads(b: &Bg) -> Vec<String> {
    b.lines()
        .iter()
        .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string()))
        .collect()
}

fn send(h: &Host, ns: &Ns, iface: &str, frames: &Value) {
    let o = run_timeout(
        &mut h.cmd_in(
            ns,
            &[python(), "-c", SEND_TAGGED, iface, &frames.to_string()],
        ),
        Duration::from_mins(1),
    );
    assert!(
        o.status.success() && stdout(&o).contains("SENT"),
        "scapy failed: {o:?}"
    );
}

/// Wait for every control payload, then check that nothing else arrived.
fn assert_only(b: &Bg, controls: &[&str], what: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || {
            let p = payloads(b);
            controls.iter().all(|c| p.iter().any(|x| x == c))
        }),
        "{what}: the controls {controls:?} did not arrive: {:?}",
        payloads(b)
    );
    thread::sleep(Duration::from_millis(300));
    let mut got = payloads(b);
    got.sort();
    got.dedup();
    let mut want: Vec<String> = controls
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    want.sort();
    assert_eq!(got, want, "{what}: crafted packets were delivered");
}

fn ep_drops(h: &Host, c: &str, net: &str, reason: &str) -> u64 {
    h.endpoint(c, net)["counters"]["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("{c}/{net}: no drop counter {reason}"))
}

fn global(h: &Host, reason: &str) -> u64 {
    h.global_drops()[reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no global drop counter {reason}"))
}

/// (container MAC, host-side MAC, IP) of a container's endpoint on `net`.
fn addrs(h: &Host, c: &str, net: &str) -> (String, String, String) {
    let ep = h.endpoint(c, net);
    let hif = ep["host_interface"].as_str().unwrap().to_string();
    let host_mac = h.link_json(&Ns::Host, &hif)["address"]
        .as_str()
        .unwrap()
        .to_string();
    (
        ep["mac"].as_str().unwrap().to_string(),
        host_mac,
        ep["ip"].as_str().unwrap().to_string(),
    )
}

fn gateway(h: &Host, net: &str) -> String {
    h.inspect_network(net)["gateway"]
        .as_str()
        .unwrap()
        .to_string()
}

fn tag_stacks() -> Vec<(&'static str, Value)> {
    vec![
        ("q0", json!([[Q, 0]])),
        ("q0q0", json!([[Q, 0], [Q, 0]])),
        ("ad0q0", json!([[AD, 0], [Q, 0]])),
    ]
}

#[test]
fn vlan_tagged_frames_from_containers_reach_nobody() {
    let h = Host::start();
    h.ok(&["network", "create", "neta"]);
    h.ok(&["network", "create", "netb"]);
    h.ok(&["network", "create", "--icc=false", "locked"]);
    h.ok(&["network", "create", "--internal", "intnet"]);
    h.ok(&["container", "create", "--network", "neta", "a"]);
    h.ok(&["container", "create", "--network", "neta", "a2"]);
    h.ok(&["container", "create", "--network", "netb", "b"]);
    h.ok(&["container", "create", "--network", "locked", "l1"]);
    h.ok(&["container", "create", "--network", "locked", "l2"]);
    h.ok(&["container", "create", "--network", "intnet", "i1"]);
    let port = 9999;
    let rec_a2 = recorder(&h, &Ns::c("a2"), port);
    let rec_b = recorder(&h, &Ns::c("b"), port);
    let rec_l2 = recorder(&h, &Ns::c("l2"), port);
    let rec_out = recorder(&h, &Ns::Outside, port);
    let rec_host = recorder(&h, &Ns::Host, port);
    let ip_a2 = h.ip_of("a2");
    let ip_b = h.ip_of("b");
    let ip_l2 = h.ip_of("l2");
    let out = h.outside_ip.clone();
    let gw_int = gateway(&h, "intnet");

    let before: Vec<u64> = [("a", "neta"), ("l1", "locked"), ("i1", "intnet")]
        .iter()
        .map(|(c, n)| ep_drops(&h, c, n, "vlan_tagged"))
        .collect();
    // (sender, network, [(destination, recorder payload tag)], control destination)
    let plan = [
        (
            "a",
            "neta",
            vec![ip_b.clone(), out.clone(), ip_a2.clone()],
            ip_a2.clone(),
        ),
        (
            "l1",
            "locked",
            vec![ip_l2.clone(), out.clone()],
            out.clone(),
        ),
        (
            "i1",
            "intnet",
            vec![out.clone(), ip_b.clone()],
            gw_int.clone(),
        ),
    ];
    let mut sent = 0;
    for (c, net, dsts, control) in &plan {
        let (mac, host_mac, ip) = addrs(&h, c, net);
        let mut frames = Vec::new();
        for (name, tags) in tag_stacks() {
            for (i, dst) in dsts.iter().enumerate() {
                let payload = format!("{c}-{name}-{i}");
                frames.push(json!([mac, host_mac, tags, ip, dst, 40000, port, payload]));
            }
        }
        sent += frames.len() as u64;
        // The control last: same sender, untagged, to a destination it may reach.
        frames.push(json!([
            mac,
            host_mac,
            [],
            ip,
            control,
            40001,
            port,
            format!("{c}-control")
        ]));
        send(&h, &Ns::c(c), "eth0", &Value::Array(frames));
    }
    assert_only(&rec_a2, &["a-control"], "a2");
    assert_only(&rec_b, &[], "b (another network)");
    assert_only(&rec_l2, &[], "l2 (icc=false)");
    assert_only(&rec_out, &["l1-control"], "outside");
    assert_only(&rec_host, &["i1-control"], "host");
    // The outside saw the control masqueraded: not even an unmasqueraded
    // address of a container.
    assert_eq!(rec_out.lines(), vec![format!("{} l1-control", h.uplink_ip)]);
    let after: Vec<u64> = [("a", "neta"), ("l1", "locked"), ("i1", "intnet")]
        .iter()
        .map(|(c, n)| ep_drops(&h, c, n, "vlan_tagged"))
        .collect();
    let counted: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    assert_eq!(counted, sent, "vlan_tagged {before:?} -> {after:?}");
    assert!(global(&h, "vlan_tagged") >= sent);
    // Containers' interfaces have no IPv6, so no router solicitation or
    // MLD report is ever dropped as noise.
    assert_eq!(global(&h, "unsupported_ethertype"), 0);
}

#[test]
fn vlan_tagged_frames_from_outside_reach_no_container() {
    let h = Host::start();
    h.ok(&["network", "create", "--internal", "intnet"]);
    h.ok(&["container", "create", "-p", "8081:9999/udp", "pub"]);
    h.ok(&["container", "create", "--network", "intnet", "int"]);
    let port = 9999;
    let rec_pub = recorder(&h, &Ns::c("pub"), port);
    let rec_int = recorder(&h, &Ns::c("int"), port);
    let ip_pub = h.ip_of("pub");
    let ip_int = h.ip_of("int");
    let up_mac = h.link_json(&Ns::Host, &h.uplink)["address"]
        .as_str()
        .unwrap()
        .to_string();
    let out_mac = h.link_json(&Ns::Outside, &h.outside_if)["address"]
        .as_str()
        .unwrap()
        .to_string();
    let before = global(&h, "vlan_tagged");
    let mut frames = Vec::new();
    let mut sent = 0;
    for (name, tags) in tag_stacks() {
        // The unpublished service straight, the internal container, and the
        // published port itself: a tag is never accepted.
        for (dst, dport) in [(&ip_pub, port), (&ip_int, port), (&h.uplink_ip, 8081)] {
            let payload = format!("{name}-{dst}-{dport}");
            frames.push(json!([
                out_mac,
                up_mac,
                tags,
                h.outside_ip,
                dst,
                40000,
                dport,
                payload
            ]));
            sent += 1;
        }
    }
    // Controls: the published port, untagged; and untagged straight to the
    // container (dropped as direct access, as before).
    frames.push(json!([
        out_mac,
        up_mac,
        [],
        h.outside_ip,
        h.uplink_ip,
        40001,
        8081,
        "control"
    ]));
    frames.push(json!([
        out_mac,
        up_mac,
        [],
        h.outside_ip,
        ip_pub,
        40002,
        port,
        "direct"
    ]));
    send(&h, &Ns::Outside, &h.outside_if, &Value::Array(frames));
    assert_only(&rec_pub, &["control"], "published container");
    assert_only(&rec_int, &[], "internal container");
    let after = global(&h, "vlan_tagged");
    assert_eq!(after - before, sent, "vlan_tagged {before} -> {after}");
}

#[test]
fn container_cannot_reach_ports_published_on_loopback_or_class_e() {
    let h = Host::start();
    h.ok(&["network", "create", "--internal", "intnet"]);
    h.ok(&[
        "container",
        "create",
        "-p",
        "127.0.0.1:8080:9999/udp",
        "-p",
        "8090:9999/udp",
        "srv",
    ]);
    h.ok(&["container", "create", "att"]);
    h.ok(&["container", "create", "--network", "intnet", "int"]);
    let port = 9999;
    let rec = recorder(&h, &Ns::c("srv"), port);
    // Class E is routed like unicast: give the outside such an address.
    sh_ok(
        "ip",
        &["-n", &h.out_ns, "addr", "add", "240.0.0.1/32", "dev", "lo"],
    );
    let rec_out = recorder(&h, &Ns::Outside, port);
    let (mac, host_mac, ip) = addrs(&h, "att", "bridge");
    let (imac, ihost_mac, iip) = addrs(&h, "int", "intnet");
    let before = global(&h, "reserved_destination");
    let frames = json!([
        [mac, host_mac, [], ip, "127.0.0.1", 40000, 8080, "lo-8080"],
        [mac, host_mac, [], ip, "127.0.0.1", 40001, 8090, "lo-8090"],
        [mac, host_mac, [], ip, "127.1.2.3", 40002, 8090, "lo2-8090"],
        [mac, host_mac, [], ip, "240.0.0.1", 40003, port, "classe"],
        // Control: the wildcard port through the host's address (hairpin).
        [mac, host_mac, [], ip, h.uplink_ip, 40004, 8090, "hairpin"],
    ]);
    send(&h, &Ns::c("att"), "eth0", &frames);
    let frames = json!([
        [
            imac,
            ihost_mac,
            [],
            iip,
            "240.0.0.1",
            40000,
            port,
            "int-classe"
        ],
        [imac, ihost_mac, [], iip, "127.0.0.1", 40001, 8080, "int-lo"],
    ]);
    send(&h, &Ns::c("int"), "eth0", &frames);
    assert_only(&rec, &["hairpin"], "srv");
    assert_only(&rec_out, &[], "outside (class E)");
    let after = global(&h, "reserved_destination");
    assert_eq!(
        after - before,
        6,
        "reserved_destination {before} -> {after}"
    );
    // The host's own sockets do reach the loopback-published port.
    // (The recorder does not echo: the client fails; check what it saw.)
    let _ = run_timeout(
        &mut h.cmd_in(
            &Ns::Host,
            &[python(), "-c", UDP_CLIENT, "127.0.0.1", "8080", "3"],
        ),
        Duration::from_secs(15),
    );
    assert!(
        wait_until(Duration::from_secs(5), || payloads(&rec)
            .iter()
            .any(|p| p == "hello udp")),
        "the host could not reach 127.0.0.1:8080: {:?}",
        payloads(&rec)
    );
}

/// A second namespace behind a second host interface, removed on drop.
struct Outside2 {
    ns: String,
}

impl Drop for Outside2 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Output {
    run_timeout(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(args),
        Duration::from_secs(20),
    )
}

#[test]
fn second_host_interface_gives_no_direct_access() {
    let h = Host::start();
    h.ok(&["network", "create", "--icc=false", "locked"]);
    h.ok(&["network", "create", "--internal", "intnet"]);
    h.ok(&["container", "create", "c"]);
    h.ok(&["container", "create", "--network", "locked", "l"]);
    h.ok(&["container", "create", "--network", "intnet", "i"]);
    // The second interface appears after the agent started.
    let o2 = Outside2 {
        ns: format!("{}-o2", h.id),
    };
    let n = h.next();
    let (hif, oif) = (format!("s{}y{n}", std::process::id() % 10000), "eth0");
    sh_ok("ip", &["netns", "add", &o2.ns]);
    sh_ok(
        "ip",
        &[
            "-n", &h.host_ns, "link", "add", &hif, "type", "veth", "peer", "name", oif, "netns",
            &o2.ns,
        ],
    );
    sh_ok(
        "ip",
        &[
            "-n",
            &h.host_ns,
            "addr",
            "add",
            "10.251.0.2/24",
            "dev",
            &hif,
        ],
    );
    sh_ok("ip", &["-n", &h.host_ns, "link", "set", &hif, "up"]);
    sh_ok(
        "ip",
        &["-n", &o2.ns, "addr", "add", "10.251.0.1/24", "dev", oif],
    );
    sh_ok("ip", &["-n", &o2.ns, "link", "set", oif, "up"]);
    sh_ok("ip", &["-n", &o2.ns, "link", "set", "lo", "up"]);
    sh_ok(
        "ip",
        &["-n", &o2.ns, "route", "add", "default", "via", "10.251.0.2"],
    );
    // The host forwards (as a host with containers does): without the
    // datapath's check the stack would route these packets to the containers.
    let fwd = format!("net.ipv4.conf.{hif}.forwarding=1");
    h.run_ok(&Ns::Host, &["sysctl", "-qw", "net.ipv4.ip_forward=1", &fwd]);
    // Control: the host itself is reachable through it.
    assert!(
        (0..3).any(
            |_| in_ns(&o2.ns, &["ping", "-n", "-c1", "-W1", "10.251.0.2"])
                .status
                .success()
        ),
        "no path through the second interface"
    );
    let mut servers = Vec::new();
    for c in ["c", "l", "i"] {
        servers.push(h.tcp_server(&Ns::c(c), "0.0.0.0", 8080));
        servers.push(h.udp_server(&Ns::c(c), "0.0.0.0", 8081));
    }
    let reason = "direct_access_from_outside";
    let before = global(&h, reason);
    for (c, net) in [("c", "bridge"), ("l", "locked"), ("i", "intnet")] {
        let ip = h.ip_of(c);
        let b = ep_drops(&h, c, net, reason);
        let tcp = in_ns(&o2.ns, &[python(), "-c", TCP_CLIENT, &ip, "8080", "2"]);
        let udp = in_ns(&o2.ns, &[python(), "-c", UDP_CLIENT, &ip, "8081", "3"]);
        let icmp = in_ns(&o2.ns, &["ping", "-n", "-c1", "-W1", &ip]);
        assert!(
            !tcp.status.success() && !udp.status.success() && !icmp.status.success(),
            "the second interface reached {c} at {ip}: tcp {} udp {} icmp {}",
            tcp.status,
            udp.status,
            icmp.status
        );
        let a = ep_drops(&h, c, net, reason);
        assert!(a >= b + 5, "{reason} on {c}: {b} -> {a}");
    }
    let after = global(&h, reason);
    // Per container at least a SYN, three datagrams and an echo request.
    assert!(after >= before + 15, "{reason}: {before} -> {after}");
    let seen: Vec<String> = servers
        .iter()
        .flat_map(dataplane_tests::Bg::lines)
        .collect();
    assert!(seen.is_empty(), "containers saw {seen:?}");
    // Controls: the host keeps direct access.
    let ip = h.ip_of("c");
    assert!(h.tcp_ok(&Ns::Host, &ip, 8080), "host TCP to {ip}");
    assert!(h.udp_ok(&Ns::Host, &ip, 8081), "host UDP to {ip}");
}

//! Docker fidelity (issue 20): the same CLI inputs give what Docker 20.10
//! gives. A table of inputs (accepted or refused, with the message) through
//! the CLI, and namespace tests for the behavioural differences: the default
//! route follows Docker's rule, `--link` opens nothing on user networks,
//! `enable_ip_masquerade=false`, the default hostname, and host ports of the
//! masquerade range published and reachable from outside.

use dataplane_tests::{Host, Ns};
use serde_json::Value;

/// What a table row expects.
enum Want {
    /// Accepted.
    Ok,
    /// Refused with a message containing this.
    Err(&'static str),
}

/// How Docker 20.10 compares on a row (checked by
/// `validation_matches_a_real_dockerd` where dockerd is installed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Docker {
    /// Docker decides the same at create time.
    Same,
    /// Docker decides otherwise: a kept, documented difference (README
    /// "Differences from Docker").
    Differs,
    /// Docker accepts `create` and refuses at `start`; we refuse at once.
    AtStart,
    /// A flag of ours Docker's CLI does not have (`--icc`, `--mtu`).
    Own,
}

/// The table: each row is a CLI command and what Docker does with it.
/// Rows run in order on one agent; earlier rows make the state later ones use.
const TABLE: &[(&[&str], Want, Docker)] = &[
    // -o / --opt on network create, as Docker users write them.
    (
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "--subnet",
            "10.91.0.0/24",
            "optnet",
        ],
        Want::Ok,
        Docker::Same,
    ),
    (
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.enable_ip_masquerade=maybe",
            "badopt",
        ],
        Want::Err("expected true or false"),
        Docker::Same,
    ),
    (
        &[
            "network",
            "create",
            "--icc=true",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "badopt",
        ],
        Want::Err("disagree"),
        Docker::Own,
    ),
    (
        &["network", "create", "-o", "bridge.name=x", "badopt"],
        Want::Err("unknown network option"),
        Docker::Differs,
    ),
    // Predefined networks: Docker's messages.
    (
        &["network", "create", "host"],
        Want::Err("network with name host already exists"),
        Docker::Same,
    ),
    (
        &["network", "create", "none"],
        Want::Err("network with name none already exists"),
        Docker::Same,
    ),
    (
        &["network", "rm", "bridge"],
        Want::Err("bridge is a pre-defined network and cannot be removed"),
        Docker::Same,
    ),
    (
        &["network", "rm", "host"],
        Want::Err("host is a pre-defined network and cannot be removed"),
        Docker::Same,
    ),
    (&["network", "inspect", "host"], Want::Ok, Docker::Same),
    (
        &["network", "connect", "host", "ab"],
        Want::Err("container cannot be connected to host network"),
        Docker::Same,
    ),
    (&["network", "inspect", "none"], Want::Ok, Docker::Same),
    // Container names: no 64-character cap.
    (
        &["container", "create", "_a"],
        Want::Err("invalid container name"),
        Docker::Same,
    ),
    (&["container", "create", "ab"], Want::Ok, Docker::Same),
    (
        &[
            "container",
            "create",
            "c0123456789012345678901234567890123456789012345678901234567890123456789",
        ],
        Want::Ok,
        Docker::Same,
    ),
    // --ip only on networks with a user-configured subnet.
    (
        &["container", "create", "--ip", "172.17.0.50", "ipdefault"],
        Want::Err("user specified IP address is supported on user defined networks only"),
        Docker::AtStart,
    ),
    (&["network", "create", "auto"], Want::Ok, Docker::Same),
    (
        &[
            "container",
            "create",
            "--network",
            "auto",
            "--ip",
            "172.18.0.50",
            "ipauto",
        ],
        Want::Err("networks with user configured subnets"),
        Docker::AtStart,
    ),
    (
        &[
            "container",
            "create",
            "--network",
            "optnet",
            "--ip",
            "10.91.0.50",
            "ipuser",
        ],
        Want::Ok,
        Docker::Same,
    ),
    // container:NAME conflicts, and joining a joiner.
    (
        &[
            "container",
            "create",
            "--network",
            "container:ab",
            "--hostname",
            "x",
            "j1",
        ],
        Want::Err("conflicting options: hostname and the network mode"),
        Docker::Same,
    ),
    (
        &[
            "container",
            "create",
            "--network",
            "container:ab",
            "--expose",
            "80",
            "j1",
        ],
        Want::Err("conflicting options: port exposing"),
        Docker::Same,
    ),
    (
        &["container", "create", "--network", "container:ab", "j1"],
        Want::Ok,
        Docker::Same,
    ),
    (
        &["container", "create", "--network", "container:j1", "j2"],
        Want::Ok,
        Docker::Same,
    ),
    // -p forms Docker accepts.
    (
        &["container", "create", "-p", ":80", "p1"],
        Want::Ok,
        Docker::Same,
    ),
    (
        &["container", "create", "-p", "0:81", "p2"],
        Want::Ok,
        Docker::Same,
    ),
    (
        &["container", "create", "-p", "8124:80/TCP", "p3"],
        Want::Ok,
        Docker::Same,
    ),
    (
        &["container", "create", "-p", "8125:80/sctp", "p4"],
        Want::Err("publishing SCTP ports is not supported"),
        Docker::Differs,
    ),
    (
        &["container", "create", "-p", "8126:80/icmp", "p4"],
        Want::Err("unknown protocol"),
        Docker::Same,
    ),
    // Host ports of the masquerade range can be published.
    (
        &["container", "create", "-p", "61234:80", "p5"],
        Want::Ok,
        Docker::Same,
    ),
    (
        &["container", "create", "-p", "65535:80/udp", "p6"],
        Want::Ok,
        Docker::Same,
    ),
    // -P with an explicit mapping of an exposed port: published once.
    (
        &[
            "container",
            "create",
            "-P",
            "-p",
            "8120:80",
            "--expose",
            "80",
            "--expose",
            "90",
            "pp",
        ],
        Want::Ok,
        Docker::Same,
    ),
    // --ip-range without --gateway: gateway stays the subnet's first address.
    (
        &[
            "network",
            "create",
            "--subnet",
            "10.92.0.0/24",
            "--ip-range",
            "10.92.0.128/25",
            "ranged",
        ],
        Want::Ok,
        Docker::Same,
    ),
    // Several names at once.
    (
        &["network", "create", "--subnet", "10.93.0.0/24", "r1"],
        Want::Ok,
        Docker::Same,
    ),
    (
        &["network", "create", "--subnet", "10.94.0.0/24", "r2"],
        Want::Ok,
        Docker::Same,
    ),
    (&["network", "rm", "r1", "r2"], Want::Ok, Docker::Same),
    (&["container", "rm", "p1", "p2"], Want::Ok, Docker::Same),
    // Better than Docker (kept): refused at create time.
    (
        &["container", "create", "-p", "80:0", "bad1"],
        Want::Err("must be 1-65535"),
        Docker::Differs,
    ),
    (
        &["network", "create", "--mtu", "20", "bad2"],
        Want::Err("MTU 20 out of range"),
        Docker::Own,
    ),
    (
        &[
            "container",
            "create",
            "--network",
            "host",
            "-p",
            "80",
            "bad3",
        ],
        Want::Err("cannot publish ports with network mode host"),
        Docker::Differs,
    ),
    (
        &["container", "rm", "ab"],
        Want::Err("share its network namespace"),
        Docker::Differs,
    ),
];

fn run_table(h: &Host) {
    for (args, want, _) in TABLE {
        let o = h.cli(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        match want {
            Want::Ok => assert!(o.status.success(), "{args:?} refused: {err}"),
            Want::Err(m) => {
                assert!(!o.status.success(), "{args:?} accepted");
                assert!(err.contains(m), "{args:?}: {err:?} lacks {m:?}");
                assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
            }
        }
    }
}

fn ports(h: &Host, c: &str) -> Vec<(u64, u64, String)> {
    h.inspect_container(c)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["container_port"].as_u64().unwrap(),
                m["host_port"].as_u64().unwrap(),
                m["proto"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn cli_inputs_are_accepted_or_refused_as_docker() {
    let h = Host::start();
    run_table(&h);

    // What the accepted rows made.
    let optnet = h.inspect_network("optnet");
    assert_eq!(optnet["icc"], false);
    assert_eq!(optnet["mtu"], 1400);
    let host = h.inspect_network("host");
    assert_eq!(host["driver"], "host");
    assert!(host["subnet"].is_null());
    assert_eq!(h.inspect_network("none")["driver"], "null");
    let names: Vec<String> = h
        .ls("network")
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    for n in ["bridge", "host", "none"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    for n in ["r1", "r2"] {
        assert!(!names.contains(&n.to_string()), "{n} removed: {names:?}");
    }
    // Random host ports for :80 and 0:80 (p1, p2 removed; check via a new one).
    h.ok(&["container", "create", "-p", ":80", "p7"]);
    assert_ne!(ports(&h, "p7")[0].1, 0);
    assert_eq!(ports(&h, "p3"), vec![(80, 8124, "tcp".into())]);
    assert_eq!(ports(&h, "p5"), vec![(80, 61234, "tcp".into())]);
    // -P: 80 once (the explicit 8120), 90 on a random port.
    let pp = ports(&h, "pp");
    assert_eq!(pp.iter().filter(|p| p.0 == 80).count(), 1, "{pp:?}");
    assert!(pp.contains(&(80, 8120, "tcp".into())), "{pp:?}");
    assert_eq!(pp.len(), 2, "{pp:?}");
    // container port NAME PORT[/PROTO].
    assert_eq!(
        h.ok(&["container", "port", "pp", "80/tcp"]).trim(),
        "0.0.0.0:8120"
    );
    assert!(h
        .fail(&["container", "port", "pp", "80/udp"])
        .contains("no public port '80/udp'"));
    // ls shows exposed ports nothing publishes.
    h.ok(&["container", "create", "--expose", "7000", "ex"]);
    let ls = h.ok(&["container", "ls"]);
    let line = ls.lines().find(|l| l.contains(" ex ")).unwrap();
    assert!(line.contains("7000/tcp"), "{line}");
    // The joiner of a joiner shares the first one's namespace.
    let ab = h.inspect_container("ab");
    assert_eq!(h.inspect_container("j2")["netns"], ab["netns"]);
    // --ip-range without --gateway.
    assert_eq!(h.inspect_network("ranged")["gateway"], "10.92.0.1");
    // host_binding_ipv4: the default host address of -p on that network.
    h.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
        "--subnet",
        "10.90.0.0/24",
        "local",
    ]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "local",
        "-p",
        "8131:80",
        "lb",
    ]);
    assert_eq!(
        h.inspect_container("lb")["ports"][0]["host_ip"],
        "127.0.0.1"
    );
    // disconnect --force is accepted.
    h.ok(&["network", "connect", "optnet", "ex"]);
    h.ok(&["network", "disconnect", "--force", "optnet", "ex"]);
}

#[test]
fn addresses_and_pools_are_reused_as_docker() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.95.0.0/24", "n"]);
    for c in ["a1", "a2", "a3"] {
        h.ok(&["container", "create", "--network", "n", c]);
    }
    assert_eq!(h.ip_of("a2"), "10.95.0.3");
    h.ok(&["container", "rm", "a2"]);
    // The lowest free address comes back.
    h.ok(&["container", "create", "--network", "n", "a4"]);
    assert_eq!(h.ip_of("a4"), "10.95.0.3");
    // Default pools in sequence: a removed pool is not handed out again at once.
    h.ok(&["network", "create", "d1"]);
    h.ok(&["network", "create", "d2"]);
    let s1 = h.inspect_network("d1")["subnet"].clone();
    let s2 = h.inspect_network("d2")["subnet"].clone();
    h.ok(&["network", "rm", "d1"]);
    h.ok(&["network", "create", "d3"]);
    let s3 = h.inspect_network("d3")["subnet"].clone();
    assert_ne!(s3, s1, "d1's pool is not reused at once");
    assert_ne!(s3, s2);
}

#[test]
fn subnet_over_the_hosts_own_addresses_is_refused() {
    let h = Host::start();
    let (a, b, c, _) = {
        let o: Vec<u8> = h.uplink_ip.split('.').map(|x| x.parse().unwrap()).collect();
        (o[0], o[1], o[2], o[3])
    };
    let subnet = format!("{a}.{b}.{c}.0/24");
    let err = h.fail(&["network", "create", "--subnet", &subnet, "clash"]);
    assert!(err.contains("an address or route of this host"), "{err}");
    assert!(h.cli(&["network", "inspect", "clash"]).status.code() == Some(4));
}

fn default_route(h: &Host, c: &str) -> String {
    let o = h.exec(c, &["ip", "-4", "route", "show", "default"]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn default_route_moves_by_dockers_rule() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.96.0.0/24", "u1"]);
    h.ok(&["network", "create", "--subnet", "10.97.0.0/24", "aa"]);
    h.ok(&["container", "create", "--network", "u1", "c"]);
    assert!(default_route(&h, "c").contains("via 10.96.0.1"));
    // aa sorts before u1: it takes the default route.
    h.ok(&["network", "connect", "aa", "c"]);
    let r = default_route(&h, "c");
    assert!(r.contains("via 10.97.0.1"), "{r}");
    assert_eq!(h.endpoint("c", "aa")["gateway"], "10.97.0.1");
    // And back when aa goes.
    h.ok(&["network", "disconnect", "aa", "c"]);
    assert!(default_route(&h, "c").contains("via 10.96.0.1"));
    // The container still gets out through the uplink.
    let _srv = h.tcp_server(&Ns::Outside, &h.outside_ip, 7100);
    assert!(h.tcp_ok(&Ns::c("c"), &h.outside_ip, 7100));
}

#[test]
fn hostname_is_the_short_id() {
    let h = Host::start();
    h.ok(&["container", "create", "c1"]);
    h.ok(&["container", "create", "--hostname", "web", "c2"]);
    let id = h.inspect_container("c1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = String::from_utf8_lossy(&h.exec("c1", &["hostname"]).stdout)
        .trim()
        .to_string();
    assert_eq!(got, id[..12]);
    let got = String::from_utf8_lossy(&h.exec("c2", &["hostname"]).stdout)
        .trim()
        .to_string();
    assert_eq!(got, "web");
}

#[test]
fn link_on_user_network_opens_nothing_with_icc_off() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "--subnet",
        "10.98.0.0/24",
        "lk",
    ]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "lk",
        "--expose",
        "5000",
        "s1",
    ]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "lk",
        "--link",
        "s1:db",
        "s2",
    ]);
    let ip1 = h.ip_of("s1");
    let _srv = h.tcp_server(&Ns::c("s1"), "0.0.0.0", 5000);
    assert!(h.map_entries("DP_LINKS").is_empty());
    assert!(!h.tcp_ok(&Ns::c("s2"), &ip1, 5000), "link opened icc=false");
}

#[test]
fn published_port_in_the_masquerade_range_is_reachable_from_outside() {
    let h = Host::start();
    let info: Value =
        serde_json::from_str(&h.ok(&["info", "--format", "json"])).unwrap_or_default();
    let lo = info["nat_port_range"][0].as_u64().unwrap_or(61000);
    let port = u16::try_from(lo + 7).unwrap();
    let spec = format!("{port}:80");
    h.ok(&["container", "create", "-p", &spec, "web"]);
    let _srv = h.tcp_server(&Ns::c("web"), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, port));
    // Masquerade from another container still works alongside.
    h.ok(&["container", "create", "cl"]);
    let _out = h.tcp_server(&Ns::Outside, &h.outside_ip, 7200);
    for _ in 0..20 {
        assert!(h.tcp_ok(&Ns::c("cl"), &h.outside_ip, 7200));
    }
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, port));
}

#[test]
fn masquerade_off_leaves_the_container_address() {
    let h = Host::start();
    h.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "--subnet",
        "10.99.0.0/24",
        "nomasq",
    ]);
    assert_eq!(h.inspect_network("nomasq")["masquerade"], false);
    h.ok(&["container", "create", "--network", "nomasq", "c"]);
    h.ok(&["container", "create", "m"]);
    let ip = h.ip_of("c");
    let srv = h.udp_server(&Ns::Outside, &h.outside_ip, 7300);
    // One datagram each; the server records the source it saw.
    let send = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('{}', 7300))",
        h.outside_ip
    );
    // The masqueraded one with an echo round trip (retried); then the
    // un-NATed one (last: the outside has no route back to it, and the echo
    // server's reply fails).
    assert!(h.udp_ok(&Ns::c("m"), &h.outside_ip, 7300));
    h.exec_ok("c", &[dataplane_tests::python(), "-c", &send]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = srv.lines();
    assert!(seen.contains(&ip), "un-NATed source {ip} in {seen:?}");
    assert!(seen.contains(&h.uplink_ip), "masqueraded {seen:?}");
}

/// A real dockerd in a network namespace of its own, with its files under a
/// temporary directory; killed and cleaned up on drop.
struct Dockerd {
    /// dockerd itself (nsenter execs it).
    child: Option<std::process::Child>,
    netns: String,
    dir: std::path::PathBuf,
    sock: String,
}

const DOCKERD: &str = "/usr/sbin/dockerd";
const BUSYBOX: &str = "/bin/busybox";

impl Dockerd {
    /// None when dockerd or a static busybox is not installed
    /// (`cargo xtask setup` installs docker.io and busybox-static).
    fn start() -> Option<Dockerd> {
        use std::process::{Command, Stdio};
        if !std::path::Path::new(DOCKERD).exists()
            || !std::path::Path::new(BUSYBOX).exists()
            || Command::new("docker").arg("--version").output().is_err()
        {
            return None;
        }
        let (pid, n) = dataplane_tests::unique();
        let netns = format!("dpdk-{pid}-{n}");
        let dir = std::env::temp_dir().join(&netns);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("docker.sock").display().to_string();
        let mut d = Dockerd {
            child: None,
            netns,
            dir,
            sock,
        };
        dataplane_tests::sh_ok("ip", &["netns", "add", &d.netns]);
        let ns = format!("--net=/run/netns/{}", d.netns);
        let log = std::fs::File::create(d.dir.join("dockerd.log")).unwrap();
        // The default bridge (docker0) lives in this namespace; no firewall.
        let child = Command::new("nsenter")
            .args([ns.as_str(), DOCKERD])
            .arg(format!("--data-root={}", d.dir.join("data").display()))
            .arg(format!("--exec-root={}", d.dir.join("exec").display()))
            .arg(format!("--host=unix://{}", d.sock))
            .arg(format!("--pidfile={}", d.dir.join("pid").display()))
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        d.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        while !d.docker(&["version"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not come up: {}",
                std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        // An image: a static busybox as /bin/sh.
        let img = d.dir.join("img");
        std::fs::create_dir_all(img.join("bin")).unwrap();
        std::fs::copy(BUSYBOX, img.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", img.join("bin/sh")).unwrap();
        let tar = d.dir.join("img.tar").display().to_string();
        dataplane_tests::sh_ok("tar", &["-C", &img.display().to_string(), "-cf", &tar, "."]);
        let o = d.docker(&["import", &tar, "dpbusy"]);
        assert!(
            o.status.success(),
            "docker import: {}",
            dataplane_tests::stderr(&o)
        );
        Some(d)
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        dataplane_tests::run(
            std::process::Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", self.sock))
                .args(args),
        )
    }

    /// Our CLI row as the docker command that means the same.
    fn translate(args: &[&str]) -> Vec<String> {
        match args {
            ["container", "create", flags @ .., name] => {
                let mut v: Vec<String> = vec!["create".into()];
                v.extend(flags.iter().map(ToString::to_string));
                v.extend(["--name".into(), (*name).to_string()]);
                v.extend(["dpbusy".into(), "sh".into()]);
                v
            }
            ["container", "rm", names @ ..] => std::iter::once("rm")
                .chain(names.iter().copied())
                .map(ToString::to_string)
                .collect(),
            _ => args.iter().map(ToString::to_string).collect(),
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on our own child (dockerd), not yet reaped.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            // It ignored SIGTERM for 10 s (a no-op if it exited).
            let _ = c.kill();
            let _ = c.wait();
        }
        // Anything dockerd left mounted under its directories.
        let dir = self.dir.display().to_string();
        if let Ok(m) = std::fs::read_to_string("/proc/self/mounts") {
            let mut under: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|p| p.starts_with(&dir))
                .collect();
            under.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in under {
                let _ = std::process::Command::new("umount")
                    .args(["-l", p])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// The table's rows that Docker decides at create time, against a real
/// dockerd: the same accept or refuse. Skipped where dockerd is missing.
#[test]
fn validation_matches_a_real_dockerd() {
    let Some(d) = Dockerd::start() else {
        eprintln!("skipped: {DOCKERD} or {BUSYBOX} not installed (cargo xtask setup)");
        return;
    };
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (args, want, docker) in TABLE {
        let cmd = Dockerd::translate(args);
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let o = d.docker(&refs);
        if *docker != Docker::Same {
            continue;
        }
        compared += 1;
        let ours_ok = matches!(want, Want::Ok);
        if o.status.success() != ours_ok {
            mismatches.push(format!(
                "{args:?}: ours {}, docker {} ({})",
                if ours_ok { "accepts" } else { "refuses" },
                if o.status.success() {
                    "accepts"
                } else {
                    "refuses"
                },
                dataplane_tests::stderr(&o).trim()
            ));
        }
    }
    assert!(compared > 20, "{compared} rows compared");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

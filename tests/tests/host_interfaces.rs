//! Every host interface with an IPv4 address is served, not only the
//! uplink: a second uplink to a second outside namespace, added while the
//! agent runs, gets masquerade to its own address, published ports on its
//! address, and the same protection against direct access to containers.

use std::{process::Command, time::Duration};

use dataplane_tests::{python, run_timeout, sh_ok, wait_until, Host, Ns, TCP_CLIENT, UDP_CLIENT};

/// A second outside namespace behind a second uplink of the host; removed
/// on drop.
struct SecondUplink {
    ns: String,
    host_ip: String,
    outside_ip: String,
}

impl SecondUplink {
    fn add(h: &Host) -> SecondUplink {
        let ns = format!("{}-o2", h.id);
        let octet: Vec<&str> = h.uplink_ip.split('.').collect();
        let (host_ip, outside_ip) = (
            format!("10.201.{}.2", octet[2]),
            format!("10.201.{}.1", octet[2]),
        );
        let (a, b) = (format!("{}s", h.uplink), format!("{}s", h.outside_if));
        sh_ok("ip", &["netns", "add", &ns]);
        let me = SecondUplink {
            ns,
            host_ip,
            outside_ip,
        };
        sh_ok(
            "ip",
            &[
                "link", "add", &a, "netns", &h.host_ns, "type", "veth", "peer", "name", &b,
                "netns", &me.ns,
            ],
        );
        let hn = &h.host_ns;
        sh_ok("ip", &["-n", &me.ns, "link", "set", "lo", "up"]);
        sh_ok(
            "ip",
            &[
                "-n",
                &me.ns,
                "addr",
                "add",
                &format!("{}/24", me.outside_ip),
                "dev",
                &b,
            ],
        );
        sh_ok("ip", &["-n", &me.ns, "link", "set", &b, "up"]);
        sh_ok(
            "ip",
            &[
                "-n",
                hn,
                "addr",
                "add",
                &format!("{}/24", me.host_ip),
                "dev",
                &a,
            ],
        );
        sh_ok("ip", &["-n", hn, "link", "set", &a, "up"]);
        me
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(args);
        c
    }

    fn tcp_ok(&self, ip: &str, port: u16) -> bool {
        let p = port.to_string();
        run_timeout(
            &mut self.cmd(&[python(), "-c", TCP_CLIENT, ip, &p, "2"]),
            Duration::from_secs(15),
        )
        .status
        .success()
    }
}

impl Drop for SecondUplink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn drops(h: &Host, reason: &str) -> u64 {
    let d = h.global_drops();
    d[reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason} in {d}"))
}

#[test]
fn a_second_uplink_added_later_is_served_like_the_first() {
    let h = Host::start();
    h.ok(&["container", "create", "c"]);
    h.ok(&["container", "create", "web", "-p", "7501:7500"]);
    let _web = h.tcp_server(&Ns::c("web"), "0.0.0.0", 7500);
    let two = SecondUplink::add(&h);

    // Published ports on the new interface's address, once the agent has
    // picked it up (netlink address event, reconciler).
    assert!(
        wait_until(Duration::from_secs(15), || two.tcp_ok(&two.host_ip, 7501)),
        "published port not reachable on the second uplink's address"
    );
    // Still on the first one.
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 7501));

    // Masquerade to the address of the interface the route lookup picks.
    let file = h.dir.join("peers-second");
    let f = file.display().to_string();
    let mut bg = {
        let mut c = two.cmd(&[
            python(),
            "-c",
            dataplane_tests::UDP_SERVER,
            "0.0.0.0",
            "9201",
            &f,
        ]);
        c.stdout(std::process::Stdio::null());
        c.spawn().unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let o = run_timeout(
        &mut h.cmd_in(
            &Ns::c("c"),
            &[python(), "-c", UDP_CLIENT, &two.outside_ip, "9201", "3"],
        ),
        Duration::from_secs(15),
    );
    let _ = bg.kill();
    let _ = bg.wait();
    assert!(o.status.success(), "UDP to the second outside failed");
    let peers = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        !peers.is_empty() && peers.lines().all(|p| p == two.host_ip),
        "not masqueraded to {}: {peers:?}",
        two.host_ip
    );
    let udp = h.udp_server(&Ns::Outside, "0.0.0.0", 9202);
    assert!(h.udp_ok(&Ns::c("c"), &h.outside_ip, 9202));
    assert_eq!(udp.lines(), vec![h.uplink_ip.clone()], "first uplink");

    // Direct access to a container from the second outside namespace is
    // dropped (and counted) like from the first.
    let ip = h.ip_of("web");
    sh_ok(
        "ip",
        &[
            "-n",
            &two.ns,
            "route",
            "add",
            "172.16.0.0/12",
            "via",
            &two.host_ip,
        ],
    );
    let before = drops(&h, "direct_access_from_outside");
    assert!(!two.tcp_ok(&ip, 7500), "direct access to {ip} got through");
    assert!(drops(&h, "direct_access_from_outside") > before);
}

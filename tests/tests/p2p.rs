//! Point-to-point links (`dataplane p2p`): the Docker guide's hand-built
//! point-to-point connection as a command, between two containers and
//! between a container and the host; restart, repair and bad input.

use std::time::Duration;

use dataplane_tests::{assert_error, wait_until, Host, Ns};
use serde_json::Value;

fn p2p_ls(h: &Host) -> Value {
    h.ls("p2p")
}

#[test]
fn two_containers_joined_like_the_docker_guide() {
    let mut h = Host::start();
    // Two containers without any network, as in the guide (--net=none).
    h.ok(&["container", "create", "--network", "none", "a"]);
    h.ok(&["container", "create", "--network", "none", "b"]);
    h.ok(&[
        "p2p",
        "create",
        "--ip",
        "10.1.1.1",
        "--peer-ip",
        "10.1.1.2",
        "a",
        "b",
    ]);
    let routes = h.exec_ok("a", &["ip", "-o", "route"]);
    assert!(routes.contains("10.1.1.2 dev p2p1"), "{routes}");
    assert!(h.ping(&Ns::c("a"), "10.1.1.2"));
    assert!(h.ping(&Ns::c("b"), "10.1.1.1"));
    let _srv = h.tcp_server(&Ns::c("b"), "10.1.1.2", 7000);
    assert!(h.tcp_ok(&Ns::c("a"), "10.1.1.2", 7000));
    let v = h.inspect_container("a");
    assert_eq!(v["p2p"][0]["name"], "a-b", "{v}");
    assert_eq!(v["p2p"][0]["b_ip"], "10.1.1.2", "{v}");

    // Restart: the link is still there and carries traffic.
    h.stop_agent();
    h.start_agent();
    assert_eq!(p2p_ls(&h).as_array().map(Vec::len), Some(1));
    assert!(h.tcp_ok(&Ns::c("a"), "10.1.1.2", 7000));

    // Tampering: deleting one end (which deletes the pair) is repaired.
    h.exec_ok("a", &["ip", "link", "del", "p2p1"]);
    assert!(
        wait_until(Duration::from_secs(5), || h
            .ping_once(&Ns::c("a"), "10.1.1.2")),
        "p2p link not re-made; log:\n{}",
        h.log()
    );
    assert!(h.log().contains("re-making p2p link"), "{}", h.log());

    // An end cannot be removed while linked; after `p2p rm` it can.
    let e = h.fail(&["container", "rm", "a"]);
    assert_error(&e, &["p2p", "a-b"]);
    h.ok(&["p2p", "rm", "a-b"]);
    let links = h.exec_ok("a", &["ip", "-o", "link"]);
    assert!(!links.contains("p2p1"), "{links}");
    h.ok(&["container", "rm", "a"]);
}

#[test]
fn host_and_container_joined_with_default_addresses() {
    let h = Host::start();
    h.ok(&["container", "create", "web"]);
    h.ok(&["p2p", "create", "host", "web"]);
    let l = &p2p_ls(&h)[0];
    assert_eq!(l["name"], "host-web");
    let (host_ip, web_ip) = (l["a_ip"].as_str().unwrap(), l["b_ip"].as_str().unwrap());
    assert_eq!(host_ip, "169.254.200.1");
    assert_eq!(web_ip, "169.254.200.2");
    assert_eq!(l["a_interface"], "dpp1");
    let _srv = h.tcp_server(&Ns::c("web"), web_ip, 7001);
    assert!(h.tcp_ok(&Ns::Host, web_ip, 7001));
    let _hsrv = h.tcp_server(&Ns::Host, host_ip, 7002);
    assert!(h.tcp_ok(&Ns::c("web"), host_ip, 7002));
    // The container's own network still works beside it.
    let ip = h.ip_of("web");
    let _srv2 = h.tcp_server(&Ns::c("web"), &ip, 7003);
    assert!(h.tcp_ok(&Ns::Host, &ip, 7003));
    // A stray host-side end is collected, the link's own is kept.
    h.run_ok(
        &Ns::Host,
        &[
            "ip", "link", "add", "dpp77", "type", "veth", "peer", "name", "dpp77x",
        ],
    );
    assert!(wait_until(Duration::from_secs(5), || {
        !h.run_ok(&Ns::Host, &["ip", "-o", "link"]).contains("dpp77")
    }));
    assert!(h.tcp_ok(&Ns::Host, web_ip, 7001));
    h.ok(&["p2p", "rm", "host-web"]);
    assert!(!h.run_ok(&Ns::Host, &["ip", "-o", "link"]).contains("dpp1"));
}

#[test]
fn bad_p2p_requests_change_nothing() {
    let h = Host::start();
    h.ok(&["container", "create", "a"]);
    h.ok(&["container", "create", "b"]);
    h.ok(&["container", "create", "c"]);
    h.ok(&["container", "create", "--network", "container:a", "s"]);
    h.ok(&[
        "p2p",
        "create",
        "--ip",
        "10.1.1.1",
        "--peer-ip",
        "10.1.1.2",
        "a",
        "b",
    ]);
    let before = (p2p_ls(&h), h.snapshot());
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--ip", "10.1.1.2", "--peer-ip", "10.1.1.3", "a", "c"],
            &["10.1.1.2", "already used", "a-b"],
        ),
        (
            &["--ip", "172.17.0.200", "--peer-ip", "10.1.1.9", "b", "c"],
            &["inside network bridge"],
        ),
        (
            &["--ip", "10.1.1.5", "--peer-ip", "10.1.1.5", "b", "c"],
            &["must differ"],
        ),
        (
            &["--ip", "127.0.0.1", "--peer-ip", "10.1.1.9", "b", "c"],
            &["127.0.0.1", "unicast"],
        ),
        (
            &["--ip", "10.1.1.8", "--peer-ip", &h.uplink_ip, "host", "c"],
            &["address of this host"],
        ),
        (&["a", "a"], &["two different ends"]),
        (&["host", "host"], &["two different ends"]),
        (&["a", "nosuch"], &["nosuch", "not found"]),
        (&["a", "s"], &["container:a"]),
        (&["--name", "a-b", "b", "c"], &["a-b", "already exists"]),
        (&["--name", "bad/name", "b", "c"], &["bad/name"]),
        (
            &["--ip", "nope", "--peer-ip", "10.1.1.9", "b", "c"],
            &["nope"],
        ),
    ];
    for (args, needles) in cases {
        let mut full = vec!["p2p", "create"];
        full.extend_from_slice(args);
        let e = h.fail(&full);
        assert_error(&e, needles);
    }
    let e = h.fail(&["p2p", "rm", "nosuch"]);
    assert_error(&e, &["nosuch", "not found"]);
    assert_eq!(before, (p2p_ls(&h), h.snapshot()));
}

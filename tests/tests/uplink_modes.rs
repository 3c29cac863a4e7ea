//! The uplink modes (`--uplink-mode`) with real packets: in `xdp-generic`
//! (dp_xdp_uplink + dp_from_uplink) and `tcx` (dp_tc_uplink alone, the
//! default on a veth uplink) a published port is reachable from outside with
//! the client's address kept, direct access to a container and a spoofed
//! source are dropped and counted, and an agent restarted in the other mode
//! swaps the uplink's programs (the old mode's links are removed) while the
//! containers keep their ports. The rest of the suite runs in the default
//! mode; `DATAPLANE_TEST_UPLINK_MODE=xdp-generic cargo xtask test` runs all
//! of it in the other. Needs root.

use dataplane_tests::{sh_ok, Host, Ns};

fn drop_count(h: &Host, reason: &str) -> u64 {
    let d = h.global_drops();
    d[reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason} in {d}"))
}

fn programs(mode: &str) -> &'static [&'static str] {
    match mode {
        "tcx" => &["dp_tc_uplink"],
        _ => &["dp_from_uplink", "dp_xdp_uplink"],
    }
}

/// The uplink carries exactly `mode`'s programs: pinned links, and XDP
/// (generic) on the device only in the xdp mode.
fn assert_mode(h: &Host, mode: &str) {
    for p in ["dp_from_uplink", "dp_xdp_uplink", "dp_tc_uplink"] {
        let want = programs(mode).contains(&p);
        // The reconciler removes the other mode's links within a pass.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while h.link_pin(p, &h.uplink).exists() != want && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(
            h.link_pin(p, &h.uplink).exists(),
            want,
            "{mode}: {p}@{} pinned",
            h.uplink
        );
    }
    let link = sh_ok("ip", &["-n", &h.host_ns, "link", "show", "dev", &h.uplink]);
    assert_eq!(
        link.contains("xdpgeneric"),
        mode == "xdp-generic",
        "{mode}: {link}"
    );
}

/// Published port, direct access and a spoofed source, from outside.
fn check_traffic(h: &Host, mode: &str, ctr_ip: &str) {
    let c = Ns::c("web");
    let srv = h.tcp_server(&c, "0.0.0.0", 80);
    assert!(
        h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080),
        "{mode}: outside -> {}:8080 failed",
        h.uplink_ip
    );
    assert_eq!(srv.lines(), vec![h.outside_ip.clone()], "{mode}: TCP peer");

    let direct = drop_count(h, "direct_access_from_outside");
    assert!(
        !h.tcp_ok(&Ns::Outside, ctr_ip, 80),
        "{mode}: direct access to {ctr_ip}:80 got through"
    );
    assert!(
        drop_count(h, "direct_access_from_outside") > direct,
        "{mode}: direct access not counted"
    );

    // The outside claims the containers' gateway as its source.
    let spoofed = drop_count(h, "spoofed_source");
    let dev = &h.outside_if;
    let route = format!("{}/32", h.uplink_ip);
    h.run_ok(
        &Ns::Outside,
        &["ip", "addr", "add", "172.17.0.1/32", "dev", dev],
    );
    h.run_ok(
        &Ns::Outside,
        &[
            "ip",
            "route",
            "add",
            &route,
            "dev",
            dev,
            "src",
            "172.17.0.1",
        ],
    );
    let got_through = h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8080);
    h.run_ok(&Ns::Outside, &["ip", "route", "del", &route]);
    h.run_ok(
        &Ns::Outside,
        &["ip", "addr", "del", "172.17.0.1/32", "dev", dev],
    );
    assert!(!got_through, "{mode}: a spoofed source reached the port");
    assert!(
        drop_count(h, "spoofed_source") > spoofed,
        "{mode}: spoofed source not counted"
    );
    assert_eq!(srv.lines().len(), 1, "{mode}: only the real client came in");
}

#[test]
fn published_ports_and_protection_in_both_uplink_modes_and_across_a_switch() {
    let mut h = Host::start();
    h.ok(&["container", "create", "web", "-p", "8080:80"]);
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["container", "inspect", "web"])).unwrap();
    let ctr_ip = v["endpoints"][0]["ip"].as_str().unwrap().to_string();
    // The outside routes the container subnet to the host (as a neighbour
    // on the LAN could).
    h.run_ok(
        &Ns::Outside,
        &["ip", "route", "add", "172.17.0.0/16", "via", &h.uplink_ip],
    );
    for mode in ["xdp-generic", "tcx", "xdp-generic"] {
        h.stop_agent();
        h.start_agent_with(&["--uplink-mode", mode]);
        assert_mode(&h, mode);
        check_traffic(&h, mode, &ctr_ip);
    }
}

#[test]
fn auto_uplink_mode_is_tcx_on_a_veth() {
    let mut h = Host::start();
    h.stop_agent();
    h.start_agent_with(&["--uplink-mode", "auto"]);
    assert_mode(&h, "tcx");
}

//! The continuous reconciler: tampering with the agent's kernel objects is
//! repaired within seconds, and what a crash leaves behind is collected.

use std::{collections::BTreeSet, path::Path, time::Duration};

use dataplane_tests::*;

/// Repairs must land within this (the reconciler passes every 2 s, and on
/// netlink events at once).
const REPAIR: Duration = Duration::from_secs(5);

/// Two containers on one network that can reach each other.
fn two_containers(h: &Host, subnet: &str) -> (String, String) {
    h.ok(&["network", "create", "--subnet", subnet, "rnet"]);
    h.ok(&["container", "create", "--network", "rnet", "a"]);
    h.ok(&["container", "create", "--network", "rnet", "b"]);
    let (a, b) = (h.ip_of("a"), h.ip_of("b"));
    assert!(h.ping(&Ns::c("a"), &b), "a cannot reach b before tampering");
    (a, b)
}

fn host_interface(h: &Host, container: &str) -> String {
    h.endpoint(container, "rnet")["host_interface"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Packets the datapath counted from `container` (its program ran).
fn datapath_tx(h: &Host, container: &str) -> u64 {
    h.endpoint(container, "rnet")["counters"]["tx_packets"]
        .as_u64()
        .unwrap_or(0)
}

/// Whether a ping from `a` to `b` works and went through a's program
/// (without it, the host's stack would route the ping all the same).
fn ping_through_datapath(h: &Host, b: &str) -> bool {
    let before = datapath_tx(h, "a");
    h.ping_once(&Ns::c("a"), b) && datapath_tx(h, "a") > before
}

fn endpoint_ips(h: &Host) -> BTreeSet<String> {
    h.map_entries("DP_ENDPOINTS")
        .iter()
        .map(|(k, _)| k["ip"].to_string())
        .collect()
}

/// `ok` holds within [`REPAIR`], and the agent logged `repairing: <step>`.
fn assert_repaired(h: &Host, step: &str, mut ok: impl FnMut() -> bool) {
    assert!(
        wait_until(REPAIR, &mut ok),
        "{step:?} was not repaired within {REPAIR:?}; log:\n{}",
        h.log()
    );
    assert!(
        wait_until(REPAIR, || h.log().contains(&format!("repairing: {step}"))),
        "no `repairing: {step}` logged:\n{}",
        h.log()
    );
}

#[test]
fn deleted_endpoint_map_entry_is_restored() {
    let h = Host::start();
    let (_, b) = two_containers(&h, "10.91.0.0/24");
    let before = endpoint_ips(&h);
    let key: Vec<String> = b
        .parse::<std::net::Ipv4Addr>()
        .unwrap()
        .octets()
        .iter()
        .map(u8::to_string)
        .collect();
    let map = h.map_path("DP_ENDPOINTS").display().to_string();
    let mut args = vec!["map", "delete", "pinned", map.as_str(), "key"];
    args.extend(key.iter().map(String::as_str));
    sh_ok("bpftool", &args);
    assert_repaired(&h, &format!("write endpoint {b} to DP_ENDPOINTS"), || {
        endpoint_ips(&h) == before
    });
    assert!(h.ping(&Ns::c("a"), &b));
}

#[test]
fn removed_link_pin_is_attached_again() {
    let h = Host::start();
    let (_, b) = two_containers(&h, "10.92.0.0/24");
    let ifname = host_interface(&h, "a");
    let pin = h.link_pin("dp_from_container", &ifname);
    assert!(pin.exists());
    // The pin is the link's only reference: removing it detaches the program.
    std::fs::remove_file(&pin).unwrap();
    assert_repaired(&h, &format!("attach dp_from_container to {ifname}"), || {
        pin.exists() && ping_through_datapath(&h, &b)
    });
}

#[test]
fn detached_link_is_attached_again() {
    let h = Host::start();
    let (_, b) = two_containers(&h, "10.93.0.0/24");
    let ifname = host_interface(&h, "a");
    let pin = h.link_pin("dp_from_container", &ifname);
    let p = pin.display().to_string();
    sh_ok("bpftool", &["link", "detach", "pinned", &p]);
    assert_repaired(&h, &format!("attach dp_from_container to {ifname}"), || {
        ping_through_datapath(&h, &b)
    });
    assert!(pin.exists());
}

#[test]
fn deleted_host_veth_is_recreated() {
    let h = Host::start();
    let (a, b) = two_containers(&h, "10.94.0.0/24");
    let ifname = host_interface(&h, "a");
    h.run_ok(&Ns::Host, &["ip", "link", "del", &ifname]);
    assert_repaired(&h, &format!("recreate endpoint {ifname} of a"), || {
        h.ping_once(&Ns::c("a"), &b)
    });
    // Same interface name, address and MAC as before.
    assert_eq!(host_interface(&h, "a"), ifname);
    assert_eq!(h.ip_of("a"), a);
    assert!(h.ping(&Ns::c("b"), &a));
}

#[test]
fn removed_container_route_is_restored() {
    let h = Host::start();
    let (a, _) = two_containers(&h, "10.95.0.0/24");
    assert!(h.ping(&Ns::Host, &a));
    h.run_ok(&Ns::Host, &["ip", "route", "del", &format!("{a}/32")]);
    assert_repaired(&h, &format!("restore the host route to {a}"), || {
        h.ping_once(&Ns::Host, &a)
    });
    let routes = h.run_ok(
        &Ns::Host,
        &["ip", "-o", "route", "show", &format!("{a}/32")],
    );
    assert!(routes.contains(&host_interface(&h, "a")), "{routes}");
}

/// Names under `<run-dir>/netns/`.
fn netns_files(h: &Host) -> BTreeSet<String> {
    std::fs::read_dir(h.run_dir().join("netns"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn dp_veths(h: &Host) -> BTreeSet<String> {
    h.run_ok(&Ns::Host, &["ip", "-o", "link", "show", "type", "veth"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| dataplane_agent::engine::is_endpoint_ifname(n))
        .collect()
}

#[test]
fn stray_namespace_mounts_and_veths_are_collected_foreign_ones_kept() {
    let h = Host::start();
    two_containers(&h, "10.96.0.0/24");
    let stray = h.run_dir().join("netns").join("stray");
    let s = stray.display().to_string();
    // The agent may collect the empty file before `unshare` mounts on it
    // (that is the point of the test): try again until the mount is made.
    let mounted = (0..10).any(|_| {
        std::fs::write(&stray, b"").unwrap();
        std::process::Command::new("unshare")
            .args([&format!("--net={s}"), "true"])
            .status()
            .is_ok_and(|st| st.success())
    });
    assert!(mounted, "could not mount a stray namespace at {s}");
    // A veth with the agent's naming, and a foreign one.
    let n = h.next();
    let mine = format!("dp{:08x}", 0xdead_0000u32 + n);
    let foreign = format!("fx{n}");
    h.run_ok(
        &Ns::Host,
        &[
            "ip", "link", "add", &mine, "type", "veth", "peer", "name", &foreign,
        ],
    );
    let other = format!("fy{n}");
    let other_peer = format!("fz{n}");
    h.run_ok(
        &Ns::Host,
        &[
            "ip",
            "link",
            "add",
            &other,
            "type",
            "veth",
            "peer",
            "name",
            &other_peer,
        ],
    );
    assert_repaired(&h, "remove stray namespace mount stray", || {
        !Path::new(&stray).exists()
    });
    assert_repaired(&h, &format!("remove orphaned veth {mine}"), || {
        !dp_veths(&h).contains(&mine)
    });
    assert_eq!(
        netns_files(&h),
        ["a", "b"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect()
    );
    // Interfaces that are not the agent's stay.
    h.run_ok(&Ns::Host, &["ip", "link", "show", &other]);
    assert!(h.ping(&Ns::c("a"), &h.ip_of("b")));
}

#[test]
fn crash_during_creates_leaves_nothing_behind() {
    let mut h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.97.0.0/24", "crash"]);
    // SIGKILL at different points of concurrent creates, five times.
    for round in 0..5u64 {
        let mut creates: Vec<_> = (0..6)
            .map(|i| {
                h.cli_cmd(&[
                    "container",
                    "create",
                    "--network",
                    "crash",
                    &format!("k{round}x{i}"),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(40 + 50 * round));
        h.kill_agent();
        for c in &mut creates {
            let _ = c.wait();
        }
        h.start_agent();
        let names: BTreeSet<String> = h
            .ls("container")
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        // Every namespace mount and veth left is a container's.
        assert!(
            wait_until(REPAIR, || netns_files(&h) == names),
            "round {round}: netns {:?} vs containers {names:?}",
            netns_files(&h)
        );
        let owned: BTreeSet<String> = names.iter().map(|n| host_interface_any(&h, n)).collect();
        assert!(
            wait_until(REPAIR, || dp_veths(&h) == owned),
            "round {round}: veths {:?} vs endpoints {owned:?}",
            dp_veths(&h)
        );
        for n in &names {
            assert!(
                h.ping(&Ns::c(n), "10.97.0.1"),
                "{n} cannot reach its gateway"
            );
        }
    }
    let log = h.log();
    eprintln!(
        "leftovers collected at restarts: {} namespace mounts, {} veths",
        log.matches("remove stray namespace mount").count(),
        log.matches("remove orphaned veth").count()
    );
}

fn host_interface_any(h: &Host, container: &str) -> String {
    h.endpoint(container, "crash")["host_interface"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn steady_state_needs_no_repairs() {
    let h = Host::start();
    let (_, b) = two_containers(&h, "10.98.0.0/24");
    h.ok(&[
        "container",
        "create",
        "--network",
        "rnet",
        "-p",
        "8080:80",
        "p",
    ]);
    // Several timer passes.
    std::thread::sleep(super_interval() * 3);
    assert!(
        !h.log().contains("repairing"),
        "a pass found work in a steady state:\n{}",
        h.log()
    );
    assert!(h.ping(&Ns::c("a"), &b));
}

fn super_interval() -> Duration {
    dataplane_agent::reconcile::INTERVAL
}

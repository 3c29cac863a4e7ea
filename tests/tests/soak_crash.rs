//! Crash consistency: the agent is SIGKILLed at random points while
//! creates, removes, connects, disconnects and publishes run against it;
//! after each restart the state, the kernel (namespace mounts, veths, host
//! routes, pinned links), the maps and the held host ports must agree, and
//! `agent --cleanup` leaves nothing at the end.

mod soak_support;

use std::{
    collections::BTreeSet,
    process::{Child, Stdio},
    time::Duration,
};

use dataplane_tests::*;
use serde_json::Value;
use soak_support::{count, Figures, Rng};

/// How long the reconciler may take to converge after a restart.
const CONVERGE: Duration = Duration::from_secs(8);
const NET_A: &str = "ka";
const NET_B: &str = "kb";
/// Host ports the loops publish (the host namespace is the test's own).
const PORTS: std::ops::Range<u16> = 21000..21012;

/// One operation of the loops, as CLI arguments.
fn random_op(rng: &mut Rng, h: &Host, names: &[String]) -> Vec<String> {
    let pick = |rng: &mut Rng| names[rng.index(names.len())].clone();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    match rng.below(6) {
        0 | 1 => {
            let name = format!("c{}", h.next());
            let mut a = s(&["container", "create", "--network", NET_A]);
            if rng.chance(50) {
                let port = PORTS.start
                    + u16::try_from(rng.below(u64::from(PORTS.end - PORTS.start))).unwrap();
                a.extend(["-p".into(), format!("{port}:80")]);
            }
            a.push(name);
            a
        }
        2 if !names.is_empty() => s(&["container", "rm", &pick(rng)]),
        3 if !names.is_empty() => s(&["network", "connect", NET_B, &pick(rng)]),
        4 if !names.is_empty() => s(&["network", "disconnect", NET_B, &pick(rng)]),
        _ => {
            let name = format!("p{}", h.next());
            s(&[
                "container",
                "create",
                "--network",
                NET_A,
                "-P",
                "--expose",
                "81",
                &name,
            ])
        }
    }
}

fn names(h: &Host) -> Vec<String> {
    h.ls("container")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn host_veths(h: &Host) -> BTreeSet<String> {
    h.run_ok(&Ns::Host, &["ip", "-o", "link", "show", "type", "veth"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| dataplane_agent::engine::is_endpoint_ifname(n))
        .collect()
}

fn dir_names(p: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a host port can be bound in the host namespace (nobody holds it).
fn port_free(h: &Host, port: u16) -> bool {
    let code = format!(
        "import socket\ns=socket.socket()\ntry:\n s.bind(('0.0.0.0',{port}))\nexcept OSError:\n raise SystemExit(1)"
    );
    h.run_in(&Ns::Host, &[python(), "-c", &code])
        .status
        .success()
}

/// Every disagreement between the state and the kernel, maps and ports.
fn disagreements(h: &Host) -> Vec<String> {
    let mut out = Vec::new();
    let cs = h.ls("container");
    let cs = cs.as_array().unwrap();
    let want_netns: BTreeSet<String> = cs
        .iter()
        .map(|c| c["name"].as_str().unwrap().into())
        .collect();
    let mut want_veths = BTreeSet::new();
    let mut want_ips = Vec::new();
    let mut want_ports = BTreeSet::new();
    for c in cs {
        for e in c["endpoints"].as_array().unwrap() {
            want_veths.insert(e["host_interface"].as_str().unwrap().to_string());
            want_ips.push(e["ip"].as_str().unwrap().to_string());
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            want_ports.insert(u16::try_from(p["host_port"].as_u64().unwrap()).unwrap());
        }
    }
    let netns = dir_names(&h.run_dir().join("netns"));
    if netns != want_netns {
        out.push(format!(
            "netns mounts {netns:?} vs containers {want_netns:?}"
        ));
    }
    let veths = host_veths(h);
    if veths != want_veths {
        out.push(format!("veths {veths:?} vs endpoints {want_veths:?}"));
    }
    let uniq: BTreeSet<&String> = want_ips.iter().collect();
    if uniq.len() != want_ips.len() {
        out.push(format!("an address is given twice: {want_ips:?}"));
    }
    let map_ips: BTreeSet<String> = h
        .map_entries("DP_ENDPOINTS")
        .iter()
        .map(|(k, _)| k["ip"].to_string())
        .collect();
    let want_map: BTreeSet<String> = want_ips.iter().map(|ip| ip_bytes(ip).to_string()).collect();
    if map_ips != want_map {
        out.push(format!(
            "DP_ENDPOINTS {map_ips:?} vs endpoints {want_map:?}"
        ));
    }
    let map_ports: BTreeSet<u16> = h
        .map_entries("DP_PORTS")
        .iter()
        .filter_map(|(k, _)| k["port"].as_u64())
        .map(|p| u16::try_from(p).unwrap())
        .collect();
    if map_ports != want_ports {
        out.push(format!("DP_PORTS {map_ports:?} vs mappings {want_ports:?}"));
    }
    for port in PORTS {
        let free = port_free(h, port);
        if free == want_ports.contains(&port) {
            out.push(format!(
                "host port {port}: {} but {}",
                if free { "free" } else { "held" },
                if free {
                    "mapped"
                } else {
                    "no container maps it"
                }
            ));
        }
    }
    // Pinned links of endpoints: only for the endpoints' veths.
    for pin in dir_names(&h.bpffs.join("links")) {
        if let Some((_, ifname)) = pin.split_once('@') {
            if dataplane_agent::engine::is_endpoint_ifname(ifname) && !want_veths.contains(ifname) {
                out.push(format!("pinned link {pin} of no endpoint"));
            }
        }
    }
    for v in &want_veths {
        for (prog, _) in dataplane_agent::endpoint_progs::links(v) {
            if !h.link_pin(&prog, v).exists() {
                out.push(format!("no pinned link {prog}@{v}"));
            }
        }
    }
    out
}

fn spawn_op(h: &Host, args: &[String]) -> Child {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    h.cli_cmd(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkills_during_changes_leave_state_kernel_maps_and_ports_in_agreement() {
    let kills = count(6, 1000);
    let mut rng = Rng::stream("crash");
    let mut fig = Figures::new("crash_consistency");
    let mut h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.71.0.0/22", NET_A]);
    h.ok(&["network", "create", "--subnet", "10.72.0.0/22", NET_B]);
    let mut failures = Vec::new();
    for round in 0..kills {
        let current = names(&h);
        // Keep the population bounded: remove some when it grows.
        let n_ops = 2 + rng.index(5);
        let mut children: Vec<Child> = (0..n_ops)
            .map(|_| {
                let op = if current.len() > 12 && rng.chance(60) {
                    vec![
                        "container".into(),
                        "rm".into(),
                        current[rng.index(current.len())].clone(),
                    ]
                } else {
                    random_op(&mut rng, &h, &current)
                };
                spawn_op(&h, &op)
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        h.kill_agent();
        let mut ok = 0;
        for c in &mut children {
            if c.wait().is_ok_and(|s| s.success()) {
                ok += 1;
            }
        }
        fig.add("operations", n_ops as u64);
        fig.add("operations_completed_before_kill", ok);
        fig.add("sigkills", 1);
        h.start_agent();
        let mut last = Vec::new();
        let agreed = wait_until(CONVERGE, || {
            last = disagreements(&h);
            last.is_empty()
        });
        if !agreed {
            failures.push(format!("round {round}: {last:?}"));
            fig.add("rounds_in_disagreement", 1);
            // Measure the rest anyway; give the next round a clean start.
        }
    }
    // Every container still works.
    for n in names(&h) {
        if !h.ping_once(&Ns::c(&n), "10.71.0.1") {
            failures.push(format!("{n} cannot reach its gateway"));
            fig.add("broken_containers", 1);
        }
    }
    let log = h.log();
    fig.add("containers_at_end", names(&h).len() as u64);
    fig.add(
        "stray_namespace_mounts_collected",
        log.matches("remove stray namespace mount").count() as u64,
    );
    fig.add(
        "orphaned_veths_collected",
        log.matches("remove orphaned veth").count() as u64,
    );
    fig.add("repairs_logged", log.matches("reconcile: ").count() as u64);
    // --cleanup leaves nothing.
    h.stop_agent();
    let o = run(std::process::Command::new(dataplane_bin())
        .args(["agent", "--cleanup", "--netns", &h.netns_path()])
        .arg("--state-dir")
        .arg(h.state_dir())
        .arg("--run-dir")
        .arg(h.run_dir())
        .arg("--bpffs")
        .arg(&h.bpffs)
        .arg("--socket")
        .arg(&h.socket));
    assert!(o.status.success(), "cleanup failed: {}", stderr(&o));
    let mut left = Vec::new();
    left.extend(
        dir_names(&h.run_dir().join("netns"))
            .into_iter()
            .map(|n| format!("netns {n}")),
    );
    left.extend(host_veths(&h).into_iter().map(|n| format!("veth {n}")));
    left.extend(
        dir_names(&h.bpffs.join("links"))
            .into_iter()
            .map(|n| format!("link {n}")),
    );
    left.extend(
        dir_names(&h.bpffs.join("maps"))
            .into_iter()
            .map(|n| format!("map {n}")),
    );
    if h.run_in(&Ns::Host, &["ip", "link", "show", "dp0"])
        .status
        .success()
    {
        left.push("dp0".into());
    }
    left.extend(
        PORTS
            .filter(|p| !port_free(&h, *p))
            .map(|p| format!("port {p}")),
    );
    fig.set("leaked_after_cleanup", left.len() as u64);
    fig.set("disagreements", failures.len() as u64);
    fig.write();
    assert!(
        failures.is_empty(),
        "state and kernel disagree:\n{}",
        failures.join("\n")
    );
    assert!(left.is_empty(), "left after --cleanup: {left:?}");
    let _ = Value::Null;
}

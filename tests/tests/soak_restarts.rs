//! Restarts under load: the agent is restarted again and again, SIGTERM and
//! SIGKILL alternating, while live TCP connections of four kinds
//! (container to container, masqueraded to outside, published port from
//! outside, hairpin through a published port) exchange lines, and a prober
//! on a forbidden path (another network) keeps trying. Figures: resets,
//! failed exchanges, isolation leaks; all must be 0.

mod soak_support;

use std::time::Duration;

use dataplane_tests::*;
use serde_json::Value;
use soak_support::{count, Figures, MULTI_CLIENT};

/// Try argv[1]:argv[2] every 200 ms until argv[3] exists; count successes.
const PROBER: &str = r#"
import json, os, socket, sys, time
res = {"attempts": 0, "answered": 0}
print("STARTED", flush=True)
while not os.path.exists(sys.argv[3]):
    res["attempts"] += 1
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5)
        res["answered"] += 1
        s.close()
    except Exception:
        pass
    time.sleep(0.2)
with open(sys.argv[4], "w") as f:
    json.dump(res, f)
"#;

#[test]
fn restarts_under_load_lose_no_connection_and_leak_nothing() {
    let restarts = count(4, 100);
    let per_kind = count(4, 50);
    let mut fig = Figures::new("restarts_under_load");
    let mut h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.77.0.0/24", "load"]);
    h.ok(&["network", "create", "--subnet", "10.78.0.0/24", "fenced"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "load",
        "-p",
        "8080:7000",
        "s",
    ]);
    h.ok(&["container", "create", "--network", "load", "a"]);
    h.ok(&["container", "create", "--network", "fenced", "iso"]);
    let s_ip = h.ip_of("s");
    let _srv = h.tcp_server(&Ns::c("s"), "0.0.0.0", 7000);
    let _out_srv = h.tcp_server(&Ns::Outside, "0.0.0.0", 7001);
    let stop = h.dir.join("stop").display().to_string();
    let kinds = [
        ("c2c", Ns::c("a"), s_ip.clone(), 7000u16),
        ("masquerade", Ns::c("a"), h.outside_ip.clone(), 7001),
        ("published", Ns::Outside, h.uplink_ip.clone(), 8080),
        ("hairpin", Ns::c("a"), h.uplink_ip.clone(), 8080),
    ];
    let k = per_kind.to_string();
    let mut clients = Vec::new();
    for (kind, ns, ip, port) in &kinds {
        let report = h.dir.join(format!("{kind}.json")).display().to_string();
        let p = port.to_string();
        let mut bg = h.spawn_in(
            ns,
            &[python(), "-c", MULTI_CLIENT, ip, &p, &k, &stop, &report],
        );
        bg.wait_line("STARTED", Duration::from_mins(1));
        clients.push((*kind, bg, report));
    }
    let probe_report = h.dir.join("probe.json").display().to_string();
    let mut prober = h.spawn_in(
        &Ns::c("iso"),
        &[python(), "-c", PROBER, &s_ip, "7000", &stop, &probe_report],
    );
    prober.wait_line("STARTED", Duration::from_secs(10));
    for r in 0..restarts {
        if r % 2 == 0 {
            h.stop_agent();
        } else {
            h.kill_agent();
        }
        std::thread::sleep(Duration::from_millis(200));
        h.start_agent();
        // Traffic under the new agent for a moment (the scenario, not a wait).
        std::thread::sleep(Duration::from_millis(300));
        fig.add("restarts", 1);
    }
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&stop, b"").unwrap();
    let mut failures = Vec::new();
    for (kind, mut bg, report) in clients {
        assert!(
            bg.wait(Duration::from_secs(30)).is_some(),
            "{kind} client did not end"
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap())
            .unwrap_or_else(|e| panic!("{kind}: no report ({e}): {}", bg.take_stderr()));
        let n = |f: &str| v[f].as_u64().unwrap_or(0);
        fig.add("connections", n("connected"));
        fig.add("exchanges", n("exchanges"));
        fig.add("failed_exchanges", n("failed"));
        fig.add("resets", n("resets"));
        fig.set(&format!("{kind}_connections"), n("connected"));
        fig.set(&format!("{kind}_exchanges"), n("exchanges"));
        if n("connected") != per_kind || n("failed") + n("resets") > 0 {
            failures.push(format!("{kind}: {v}"));
        }
    }
    assert!(prober.wait(Duration::from_secs(10)).is_some());
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&probe_report).unwrap()).unwrap();
    fig.set("prober_attempts", p["attempts"].as_u64().unwrap_or(0));
    fig.set("isolation_leaks", p["answered"].as_u64().unwrap_or(0));
    fig.set("sigterm_sigkill_alternating", true);
    fig.write();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(fig.get("isolation_leaks"), 0, "the prober got through: {p}");
    assert!(fig.get("prober_attempts") > 0);
}

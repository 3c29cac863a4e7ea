//! `cargo xtask bench --smoke` end to end: the harness builds the three
//! topologies, checks they forward, measures every metric once with tiny
//! durations and writes a complete report. The figures are not asserted,
//! only that every section exists and every figure is a positive number.
//! Takes about 45 s (plus building dp-loadgen and dp-flood the first time).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dataplane_tests::{dataplane_bin, run_timeout, stderr, stdout};
use serde_json::Value;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SECTIONS: &[&str] = &[
    "## Environment",
    "## Rule set (iptables mode)",
    "## TCP throughput",
    "## CPU cost of throughput",
    "## Request/response latency",
    "## New-connection rate",
    "## Published ports: new-connection rate",
    "## Published ports: first-response latency",
    "## Time to program published ports",
    "## Cost of isolation",
    "## Early drop",
    "## Per-packet cost",
    "### Under load (BPF statistics)",
    "### Overhead of the statistics",
    "### Without traffic (BPF_PROG_TEST_RUN)",
    "### Helper calls in the loaded programs",
    "### Map lookups and helper calls per path",
    "## Plots",
    "## Targets",
    "## Real Docker",
];

/// Metrics that must have a figure for each of these modes.
const REQUIRED: &[(&str, &[&str])] = &[
    ("tput_1", &["ceiling", "iptables", "dataplane"]),
    ("tput_4", &["ceiling", "iptables", "dataplane"]),
    ("rr_p50", &["ceiling", "iptables", "dataplane"]),
    ("rr_p99", &["ceiling", "iptables", "dataplane"]),
    ("crr_rate", &["ceiling", "iptables", "dataplane"]),
    ("ports_crr_rate", &["ceiling", "iptables", "dataplane"]),
    ("ports_first_p50", &["ceiling", "iptables", "dataplane"]),
    ("program_ms", &["iptables", "dataplane"]),
    ("iso_tput_1", &["iptables", "dataplane"]),
    ("iso_rr_p50", &["iptables", "dataplane"]),
    ("flood_sent_pps", &["iptables", "dataplane"]),
    ("flood_drop_pps", &["iptables", "dataplane"]),
    ("flood_ns_pkt", &["iptables", "dataplane"]),
];

#[test]
fn bench_smoke_writes_a_complete_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = TempDir(std::env::temp_dir().join(format!("bench-smoke-{}", std::process::id())));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(&root)
        .args([
            "run", "--quiet", "-p", "xtask", "--", "bench", "--smoke", "--out",
        ])
        .arg(&out.0);
    // Benchmark the same agent binary the other tests use.
    if dataplane_bin().is_file() {
        c.env("DATAPLANE_BIN", dataplane_bin());
    }
    let start = Instant::now();
    // Generous: on a cold target the first run also builds the bench's
    // release helpers (dp-loadgen, dp-flood, dp-ebpf-object, dp-dns-load).
    let o = run_timeout(&mut c, Duration::from_mins(15));
    eprintln!("bench --smoke took {:.1?}", start.elapsed());
    assert!(
        o.status.success(),
        "bench --smoke failed ({}):\n{}\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );

    let md = std::fs::read_to_string(out.0.join("report.md")).expect("report.md");
    for s in SECTIONS {
        assert!(
            md.lines().any(|l| l.trim() == *s),
            "report.md lacks section {s:?}:\n{md}"
        );
    }
    for tool in ["uname -r", "iperf3", "sockperf", "dataplane", "CPUs"] {
        assert!(md.contains(tool), "report.md does not name {tool}");
    }
    assert!(md.contains("-j DNAT --to-destination"), "no rule set shown");
    assert!(md.contains("DOCKER-ISOLATION-STAGE-1"));
    for svg in ["ports_rate.svg", "ports_latency.svg", "program_time.svg"] {
        let s = std::fs::read_to_string(out.0.join(svg)).expect(svg);
        assert!(s.starts_with("<svg") && s.contains("<polyline"), "{svg}");
    }

    // Tracing off vs on: both measured, and the monitor saw events.
    let mon: Value = serde_json::from_str(
        &std::fs::read_to_string(out.0.join("monitor.json")).expect("monitor.json"),
    )
    .expect("monitor.json is JSON");
    assert!(
        mon["events"].as_u64().unwrap_or(0) > 0,
        "no monitor events: {mon}"
    );
    for r in mon["rows"].as_array().expect("monitor rows") {
        for k in ["off", "on"] {
            assert!(r[k].as_f64().unwrap_or(-1.0) > 0.0, "{k} of {r}");
        }
    }
    assert!(std::fs::read_to_string(out.0.join("monitor.md"))
        .expect("monitor.md")
        .contains("| c2c | tput_gbps |"));

    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(out.0.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    let metrics = j["metrics"].as_array().expect("metrics array");
    assert!(!metrics.is_empty());
    for m in metrics {
        for k in ["median", "min", "max"] {
            let v = m[k].as_f64().unwrap_or(-1.0);
            assert!(v > 0.0 && v.is_finite(), "{k} of {m} is not positive");
        }
        for s in m["samples"].as_array().expect("samples") {
            assert!(s.as_f64().unwrap_or(-1.0) > 0.0, "sample of {m}");
        }
        for k in ["ratio_vs_iptables", "ratio_vs_ceiling"] {
            if !m[k].is_null() {
                assert!(m[k].as_f64().unwrap_or(-1.0) > 0.0, "{k} of {m}");
            }
        }
    }
    for (metric, modes) in REQUIRED {
        for mode in *modes {
            assert!(
                metrics
                    .iter()
                    .any(|m| m["metric"] == *metric && m["mode"] == *mode),
                "report.json has no {metric} for {mode}"
            );
        }
    }
    let ports: Vec<&str> = metrics
        .iter()
        .filter(|m| m["metric"] == "ports_crr_rate" && m["mode"] == "dataplane")
        .filter_map(|m| m["path"].as_str())
        .collect();
    assert!(ports.contains(&"1") && ports.contains(&"10"), "{ports:?}");
    for mode in ["iptables", "dataplane"] {
        for state in ["off", "on"] {
            assert!(
                metrics.iter().any(|m| m["metric"] == "iso_tput_1"
                    && m["mode"] == mode
                    && m["path"] == state),
                "report.json has no iso_tput_1 {state} for {mode}"
            );
        }
    }
    let runs = j["early_drop"]["runs"].as_array().expect("early_drop.runs");
    assert!(runs.len() >= 2, "{runs:?}");
    for r in runs {
        assert!(
            r["sent"].as_u64().unwrap_or(0) > 0,
            "flood sent nothing: {r}"
        );
        assert!(
            r["dropped"].as_u64().unwrap_or(0) > 0,
            "flood dropped nothing: {r}"
        );
    }
    assert!(
        j["early_drop"]["iptables_ns_over_dataplane_ns"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(md.contains("-A DOCKER-FORWARD -i br-bench -o br-bench -j DROP"));
    per_packet_cost(&j["per_packet_cost"], &md);
    overlay(&out.0);
    assert!(j["environment"]["cpus"].as_u64().unwrap_or(0) > 0);
    assert!(!j["targets"].as_array().expect("targets").is_empty());
}

/// The per-packet cost section: BPF statistics of every path under load,
/// the statistics' overhead, every PROG_TEST_RUN path timed (none broken),
/// helper calls of each program and the per-packet targets.
fn per_packet_cost(c: &Value, md: &str) {
    assert!(c.is_object(), "report.json has no per_packet_cost");
    let load = c["under_load"].as_array().expect("under_load");
    let pos = |v: &Value| v.as_f64().is_some_and(|x| x > 0.0 && x.is_finite());
    for r in load {
        assert!(r["runs"].as_u64().unwrap_or(0) > 0, "{r}");
        assert!(pos(&r["ns_per_run"]), "ns_per_run of {r}");
    }
    let progs_on = |path: &str| -> Vec<String> {
        load.iter()
            .filter(|r| r["path"] == path)
            .filter_map(|r| r["program"].as_str().map(String::from))
            .collect()
    };
    for path in ["c2c", "outside->published", "masquerade out", "hairpin"] {
        for w in ["udp64", "tcp", "rr"] {
            assert!(
                load.iter().any(|r| r["path"] == path && r["workload"] == w),
                "no BPF statistics for {path} {w}"
            );
        }
        assert!(
            progs_on(path).iter().any(|p| p == "dp_from_container"),
            "{path}: dp_from_container did not run"
        );
    }
    // The uplink's programs: dp_tc_uplink alone in the tcx uplink mode
    // (the default on the bench's veth uplink), else XDP + dp_from_uplink.
    let tcx = progs_on("outside->published")
        .iter()
        .any(|p| p == "dp_tc_uplink");
    let uplink_progs: &[(&str, &str)] = if tcx {
        &[
            ("outside->published", "dp_tc_uplink"),
            ("masquerade out", "dp_tc_uplink"),
        ]
    } else {
        &[
            ("outside->published", "dp_xdp_uplink"),
            ("outside->published", "dp_from_uplink"),
            ("masquerade out", "dp_from_uplink"),
        ]
    };
    for (path, prog) in uplink_progs {
        assert!(
            progs_on(path).iter().any(|p| p == prog),
            "{path}: {prog} did not run"
        );
    }
    let o = &c["overhead"];
    for k in ["rr_on_over_off", "tput_on_over_off"] {
        assert!(pos(&o[k]), "overhead {k}: {o}");
    }
    let pr = &c["prog_test_run"];
    let paths = pr["paths"]
        .as_array()
        .unwrap_or_else(|| panic!("prog_test_run: {pr}"));
    assert!(paths.len() >= 10, "{paths:?}");
    for p in paths {
        assert!(p["broken"].is_null(), "PROG_TEST_RUN path broken: {p}");
        assert!(p["runs"].as_u64().unwrap_or(0) > 0, "{p}");
        assert!(pos(&p["median_ns"]) && pos(&p["mean_ns"]), "{p}");
    }
    assert!(!md.contains("**BROKEN**"));
    let calls = c["xlated_calls"].as_object().expect("xlated_calls");
    let loaded: &[&str] = if tcx {
        &["dp_from_container", "dp_tc_uplink"]
    } else {
        &["dp_from_container", "dp_from_uplink", "dp_xdp_uplink"]
    };
    for prog in loaded {
        let m = calls[*prog]
            .as_object()
            .unwrap_or_else(|| panic!("no calls of {prog}"));
        assert!(
            m.values().any(|v| v.as_u64().unwrap_or(0) > 0),
            "{prog}: {m:?}"
        );
    }
    assert!(!c["per_path_calls"]["rows"]
        .as_array()
        .expect("rows")
        .is_empty());
    let t = c["targets"].as_array().expect("targets");
    assert_eq!(t.len(), 4, "{t:?}");
    assert!(
        md.contains("**Targets**: "),
        "no Targets line in the section"
    );
}

/// The overlay section (`overlay.md`/`overlay.json`): every path measured,
/// convergence samples, each scale step synced by a fresh agent.
fn overlay(dir: &Path) {
    let md = std::fs::read_to_string(dir.join("overlay.md")).expect("overlay.md");
    for s in [
        "## Datapath",
        "## Convergence",
        "## Scale: a fresh agent joins a simulated cluster",
        "## Targets",
    ] {
        assert!(
            md.lines().any(|l| l.trim() == s),
            "overlay.md lacks {s:?}:\n{md}"
        );
    }
    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("overlay.json")).expect("overlay.json"),
    )
    .expect("overlay.json is JSON");
    let dp = j["datapath"].as_array().expect("datapath");
    for m in ["tput_1", "tput_4", "rr_p50", "crr_rate"] {
        for p in ["overlay", "underlay", "kernel_vxlan"] {
            assert!(
                dp.iter().any(|r| r["metric"] == m
                    && r["path"] == p
                    && r["median"].as_f64().is_some_and(|v| v > 0.0)),
                "overlay.json has no {m} for {p}"
            );
        }
    }
    let conv = &j["convergence"]["convergence_ms"];
    assert!(
        conv["n"].as_u64().unwrap_or(0) > 0 && conv["p99"].as_f64().unwrap_or(0.0) > 0.0,
        "{conv}"
    );
    let scale = j["scale"].as_array().expect("scale");
    assert!(!scale.is_empty());
    for r in scale {
        assert!(
            r["maps_complete_s"].as_f64().is_some_and(|v| v > 0.0),
            "{r}"
        );
        assert_eq!(r["remote_entries"], r["endpoints"], "{r}");
    }
    for svg in ["overlay_sync.svg", "overlay_rss.svg"] {
        let s = std::fs::read_to_string(dir.join(svg)).expect(svg);
        assert!(s.starts_with("<svg") && s.contains("<polyline"), "{svg}");
    }
}

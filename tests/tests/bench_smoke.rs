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
    let o = run_timeout(&mut c, Duration::from_secs(240));
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
    assert!(j["environment"]["cpus"].as_u64().unwrap_or(0) > 0);
    assert!(!j["targets"].as_array().expect("targets").is_empty());
}

//! The figures of the "Real Docker" section ([`super::docker`]) and their
//! Markdown and JSON: median [min–max] of the repetitions per metric, path
//! and driver, and the plugin's figure as a ratio to Docker's bridge driver.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::report::fmt_num;

/// The two drivers measured under the same dockerd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Mode {
    /// Docker's bridge driver: a Linux bridge, iptables, docker-proxy.
    Bridge = 0,
    /// The dataplane agent's Docker plugin.
    Plugin = 1,
}

impl Mode {
    pub(super) const ALL: [Mode; 2] = [Mode::Bridge, Mode::Plugin];
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::Bridge => "docker-bridge",
            Mode::Plugin => "docker-plugin",
        }
    }
    /// Container name prefix.
    pub(super) fn tag(self) -> &'static str {
        match self {
            Mode::Bridge => "dkb",
            Mode::Plugin => "dkp",
        }
    }
}

/// What the section measured, or why it did not run.
#[derive(Default)]
pub(crate) struct DockerRun {
    pub skipped: Option<String>,
    pub version: String,
    pub checks: Vec<String>,
    /// iptables rules (`-A` lines) and DNAT rules in the host namespace.
    pub rules: usize,
    pub dnat: usize,
    samples: BTreeMap<(&'static str, &'static str, Mode), Vec<f64>>,
}

/// (metric, title, unit, higher is better)
const METRICS: &[(&str, &str, &str, bool)] = &[
    ("tput_1", "TCP throughput, 1 stream", "Gbit/s", true),
    ("rr_p50", "Request/response p50", "µs", false),
    ("rr_p99", "Request/response p99", "µs", false),
    (
        "crr_rate",
        "New connections (connect, 1 request, close)",
        "conn/s",
        true,
    ),
];
const PATHS: [&str; 3] = ["c2c", "outside->published", "host->published"];

fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        f64::midpoint(s[n / 2 - 1], s[n / 2])
    };
    Some((med, s[0], s[n - 1]))
}

impl DockerRun {
    pub(super) fn skipped(why: String) -> Self {
        DockerRun {
            skipped: Some(why),
            ..Default::default()
        }
    }

    pub(super) fn new(version: String) -> Self {
        DockerRun {
            version,
            ..Default::default()
        }
    }

    pub(super) fn push(&mut self, metric: &'static str, path: &'static str, m: Mode, v: f64) {
        if v > 0.0 && v.is_finite() {
            self.samples.entry((metric, path, m)).or_default().push(v);
        }
    }

    fn stat(&self, metric: &str, path: &str, m: Mode) -> Option<(f64, f64, f64)> {
        self.samples
            .iter()
            .find(|((k, p, mm), _)| *k == metric && *p == path && *mm == m)
            .and_then(|(_, v)| stats(v))
    }

    /// Plugin median over bridge median.
    fn ratio(&self, metric: &str, path: &str) -> Option<f64> {
        let b = self.stat(metric, path, Mode::Bridge)?.0;
        let p = self.stat(metric, path, Mode::Plugin)?.0;
        (b > 0.0).then(|| p / b)
    }
}

/// The "## Real Docker" section of report.md.
pub(super) fn markdown(run: Option<&DockerRun>) -> String {
    let mut md = String::from("\n## Real Docker\n\n");
    let Some(run) = run else {
        md.push_str("not measured: the run stopped before this section.\n");
        return md;
    };
    if let Some(why) = &run.skipped {
        let _ = writeln!(md, "skipped: {why}.");
        return md;
    }
    let _ = writeln!(
        md,
        "A private dockerd {} in a namespace of the run (iptables on, docker-proxy, its own `docker0`), two containers on a network of Docker's **bridge** driver and two on a network of the dataplane **plugin** (`docker network create -d NAME --ipam-driver NAME`), under the same dockerd, measured interleaved. `c2c`: container 1 -> container 2; `outside->published`: the outside namespace -> the uplink address's published port; `host->published`: the host namespace -> the same. Ratio: plugin / bridge (higher is better for throughput and connections, lower for latency).\n",
        run.version
    );
    for c in &run.checks {
        let _ = writeln!(md, "- {c}");
    }
    md.push_str("\n| metric | path | docker bridge | dataplane plugin | plugin / bridge |\n|---|---|---|---|---|\n");
    let cell = |s: Option<(f64, f64, f64)>, unit: &str| {
        s.map_or_else(
            || "—".into(),
            |(m, lo, hi)| format!("{} {unit} [{}–{}]", fmt_num(m), fmt_num(lo), fmt_num(hi)),
        )
    };
    for (k, title, unit, _) in METRICS {
        for p in PATHS {
            let _ = writeln!(
                md,
                "| {title} | {p} | {} | {} | {} |",
                cell(run.stat(k, p, Mode::Bridge), unit),
                cell(run.stat(k, p, Mode::Plugin), unit),
                run.ratio(k, p)
                    .map_or_else(|| "—".into(), |r| format!("{r:.2}x"))
            );
        }
    }
    md
}

/// `real_docker` of report.json.
pub(super) fn json(run: Option<&DockerRun>) -> Value {
    let Some(run) = run else {
        return json!({"skipped": "the run stopped before this section"});
    };
    if let Some(why) = &run.skipped {
        return json!({ "skipped": why });
    }
    let mut metrics = Vec::new();
    for (k, _, unit, higher) in METRICS {
        for p in PATHS {
            for m in Mode::ALL {
                if let Some((med, lo, hi)) = run.stat(k, p, m) {
                    metrics.push(json!({
                        "metric": k, "path": p, "mode": m.name(), "unit": unit,
                        "higher_is_better": higher,
                        "median": med, "min": lo, "max": hi,
                        "samples": run.samples.get(&(*k, p, m)),
                        "ratio_plugin_vs_bridge": if m == Mode::Plugin { run.ratio(k, p) } else { None },
                    }));
                }
            }
        }
    }
    json!({
        "dockerd": run.version,
        "checks": run.checks,
        "host_iptables_rules": run.rules,
        "host_dnat_rules": run.dnat,
        "metrics": metrics,
    })
}

//! The overlay section's figures and its report: statistics, the targets of
//! issue 9 (met or missed, as measured), `overlay.md`, `overlay.json` and
//! the scale plots `overlay_sync.svg` and `overlay_rss.svg`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use super::report::fmt_num;

/// One measured figure of the datapath comparison.
#[derive(Debug, Clone)]
pub(super) struct OvSample {
    pub metric: &'static str,
    /// `overlay`, `underlay` or `kernel_vxlan`.
    pub path: String,
    pub value: f64,
}

impl OvSample {
    pub(super) fn new(metric: &'static str, path: &str, value: f64) -> Self {
        OvSample {
            metric,
            path: path.to_string(),
            value,
        }
    }
}

/// Convergence figures, milliseconds.
#[derive(Debug, Clone, Default)]
pub(super) struct Conv {
    /// From `container create` returning to the first echo reply.
    pub reply: Vec<f64>,
    /// Wall time of `container create` (the CLI, as a user sees it).
    pub create: Vec<f64>,
    /// The same probe to an address already reachable (its own cost).
    pub floor: Vec<f64>,
}

/// One size of the simulated cluster, seen by a fresh agent.
#[derive(Debug, Clone)]
pub(super) struct ScaleRun {
    pub nodes: u32,
    pub endpoints: u64,
    /// Writing the added nodes into etcd.
    pub fill_s: f64,
    /// Agent start to its first answer (it answers once it listed the state).
    pub join_s: f64,
    /// Agent start until both maps held every remote endpoint.
    pub maps_s: Option<f64>,
    pub remote_entries: u64,
    pub endpoint_entries: u64,
    pub nodes_listed: u64,
    pub rss_kib: u64,
    /// bytes_memlock of DP_OV_REMOTE, DP_OV_NODES, DP_OV_PEERS, DP_ENDPOINTS.
    pub memlock: u64,
}

#[derive(Debug, Default)]
pub(super) struct OvReport {
    pub level: String,
    pub hosts: usize,
    pub checks: Vec<String>,
    pub samples: Vec<OvSample>,
    pub conv: Option<Conv>,
    pub scale: Vec<ScaleRun>,
}

/// Median of `v` (the mean of the middle two for an even count); 0 when
/// empty.
pub(super) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        f64::midpoint(s[n / 2 - 1], s[n / 2])
    }
}

/// Percentile `p` (0-100, nearest rank) of `v`; 0 when empty.
pub(super) fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

const PATHS: [&str; 3] = ["overlay", "kernel_vxlan", "underlay"];
const METRICS: [(&str, &str, bool); 5] = [
    ("tput_1", "TCP throughput, 1 stream (Gbit/s)", true),
    ("tput_4", "TCP throughput, 4 streams (Gbit/s)", true),
    ("rr_p50", "RR latency p50 (us)", false),
    ("rr_p99", "RR latency p99 (us)", false),
    ("crr_rate", "new connections (CRR, conn/s)", true),
];

impl OvReport {
    fn values(&self, metric: &str, path: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.metric == metric && s.path == path)
            .map(|s| s.value)
            .collect()
    }

    fn median(&self, metric: &str, path: &str) -> Option<f64> {
        let v = self.values(metric, path);
        (!v.is_empty()).then(|| median(&v))
    }

    /// overlay / `path` of a metric's medians.
    fn ratio(&self, metric: &str, path: &str) -> Option<f64> {
        let (o, b) = (self.median(metric, "overlay")?, self.median(metric, path)?);
        (b > 0.0).then(|| o / b)
    }

    /// (name, target, measured, met) of issue 9's targets.
    fn targets(&self) -> Vec<(String, String, String, bool)> {
        let mut t = Vec::new();
        if let Some(r) = self.ratio("tput_1", "kernel_vxlan") {
            t.push((
                "1-stream throughput vs the kernel VXLAN path".into(),
                ">= 1.0x".into(),
                format!("{r:.2}x"),
                r >= 1.0,
            ));
        }
        if let Some(r) = self.ratio("tput_1", "underlay") {
            t.push((
                "1-stream throughput vs the underlay".into(),
                ">= 0.7x".into(),
                format!("{r:.2}x"),
                r >= 0.7,
            ));
        }
        if let Some(c) = &self.conv {
            let p99 = pct(&c.reply, 99.0);
            let enough = c.reply.len() >= 100 && self.hosts >= 8;
            t.push((
                format!(
                    "convergence p99 ({} creates, {} hosts{})",
                    c.reply.len(),
                    self.hosts,
                    if enough {
                        ""
                    } else {
                        "; fewer than the target's 100 creates on 8 hosts"
                    }
                ),
                "<= 200 ms".into(),
                format!("{p99:.1} ms"),
                p99 <= 200.0 && enough,
            ));
        }
        t
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Overlay benchmark ({} run)\n", self.level);
        let _ = writeln!(
            s,
            "Simulated hosts (network namespaces) on one underlay bridge, etcd in the underlay, one agent per host ({} hosts). \
             Paths between h1 and h2: **overlay** = our containers on an overlay network (eBPF sets the tunnel key, \
             `bpf_redirect` to the collect_md VXLAN device, `from_overlay` delivers with `bpf_redirect_peer`); \
             **kernel_vxlan** = Flannel's vxlan backend by hand (VXLAN device with static FDB and neighbour entries, a \
             route per remote host subnet, a Linux bridge per host, IP forwarding; no eBPF on that path); **underlay** \
             = the two host namespaces over their uplinks. Container MTU 1450 on both VXLAN paths. Medians of the \
             repetitions (min-max); every path measured in the same run, order rotated per repetition.\n",
            self.hosts
        );
        let _ = writeln!(s, "## Checks\n");
        for c in &self.checks {
            let _ = writeln!(s, "- {c}");
        }
        let _ = writeln!(s, "\n## Datapath\n");
        let _ = writeln!(
            s,
            "| metric | overlay | kernel VXLAN | underlay | overlay / kernel VXLAN | overlay / underlay |\n|---|---|---|---|---|---|"
        );
        for (m, title, _) in METRICS {
            let cell = |p: &str| {
                let v = self.values(m, p);
                if v.is_empty() {
                    "-".to_string()
                } else {
                    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    format!(
                        "{} ({}-{})",
                        fmt_num(median(&v)),
                        fmt_num(min),
                        fmt_num(max)
                    )
                }
            };
            let r = |p: &str| self.ratio(m, p).map_or("-".into(), |r| format!("{r:.2}x"));
            let _ = writeln!(
                s,
                "| {title} | {} | {} | {} | {} | {} |",
                cell("overlay"),
                cell("kernel_vxlan"),
                cell("underlay"),
                r("kernel_vxlan"),
                r("underlay")
            );
        }
        if let Some(c) = &self.conv {
            let _ = writeln!(s, "\n## Convergence\n");
            let _ = writeln!(
                s,
                "Time from `container create` returning on host A to the first ICMP echo reply received by a \
                 container on host B (B rotates over the other hosts), {} creates on {} hosts. The prober pings \
                 every millisecond (`ping -D`, reply timestamps) and retries ARP every 10 ms; starting it is part \
                 of the figure (its floor: the same probe to an address already reachable).\n",
                c.reply.len(),
                self.hosts
            );
            let _ = writeln!(
                s,
                "| figure | p50 | p90 | p99 | max |\n|---|---|---|---|---|"
            );
            for (name, v) in [
                ("create -> first reply from another host (ms)", &c.reply),
                ("`container create` wall time (ms)", &c.create),
                ("probe floor (ms)", &c.floor),
            ] {
                let max = v.iter().copied().fold(0.0, f64::max);
                let _ = writeln!(
                    s,
                    "| {name} | {:.1} | {:.1} | {:.1} | {max:.1} |",
                    pct(v, 50.0),
                    pct(v, 90.0),
                    pct(v, 99.0)
                );
            }
        }
        if !self.scale.is_empty() {
            let _ = writeln!(s, "\n## Scale: a fresh agent joins a simulated cluster\n");
            let _ = writeln!(
                s,
                "Simulated nodes (record, liveness key under a lease, one /26 block) with 20 endpoints each, written \
                 straight into etcd with the agent's key schema (`dp-etcd-fill`), in steps; at each step a fresh \
                 agent joins on a new host. *join*: agent start to its first answer (it answers after listing the \
                 whole prefix); *maps complete*: until `DP_OV_REMOTE` and the remote entries of `DP_ENDPOINTS` hold \
                 every endpoint. Map memory is `bytes_memlock` of DP_OV_REMOTE, DP_OV_NODES, DP_OV_PEERS and \
                 DP_ENDPOINTS (preallocated hash maps: fixed by their sizes, not by the entries).\n"
            );
            let _ = writeln!(
                s,
                "| nodes | endpoints | etcd fill (s) | join (s) | maps complete (s) | DP_OV_REMOTE | DP_ENDPOINTS (remote) | nodes listed | agent RSS (MiB) | map memory (MiB) |\n|---|---|---|---|---|---|---|---|---|---|"
            );
            for r in &self.scale {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {:.1} | {:.1} |",
                    r.nodes,
                    r.endpoints,
                    r.fill_s,
                    r.join_s,
                    r.maps_s
                        .map_or("**not complete**".into(), |v| format!("{v:.2}")),
                    r.remote_entries,
                    r.endpoint_entries,
                    r.nodes_listed,
                    r.rss_kib as f64 / 1024.0,
                    r.memlock as f64 / (1024.0 * 1024.0)
                );
            }
            let _ = writeln!(
                s,
                "\n![sync time](overlay_sync.svg)\n![agent RSS](overlay_rss.svg)"
            );
        }
        let _ = writeln!(s, "\n## Targets\n");
        let t = self.targets();
        for (name, target, got, met) in &t {
            let _ = writeln!(
                s,
                "- {name}: target {target}, measured {got}: **{}**",
                if *met { "met" } else { "missed" }
            );
        }
        s
    }

    fn json(&self) -> Value {
        let datapath: Vec<Value> = METRICS
            .iter()
            .flat_map(|(m, _, _)| {
                PATHS.iter().filter_map(move |p| {
                    let v = self.values(m, p);
                    (!v.is_empty()).then(
                        || json!({"metric": m, "path": p, "median": median(&v), "samples": v}),
                    )
                })
            })
            .collect();
        let ratios: Vec<Value> = METRICS
            .iter()
            .map(|(m, _, _)| {
                json!({"metric": m,
                    "overlay_over_kernel_vxlan": self.ratio(m, "kernel_vxlan"),
                    "overlay_over_underlay": self.ratio(m, "underlay")})
            })
            .collect();
        let conv = self.conv.as_ref().map(|c| {
            let f = |v: &[f64]| json!({"n": v.len(), "p50": pct(v, 50.0), "p90": pct(v, 90.0), "p99": pct(v, 99.0)});
            json!({"convergence_ms": f(&c.reply), "create_ms": f(&c.create), "probe_floor_ms": f(&c.floor), "samples_ms": c.reply})
        });
        let scale: Vec<Value> = self
            .scale
            .iter()
            .map(|r| {
                json!({"nodes": r.nodes, "endpoints": r.endpoints, "fill_s": r.fill_s, "join_s": r.join_s,
                    "maps_complete_s": r.maps_s, "remote_entries": r.remote_entries,
                    "endpoint_entries": r.endpoint_entries, "nodes_listed": r.nodes_listed,
                    "rss_kib": r.rss_kib, "map_memlock_bytes": r.memlock})
            })
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|(n, t, g, m)| json!({"name": n, "target": t, "measured": g, "met": m}))
            .collect();
        json!({"level": self.level, "hosts": self.hosts, "checks": self.checks, "datapath": datapath,
            "ratios": ratios, "convergence": conv, "scale": scale, "targets": targets})
    }
}

/// A line chart: x = simulated nodes, one line per series.
fn chart(title: &str, ylabel: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let (w, h) = (640.0, 400.0);
    let (l, r, t, b) = (70.0, 150.0, 40.0, 50.0);
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(1.0, f64::max);
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let px = |x: f64| l + x / xmax * (w - l - r);
    let py = |y: f64| h - b - y / ymax * (h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{l}\" y=\"22\" font-size=\"15\">{title}</text>\n"
    );
    let _ = writeln!(
        s,
        "<line x1=\"{l}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/><line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{0}\" stroke=\"black\"/>",
        h - b,
        w - r
    );
    for i in 0..=4 {
        let y = ymax * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            py(y),
            w - r,
            l - 5.0,
            py(y) + 4.0,
            fmt_num(y)
        );
        let x = xmax * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(x),
            h - b + 18.0,
            x.round()
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">simulated nodes (20 endpoints each)</text><text x=\"15\" y=\"{:.1}\" transform=\"rotate(-90 15 {:.1})\" text-anchor=\"middle\">{ylabel}</text>",
        l + (w - l - r) / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0
    );
    let colors = ["#1f77b4", "#d62728", "#2ca02c"];
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let poly: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            poly.join(" ")
        );
        for (x, y) in pts {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                px(*x),
                py(*y)
            );
        }
        let ly = t + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{0}\" y1=\"{ly}\" x2=\"{1}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/><text x=\"{2}\" y=\"{3}\">{name}</text>",
            w - r + 10.0,
            w - r + 30.0,
            w - r + 35.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

pub(super) fn write(out_dir: &Path, rep: &OvReport) -> Result<()> {
    fs::write(out_dir.join("overlay.md"), rep.markdown())?;
    fs::write(
        out_dir.join("overlay.json"),
        serde_json::to_string_pretty(&rep.json())?,
    )?;
    let pts = |f: &dyn Fn(&ScaleRun) -> Option<f64>| -> Vec<(f64, f64)> {
        rep.scale
            .iter()
            .filter_map(|r| f(r).map(|y| (f64::from(r.nodes), y)))
            .collect()
    };
    let sync = chart(
        "Fresh agent: time to join and to complete its maps",
        "seconds",
        &[
            ("join (listed)", pts(&|r| Some(r.join_s))),
            ("maps complete", pts(&|r| r.maps_s)),
        ],
    );
    fs::write(out_dir.join("overlay_sync.svg"), sync)?;
    let rss = chart(
        "Fresh agent: RSS and map memory",
        "MiB",
        &[
            ("agent RSS", pts(&|r| Some(r.rss_kib as f64 / 1024.0))),
            ("map memory", pts(&|r| Some(r.memlock as f64 / 1_048_576.0))),
        ],
    );
    fs::write(out_dir.join("overlay_rss.svg"), rss)?;
    Ok(())
}

//! Per-packet cost of the eBPF programs, in the same run as the throughput
//! and latency figures: the kernel's BPF statistics (run count, run time)
//! of the agent's programs around traffic on each path, with the statistics
//! on only for that measurement; their overhead (the same measurement with
//! and without them); the BPF_PROG_TEST_RUN micro-benchmark (`progrun`);
//! and the helper calls of the loaded programs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::bpfstats::{self, Counters};
use super::measure::{iperf, loadgen};
use super::progrun::{self, ProgRun};
use super::topo::{in_ns, World, IPERF_PORT, RR_PORT, UPLINK_OUT_IP};
use super::Plan;
use crate::{capture, cargo, describe, run, target_dir};

/// One path of the benchmark topology (dataplane mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CostPath {
    C2c,
    Published,
    Masquerade,
    Hairpin,
}

impl CostPath {
    pub(super) const ALL: [CostPath; 4] = [
        CostPath::C2c,
        CostPath::Published,
        CostPath::Masquerade,
        CostPath::Hairpin,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            CostPath::C2c => "c2c",
            CostPath::Published => "outside->published",
            CostPath::Masquerade => "masquerade out",
            CostPath::Hairpin => "hairpin",
        }
    }

    /// What `prog` handles on this path.
    pub(super) fn role(self, prog: &str) -> &'static str {
        match (self, prog) {
            (CostPath::C2c, "dp_from_container") => "both directions (c2c delivery)",
            (CostPath::Published, "dp_xdp_uplink") => "requests in: published-port DNAT",
            (CostPath::Published, "dp_from_uplink") => "requests in: delivery to the container",
            (CostPath::Published, "dp_from_container") => {
                "replies: reverse DNAT, out of the uplink"
            }
            (CostPath::Masquerade, "dp_from_container") => "out: masquerade",
            (CostPath::Masquerade, "dp_xdp_uplink") => "replies in: passed by XDP",
            (CostPath::Masquerade, "dp_from_uplink") => "replies in: reverse masquerade",
            (CostPath::Published, "dp_tc_uplink") => {
                "requests in: published-port DNAT and delivery (tcx)"
            }
            (CostPath::Masquerade, "dp_tc_uplink") => "replies in: reverse masquerade (tcx)",
            (CostPath::Hairpin, "dp_from_container") => {
                "both directions (hairpin DNAT+SNAT, reverse)"
            }
            _ => "other",
        }
    }
}

/// One workload on one path with the statistics on.
pub(super) struct PathCost {
    pub path: CostPath,
    /// "udp64", "tcp" or "rr".
    pub workload: &'static str,
    /// What the workload achieved (for the reader: rate, latency).
    pub detail: String,
    /// Programs that ran, with their counters over the workload.
    pub progs: Vec<(String, Counters)>,
}

/// One repetition of the overhead measurement.
pub(super) struct Overhead {
    pub rr_p50_off: f64,
    pub rr_p50_on: f64,
    pub tput_off: f64,
    pub tput_on: f64,
}

pub(super) struct CostResult {
    pub load: Vec<PathCost>,
    pub overhead: Vec<Overhead>,
    /// kernel.bpf_stats_enabled before the measurement (Some(true): someone
    /// else had the statistics on, "off" was not off).
    pub global_stats: Option<bool>,
    pub progrun: Result<ProgRun, String>,
    /// Helper calls of the agent's loaded programs (xlated), by program.
    pub calls: BTreeMap<String, BTreeMap<String, u32>>,
    pub secs: f64,
}

/// Builds `dp-ebpf-object` in the agent's profile and writes the object the
/// agent embeds to `dir/dataplane-ebpf.o`.
pub(super) fn agent_object(release: bool, dir: &Path) -> Result<PathBuf> {
    let mut c = cargo();
    c.args([
        "build",
        "-p",
        "xtask",
        "--features",
        "agent-object",
        "--bin",
        "dp-ebpf-object",
    ]);
    if release {
        c.arg("--release");
    }
    println!("$ {}", describe(&c));
    run(&mut c)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("dp-ebpf-object");
    let obj = dir.join("dataplane-ebpf.o");
    let out = capture(
        std::process::Command::new(&bin).arg(&obj),
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(obj)
}

/// iperf3 UDP, 64-byte frames (22-byte payload), unlimited rate.
fn udp64(ns: &str, ip: &str, secs: f64) -> Result<String> {
    let mut c = in_ns(ns, "iperf3");
    c.args([
        "-c",
        ip,
        "-p",
        &IPERF_PORT.to_string(),
        "-u",
        "-b",
        "0",
        "-l",
        "22",
        "-J",
        "-t",
    ])
    .arg(format!("{}", secs.max(1.0).round()));
    let out = capture(&mut c, Duration::from_secs_f64(secs + 30.0))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() || v["error"].is_string() {
        bail!(
            "iperf3 -u {ip} from {ns}: {} {}",
            v["error"].as_str().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let sum = &v["end"]["sum"];
    let pkts = sum["packets"].as_f64().unwrap_or(0.0);
    let secs = sum["seconds"].as_f64().unwrap_or(0.0);
    if pkts <= 0.0 {
        bail!("iperf3 -u {ip} from {ns} sent no packets");
    }
    Ok(format!(
        "{:.0} kpkt/s sent, {:.1}% lost",
        pkts / secs.max(1e-9) / 1e3,
        sum["lost_percent"].as_f64().unwrap_or(0.0)
    ))
}

/// Client netns and target address of a path.
fn target(w: &World, p: CostPath) -> (String, String) {
    let e = &w.dataplane;
    match p {
        CostPath::C2c => (e.c1.clone(), e.c2_ip.clone()),
        CostPath::Published => (e.out.clone(), e.pub_ip.clone()),
        CostPath::Masquerade => (e.c1.clone(), UPLINK_OUT_IP.to_string()),
        CostPath::Hairpin => (e.c1.clone(), e.pub_ip.clone()),
    }
}

fn workload(w: &World, p: CostPath, kind: &str, plan: &Plan) -> Result<String> {
    let (ns, ip) = target(w, p);
    match kind {
        "udp64" => udp64(&ns, &ip, plan.cost_secs),
        "tcp" => {
            let t = iperf(&ns, &ip, IPERF_PORT, 1, plan.cost_secs)?;
            Ok(format!("{:.2} Gbit/s", t.gbps))
        }
        _ => {
            let r = loadgen(w.loadgen(), &ns, "rr", &format!("{ip}:{RR_PORT}"), plan.rr)?;
            Ok(format!(
                "p50 {:.1} us, {:.0} req/s",
                r.f("p50_us"),
                r.f("rate")
            ))
        }
    }
}

/// c2c RR p50 and 1-stream throughput (for the overhead comparison).
fn c2c_pair(w: &World, plan: &Plan) -> Result<(f64, f64)> {
    let (ns, ip) = target(w, CostPath::C2c);
    let r = loadgen(w.loadgen(), &ns, "rr", &format!("{ip}:{RR_PORT}"), plan.rr)?;
    let t = iperf(&ns, &ip, IPERF_PORT, 1, plan.cost_secs)?;
    Ok((r.f("p50_us"), t.gbps))
}

/// The whole per-packet cost phase (dataplane mode already set up).
pub(super) fn measure(w: &mut World, plan: &Plan, object: &Path) -> Result<CostResult> {
    let started = std::time::Instant::now();
    println!("==> per-packet cost");
    // Servers beyond the uplink for the masquerade path.
    let out = w.dataplane.out.clone();
    let mut c = in_ns(&out, "iperf3");
    c.args(["-s", "-p", &IPERF_PORT.to_string()]);
    w.spawn_bg(&mut c)?;
    let mut c = in_ns(&out, w.loadgen());
    c.args(["server", "--port", &RR_PORT.to_string()]);
    w.spawn_bg(&mut c)?;
    let (ns, ip) = target(w, CostPath::Masquerade);
    super::measure::probe(w.loadgen(), &ns, &format!("{ip}:{RR_PORT}"))
        .context("dataplane: masquerade path")?;
    let (ns, ip) = target(w, CostPath::Hairpin);
    super::measure::probe(w.loadgen(), &ns, &format!("{ip}:{RR_PORT}"))
        .context("dataplane: hairpin path")?;

    let ids = bpfstats::agent_programs(w.bpffs())?;
    let global_stats = bpfstats::enabled_globally();
    let mut calls = BTreeMap::new();
    for (name, id) in &ids {
        calls.insert(name.clone(), bpfstats::xlated_calls(*id)?);
    }

    // Overhead of the statistics: the same c2c measurement without and
    // with them, the order alternating between repetitions.
    let mut overhead = Vec::new();
    for rep in 0..plan.reps {
        let mut o = Overhead {
            rr_p50_off: 0.0,
            rr_p50_on: 0.0,
            tput_off: 0.0,
            tput_on: 0.0,
        };
        for on in if rep % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            let guard = if on { Some(bpfstats::enable()?) } else { None };
            let (p50, gbps) = c2c_pair(w, plan).context("stats overhead: c2c")?;
            drop(guard);
            if on {
                (o.rr_p50_on, o.tput_on) = (p50, gbps);
            } else {
                (o.rr_p50_off, o.tput_off) = (p50, gbps);
            }
        }
        println!(
            "  stats overhead: rr p50 {:.1} -> {:.1} us, tput {:.2} -> {:.2} Gbit/s (off -> on)",
            o.rr_p50_off, o.rr_p50_on, o.tput_off, o.tput_on
        );
        overhead.push(o);
    }

    let stats = bpfstats::enable()?;
    let mut load = Vec::new();
    for p in CostPath::ALL {
        for kind in ["udp64", "tcp", "rr"] {
            let before = bpfstats::read(&ids)?;
            let detail = workload(w, p, kind, plan)
                .with_context(|| format!("per-packet cost: {} {kind}", p.name()))?;
            let after = bpfstats::read(&ids)?;
            let progs: Vec<(String, Counters)> = after
                .iter()
                .map(|(n, a)| (n.clone(), a.since(before[n])))
                .filter(|(_, d)| d.runs > 0)
                .collect();
            let line: Vec<String> = progs
                .iter()
                .map(|(n, d)| {
                    format!(
                        "{n} {} runs {:.0} ns/run",
                        d.runs,
                        d.ns_per_run().unwrap_or(0.0)
                    )
                })
                .collect();
            println!("  {:<18} {kind:<5} {detail}: {}", p.name(), line.join(", "));
            load.push(PathCost {
                path: p,
                workload: kind,
                detail,
                progs,
            });
        }
    }
    drop(stats);

    println!("==> BPF_PROG_TEST_RUN micro-benchmark");
    let ns = w.add_ns("pr")?;
    let progrun = progrun::run(object, &ns, plan.progrun_iters, plan.progrun_repeat)
        .map_err(|e| format!("{e:#}"));
    match &progrun {
        Ok(r) => {
            for p in &r.paths {
                match &p.broken {
                    None => println!(
                        "  {:<40} {:<18} median {:.0} ns/run",
                        p.name, p.program, p.median_ns
                    ),
                    Some(b) => println!("  {:<40} {:<18} BROKEN: {b}", p.name, p.program),
                }
            }
        }
        Err(e) => println!("  failed: {e}"),
    }
    Ok(CostResult {
        load,
        overhead,
        global_stats,
        progrun,
        calls,
        secs: started.elapsed().as_secs_f64(),
    })
}

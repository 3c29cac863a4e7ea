//! `--only uplink` (or `DATAPLANE_BENCH_ONLY=uplink`): the uplink modes
//! compared. The same topology as the main run (ceiling, iptables with
//! Docker's rules, dataplane); the dataplane agent is restarted in each
//! `--uplink-mode` (xdp-generic, tcx, xdp-native) on its veth uplink, and
//! per mode the run measures outside -> published port (1-stream
//! throughput, request/response, new connections) and the early drop of a
//! direct-access flood (softirq ns per dropped packet), interleaved with the
//! same figures of the ceiling and iptables; container-to-container is
//! measured once per repetition (no uplink on that path). `--quick` makes 5
//! repetitions here (the modes differ by less than the noise of a shared
//! 2-core machine), `--smoke` 1, the full size 5. Writes `uplink.md` and
//! `uplink.json`; states the issue-12 targets met or missed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::measure::{iperf, loadgen, probe};
use super::topo::{Mode, World, IPERF_PORT, RR_PORT};
use super::Plan;

/// The uplink modes measured, in order (each run rotates it).
const MODES: [&str; 3] = ["xdp-generic", "tcx", "xdp-native"];

/// (metric, setup) -> one value per repetition.
type Samples = BTreeMap<(&'static str, String), Vec<f64>>;

fn push(s: &mut Samples, metric: &'static str, setup: &str, v: f64) {
    s.entry((metric, setup.to_string())).or_default().push(v);
}

/// Outside -> published (or c2c) throughput, RR and CRR of one setup.
fn path_figures(
    w: &World,
    plan: &Plan,
    s: &mut Samples,
    setup: &str,
    ns: &str,
    ip: &str,
    path: &str,
) -> Result<()> {
    let t = iperf(ns, ip, IPERF_PORT, 1, plan.tput_secs)
        .with_context(|| format!("{setup}: throughput {path}"))?;
    let addr = format!("{ip}:{RR_PORT}");
    let rr = loadgen(w.loadgen(), ns, "rr", &addr, plan.rr)
        .with_context(|| format!("{setup}: rr {path}"))?;
    let crr = loadgen(w.loadgen(), ns, "crr", &addr, plan.crr)
        .with_context(|| format!("{setup}: crr {path}"))?;
    println!(
        "  {setup:<22} {path}: {:.2} Gbit/s, rr p50 {:.1} us, crr {:.0}/s",
        t.gbps,
        rr.f("p50_us"),
        crr.f("rate")
    );
    let key = |m: &'static str| -> &'static str {
        match (path, m) {
            ("c2c", "tput") => "c2c_tput_1",
            ("c2c", "rr") => "c2c_rr_p50",
            ("c2c", _) => "c2c_crr",
            (_, "tput") => "pub_tput_1",
            (_, "rr") => "pub_rr_p50",
            _ => "pub_crr",
        }
    };
    push(s, key("tput"), setup, t.gbps);
    push(s, key("rr"), setup, rr.f("p50_us"));
    push(s, key("crr"), setup, crr.f("rate"));
    Ok(())
}

/// The early-drop flood against the uplink of `m`: softirq ns per dropped
/// packet and drops per second.
fn flood_figures(
    w: &World,
    plan: &Plan,
    fl: &Path,
    s: &mut Samples,
    setup: &str,
    m: Mode,
) -> Result<()> {
    let (f, dropped) = super::early_drop_flood(w, plan, fl, m, setup)?;
    if dropped > 0 && f.seconds > 0.0 {
        let ns = f.softirq_s * 1e9 / dropped as f64;
        println!(
            "  {setup:<22} early drop: sent {} dropped {dropped}: {ns:.0} ns/packet",
            f.sent
        );
        push(s, "drop_ns_pkt", setup, ns);
        push(s, "drop_pps", setup, dropped as f64 / f.seconds);
    }
    Ok(())
}

pub(super) fn measure(w: &mut World, plan: &Plan, fl: &Path, out_dir: &Path) -> Result<()> {
    println!("==> uplink modes: topologies");
    w.setup_ceiling()?;
    w.setup_iptables(&[])?;
    w.setup_dataplane()?;
    let mut s = Samples::new();
    let mut seen_modes = Vec::new();
    let reps = reps(plan);
    for rep in 0..reps {
        println!("==> uplink modes: repetition {}/{reps}", rep + 1);
        for m in [Mode::Ceiling, Mode::Iptables] {
            let e = w.endpoints(m).clone();
            path_figures(w, plan, &mut s, m.name(), &e.out, &e.pub_ip, "published")?;
            path_figures(w, plan, &mut s, m.name(), &e.c1, &e.c2_ip, "c2c")?;
        }
        flood_figures(w, plan, fl, &mut s, "iptables", Mode::Iptables)?;
        let e = w.endpoints(Mode::Dataplane).clone();
        path_figures(w, plan, &mut s, "dataplane", &e.c1, &e.c2_ip, "c2c")?;
        for i in 0..MODES.len() {
            let mode = MODES[(i + rep) % MODES.len()];
            w.restart_dataplane(mode)?;
            let shown = w.dataplane_uplink_mode()?;
            if !seen_modes.contains(&shown) {
                seen_modes.push(shown.clone());
            }
            let setup = format!("dataplane {mode}");
            probe(w.loadgen(), &e.out, &format!("{}:{RR_PORT}", e.pub_ip))
                .with_context(|| format!("{setup}: outside->published"))?;
            path_figures(w, plan, &mut s, &setup, &e.out, &e.pub_ip, "published")?;
            flood_figures(w, plan, fl, &mut s, &setup, Mode::Dataplane)?;
        }
    }
    // Leave the agent in its default mode.
    w.restart_dataplane("auto")?;
    let (md, js) = report(&s, plan, &seen_modes);
    fs::write(out_dir.join("uplink.md"), &md)?;
    fs::write(
        out_dir.join("uplink.json"),
        serde_json::to_string_pretty(&js)?,
    )?;
    println!("{md}");
    Ok(())
}

fn reps(plan: &Plan) -> usize {
    if plan.level == super::Level::Smoke {
        plan.reps
    } else {
        plan.reps.max(5)
    }
}

/// (median, min, max).
fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    };
    Some((med, v[0], v[n - 1]))
}

fn med(s: &Samples, metric: &'static str, setup: &str) -> Option<f64> {
    s.get(&(metric, setup.to_string()))
        .and_then(|v| stats(v))
        .map(|x| x.0)
}

fn cell(s: &Samples, metric: &'static str, setup: &str) -> String {
    match s.get(&(metric, setup.to_string())).and_then(|v| stats(v)) {
        Some((m, lo, hi)) if m >= 100.0 => format!("{m:.0} [{lo:.0}–{hi:.0}]"),
        Some((m, lo, hi)) => format!("{m:.1} [{lo:.1}–{hi:.1}]"),
        None => "—".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn rcell(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}x"))
}

const METRICS: [(&str, &str); 8] = [
    ("pub_tput_1", "outside -> published, 1 TCP stream (Gbit/s)"),
    ("pub_rr_p50", "outside -> published, RR p50 (µs)"),
    ("pub_crr", "outside -> published, new connections (/s)"),
    ("drop_ns_pkt", "early drop, softirq ns per dropped packet"),
    ("drop_pps", "early drop, drops per second"),
    ("c2c_tput_1", "c2c, 1 TCP stream (Gbit/s)"),
    ("c2c_rr_p50", "c2c, RR p50 (µs)"),
    ("c2c_crr", "c2c, new connections (/s)"),
];

fn report(s: &Samples, plan: &Plan, seen: &[String]) -> (String, serde_json::Value) {
    let mut setups = vec!["ceiling".to_string(), "iptables".to_string()];
    setups.push("dataplane".into());
    setups.extend(MODES.iter().map(|m| format!("dataplane {m}")));
    let mut md = format!(
        "# Uplink modes\n\n{} repetitions (median [min–max]), each repetition measures the ceiling, iptables and the dataplane agent in each `--uplink-mode` in turn (the agent restarted with the same state; the order of the modes rotates). The uplink is a veth. Modes the kernel showed on the uplink: {}. c2c does not cross the uplink: it is measured once per repetition (\"dataplane\").\n\n| metric | {} |\n|{}\n",
        reps(plan),
        seen.join(", "),
        setups.join(" | "),
        " --- |".repeat(setups.len() + 1)
    );
    let mut jrows = Vec::new();
    for (metric, title) in METRICS {
        let cells: Vec<String> = setups.iter().map(|x| cell(s, metric, x)).collect();
        if cells.iter().all(|c| c == "—") {
            continue;
        }
        let _ = writeln!(md, "| {title} | {} |", cells.join(" | "));
        for x in &setups {
            if let Some(v) = s.get(&(metric, x.clone())) {
                jrows.push(json!({"metric": metric, "setup": x, "values": v}));
            }
        }
    }
    md.push_str("\nRatios of the medians (dataplane mode / iptables, dataplane mode / ceiling; for RR and the drop cost lower is better):\n\n| mode | published tput / iptables | / ceiling | RR p50 / iptables | / ceiling | CRR / iptables | drop ns / iptables |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    let m = |k, x: &str| med(s, k, x);
    let mut best: Option<(&str, f64, f64)> = None;
    for mode in MODES {
        let x = format!("dataplane {mode}");
        let ti = ratio(m("pub_tput_1", &x), m("pub_tput_1", "iptables"));
        let tc = ratio(m("pub_tput_1", &x), m("pub_tput_1", "ceiling"));
        let _ = writeln!(
            md,
            "| {mode} | {} | {} | {} | {} | {} | {} |",
            rcell(ti),
            rcell(tc),
            rcell(ratio(m("pub_rr_p50", &x), m("pub_rr_p50", "iptables"))),
            rcell(ratio(m("pub_rr_p50", &x), m("pub_rr_p50", "ceiling"))),
            rcell(ratio(m("pub_crr", &x), m("pub_crr", "iptables"))),
            rcell(ratio(m("drop_ns_pkt", &x), m("drop_ns_pkt", "iptables"))),
        );
        if let (Some(ti), Some(tc)) = (ti, tc) {
            if best.is_none_or(|b| tc > b.2) {
                best = Some((mode, ti, tc));
            }
        }
    }
    let c2c = ratio(m("c2c_tput_1", "dataplane"), m("c2c_tput_1", "ceiling"));
    let verdict = |ok: bool| if ok { "met" } else { "**MISSED**" };
    md.push_str("\n## Targets (issue 12)\n\n");
    let auto = ratio(
        m("pub_tput_1", "dataplane tcx"),
        m("pub_tput_1", "iptables"),
    );
    let auto_c = ratio(m("pub_tput_1", "dataplane tcx"), m("pub_tput_1", "ceiling"));
    match (auto, auto_c) {
        (Some(i), Some(c)) => {
            let _ = writeln!(
                md,
                "- outside -> published, 1 stream, in `auto` mode on this veth uplink (tcx): {i:.2}x iptables (target >= 1.2x: {}), {c:.2}x the ceiling (target >= 0.95x: {}).",
                verdict(i >= 1.2),
                verdict(c >= 0.95)
            );
        }
        _ => md.push_str("- outside -> published: not measured\n"),
    }
    if let Some((mode, i, c)) = best {
        let _ = writeln!(
            md,
            "- fastest mode for 1-stream outside -> published in this run: {mode} ({i:.2}x iptables, {c:.2}x the ceiling)."
        );
    }
    match c2c {
        Some(c) => {
            let _ = writeln!(
                md,
                "- c2c, 1 stream: {c:.2}x the ceiling (target >= 0.95x: {}).",
                verdict(c >= 0.95)
            );
        }
        None => md.push_str("- c2c: not measured\n"),
    }
    md.push_str("\nThe ceiling is a bare veth pair between two namespaces (no routing hop, no programs); the machine has 2 vCPUs shared with other builds, so the spread between repetitions is part of the result.\n");
    let js = json!({
        "reps": reps(plan),
        "modes_seen": seen,
        "samples": jrows,
        "targets": {
            "published_tput_1_vs_iptables_tcx": auto,
            "published_tput_1_vs_ceiling_tcx": auto_c,
            "c2c_tput_1_vs_ceiling": c2c,
        },
    });
    (md, js)
}

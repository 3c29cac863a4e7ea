//! The "Per-packet cost" section of report.md / report.json: BPF statistics
//! under load per path and program, their overhead, the BPF_PROG_TEST_RUN
//! micro-benchmark, helper calls of the loaded programs and per path, and
//! the per-packet targets.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::{json, Value};

use super::cost::{CostPath, CostResult};
use crate::workspace_root;

/// Small-packet c2c cost target (ns per packet) and the GSO factor.
const TARGET_NS: f64 = 200.0;
const TARGET_GSO: f64 = 1.3;

/// Map lookups and helper calls per path, counted by reading
/// dataplane-ebpf/src at this commit (steady state: the flow's entries
/// exist). The report says when the programs changed since.
const COUNTED_AT: &str = "902cba3";
/// (path, program, hash-map lookups, which, other helper calls, which)
const PER_PATH: &[(&str, &str, u32, &str, u32, &str)] = &[
    ("c2c same network", "dp_from_container", 2, "IF_ENDPOINTS, ENDPOINTS; counters in the EP_STATS_IX array (inlined, tx and rx); the network's policy rides in the endpoint entry (NETWORKS only for entries without it)", 1, "redirect_peer (MACs written directly; no pull: the headers are linear)"),
    ("c2c denied (cross network)", "dp_from_container", 2, "IF_ENDPOINTS, ENDPOINTS; EP_STATS_IX and DROPS arrays inlined", 0, "-"),
    ("masquerade out", "dp_from_container", 8, "IF_ENDPOINTS, ENDPOINTS, NETWORKS, CT, PORTS, HOST_IPS, NAT_OUT, NAT_IN; CONFIG and EP_STATS_IX arrays inlined", 5, "fib_lookup, ktime_get_ns, l4_csum_replace x2 (address and port differences), redirect (IPv4 header, ports, TTL, MACs written directly)"),
    ("masquerade reply in", "dp_xdp_uplink", 4, "ENDPOINTS, PORTS (exact), HOST_IPS, PORTS (any)", 0, "-"),
    ("masquerade reply in", "dp_from_uplink", 3, "ENDPOINTS, NAT_IN, ENDPOINTS; CONFIG and EP_STATS_IX arrays inlined", 4, "ktime_get_ns, l4_csum_replace x2, redirect_peer"),
    ("published port in", "dp_xdp_uplink", 7, "ENDPOINTS (dst), PORTS (exact), HOST_IPS, PORTS (any), ENDPOINTS (src), HOST_IPS (src), CT", 1, "ktime_get_ns (DNAT written directly)"),
    ("published port in", "dp_from_uplink", 1, "ENDPOINTS; CONFIG and EP_STATS_IX arrays inlined", 1, "redirect_peer (MACs written directly)"),
    ("published port in (tcx)", "dp_tc_uplink", 8, "ENDPOINTS (dst), PORTS (exact), HOST_IPS, PORTS (any), ENDPOINTS (src), HOST_IPS (src), CT, ENDPOINTS (container); EP_STATS_IX array inlined", 4, "ktime_get_ns, l4_csum_replace x2, redirect_peer (IPv4 header, port and MACs written directly)"),
    ("masquerade reply in (tcx)", "dp_tc_uplink", 3, "ENDPOINTS, NAT_IN, ENDPOINTS (no port lookup: the destination port is in the masquerade range); CONFIG and EP_STATS_IX arrays inlined", 4, "ktime_get_ns, l4_csum_replace x2, redirect_peer"),
    ("published port reply out", "dp_from_container", 5, "IF_ENDPOINTS, ENDPOINTS, NETWORKS, CT, ENDPOINTS; EP_STATS_IX array inlined", 5, "ktime_get_ns, fib_lookup, l4_csum_replace x2, redirect"),
    ("hairpin (either direction)", "dp_from_container", 5, "IF_ENDPOINTS, ENDPOINTS, NETWORKS, CT, ENDPOINTS; EP_STATS_IX array inlined (tx, rx)", 4, "ktime_get_ns, l4_csum_replace x2, redirect_peer (both addresses and ports translated)"),
];

/// "changed" / "unchanged" / "unknown": dataplane-ebpf/src since COUNTED_AT.
fn programs_changed() -> &'static str {
    let st = Command::new("git")
        .current_dir(workspace_root())
        .args(["diff", "--quiet", COUNTED_AT, "--", "dataplane-ebpf/src"])
        .status();
    match st.map(|s| s.code()) {
        Ok(Some(0)) => "unchanged",
        Ok(Some(1)) => "changed",
        _ => "unknown",
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.0}"))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// ns/run of `prog` under `workload` on `path`, with its run count.
fn under_load(c: &CostResult, path: CostPath, workload: &str, prog: &str) -> Option<(u64, f64)> {
    c.load
        .iter()
        .find(|p| p.path == path && p.workload == workload)?
        .progs
        .iter()
        .find(|(n, _)| n == prog)
        .and_then(|(_, d)| d.ns_per_run().map(|ns| (d.runs, ns)))
}

/// A target: (name, met, detail).
pub(super) type Target = (String, Option<bool>, String);

/// Writes the section; returns its JSON and the targets it evaluated.
/// `rr_ratio`/`tput_ratio`: dataplane c2c RR p50 and 1-stream throughput
/// over the ceiling's, from the main measurements of the same run.
pub(super) fn section(
    md: &mut String,
    c: &CostResult,
    rr_ratio: Option<f64>,
    tput_ratio: Option<f64>,
) -> (Value, Vec<Target>) {
    let _ = writeln!(md, "\n## Per-packet cost\n");
    md.push_str("What the eBPF programs cost per packet, from the kernel's own accounting: BPF run-time statistics were switched on with the `bpf(BPF_ENABLE_STATS, BPF_STATS_RUN_TIME)` command only for this part of the run (they stay on only while its fd is open, so nothing global is left on if the harness dies), and `run_cnt`/`run_time_ns` of the agent's programs (found through its pinned links, so programs of other processes on the machine are never counted) were read before and after traffic on each path of the dataplane topology. ns/run is the time inside the program (helpers and map lookups included), not the rest of the stack.\n\n");
    let (small, gso) = (
        under_load(c, CostPath::C2c, "udp64", "dp_from_container"),
        under_load(c, CostPath::C2c, "tcp", "dp_from_container"),
    );
    let mut targets: Vec<Target> = Vec::new();
    targets.push((
        format!("dp_from_container c2c, small packets (64-byte UDP, BPF stats under load) <= {TARGET_NS:.0} ns/packet"),
        small.map(|(_, ns)| ns <= TARGET_NS),
        small.map_or("not measured".into(), |(_, ns)| format!("{ns:.0} ns/packet")),
    ));
    let gso_ratio = match (small, gso) {
        (Some((_, s)), Some((_, g))) if s > 0.0 => Some(g / s),
        _ => None,
    };
    targets.push((
        format!("dp_from_container c2c, bulk TCP skbs (GSO, ACKs included) <= {TARGET_GSO}x the small-packet cost"),
        gso_ratio.map(|r| r <= TARGET_GSO),
        match (gso, gso_ratio) {
            (Some((_, g)), Some(r)) => format!("{g:.0} ns/skb = {r:.2}x"),
            _ => "not measured".into(),
        },
    ));
    targets.push((
        "c2c RR p50 <= 1.05x the direct veth pair (ceiling)".into(),
        rr_ratio.map(|r| r <= 1.05),
        rr_ratio.map_or("not measured".into(), |r| format!("{r:.3}x")),
    ));
    targets.push((
        "c2c throughput (1 stream) >= 0.95x the direct veth pair (ceiling)".into(),
        tput_ratio.map(|r| r >= 0.95),
        tput_ratio.map_or("not measured".into(), |r| format!("{r:.3}x")),
    ));
    let word = |m: Option<bool>| match m {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "not evaluated",
    };
    let line: Vec<String> = targets
        .iter()
        .map(|(n, m, d)| format!("{n}: {d}, {}", word(*m)))
        .collect();
    let _ = writeln!(md, "**Targets**: {}.\n", line.join("; "));

    md.push_str("### Under load (BPF statistics)\n\nWorkloads, each alone on one path: `udp64` = iperf3 -u -b 0 -l 22 (64-byte frames, one way), `tcp` = iperf3 1 stream (GSO skbs one way, ACKs the other way, both counted), `rr` = dp-loadgen rr (32-byte request/response, TCP). Paths: `c2c` container 1 -> container 2; `outside->published` outside client -> host uplink IP, ports published to container 2 (5201 tcp+udp, 7000); `masquerade out` container 1 -> a server in the outside netns (10.231.0.1); `hairpin` container 1 -> the host uplink IP's published ports. The cgroup socket programs (per connect/sendmsg, not per packet) are left out here and kept in report.json.\n\n| path | workload | result | program | what it handles | runs | ns/run |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    let mut jload = Vec::new();
    for p in &c.load {
        // The cgroup socket programs run per connect/sendmsg of any socket
        // in the cgroup, not per packet: only in report.json.
        for (prog, d) in &p.progs {
            jload.push(json!({
                "path": p.path.name(), "workload": p.workload, "result": p.detail,
                "program": prog, "role": p.path.role(prog),
                "runs": d.runs, "run_time_ns": d.ns, "ns_per_run": d.ns_per_run(),
            }));
            if prog.starts_with("dp_sock_") {
                continue;
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {prog} | {} | {} | {} |",
                p.path.name(),
                p.workload,
                p.detail,
                p.path.role(prog),
                d.runs,
                fmt(d.ns_per_run())
            );
        }
    }

    let (rr_off, rr_on, t_off, t_on) = (
        median(c.overhead.iter().map(|o| o.rr_p50_off).collect()),
        median(c.overhead.iter().map(|o| o.rr_p50_on).collect()),
        median(c.overhead.iter().map(|o| o.tput_off).collect()),
        median(c.overhead.iter().map(|o| o.tput_on).collect()),
    );
    let r = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let _ = writeln!(
        md,
        "\n### Overhead of the statistics\n\nThe same c2c measurement (dp-loadgen rr, then iperf3 1 stream) with the statistics off and on, {} repetition(s), order alternating; medians. `kernel.bpf_stats_enabled` before the measurement: {}.\n\n| metric | stats off | stats on | on / off |\n| --- | --- | --- | --- |\n| c2c RR p50 (us) | {} | {} | {} |\n| c2c throughput, 1 stream (Gbit/s) | {} | {} | {} |\n",
        c.overhead.len(),
        match c.global_stats {
            Some(true) => "1 (someone else has them on globally: the \"off\" side was not off)",
            Some(false) => "0",
            None => "unknown",
        },
        rr_off.map_or("n/a".into(), |v| format!("{v:.1}")),
        rr_on.map_or("n/a".into(), |v| format!("{v:.1}")),
        r(rr_on, rr_off).map_or("n/a".into(), |v| format!("{v:.3}x")),
        t_off.map_or("n/a".into(), |v| format!("{v:.2}")),
        t_on.map_or("n/a".into(), |v| format!("{v:.2}")),
        r(t_on, t_off).map_or("n/a".into(), |v| format!("{v:.3}x")),
    );

    md.push_str("\n### Without traffic (BPF_PROG_TEST_RUN)\n\n");
    let jprog = match &c.progrun {
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}\n");
            json!({"error": e})
        }
        Ok(pr) => {
            let _ = writeln!(md, "The agent's eBPF object (as embedded in the agent, written out by `dp-ebpf-object`) loaded privately with unpinned maps in a namespace of the run holding the interfaces, routes and neighbour the programs look up; maps filled so that each path is taken (networks 1 and 2, three endpoints, uplink config, a UDP port published on 0.0.0.0, the host address). A first run creates the flow's state, the second is checked like the first (verdict, output MACs, addresses, ports, checksums), then every timed run's verdict is checked: a path that does not do what it should is reported as broken, not timed. The programs rewrite the frame in place and `repeat` reruns them on the rewritten frame (a delivered frame then looks spoofed), so each run is one syscall with `repeat = 1`; the kernel's per-run time then includes one read of the test-run clock and the caches the syscall path cooled down. That difference is calibrated on the denied path (which leaves the frame alone) as its lone-run median minus its per-run time inside one `repeat = {}` loop: {} ns, subtracted in the `program` column (a hot-cache figure; the raw median is closer to a packet among other work).\n",
                pr.repeat,
                fmt(pr.timer_ns));
            md.push_str("| path | program | frame | runs | median ns/run (raw) | program ns/run | mean ns/run (raw) |\n| --- | --- | --- | --- | --- | --- | --- |\n");
            let mut rows = Vec::new();
            for p in &pr.paths {
                let prog_ns =
                    (p.broken.is_none()).then(|| p.median_ns - pr.timer_ns.unwrap_or(0.0));
                match &p.broken {
                    None => {
                        let _ = writeln!(
                            md,
                            "| {} | {} | {} B | {} | {:.0} | {} | {:.0} |",
                            p.name,
                            p.program,
                            p.frame_len,
                            p.runs,
                            p.median_ns,
                            fmt(prog_ns),
                            p.mean_ns
                        );
                    }
                    Some(b) => {
                        let _ = writeln!(
                            md,
                            "| {} | {} | {} B | **BROKEN**: {b} | - | - | - |",
                            p.name, p.program, p.frame_len
                        );
                    }
                }
                rows.push(json!({
                    "path": p.name, "program": p.program, "frame_bytes": p.frame_len,
                    "runs": p.runs, "median_ns": p.median_ns, "mean_ns": p.mean_ns,
                    "program_ns": prog_ns, "broken": p.broken,
                }));
            }
            json!({"repeat_calibration": pr.repeat, "timer_ns": pr.timer_ns, "paths": rows})
        }
    };

    md.push_str("\n### Helper calls in the loaded programs\n\nEvery call instruction of the agent's programs as the kernel runs them (`bpftool prog dump xlated`; all paths together; array lookups are inlined by the verifier and do not appear, hash-map lookups appear as calls of the map type's lookup function).\n\n| program | map lookups | other calls (helpers, bpf-to-bpf) | by callee |\n| --- | --- | --- | --- |\n");
    let mut jcalls = serde_json::Map::new();
    for (prog, m) in &c.calls {
        let lookups: u32 = m
            .iter()
            .filter(|(k, _)| super::bpfstats::is_map_lookup(k))
            .map(|(_, v)| v)
            .sum();
        let total: u32 = m.values().sum();
        let by: Vec<String> = m.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        let _ = writeln!(
            md,
            "| {prog} | {lookups} | {} | {} |",
            total - lookups,
            by.join(", ")
        );
        jcalls.insert(prog.clone(), json!(m));
    }
    let changed = programs_changed();
    let _ = writeln!(
        md,
        "\n### Map lookups and helper calls per path\n\nCounted by reading dataplane-ebpf/src at commit {COUNTED_AT} (the steady state of each flow: its entries exist). dataplane-ebpf/src since then: {}{}.\n\n| path | program | hash-map lookups | which | other helper calls | which |\n| --- | --- | --- | --- | --- | --- |",
        changed,
        if changed == "unchanged" { "" } else { ": recount before relying on this table" }
    );
    let mut jpath = Vec::new();
    for (path, prog, n, which, h, hw) in PER_PATH {
        let _ = writeln!(md, "| {path} | {prog} | {n} | {which} | {h} | {hw} |");
        jpath.push(json!({"path": path, "program": prog, "map_lookups": n, "maps": which, "helper_calls": h, "helpers": hw}));
    }
    let j = json!({
        "stats_enabled_globally_before": c.global_stats,
        "seconds": c.secs,
        "under_load": jload,
        "overhead": {
            "rr_p50_off_us": rr_off, "rr_p50_on_us": rr_on, "rr_on_over_off": r(rr_on, rr_off),
            "tput_off_gbps": t_off, "tput_on_gbps": t_on, "tput_on_over_off": r(t_on, t_off),
            "repetitions": c.overhead.len(),
        },
        "prog_test_run": jprog,
        "xlated_calls": jcalls,
        "per_path_calls": {"counted_at": COUNTED_AT, "programs_since": changed, "rows": jpath},
        "targets": targets.iter().map(|(n, m, d)| json!({"target": n, "met": m, "detail": d})).collect::<Vec<_>>(),
    });
    (j, targets)
}

//! Cost of tracing: the dataplane's container-to-container and
//! outside-to-published-port throughput (iperf3, one stream) and
//! request/response latency and rate (dp-loadgen rr) with no monitor
//! attached (the programs read one flag per packet) and with `dataplane
//! monitor --type all --format json` attached (every drop and every
//! redirected or translated packet is an event, up to the per-CPU rate
//! limit, decoded, named and printed by the agent), alternated in the same
//! run. Writes `monitor.md` and `monitor.json` next to the report.

use std::fmt::Write as _;
use std::{fs, path::Path, thread, time::Duration, time::Instant};

use anyhow::{bail, Result};
use serde_json::json;

use super::{
    measure::{iperf, loadgen},
    topo::{World, IPERF_PORT, RR_PORT},
    Plan,
};

/// One measurement.
struct Row {
    path: &'static str,
    monitor: bool,
    metric: &'static str,
    value: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Start `dataplane monitor` and wait until the agent attached it (it says
/// so on stderr, into the process's log).
fn attach(w: &mut World) -> Result<usize> {
    let mut c = w.dp();
    c.args(["--format", "json", "monitor", "--type", "all"]);
    let slot = w.spawn_bg(&mut c)?;
    let log = w.tmp.join(format!("bg-{slot}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Listening for") {
            return Ok(slot);
        }
        if Instant::now() > deadline {
            w.kill_bg(slot);
            bail!("dataplane monitor did not attach within 10 s: {text}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

pub(super) fn measure(w: &mut World, plan: &Plan, out_dir: &Path) -> Result<()> {
    println!("==> monitor (tracing off vs on)");
    let e = w.dataplane.clone();
    let mut rows = Vec::new();
    let mut events_lines = 0usize;
    for rep in 0..plan.reps {
        // Alternate which state goes first.
        let order = if rep % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for monitor in order {
            let slot = if monitor { Some(attach(w)?) } else { None };
            for (path, ns, ip) in [
                ("c2c", &e.c1, &e.c2_ip),
                ("outside->published", &e.out, &e.pub_ip),
            ] {
                let t = iperf(ns, ip, IPERF_PORT, 1, plan.tput_secs)?;
                let r = loadgen(w.loadgen(), ns, "rr", &format!("{ip}:{RR_PORT}"), plan.rr)?;
                let state = if monitor { "on" } else { "off" };
                println!(
                    "  monitor {state:<3} {path}: {:.2} Gbit/s, rr p50 {:.1} us, {:.0} rr/s",
                    t.gbps,
                    r.f("p50_us"),
                    r.f("rate")
                );
                for (metric, value) in [
                    ("tput_gbps", t.gbps),
                    ("rr_p50_us", r.f("p50_us")),
                    ("rr_p99_us", r.f("p99_us")),
                    ("rr_rate", r.f("rate")),
                ] {
                    rows.push(Row {
                        path,
                        monitor,
                        metric,
                        value,
                    });
                }
            }
            if let Some(s) = slot {
                w.kill_bg(s);
                let log = fs::read_to_string(w.tmp.join(format!("bg-{s}.log"))).unwrap_or_default();
                events_lines += log.lines().filter(|l| l.starts_with('{')).count();
            }
        }
    }
    write(out_dir, plan, &rows, events_lines)
}

fn write(out_dir: &Path, plan: &Plan, rows: &[Row], events: usize) -> Result<()> {
    let mut md = String::new();
    let _ = writeln!(md, "# Cost of tracing (`dataplane monitor`)\n");
    let _ = writeln!(
        md,
        "Dataplane mode; per path, one iperf3 stream ({:.0} s) and dp-loadgen rr ({} ms), \
         {} repetition(s) alternating no monitor and `dataplane monitor --type all` \
         (every drop and redirected/translated packet is an event, rate-limited to \
         10000/s per CPU; {events} events were printed). Medians; on/off is the ratio.\n",
        plan.tput_secs,
        plan.rr.as_millis(),
        plan.reps
    );
    let _ = writeln!(md, "| path | metric | monitor off | monitor on | on/off |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    for path in ["c2c", "outside->published"] {
        for metric in ["tput_gbps", "rr_p50_us", "rr_p99_us", "rr_rate"] {
            let pick = |on: bool| {
                median(
                    rows.iter()
                        .filter(|r| r.path == path && r.metric == metric && r.monitor == on)
                        .map(|r| r.value)
                        .collect(),
                )
            };
            let (off, on) = (pick(false), pick(true));
            let _ = writeln!(
                md,
                "| {path} | {metric} | {off:.2} | {on:.2} | {:.3} |",
                on / off
            );
            json_rows.push(json!({"path": path, "metric": metric, "off": off, "on": on}));
        }
    }
    fs::write(out_dir.join("monitor.md"), &md)?;
    fs::write(
        out_dir.join("monitor.json"),
        serde_json::to_string_pretty(&json!({"events": events, "rows": json_rows}))?,
    )?;
    print!("{md}");
    Ok(())
}

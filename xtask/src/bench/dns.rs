//! The "Names (DNS)" section of `cargo xtask bench`: queries per second and
//! p50/p99 latency of the embedded resolver (127.0.0.11 in a container of
//! the dataplane topology) for a local name (a container on the same
//! user-defined network) and a forwarded name (answered by a stand-in
//! upstream in the outside namespace, through the container's masqueraded
//! path), with closed-loop UDP clients (`dp-dns-load`, the agent's
//! `dns::bench`). The baseline is Docker's embedded resolver on a
//! user-defined network, measured in the same run when `dockerd` is
//! installed; without it the column is skipped with a note. Writes `dns.md`
//! and `dns.json` next to the main report.

use std::fmt::Write as _;
use std::{fs, path::Path, path::PathBuf, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::{
    dns_docker::{self, Docker},
    topo::{in_ns, World, UPLINK_OUT_IP},
    Level, Plan,
};
use crate::{capture, cargo, describe, run, target_dir};

/// The name the forwarded queries ask (answered by the stand-in upstream).
const FORWARDED_NAME: &str = "host1.ext.test";
const UPSTREAM_ANSWER: &str = "192.0.2.1";
const LOCAL_NAME: &str = "dns-target";

/// Target from the task: >= 5x Docker's qps for local names at p99 <= 1 ms.
const TARGET_QPS_RATIO: f64 = 5.0;
const TARGET_P99_US: f64 = 1000.0;

/// One load run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    qps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn build_helper(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args([
        "build",
        "-p",
        "xtask",
        "--features",
        "agent-object",
        "--bin",
        "dp-dns-load",
    ]);
    if release {
        c.arg("--release");
    }
    println!("$ {}", describe(&c));
    run(&mut c)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("dp-dns-load");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

fn load(
    helper: &Path,
    netns: &str,
    target: &str,
    clients: usize,
    secs: f64,
    name: &str,
) -> Result<Run> {
    let mut c = in_ns(netns, helper);
    c.args([
        "load",
        target,
        &clients.to_string(),
        &secs.to_string(),
        name,
    ]);
    let out = capture(&mut c, Duration::from_secs_f64(secs + 30.0))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            describe(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("output of `{}`", describe(&c)))?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Run {
        qps: f("qps"),
        p50_us: f("p50_us"),
        p99_us: f("p99_us"),
        errors: v["not_noerror"].as_u64().unwrap_or(0) + v["timeouts"].as_u64().unwrap_or(0),
    })
}

fn median(mut v: Vec<Run>) -> Run {
    v.sort_by(|a, b| a.qps.total_cmp(&b.qps));
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Measure the section; the dataplane topology must be set up.
pub(super) fn measure(w: &mut World, plan: &Plan, release: bool, out_dir: &Path) -> Result<()> {
    println!("==> names (DNS)");
    let helper = build_helper(release)?;
    let (secs, clients) = match plan.level {
        Level::Smoke => (0.5, 2),
        Level::Quick => (2.0, 8),
        Level::Full => (5.0, 8),
    };
    // The stand-in upstream in the outside namespace.
    let out_ns = w.dataplane.out.clone();
    let mut c = in_ns(&out_ns, &helper);
    c.args(["upstream", &format!("{UPLINK_OUT_IP}:53"), UPSTREAM_ANSWER]);
    let upstream = w.spawn_bg(&mut c)?;
    let res = (|| -> Result<Value> {
        w.dp_cli(&["network", "create", "--subnet", "10.239.0.0/24", "dnsbench"])?;
        w.dp_cli(&["container", "create", "--network", "dnsbench", LOCAL_NAME])?;
        w.dp_cli(&[
            "container",
            "create",
            "--network",
            "dnsbench",
            "--dns",
            UPLINK_OUT_IP,
            "dns-client",
        ])?;
        let (client_ns, _) = w.container_ns("dns-client")?;
        let target = "127.0.0.11:53";
        // Correctness first: both names answer before anything is timed.
        for name in [LOCAL_NAME, FORWARDED_NAME] {
            let r = load(&helper, &client_ns, target, 1, 0.2, name)?;
            if r.qps <= 0.0 || r.errors > 0 {
                bail!("the embedded resolver does not answer {name}: {r:?}");
            }
        }
        let mut docker = match dns_docker::available() {
            Ok(()) => Some(Docker::start(w, LOCAL_NAME)?),
            Err(why) => {
                println!("dns: no Docker baseline: {why}");
                None
            }
        };
        if let Some(d) = &docker {
            let r = load(&helper, &d.client_ns, target, 1, 0.2, LOCAL_NAME)?;
            if r.qps <= 0.0 || r.errors > 0 {
                bail!("Docker's resolver does not answer {LOCAL_NAME}: {r:?}");
            }
        }
        let mut local = Vec::new();
        let mut fwd = Vec::new();
        let mut dkr = Vec::new();
        // Interleaved: the machine's noise hits both systems alike.
        for _ in 0..plan.reps {
            local.push(load(
                &helper, &client_ns, target, clients, secs, LOCAL_NAME,
            )?);
            if let Some(d) = &docker {
                dkr.push(load(
                    &helper,
                    &d.client_ns,
                    target,
                    clients,
                    secs,
                    LOCAL_NAME,
                )?);
            }
            fwd.push(load(
                &helper,
                &client_ns,
                target,
                clients,
                secs,
                FORWARDED_NAME,
            )?);
        }
        let version = docker.as_ref().map(|d| d.version.clone());
        if let Some(d) = docker.as_mut() {
            d.stop();
        }
        let (local, fwd) = (median(local), median(fwd));
        let (docker_row, ratio, note) = match version {
            Some(v) if !dkr.is_empty() => {
                let d = median(dkr);
                let ratio = if d.qps > 0.0 { local.qps / d.qps } else { 0.0 };
                let note = format!(
                    "Docker {v}: local names only (forwarding would need an upstream in its namespace)"
                );
                (json!({"version": v, "local": row(&d)}), Some(ratio), note)
            }
            _ => (
                Value::Null,
                None,
                "The Docker column is skipped (dockerd, containerd, runc or busybox-static missing)"
                    .to_string(),
            ),
        };
        Ok(json!({
            "clients": clients,
            "seconds": secs,
            "repetitions": plan.reps,
            "release": release,
            "dataplane": {"local": row(&local), "forwarded": row(&fwd)},
            "docker": docker_row,
            "docker_note": note,
            "local_qps_ratio": ratio,
            "target": format!(">= {TARGET_QPS_RATIO}x Docker's qps for local names at p99 <= {TARGET_P99_US} us"),
            "qps_target_met": ratio.map(|r| r >= TARGET_QPS_RATIO),
            "p99_target_met": local.p99_us <= TARGET_P99_US,
        }))
    })();
    w.kill_bg(upstream);
    let v = res?;
    let md = report(&v);
    print!("{md}");
    fs::write(out_dir.join("dns.md"), &md)?;
    fs::write(out_dir.join("dns.json"), serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

fn row(r: &Run) -> Value {
    json!({"qps": r.qps, "p50_us": r.p50_us, "p99_us": r.p99_us, "errors": r.errors})
}

fn report(v: &Value) -> String {
    let cell = |r: &Value| {
        if r.is_null() {
            return "—".to_string();
        }
        format!(
            "{:.0} qps, p50 {:.0} µs, p99 {:.0} µs ({} errors)",
            r["qps"].as_f64().unwrap_or(0.0),
            r["p50_us"].as_f64().unwrap_or(0.0),
            r["p99_us"].as_f64().unwrap_or(0.0),
            r["errors"]
        )
    };
    let met = |x: &Value| match x.as_bool() {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    };
    let mut s = String::from("## Names (DNS)\n\n");
    let _ = write!(
        s,
        "Closed-loop UDP clients ({}) against 127.0.0.11 in a container, {} s per run, median of {} runs, interleaved.\n\n",
        v["clients"], v["seconds"], v["repetitions"]
    );
    s.push_str("| name | dataplane | Docker |\n|---|---|---|\n");
    let _ = writeln!(
        s,
        "| local (`{LOCAL_NAME}`) | {} | {} |",
        cell(&v["dataplane"]["local"]),
        cell(&v["docker"]["local"])
    );
    let _ = write!(
        s,
        "| forwarded (`{FORWARDED_NAME}`) | {} | — |\n\n",
        cell(&v["dataplane"]["forwarded"])
    );
    let _ = writeln!(
        s,
        "{}. Local qps / Docker's: {}. Target {}: qps {}, p99 {}.{}",
        v["docker_note"].as_str().unwrap_or(""),
        v["local_qps_ratio"]
            .as_f64()
            .map_or("—".to_string(), |r| format!("{r:.2}x")),
        v["target"].as_str().unwrap_or(""),
        met(&v["qps_target_met"]),
        met(&v["p99_target_met"]),
        if v["release"] == true {
            ""
        } else {
            " Debug build of the agent and the load generator (use --release for figures)."
        }
    );
    s
}

impl World {
    /// Run the CLI against the bench's agent.
    fn dp_cli(&self, args: &[&str]) -> Result<String> {
        let mut c = self.dp();
        c.args(args);
        let out = capture(&mut c, Duration::from_mins(1))?;
        if !out.status.success() {
            return Err(anyhow!(
                "`{}` failed: {}",
                describe(&c),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn container_ns(&self, name: &str) -> Result<(String, String)> {
        self.container(name)
    }
}

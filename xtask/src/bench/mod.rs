//! `cargo xtask bench`: the same container topology built three ways
//! (a direct veth pair as the ceiling, a Linux bridge with Docker's iptables
//! rules, and the dataplane agent), measured interleaved in one run.
//!
//! Modules: `topo` (namespaces, bridge, rules, agent; cleanup on drop),
//! `rules` (Docker's rule set), `measure` (iperf3, dp-loadgen, CPU
//! accounting), `cost` (per-packet cost of the eBPF programs: BPF statistics
//! under load via `bpfstats`, the BPF_PROG_TEST_RUN micro-benchmark in
//! `progrun`/`progrun_pkt`), `report`, `cost_report`, `targets` and
//! `plot` (statistics, Markdown, JSON, SVG), `dns` (the embedded resolver's
//! qps and latency, its own `dns.md`/`dns.json`), `docker` and
//! `docker_report` (the real Docker column: Docker's bridge driver and the
//! agent's Docker plugin under one private dockerd), `monitor` (tracing off
//! vs on, `monitor.md`/`monitor.json`), `overlay` (multi-host overlay on a
//! simulated cluster: datapath against the underlay and the kernel's VXLAN
//! path, convergence, 5,000-node sync; `overlay_topo`, `overlay_report`, its
//! own `overlay.md`/`overlay.json`), `ipv6` (the IPv6 rows: ceiling,
//! Docker's ip6tables rule set and a dual-stack network, `ipv6.md`).
//! `--only overlay` / `--only ipv6` runs that section alone.
//! `uplink` compares the uplink modes (`--uplink-mode`: generic XDP, tcx,
//! native XDP) on the veth uplink against the ceiling and iptables
//! (`uplink.md`/`uplink.json`): `--only uplink`. `--only cost` runs the
//! per-packet cost section alone (`cost.md`).

mod bpfstats;
mod cost;
mod cost_report;
mod dns;
mod dns_docker;
mod docker;
mod docker_report;
mod ipv6;
mod measure;
mod monitor;
mod overlay;
mod overlay_report;
mod overlay_topo;
mod plot;
mod progrun;
mod progrun_pkt;
mod report;
mod rules;
mod targets;
mod topo;
mod uplink;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{build, cargo, describe, is_root, run, target_dir, workspace_root};
use measure::{flood, iperf, loadgen, probe, probe_blocked};
use report::{Env, FloodRun, Sample};
use topo::{
    Mode, World, FLOOD_PORT, IPERF_PORT, ISO_DENIED_PORT, RR_PORT, SCALE_BASE, UPLINK_OUT_IP,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Smoke,
    Quick,
    Full,
}

pub(crate) struct Opts {
    pub level: Level,
    pub out: Option<PathBuf>,
    /// Use the release build of the agent.
    pub release: bool,
    /// Run only this section (`overlay`).
    pub only: Option<String>,
}

/// Durations and repetitions of one level.
pub(crate) struct Plan {
    pub level: Level,
    pub reps: usize,
    pub tput_secs: f64,
    pub rr: Duration,
    pub crr: Duration,
    pub scale_crr: Duration,
    pub port_counts: Vec<u32>,
    /// Isolation cost: iperf3 seconds and RR duration per run.
    pub iso_tput_secs: f64,
    pub iso_rr: Duration,
    /// Early-drop flood seconds per run.
    pub flood_secs: f64,
    /// Per-packet cost: seconds of each iperf3 workload per path.
    pub cost_secs: f64,
    /// BPF_PROG_TEST_RUN: timed runs per path, `repeat` of the calibration.
    pub progrun_iters: u32,
    pub progrun_repeat: u32,
}

impl Plan {
    fn new(level: Level) -> Self {
        match level {
            Level::Smoke => Plan {
                level,
                reps: 1,
                tput_secs: 1.0,
                rr: Duration::from_millis(300),
                crr: Duration::from_millis(300),
                scale_crr: Duration::from_millis(300),
                port_counts: vec![1, 10],
                iso_tput_secs: 1.0,
                iso_rr: Duration::from_millis(300),
                flood_secs: 2.0,
                cost_secs: 1.0,
                progrun_iters: 2_000,
                progrun_repeat: 100_000,
            },
            Level::Quick => Plan {
                level,
                reps: 3,
                tput_secs: 3.0,
                rr: Duration::from_secs(1),
                crr: Duration::from_secs(1),
                scale_crr: Duration::from_secs(1),
                port_counts: vec![1, 1000, 10000],
                iso_tput_secs: 2.0,
                iso_rr: Duration::from_secs(1),
                flood_secs: 2.0,
                cost_secs: 2.0,
                progrun_iters: 20_000,
                progrun_repeat: 100_000,
            },
            Level::Full => Plan {
                level,
                reps: 5,
                tput_secs: 10.0,
                rr: Duration::from_secs(3),
                crr: Duration::from_secs(3),
                scale_crr: Duration::from_secs(3),
                port_counts: vec![1, 10, 100, 1000, 10000],
                iso_tput_secs: 10.0,
                iso_rr: Duration::from_secs(3),
                flood_secs: 5.0,
                cost_secs: 5.0,
                progrun_iters: 100_000,
                progrun_repeat: 1_000_000,
            },
        }
    }
}

/// Builds dp-loadgen and dp-flood (release); returns their paths.
fn build_loadgen() -> Result<(PathBuf, PathBuf)> {
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "xtask",
        "--bin",
        "dp-loadgen",
        "--bin",
        "dp-flood",
    ]);
    println!("$ {}", describe(&c));
    run(&mut c)?;
    let dir = target_dir().join("release");
    let (lg, fl) = (dir.join("dp-loadgen"), dir.join("dp-flood"));
    for p in [&lg, &fl] {
        if !p.is_file() {
            bail!("{} was not built", p.display());
        }
    }
    Ok((lg, fl))
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "the subcommand's options, handed over by main"
)]
pub(crate) fn bench(opts: Opts) -> Result<()> {
    if !is_root() {
        bail!("the benchmark creates network namespaces and loads eBPF programs: run it as root");
    }
    for tool in [
        "ip",
        "nsenter",
        "iperf3",
        "iptables-restore",
        "iptables-save",
        "taskset",
        "curl",
        "bpftool",
    ] {
        if measure::version("sh", &["-c", &format!("command -v {tool}")]).is_empty() {
            bail!("`{tool}` not found (run `cargo xtask setup`)");
        }
    }
    let started = Instant::now();
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("bench-out"));
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let bin = match std::env::var_os("DATAPLANE_BIN") {
        Some(b) => PathBuf::from(b),
        None => build(opts.release)?,
    };
    let (lg, fl) = build_loadgen()?;
    let plan = Plan::new(opts.level);
    raise_nofile();
    match opts.only.as_deref() {
        Some("overlay") => {
            overlay::measure(opts.level, &bin, &lg, opts.release, &out_dir)?;
            println!(
                "bench: wrote {} in {:.0}s",
                out_dir.join("overlay.md").display(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Some("ipv6") => {
            let mut world = World::new(bin.clone(), lg.clone())?;
            let res = (|| {
                world.setup_ceiling()?;
                world.setup_iptables(&[SCALE_BASE])?;
                world.setup_dataplane()?;
                ipv6::measure(&mut world, &plan, &out_dir)
            })();
            if res.is_err() {
                eprintln!("--- agent log (tail) ---\n{}", world.agent_log_tail());
            }
            let problems = world.cleanup();
            drop(world);
            res?;
            if !problems.is_empty() {
                bail!("cleanup incomplete: {}", problems.join("; "));
            }
            println!(
                "bench: wrote {} in {:.0}s",
                out_dir.join("ipv6.md").display(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        None | Some("uplink" | "cost") => {}
        Some(other) => {
            bail!("unknown bench section {other:?} (known: overlay, ipv6, uplink, cost)")
        }
    }

    let mut env = Env::collect(&bin, opts.release, opts.level);
    let mut world = World::new(bin.clone(), lg.clone())?;
    // `DATAPLANE_BENCH_ONLY=docker`: the real Docker section alone.
    if std::env::var("DATAPLANE_BENCH_ONLY").as_deref() == Ok("docker") {
        let r = docker::measure(&mut world, &plan, &bin)?;
        let md = docker_report::markdown(Some(&r));
        fs::write(out_dir.join("docker.md"), &md)?;
        println!("{md}");
        return Ok(());
    }
    let only = std::env::var("DATAPLANE_BENCH_ONLY")
        .ok()
        .or_else(|| opts.only.clone());
    if matches!(only.as_deref(), Some("uplink" | "cost")) {
        let section = only.unwrap_or_default();
        let res = if section == "uplink" {
            uplink::measure(&mut world, &plan, &fl, &out_dir)
        } else {
            cost_only(&mut world, &plan, opts.release, &out_dir)
        };
        if res.is_err() {
            eprintln!("--- agent log (tail) ---\n{}", world.agent_log_tail());
        }
        let problems = world.cleanup();
        drop(world);
        res?;
        if !problems.is_empty() {
            bail!("cleanup incomplete: {}", problems.join("; "));
        }
        println!(
            "bench: wrote {}/{section}.md in {:.0}s",
            out_dir.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let obj = cost::agent_object(opts.release, &world.tmp)?;
    let res = measure_all(&mut world, &plan, &mut env, &fl).and_then(|s| {
        env.cost = Some(cost::measure(&mut world, &plan, &obj)?);
        dns::measure(&mut world, &plan, opts.release, &out_dir)?;
        env.docker = Some(docker::measure(&mut world, &plan, &bin)?);
        monitor::measure(&mut world, &plan, &out_dir)?;
        ipv6::measure(&mut world, &plan, &out_dir)?;
        Ok(s)
    });
    if res.is_err() {
        eprintln!("--- agent log (tail) ---\n{}", world.agent_log_tail());
    }
    let problems = world.cleanup();
    drop(world);
    let samples = res?;
    if !problems.is_empty() {
        bail!("cleanup incomplete: {}", problems.join("; "));
    }
    // The overlay section on a cluster of its own, after the single-host
    // topology is gone.
    overlay::measure(opts.level, &bin, &lg, opts.release, &out_dir)?;
    env.wall_secs = started.elapsed().as_secs_f64();
    report::write(&out_dir, &env, &plan, &samples)?;
    println!(
        "bench: wrote {} and report.json in {:.0}s",
        out_dir.join("report.md").display(),
        env.wall_secs
    );
    Ok(())
}

/// `--only cost`: the dataplane topology and the per-packet cost section
/// alone (BPF statistics under load, BPF_PROG_TEST_RUN), written to
/// `cost.md`/`cost.json`.
fn cost_only(w: &mut World, plan: &Plan, release: bool, out_dir: &Path) -> Result<()> {
    let obj = cost::agent_object(release, &w.tmp)?;
    w.setup_dataplane()?;
    let c = cost::measure(w, plan, &obj)?;
    let mut md = String::from("# Per-packet cost (`--only cost`)\n");
    let (js, _) = cost_report::section(&mut md, &c, None, None);
    fs::write(out_dir.join("cost.md"), &md)?;
    fs::write(
        out_dir.join("cost.json"),
        serde_json::to_string_pretty(&js)?,
    )?;
    println!("{md}");
    Ok(())
}

/// The direct-access flood against the uplink of `m` (dp-flood from the
/// outside namespace to the container's address): what dp-flood measured
/// and how many packets `m` dropped meanwhile (the dataplane's
/// `direct_access_from_outside`, iptables' raw-table drops).
fn early_drop_flood(
    w: &World,
    plan: &Plan,
    fl: &Path,
    m: Mode,
    what: &str,
) -> Result<(measure::Flood, u64)> {
    let (iface, mac) = w.uplink_link(m)?;
    let e = w.endpoints(m).clone();
    let read = |w: &World| -> Result<u64> {
        match m {
            Mode::Dataplane => Ok(w
                .dataplane_drops()?
                .get("direct_access_from_outside")
                .copied()
                .unwrap_or(0)),
            _ => w.iptables_raw_drops(),
        }
    };
    let before = read(w)?;
    let f = flood(
        fl,
        &e.out,
        &iface,
        &mac,
        UPLINK_OUT_IP,
        &e.c2_ip,
        FLOOD_PORT,
        plan.flood_secs,
    )
    .with_context(|| format!("{what}: early-drop flood"))?;
    Ok((f, read(w)?.saturating_sub(before)))
}

/// The agent holds one socket per published port.
fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const r);
        }
    }
}

fn measure_all(w: &mut World, plan: &Plan, env: &mut Env, fl: &Path) -> Result<Vec<Sample>> {
    let max_n = *plan.port_counts.iter().max().unwrap_or(&1);
    let scale_ports: Vec<u16> = plan
        .port_counts
        .iter()
        .map(|n| SCALE_BASE + (*n - 1) as u16)
        .collect();
    if max_n as usize + SCALE_BASE as usize > 65535 {
        bail!("too many ports");
    }
    println!("==> topologies");
    w.setup_ceiling()?;
    env.bridge_nf = w.setup_iptables(&scale_ports)?;
    w.setup_dataplane()?;
    w.setup_dataplane_isolation()?;
    env.rules_example = rules::example(topo::BRIDGE, topo::BR_SUBNET, "172.18.0.3");

    println!("==> correctness checks");
    for m in Mode::ALL {
        let e = w.endpoints(m).clone();
        probe(w.loadgen(), &e.c1, &format!("{}:{RR_PORT}", e.c2_ip))
            .with_context(|| format!("{}: container-to-container path", m.name()))?;
        probe(w.loadgen(), &e.out, &format!("{}:{RR_PORT}", e.pub_ip))
            .with_context(|| format!("{}: outside-to-published-port path", m.name()))?;
        println!("ok: {} forwards c2c and outside->published", m.name());
    }
    let ipt = w.iptables_save(w.iptables.host_ns.as_deref().expect("host ns"))?;
    let dnat = ipt.lines().filter(|l| l.contains("-j DNAT")).count();
    if dnat == 0 || !ipt.contains("-A DOCKER-ISOLATION-STAGE-1") {
        bail!("the iptables host netns lacks Docker's rules:\n{ipt}");
    }
    let dps = w.iptables_save(w.dataplane.host_ns.as_deref().expect("host ns"))?;
    if let Some(r) = dps.lines().find(|l| l.starts_with("-A ")) {
        bail!("the dataplane host netns has an iptables rule: {r}");
    }
    env.checks.push(format!(
        "iptables host netns: {} rules (`-A` lines) of which {dnat} DNAT; dataplane host netns: no iptables rules",
        ipt.lines().filter(|l| l.starts_with("-A ")).count()
    ));
    env.checks.push(
        "a request/response went through container-to-container and outside-to-published-port in every mode"
            .into(),
    );
    println!("ok: iptables-save: rules in the iptables host netns, none in the dataplane one");
    isolation_checks(w, env)?;

    let mut samples = Vec::new();
    for rep in 0..plan.reps {
        println!("==> repetition {}/{}", rep + 1, plan.reps);
        // Rotate the order so no mode is always first.
        let order: Vec<Mode> = (0..3).map(|i| Mode::ALL[(i + rep) % 3]).collect();
        for (path, is_pub) in [("c2c", false), ("outside->published", true)] {
            for streams in [1u32, 4] {
                for &m in &order {
                    let e = w.endpoints(m);
                    let (ns, ip) = if is_pub {
                        (&e.out, &e.pub_ip)
                    } else {
                        (&e.c1, &e.c2_ip)
                    };
                    let t = iperf(ns, ip, IPERF_PORT, streams, plan.tput_secs)
                        .with_context(|| format!("{}: throughput {path}", m.name()))?;
                    println!(
                        "  {:<9} tput x{streams} {path}: {:.2} Gbit/s",
                        m.name(),
                        t.gbps
                    );
                    let metric = if streams == 1 { "tput_1" } else { "tput_4" };
                    samples.push(Sample::new(metric, path, m, t.gbps));
                    let cpu = if streams == 1 {
                        "tput_1_cpu"
                    } else {
                        "tput_4_cpu"
                    };
                    samples.push(Sample::new(cpu, path, m, t.cpu_s / t.gbits));
                    if t.softirq_s > 0.0 {
                        let sq = if streams == 1 {
                            "tput_1_softirq"
                        } else {
                            "tput_4_softirq"
                        };
                        samples.push(Sample::new(sq, path, m, t.softirq_s / t.gbits));
                    }
                }
            }
            for &m in &order {
                let e = w.endpoints(m);
                let (ns, addr) = if is_pub {
                    (&e.out, format!("{}:{RR_PORT}", e.pub_ip))
                } else {
                    (&e.c1, format!("{}:{RR_PORT}", e.c2_ip))
                };
                let r = loadgen(w.loadgen(), ns, "rr", &addr, plan.rr)
                    .with_context(|| format!("{}: rr {path}", m.name()))?;
                println!(
                    "  {:<9} rr {path}: p50 {:.1} us p99 {:.1} us",
                    m.name(),
                    r.f("p50_us"),
                    r.f("p99_us")
                );
                samples.push(Sample::new("rr_p50", path, m, r.f("p50_us")));
                samples.push(Sample::new("rr_p99", path, m, r.f("p99_us")));
                samples.push(Sample::new("rr_rate", path, m, r.f("rate")));
            }
            for &m in &order {
                let e = w.endpoints(m);
                let (ns, addr) = if is_pub {
                    (&e.out, format!("{}:{RR_PORT}", e.pub_ip))
                } else {
                    (&e.c1, format!("{}:{RR_PORT}", e.c2_ip))
                };
                let r = loadgen(w.loadgen(), ns, "crr", &addr, plan.crr)
                    .with_context(|| format!("{}: crr {path}", m.name()))?;
                let conns = r.f("connections");
                println!(
                    "  {:<9} crr {path}: {:.0} conn/s ({} errors)",
                    m.name(),
                    r.f("rate"),
                    r.f("errors")
                );
                samples.push(Sample::new("crr_rate", path, m, r.f("rate")));
                if conns > 0.0 && r.cpu_s > 0.0 {
                    samples.push(Sample::new("crr_cpu", path, m, r.cpu_s / (conns / 1000.0)));
                }
                if conns > 0.0 && r.softirq_s > 0.0 {
                    samples.push(Sample::new(
                        "crr_softirq",
                        path,
                        m,
                        r.softirq_s / (conns / 1000.0),
                    ));
                }
            }
        }
        for &n in &plan.port_counts {
            let port = SCALE_BASE + (n - 1) as u16;
            let path = format!("{n}");
            for &m in &order {
                let (ns, addr) = match m {
                    Mode::Ceiling => {
                        let e = &w.ceiling;
                        (e.out.clone(), format!("{}:{RR_PORT}", e.pub_ip))
                    }
                    Mode::Iptables => {
                        let dt = w.program_iptables(n)?;
                        samples.push(Sample::new("program_ms", &path, m, dt.as_secs_f64() * 1e3));
                        (
                            w.iptables.out.clone(),
                            format!("{}:{port}", w.iptables.pub_ip),
                        )
                    }
                    Mode::Dataplane => {
                        let dt = w.program_dataplane(n)?;
                        samples.push(Sample::new("program_ms", &path, m, dt.as_secs_f64() * 1e3));
                        (
                            w.dataplane.out.clone(),
                            format!("{}:{port}", w.dataplane.pub_ip),
                        )
                    }
                };
                probe(w.loadgen(), &ns, &addr)
                    .with_context(|| format!("{}: published port with {n} ports", m.name()))?;
                let r = loadgen(w.loadgen(), &ns, "crr", &addr, plan.scale_crr)
                    .with_context(|| format!("{}: crr with {n} ports", m.name()))?;
                println!(
                    "  {:<9} {n:>5} ports: {:.0} conn/s, first response p50 {:.1} us ({} errors)",
                    m.name(),
                    r.f("rate"),
                    r.f("p50_us"),
                    r.f("errors")
                );
                samples.push(Sample::new("ports_crr_rate", &path, m, r.f("rate")));
                samples.push(Sample::new("ports_first_p50", &path, m, r.f("p50_us")));
                samples.push(Sample::new("ports_first_p99", &path, m, r.f("p99_us")));
            }
        }
        isolation_rep(w, plan, env, fl, rep, &order, &mut samples)?;
        // Back to the base rule set / no scaling container between reps.
        w.program_iptables(0)?;
        w.remove_scale_container()?;
    }
    Ok(samples)
}

/// Checks that the policy-on setups allow the linked ports and drop an
/// unexposed one, before anything is measured.
fn isolation_checks(w: &mut World, env: &mut Env) -> Result<()> {
    let lg = w.loadgen().clone();
    let iso = w.dp_iso.clone().expect("isolation set up");
    let allowed = format!("{}:{RR_PORT}", iso.server_ip);
    let denied = format!("{}:{ISO_DENIED_PORT}", iso.server_ip);
    probe(&lg, &iso.client, &allowed).context("dataplane: linked client -> exposed port")?;
    let before = w.dataplane_drops()?;
    probe_blocked(&lg, &iso.client, &denied, Duration::from_millis(1500))
        .context("dataplane: linked client -> unexposed port")?;
    let after = w.dataplane_drops()?;
    let key = "link_port_not_allowed";
    let count = |m: &std::collections::BTreeMap<String, u64>| m.get(key).copied().unwrap_or(0);
    let n = count(&after).saturating_sub(count(&before));
    if n == 0 {
        bail!("dataplane: the connection to the unexposed port was not counted as {key}");
    }
    let e = w.iptables.clone();
    let ipt_allowed = format!("{}:{RR_PORT}", e.c2_ip);
    let ipt_denied = format!("{}:{ISO_DENIED_PORT}", e.c2_ip);
    probe(&lg, &e.c1, &ipt_denied).context("iptables (icc=true): c1 -> c2 unexposed port")?;
    w.set_iptables_isolation(true)?;
    probe(&lg, &e.c1, &ipt_allowed).context("iptables (icc=false + link): c1 -> c2 linked port")?;
    let blocked = probe_blocked(&lg, &e.c1, &ipt_denied, Duration::from_millis(1500));
    w.set_iptables_isolation(false)?;
    blocked.context("iptables (icc=false + link): c1 -> c2 unexposed port")?;
    env.checks.push(format!(
        "isolation on: the linked client reached the exposed port {RR_PORT} and was refused on the unexposed port {ISO_DENIED_PORT} (dataplane: {n} link_port_not_allowed drop(s) counted; iptables: icc=false DROP), in both modes"
    ));
    env.iso_rules = w.iptables_isolation_rules();
    env.xdp_mode = w.dataplane_uplink_mode()?;
    if env.xdp_mode == "none" {
        bail!("the dataplane uplink carries neither XDP nor dp_tc_uplink");
    }
    env.checks.push(format!(
        "the dataplane uplink (veth) runs in uplink mode {} (`ip link show`, pinned links)",
        env.xdp_mode
    ));
    println!(
        "ok: isolation policy allows the linked port and drops an unexposed one in both modes"
    );
    Ok(())
}

/// One repetition of the isolation benchmarks: policy off/on throughput and
/// RR, then the early-drop flood.
fn isolation_rep(
    w: &mut World,
    plan: &Plan,
    env: &mut Env,
    fl: &Path,
    rep: usize,
    order: &[Mode],
    samples: &mut Vec<Sample>,
) -> Result<()> {
    let modes: Vec<Mode> = order
        .iter()
        .copied()
        .filter(|m| *m != Mode::Ceiling)
        .collect();
    let lg = w.loadgen().clone();
    let iso = w.dp_iso.clone().expect("isolation set up");
    // Alternate which state goes first.
    let states = if rep.is_multiple_of(2) {
        [false, true]
    } else {
        [true, false]
    };
    for on in states {
        let state = if on { "on" } else { "off" };
        w.set_iptables_isolation(on)?;
        let target = |w: &World, m: Mode| -> (String, String) {
            if let (Mode::Dataplane, true) = (m, on) {
                (iso.client.clone(), iso.server_ip.clone())
            } else {
                let e = w.endpoints(m);
                (e.c1.clone(), e.c2_ip.clone())
            }
        };
        for &m in &modes {
            let (ns, ip) = target(w, m);
            let t = iperf(&ns, &ip, IPERF_PORT, 1, plan.iso_tput_secs)
                .with_context(|| format!("{}: isolation {state} throughput", m.name()))?;
            println!(
                "  {:<9} isolation {state}: tput x1 {:.2} Gbit/s",
                m.name(),
                t.gbps
            );
            samples.push(Sample::new("iso_tput_1", state, m, t.gbps));
        }
        for &m in &modes {
            let (ns, ip) = target(w, m);
            let r = loadgen(&lg, &ns, "rr", &format!("{ip}:{RR_PORT}"), plan.iso_rr)
                .with_context(|| format!("{}: isolation {state} rr", m.name()))?;
            println!(
                "  {:<9} isolation {state}: rr p50 {:.1} us p99 {:.1} us",
                m.name(),
                r.f("p50_us"),
                r.f("p99_us")
            );
            samples.push(Sample::new("iso_rr_p50", state, m, r.f("p50_us")));
            samples.push(Sample::new("iso_rr_p99", state, m, r.f("p99_us")));
        }
    }
    w.set_iptables_isolation(false)?;

    for &m in &modes {
        let (f, dropped) = early_drop_flood(w, plan, fl, m, m.name())?;
        let run = FloodRun {
            mode: m,
            rep,
            sent: f.sent,
            dropped,
            seconds: f.seconds,
            softirq_s: f.softirq_s,
        };
        println!(
            "  {:<9} early drop: sent {} dropped {} in {:.2}s; softirq {:.2}s on cpu{} = {:.0} ns/packet",
            m.name(),
            f.sent,
            dropped,
            f.seconds,
            f.softirq_s,
            measure::flood_cpu(),
            run.ns_per_packet().unwrap_or(0.0)
        );
        if f.seconds > 0.0 && f.sent > 0 {
            samples.push(Sample::new(
                "flood_sent_pps",
                "udp",
                m,
                f.sent as f64 / f.seconds,
            ));
        }
        if f.seconds > 0.0 && dropped > 0 {
            samples.push(Sample::new(
                "flood_drop_pps",
                "udp",
                m,
                dropped as f64 / f.seconds,
            ));
        }
        if let Some(ns) = run.ns_per_packet() {
            samples.push(Sample::new("flood_ns_pkt", "udp", m, ns));
        }
        env.flood_runs.push(run);
    }
    Ok(())
}

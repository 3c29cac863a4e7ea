//! The "Overlay" section of `cargo xtask bench` (issue 9), on a simulated
//! cluster of its own (`overlay_topo`: hosts on an underlay bridge, etcd,
//! one agent per host), measured in one run:
//!
//! - datapath: container-to-container TCP throughput (1 and 4 streams), RR
//!   latency and CRR rate between two hosts through the overlay, against the
//!   underlay itself (the two host namespaces over their uplinks) and the
//!   kernel's VXLAN path programmed as Flannel does (static FDB/neighbour
//!   entries and routes, a Linux bridge; no eBPF), same hosts, same MTU;
//! - convergence: time from `container create` returning on one host to the
//!   first ICMP echo reply from a container on another host;
//! - scale: simulated nodes with endpoints written straight into etcd
//!   (`dp-etcd-fill`), then a fresh agent: time to list and join, time until
//!   its maps hold every remote endpoint, its RSS and the maps' memory.
//!
//! Writes `overlay.md`, `overlay.json` and `overlay_sync.svg`
//! (`overlay_report`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{HashMap, Map, MapData};
use dataplane_common::{
    map_names, overlay_map_names, EndpointInfo, EndpointKey, RemoteEndpoint, RemoteKey, EP_F_REMOTE,
};

use super::measure::{iperf, loadgen, probe};
use super::overlay_report::{self, Conv, OvReport, OvSample, ScaleRun};
use super::overlay_topo::{OvWorld, ETCD_URL, PREFIX};
use super::topo::{in_ns, ns_path};
use super::Level;
use crate::{capture, cargo, describe, run, target_dir};

const NET: &str = "ovb";
const NET_SUBNET: &str = "10.91.0.0/16";
const SCALE_NET: &str = "ovscale";
/// Room for 5,000 simulated nodes' /26 blocks in the upper half.
const SCALE_SUBNET: &str = "10.128.0.0/12";
const IPERF_PORT: u16 = 5201;
const RR_PORT: u16 = 7000;
/// Endpoints per simulated node.
const EPN: u32 = 20;

/// Sizes of one level.
struct OvPlan {
    hosts: usize,
    creates: usize,
    reps: usize,
    tput_secs: f64,
    rr: Duration,
    crr: Duration,
    /// Simulated node counts, ascending (filled incrementally).
    scale_nodes: Vec<u32>,
}

impl OvPlan {
    fn new(level: Level) -> Self {
        match level {
            Level::Smoke => OvPlan {
                hosts: 2,
                creates: 10,
                reps: 1,
                tput_secs: 1.0,
                rr: Duration::from_millis(300),
                crr: Duration::from_millis(300),
                scale_nodes: vec![50, 200],
            },
            Level::Quick => OvPlan {
                hosts: 8,
                creates: 100,
                reps: 2,
                tput_secs: 3.0,
                rr: Duration::from_secs(1),
                crr: Duration::from_secs(1),
                scale_nodes: vec![200, 800, 5000],
            },
            Level::Full => OvPlan {
                hosts: 8,
                creates: 200,
                reps: 5,
                tput_secs: 10.0,
                rr: Duration::from_secs(3),
                crr: Duration::from_secs(3),
                scale_nodes: vec![200, 800, 2000, 5000],
            },
        }
    }
}

fn build_fill(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args([
        "build",
        "-p",
        "xtask",
        "--features",
        "agent-object",
        "--bin",
        "dp-etcd-fill",
    ]);
    if release {
        c.arg("--release");
    }
    println!("$ {}", describe(&c));
    run(&mut c)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("dp-etcd-fill");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// Measures the section and writes its report into `out_dir`.
pub(super) fn measure(
    level: Level,
    bin: &Path,
    lg: &Path,
    release: bool,
    out_dir: &Path,
) -> Result<()> {
    println!("==> overlay (multi-host, VXLAN, etcd)");
    let plan = OvPlan::new(level);
    let fill = build_fill(release)?;
    let mut w = OvWorld::new(bin.to_path_buf())?;
    let res = run_all(&mut w, &plan, lg, &fill);
    if res.is_err() {
        for i in 0..w.hosts.len() {
            eprintln!(
                "--- agent h{} log (tail) ---\n{}",
                w.hosts[i].k,
                w.log_tail(i)
            );
        }
    }
    let problems = w.cleanup();
    drop(w);
    let mut rep = res?;
    if !problems.is_empty() {
        bail!("overlay cleanup incomplete: {}", problems.join("; "));
    }
    rep.level = format!("{level:?}").to_lowercase();
    overlay_report::write(out_dir, &rep)?;
    println!("overlay: wrote {}", out_dir.join("overlay.md").display());
    Ok(())
}

fn run_all(w: &mut OvWorld, plan: &OvPlan, lg: &Path, fill: &Path) -> Result<OvReport> {
    let mut rep = OvReport {
        hosts: plan.hosts,
        ..Default::default()
    };
    for k in 1..=plan.hosts {
        let i = w.add_host(k)?;
        w.start_agent(i)?;
    }
    w.dp_ok(
        0,
        &[
            "network", "create", "--driver", "overlay", "--subnet", NET_SUBNET, NET,
        ],
    )?;
    datapath(w, plan, lg, &mut rep)?;
    convergence(w, plan, &mut rep)?;
    scale(w, plan, fill, &mut rep)?;
    Ok(rep)
}

/// Waits until host index `i` lists network `name`.
fn wait_network(w: &OvWorld, i: usize, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = w.dp_ok(i, &["--format", "json", "network", "ls"])?;
        if s.contains(&format!("\"{name}\"")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("h{}: network {name} not listed within 30s", w.hosts[i].k);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn datapath(w: &mut OvWorld, plan: &OvPlan, lg: &Path, rep: &mut OvReport) -> Result<()> {
    wait_network(w, 1, NET)?;
    let (c1, _) = w.container(0, NET, "ob1")?;
    let (c2, ip2) = w.container(1, NET, "ob2")?;
    w.servers(&c2, lg, IPERF_PORT, RR_PORT)?;
    let (h1, h2) = (ns_path(&w.hosts[0].ns), ns_path(&w.hosts[1].ns));
    let h2_addr = w.hosts[1].addr.clone();
    w.servers(&h2, lg, IPERF_PORT, RR_PORT)?;
    let [(k1, _), (k2, kip2)] = w.kernel_vxlan(0, 1)?;
    w.servers(&k2, lg, IPERF_PORT, RR_PORT)?;
    for ns in [&c1, &h1, &k1] {
        let mut c = in_ns(ns, "sysctl");
        c.args([
            "-qw",
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=1024 65000",
        ]);
        crate::capture_ok(&mut c, Duration::from_secs(30))?;
    }
    let paths = [
        ("overlay", c1.clone(), ip2.clone()),
        ("underlay", h1.clone(), h2_addr.clone()),
        ("kernel_vxlan", k1.clone(), kip2.clone()),
    ];
    for (name, ns, ip) in &paths {
        probe(lg, ns, &format!("{ip}:{RR_PORT}"))
            .with_context(|| format!("{name}: no request/response"))?;
    }
    rep.checks.push(
        "a request/response crossed h1 -> h2 on all three paths (overlay, underlay, kernel VXLAN) before timing"
            .into(),
    );
    // `ip link` (not /sys: nsenter keeps the root namespace's sysfs).
    let mtu = |ns: &str| -> Result<String> {
        let mut c = in_ns(ns, "ip");
        c.args(["-o", "link", "show", "eth0"]);
        let s = crate::capture_ok(&mut c, Duration::from_secs(10))?;
        let words: Vec<&str> = s.split_whitespace().collect();
        words
            .iter()
            .position(|w| *w == "mtu")
            .and_then(|i| words.get(i + 1))
            .map(|m| (*m).to_string())
            .ok_or_else(|| anyhow!("no mtu in {s:?}"))
    };
    rep.checks.push(format!(
        "MTU of the client container: overlay {}, kernel VXLAN {} (underlay uplink 1500)",
        mtu(&c1)?,
        mtu(&k1)?
    ));
    for r in 0..plan.reps {
        println!("  overlay datapath repetition {}/{}", r + 1, plan.reps);
        let order: Vec<usize> = (0..3).map(|i| (i + r) % 3).collect();
        for streams in [1u32, 4] {
            for &p in &order {
                let (name, ns, ip) = &paths[p];
                let t = iperf(ns, ip, IPERF_PORT, streams, plan.tput_secs)
                    .with_context(|| format!("{name}: throughput x{streams}"))?;
                println!("    {name:<12} tput x{streams}: {:.2} Gbit/s", t.gbps);
                let m = if streams == 1 { "tput_1" } else { "tput_4" };
                rep.samples.push(OvSample::new(m, name, t.gbps));
            }
        }
        for &p in &order {
            let (name, ns, ip) = &paths[p];
            let r = loadgen(lg, ns, "rr", &format!("{ip}:{RR_PORT}"), plan.rr)
                .with_context(|| format!("{name}: rr"))?;
            println!(
                "    {name:<12} rr: p50 {:.1} us p99 {:.1} us",
                r.f("p50_us"),
                r.f("p99_us")
            );
            rep.samples
                .push(OvSample::new("rr_p50", name, r.f("p50_us")));
            rep.samples
                .push(OvSample::new("rr_p99", name, r.f("p99_us")));
        }
        for &p in &order {
            let (name, ns, ip) = &paths[p];
            let r = loadgen(lg, ns, "crr", &format!("{ip}:{RR_PORT}"), plan.crr)
                .with_context(|| format!("{name}: crr"))?;
            println!(
                "    {name:<12} crr: {:.0} conn/s ({} errors)",
                r.f("rate"),
                r.f("errors")
            );
            rep.samples
                .push(OvSample::new("crr_rate", name, r.f("rate")));
        }
    }
    Ok(())
}

/// Seconds since the epoch of the first `[TS] ... bytes from` line of
/// `ping -D`.
fn first_reply(out: &str) -> Option<f64> {
    out.lines()
        .find(|l| l.contains("bytes from"))
        .and_then(|l| l.strip_prefix('['))
        .and_then(|l| l.split(']').next())
        .and_then(|t| t.parse().ok())
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Pings `ip` from `ns` every millisecond until the first reply (at most
/// 10 s); returns the reply's wall-clock time (seconds since the epoch).
/// `ping -c 1` also stops at an error (ARP gave up): then it starts again.
fn ping_until(ns: &str, ip: &str) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let mut c = in_ns(ns, "ping");
        c.args([
            "-D",
            "-n",
            "-i",
            "0.001",
            "-c",
            "1",
            "-w",
            &left.to_string(),
            ip,
        ]);
        let o = capture(&mut c, Duration::from_secs(20))?;
        let s = String::from_utf8_lossy(&o.stdout);
        if let Some(t) = first_reply(&s) {
            return Ok(t);
        }
        if Instant::now() >= deadline {
            bail!("no echo reply from {ip} in {ns} within 10s: {s}");
        }
    }
}

fn convergence(w: &mut OvWorld, plan: &OvPlan, rep: &mut OvReport) -> Result<()> {
    let n = plan.hosts;
    for i in 2..n {
        wait_network(w, i, NET)?;
    }
    // One prober per host; ARP retries every 10 ms, 100 times (the kernel's
    // default of 1 s would measure the neighbour timer, not the cluster).
    let mut probers = Vec::new();
    for i in 0..n {
        let (ns, ip) = w.container(i, NET, &format!("cp{}", i + 1))?;
        let mut c = in_ns(&ns, "sysctl");
        c.args([
            "-qw",
            "net.ipv4.neigh.eth0.retrans_time_ms=10",
            "net.ipv4.neigh.eth0.mcast_solicit=100",
        ]);
        crate::capture_ok(&mut c, Duration::from_secs(10))?;
        probers.push((ns, ip));
    }
    // The floor: the same probe to an address that is already reachable.
    let mut floor = Vec::new();
    for i in 0..n.min(8) {
        let (ns, _) = &probers[i];
        let (_, target) = &probers[(i + 1) % n];
        ping_until(ns, target)?;
        let t0 = now_epoch();
        let t = ping_until(ns, target)?;
        floor.push((t - t0) * 1e3);
    }
    let mut conv = Conv {
        floor,
        ..Conv::default()
    };
    for k in 0..plan.creates {
        let a = k % n;
        let b = (a + 1 + (k / n) % (n - 1)) % n;
        let name = format!("cv{k}");
        let mut c = w.dp(a);
        c.args([
            "--format",
            "json",
            "container",
            "create",
            "--network",
            NET,
            &name,
        ]);
        let t = Instant::now();
        let out = crate::capture_ok(&mut c, Duration::from_mins(1))?;
        let t0 = now_epoch();
        conv.create.push(t.elapsed().as_secs_f64() * 1e3);
        let (_, ip) = super::overlay_topo::parse_container(&out)?;
        let t1 = ping_until(&probers[b].0, &ip)
            .with_context(|| format!("h{} -> {name} ({ip}) on h{}", b + 1, a + 1))?;
        conv.reply.push((t1 - t0) * 1e3);
    }
    println!(
        "    convergence over {} creates on {n} hosts: p50 {:.1} ms p99 {:.1} ms (probe floor p50 {:.1} ms)",
        conv.reply.len(),
        overlay_report::pct(&conv.reply, 50.0),
        overlay_report::pct(&conv.reply, 99.0),
        overlay_report::pct(&conv.floor, 50.0)
    );
    rep.conv = Some(conv);
    Ok(())
}

/// Whether `ip` is in [`SCALE_SUBNET`] (10.128.0.0/12).
fn in_scale_subnet(ip: [u8; 4]) -> bool {
    ip[0] == 10 && ip[1] & 0xf0 == 128
}

/// Entries of the pinned hash map `name` that `keep` accepts.
fn map_count<K: aya::Pod, V: aya::Pod>(
    bpffs: &Path,
    name: &str,
    keep: impl Fn(&K, &V) -> bool,
) -> Result<usize> {
    let p = bpffs.join("maps").join(name);
    let data = MapData::from_pin(&p).with_context(|| format!("opening {}", p.display()))?;
    let m: HashMap<MapData, K, V> = HashMap::try_from(Map::HashMap(data))?;
    Ok(m.iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| keep(k, v))
        .count())
}

/// `bytes_memlock` of the pinned maps `names` (bpftool).
fn memlock(bpffs: &Path, names: &[&str]) -> Result<u64> {
    let mut sum = 0;
    for n in names {
        let p = bpffs.join("maps").join(n);
        let mut c = Command::new("bpftool");
        c.args(["-j", "map", "show", "pinned"]).arg(&p);
        let s = crate::capture_ok(&mut c, Duration::from_secs(10))?;
        let v: serde_json::Value = serde_json::from_str(&s)?;
        sum += v["bytes_memlock"].as_u64().unwrap_or(0);
    }
    Ok(sum)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS of {pid}"))
}

fn scale(w: &mut OvWorld, plan: &OvPlan, fill: &Path, rep: &mut OvReport) -> Result<()> {
    w.dp_ok(
        0,
        &[
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            SCALE_SUBNET,
            SCALE_NET,
        ],
    )?;
    // Only the fresh agents watch the simulated cluster (the others would
    // load the same entries on the same two CPUs).
    for i in 0..w.hosts.len() {
        if let Some(p) = w.stop_agent(i).into_iter().next() {
            bail!("stopping h{}: {p}", i + 1);
        }
    }
    let mut done = 0u32;
    for (step, &nodes) in plan.scale_nodes.iter().enumerate() {
        // Add the simulated nodes beyond those already written.
        let mut c = in_ns(&ns_path(&w.underlay), fill);
        c.args([ETCD_URL, PREFIX, SCALE_NET])
            .arg(done.to_string())
            .arg(nodes.to_string())
            .arg(EPN.to_string())
            .arg("3600");
        let out = capture(&mut c, Duration::from_mins(10))?;
        if !out.status.success() {
            bail!(
                "dp-etcd-fill failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let fv: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("dp-etcd-fill output {:?}", out.stdout))?;
        done = nodes;
        let want = (nodes * EPN) as usize;
        // A fresh agent on a new host.
        let i = w.add_host(plan.hosts + 1 + step)?;
        let join = w.start_agent(i)?;
        let pid = w.hosts[i]
            .agent_pid()
            .ok_or_else(|| anyhow!("no agent pid"))?;
        let bpffs = w.hosts[i].bpffs().to_path_buf();
        let t = Instant::now();
        let deadline = Duration::from_secs(if nodes > 1000 { 120 } else { 60 });
        let (mut remote, mut eps, mut maps_s) = (0, 0, None);
        let mut last = (0, 0, Instant::now());
        while t.elapsed() < deadline {
            remote = map_count::<RemoteKey, RemoteEndpoint>(
                &bpffs,
                overlay_map_names::REMOTE,
                |k, _| in_scale_subnet(k.ip),
            )?;
            eps = map_count::<EndpointKey, EndpointInfo>(&bpffs, map_names::ENDPOINTS, |_, v| {
                v.flags & EP_F_REMOTE != 0 && in_scale_subnet(v.ip)
            })?;
            if remote >= want && eps >= want {
                maps_s = Some(join.as_secs_f64() + t.elapsed().as_secs_f64());
                break;
            }
            // Stuck (a full map): stop waiting after 15 s without progress.
            if (remote, eps) == (last.0, last.1) {
                if last.2.elapsed() > Duration::from_secs(15) {
                    break;
                }
            } else {
                last = (remote, eps, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let nodes_listed = {
            let s = w.dp_ok(i, &["--format", "json", "node", "ls"])?;
            let v: serde_json::Value = serde_json::from_str(&s)?;
            v.as_array().map_or(0, Vec::len)
        };
        let run = ScaleRun {
            nodes,
            endpoints: want as u64,
            fill_s: fv["seconds"].as_f64().unwrap_or(0.0),
            join_s: join.as_secs_f64(),
            maps_s,
            remote_entries: remote as u64,
            endpoint_entries: eps as u64,
            nodes_listed: nodes_listed as u64,
            rss_kib: rss_kib(pid)?,
            memlock: memlock(
                &bpffs,
                &[
                    overlay_map_names::REMOTE,
                    overlay_map_names::NODES,
                    overlay_map_names::PEERS,
                    map_names::ENDPOINTS,
                ],
            )?,
        };
        println!(
            "    scale {nodes} nodes x {EPN}: joined in {:.2}s, maps {}, remote {}/{want}, endpoints {}/{want}, RSS {} MiB",
            run.join_s,
            run.maps_s.map_or("not complete".to_string(), |s| format!("complete at {s:.2}s")),
            run.remote_entries,
            run.endpoint_entries,
            run.rss_kib / 1024
        );
        rep.scale.push(run);
        if let Some(p) = w.stop_agent(i).into_iter().next() {
            bail!("stopping the scale agent: {p}");
        }
    }
    Ok(())
}

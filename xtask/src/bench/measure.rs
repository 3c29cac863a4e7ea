//! Running the load generators and accounting CPU time.

use std::fs;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::topo::in_ns;
use crate::capture;

/// Machine-wide CPU jiffies from /proc/stat (all namespaces share the CPUs,
/// so this includes the kernel's packet processing in softirq context).
#[derive(Clone, Copy, Debug)]
pub(super) struct CpuStat {
    busy: u64,
    softirq: u64,
}

impl CpuStat {
    pub(super) fn read() -> Result<Self> {
        let s = fs::read_to_string("/proc/stat")?;
        let line = s
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or_else(|| anyhow!("no cpu line in /proc/stat"))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let get = |i: usize| v.get(i).copied().unwrap_or(0);
        Ok(CpuStat {
            busy: get(0) + get(1) + get(2) + get(5) + get(6) + get(7),
            softirq: get(6),
        })
    }

    /// (busy CPU seconds, softirq CPU seconds) since `earlier`.
    pub(super) fn since(&self, earlier: &CpuStat) -> (f64, f64) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        (
            self.busy.saturating_sub(earlier.busy) as f64 / hz,
            self.softirq.saturating_sub(earlier.softirq) as f64 / hz,
        )
    }
}

pub(super) struct Throughput {
    pub gbps: f64,
    pub cpu_s: f64,
    pub softirq_s: f64,
    pub gbits: f64,
}

/// iperf3 client in `ns` against `ip:port`.
pub(super) fn iperf(ns: &str, ip: &str, port: u16, streams: u32, secs: f64) -> Result<Throughput> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            // The server may still be finishing the previous test.
            thread::sleep(Duration::from_millis(500));
        }
        let mut c = in_ns(ns, "iperf3");
        c.args(["-c", ip, "-p", &port.to_string(), "-J", "-P"])
            .arg(streams.to_string())
            .arg("-t")
            .arg(format!("{secs}"));
        let before = CpuStat::read()?;
        let out = capture(&mut c, Duration::from_secs_f64(secs + 30.0))?;
        let after = CpuStat::read()?;
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Value = if let Ok(v) = serde_json::from_str(&s) {
            v
        } else {
            last = format!("{s} {}", String::from_utf8_lossy(&out.stderr));
            continue;
        };
        if let Some(e) = v["error"].as_str() {
            last = e.to_string();
            continue;
        }
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        let bytes = v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
        if bps <= 0.0 || bytes <= 0.0 {
            last = "iperf3 reported no received data".into();
            continue;
        }
        let (cpu_s, softirq_s) = after.since(&before);
        return Ok(Throughput {
            gbps: bps / 1e9,
            cpu_s,
            softirq_s,
            gbits: bytes * 8.0 / 1e9,
        });
    }
    bail!("iperf3 {ip}:{port} from {ns} failed: {}", last.trim())
}

pub(super) struct LoadResult {
    pub json: Value,
    pub cpu_s: f64,
    pub softirq_s: f64,
}

impl LoadResult {
    pub(super) fn f(&self, k: &str) -> f64 {
        self.json[k].as_f64().unwrap_or(0.0)
    }
}

/// `dp-loadgen rr|crr` in `ns` against `addr`.
pub(super) fn loadgen(
    loadgen: &std::path::Path,
    ns: &str,
    kind: &str,
    addr: &str,
    duration: Duration,
) -> Result<LoadResult> {
    let mut c = in_ns(ns, loadgen);
    c.args([kind, "--addr", addr, "--duration-ms"])
        .arg(duration.as_millis().to_string());
    let before = CpuStat::read()?;
    let out = capture(&mut c, duration + Duration::from_secs(30))?;
    let after = CpuStat::read()?;
    if !out.status.success() {
        bail!(
            "dp-loadgen {kind} {addr} from {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing dp-loadgen output {:?}", out.stdout))?;
    let (cpu_s, softirq_s) = after.since(&before);
    Ok(LoadResult {
        json,
        cpu_s,
        softirq_s,
    })
}

/// One request/response through `addr` from `ns` (retried up to 10 s).
pub(super) fn probe(loadgen: &std::path::Path, ns: &str, addr: &str) -> Result<()> {
    let mut c = in_ns(ns, loadgen);
    c.args(["probe", "--addr", addr, "--timeout-ms", "10000"]);
    let out = capture(&mut c, Duration::from_secs(20))?;
    if !out.status.success() {
        bail!(
            "no connection from {ns} to {addr}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// First line of `prog args` (stdout or stderr), or "not installed".
pub(super) fn version(prog: &str, args: &[&str]) -> String {
    match Command::new(prog).args(args).output() {
        Ok(o) => {
            let s = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            s.lines().next().unwrap_or("").trim().to_string()
        }
        Err(_) => "not installed".into(),
    }
}

/// `probe` that must fail: no request/response through `addr` within
/// `timeout` (each connect attempt gives up after 1 s).
pub(super) fn probe_blocked(
    loadgen: &std::path::Path,
    ns: &str,
    addr: &str,
    timeout: Duration,
) -> Result<()> {
    let mut c = in_ns(ns, loadgen);
    c.args(["probe", "--addr", addr, "--timeout-ms"])
        .arg(timeout.as_millis().to_string());
    let out = capture(&mut c, timeout + Duration::from_secs(10))?;
    if out.status.success() {
        bail!("{addr} answered from {ns} although the policy should drop it");
    }
    Ok(())
}

/// softirq jiffies of one CPU (7th value of its `cpuN` line in /proc/stat).
pub(super) fn cpu_softirq_jiffies(cpu: usize) -> Result<u64> {
    let s = fs::read_to_string("/proc/stat")?;
    let tag = format!("cpu{cpu}");
    let line = s
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tag.as_str()))
        .ok_or_else(|| anyhow!("no {tag} line in /proc/stat"))?;
    line.split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no softirq value in {line:?}"))
}

pub(super) struct Flood {
    pub sent: u64,
    pub seconds: f64,
    /// softirq CPU seconds on the pinned CPU during the flood.
    pub softirq_s: f64,
}

/// CPU the flood generator is pinned to (its packets are received and
/// dropped in softirq context on the same CPU).
pub(super) fn flood_cpu() -> usize {
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    usize::from(n > 1)
}

/// `taskset -c CPU dp-flood IFACE DST_MAC SRC DST PORT SECS` in `ns`.
#[expect(
    clippy::too_many_arguments,
    reason = "dp-flood's command line, one argument each"
)]
pub(super) fn flood(
    flood: &std::path::Path,
    ns: &str,
    iface: &str,
    dst_mac: &str,
    src: &str,
    dst: &str,
    port: u16,
    secs: f64,
) -> Result<Flood> {
    let cpu = flood_cpu();
    let mut c = in_ns(ns, "taskset");
    c.args(["-c", &cpu.to_string()])
        .arg(flood)
        .args([iface, dst_mac, src, dst, &port.to_string()])
        .arg(format!("{secs}"));
    let before = cpu_softirq_jiffies(cpu)?;
    let out = capture(&mut c, Duration::from_secs_f64(secs + 30.0))?;
    // Let the backlog of the last batch drain before reading.
    thread::sleep(Duration::from_millis(200));
    let after = cpu_softirq_jiffies(cpu)?;
    if !out.status.success() {
        bail!(
            "dp-flood in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing dp-flood output {:?}", out.stdout))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Flood {
        sent: v["sent"].as_u64().unwrap_or(0),
        seconds: v["seconds"].as_f64().unwrap_or(0.0),
        softirq_s: after.saturating_sub(before) as f64 / hz,
    })
}

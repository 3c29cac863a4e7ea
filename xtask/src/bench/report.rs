//! Statistics, `report.md`, `report.json` and the SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::measure::version;
use super::targets::{early_drop_ratio, targets, Target};
use super::topo::Mode;
use super::{Level, Plan};

pub(super) struct Sample {
    metric: &'static str,
    path: String,
    mode: Mode,
    value: f64,
}

impl Sample {
    pub(super) fn new(metric: &'static str, path: &str, mode: Mode, value: f64) -> Self {
        Sample {
            metric,
            path: path.to_string(),
            mode,
            value,
        }
    }
}

/// One early-drop flood run.
pub(super) struct FloodRun {
    pub mode: Mode,
    pub rep: usize,
    pub sent: u64,
    /// Increase of the drop counter (dataplane: direct_access_from_outside
    /// from /v1/drops; iptables: raw PREROUTING DROP rule packets).
    pub dropped: u64,
    pub seconds: f64,
    /// softirq CPU seconds on the flood's CPU.
    pub softirq_s: f64,
}

impl FloodRun {
    pub(super) fn ns_per_packet(&self) -> Option<f64> {
        (self.dropped > 0 && self.softirq_s > 0.0)
            .then(|| self.softirq_s * 1e9 / self.dropped as f64)
    }
}

#[derive(Default)]
pub(super) struct Env {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub iperf3: String,
    pub sockperf: String,
    pub dataplane: String,
    pub iptables: String,
    pub agent_profile: String,
    pub level: String,
    pub bridge_nf: bool,
    pub rules_example: String,
    pub checks: Vec<String>,
    pub wall_secs: f64,
    /// The iptables rule set with icc=false and the link rules.
    pub iso_rules: String,
    pub flood_runs: Vec<FloodRun>,
    /// Uplink mode of the dataplane uplink (`xdp-generic`, `xdp-native`,
    /// `tcx`: `ip link show` and the pinned links).
    pub xdp_mode: String,
    /// The per-packet cost phase (None when it was not reached).
    pub cost: Option<super::cost::CostResult>,
    /// The real Docker section (None when it was not reached).
    pub docker: Option<super::docker_report::DockerRun>,
}

impl Env {
    pub(super) fn collect(bin: &Path, release: bool, level: Level) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown".into(), |s| s.trim().to_string());
        Env {
            kernel: version("uname", &["-r"]),
            cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            cpu_model,
            iperf3: version("iperf3", &["--version"]),
            sockperf: version("sockperf", &["--version"]),
            dataplane: version(&bin.to_string_lossy(), &["--version"]),
            iptables: version("iptables", &["--version"]),
            agent_profile: if release { "release" } else { "debug" }.into(),
            level: format!("{level:?}").to_lowercase(),
            ..Default::default()
        }
    }
}

/// (key, title, unit, higher is better)
struct Def {
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    higher_better: bool,
}

const fn d(key: &'static str, title: &'static str, unit: &'static str, hb: bool) -> Def {
    Def {
        key,
        title,
        unit,
        higher_better: hb,
    }
}

/// Report sections, each with its metrics.
const SECTIONS: &[(&str, &str, &[Def])] = &[
    (
        "TCP throughput",
        "iperf3 -J, 1 and 4 parallel streams, received bits per second. Path `c2c`: container 1 -> container 2's IP; `outside->published`: a client in the outside netns -> the host uplink IP:5201 published to container 2 (ceiling: the same direct veth pair).",
        &[
            d("tput_1", "Throughput, 1 stream", "Gbit/s", true),
            d("tput_4", "Throughput, 4 streams", "Gbit/s", true),
        ],
    ),
    (
        "CPU cost of throughput",
        "Machine-wide busy CPU seconds (/proc/stat: user+nice+system+irq+softirq+steal, all namespaces share the 2 CPUs, so this includes iperf3 itself and any other load on the machine) and the softirq part alone, per Gbit transferred.",
        &[
            d("tput_1_cpu", "CPU per Gbit, 1 stream", "CPU-s/Gbit", false),
            d("tput_4_cpu", "CPU per Gbit, 4 streams", "CPU-s/Gbit", false),
            d("tput_1_softirq", "softirq CPU per Gbit, 1 stream", "CPU-s/Gbit", false),
            d("tput_4_softirq", "softirq CPU per Gbit, 4 streams", "CPU-s/Gbit", false),
        ],
    ),
    (
        "Request/response latency",
        "dp-loadgen rr: one TCP connection (TCP_NODELAY), 32-byte request, 32-byte response, back to back; the round-trip time of every request is recorded and the percentiles taken over all of them.",
        &[
            d("rr_p50", "RR latency p50", "us", false),
            d("rr_p99", "RR latency p99", "us", false),
            d("rr_rate", "RR transactions per second", "req/s", true),
        ],
    ),
    (
        "New-connection rate",
        "dp-loadgen crr: 2 client threads, each connect(), one 32-byte request/response, close(), for a fixed duration; connections per second. CPU: machine-wide busy CPU seconds per 1,000 connections (/proc/stat).",
        &[
            d("crr_rate", "New connections per second", "conn/s", true),
            d("crr_cpu", "CPU per 1,000 connections", "CPU-s/kconn", false),
            d("crr_softirq", "softirq CPU per 1,000 connections", "CPU-s/kconn", false),
        ],
    ),
    (
        "Published ports: new-connection rate",
        "The CRR test from the outside netns to host-uplink-IP:PORT with N ports published. iptables: N DNAT rules in the nat DOCKER chain (plus N ACCEPT rules in the filter DOCKER chain), the measured port is the LAST one in both chains; dataplane: a container created with `-p 20000-(20000+N-1):20000-(20000+N-1)`, the last port measured. Ceiling: the direct veth pair (no ports at all), measured at every N for reference. Row = N.",
        &[d("ports_crr_rate", "New connections per second vs published ports", "conn/s", true)],
    ),
    (
        "Published ports: first-response latency",
        "Per connection of the published-port CRR test: time from starting connect() until the first response arrived (p50 and p99 over all connections). Row = N.",
        &[
            d("ports_first_p50", "connect + first response, p50", "us", false),
            d("ports_first_p99", "connect + first response, p99", "us", false),
        ],
    ),
    (
        "Time to program published ports",
        "Wall time to install N published ports. iptables: one `iptables-restore` of the whole Docker rule set with N DNAT + N filter rules (Docker itself runs one iptables command per rule, so real Docker is slower than this). dataplane: `dataplane container create -p RANGE` as measured by the client (includes creating the container's namespace and veth, not only the ports; the agent log prints no separate timing). Row = N.",
        &[d("program_ms", "Programming time", "ms", false)],
    ),
];

pub(super) struct Agg {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

pub(super) type Key = (String, String, &'static str);

fn aggregate(samples: &[Sample]) -> BTreeMap<Key, Agg> {
    let mut m: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    for s in samples {
        m.entry((s.metric.to_string(), s.path.clone(), s.mode.name()))
            .or_default()
            .push(s.value);
    }
    m.into_iter()
        .map(|(k, v)| {
            let mut sorted = v.clone();
            let med = median(&mut sorted);
            (
                k,
                Agg {
                    median: med,
                    min: sorted.first().copied().unwrap_or(0.0),
                    max: sorted.last().copied().unwrap_or(0.0),
                    samples: v,
                },
            )
        })
        .collect()
}

/// Paths of a metric in a stable order (numeric ones sorted as numbers).
pub(super) fn paths(agg: &BTreeMap<Key, Agg>, metric: &str) -> Vec<String> {
    let mut v: Vec<String> = agg
        .keys()
        .filter(|k| k.0 == metric)
        .map(|k| k.1.clone())
        .collect();
    v.dedup();
    v.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    });
    v.dedup();
    v
}

pub(super) fn get<'a>(
    agg: &'a BTreeMap<Key, Agg>,
    metric: &str,
    path: &str,
    mode: Mode,
) -> Option<&'a Agg> {
    agg.get(&(metric.to_string(), path.to_string(), mode.name()))
}

pub(super) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

pub(super) fn ratio(a: Option<&Agg>, b: Option<&Agg>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

fn cell(a: Option<&Agg>) -> String {
    match a {
        None => "n/a".into(),
        Some(a) => format!(
            "{} [{}-{}]",
            fmt_num(a.median),
            fmt_num(a.min),
            fmt_num(a.max)
        ),
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.3}x"))
}

const ISO_METRICS: &[(&str, &str, &str, bool)] = &[
    ("iso_tput_1", "Throughput, 1 stream", "Gbit/s", true),
    ("iso_rr_p50", "RR latency p50", "us", false),
    ("iso_rr_p99", "RR latency p99", "us", false),
];

const FLOOD_METRICS: &[(&str, &str, &str, bool)] = &[
    ("flood_sent_pps", "Packets sent per second", "pkt/s", true),
    (
        "flood_drop_pps",
        "Packets dropped per second",
        "pkt/s",
        true,
    ),
    (
        "flood_ns_pkt",
        "softirq CPU per dropped packet",
        "ns/pkt",
        false,
    ),
];

/// The "Cost of isolation" and "Early drop" sections; returns their JSON.
fn isolation_sections(
    md: &mut String,
    agg: &BTreeMap<Key, Agg>,
    env: &Env,
    plan: &Plan,
    jmetrics: &mut Vec<Value>,
) -> Value {
    let modes = [Mode::Iptables, Mode::Dataplane];
    let mut push = |key: &str, title: &str, unit: &str, hb: bool, path: &str, m: Mode| {
        if let Some(a) = get(agg, key, path, m) {
            let ri = if m == Mode::Iptables {
                None
            } else {
                ratio(Some(a), get(agg, key, path, Mode::Iptables))
            };
            jmetrics.push(json!({
                "metric": key,
                "title": title,
                "unit": unit,
                "higher_is_better": hb,
                "path": path,
                "mode": m.name(),
                "median": a.median,
                "min": a.min,
                "max": a.max,
                "samples": a.samples,
                "ratio_vs_iptables": ri,
                "ratio_vs_ceiling": Value::Null,
            }));
        }
    };

    let _ = writeln!(
        md,
        "\n## Cost of isolation\n\nContainer-to-container TCP throughput (iperf3 -J, 1 stream, {} s) and request/response latency (dp-loadgen rr, {} ms) with the isolation policy off and on, same repetitions and rotation as above (the order of off/on alternates between repetitions).\n",
        plan.iso_tput_secs,
        plan.iso_rr.as_millis()
    );
    md.push_str("- **dataplane off**: container 1 -> container 2 on a user network `bench-net` (icc=true). **on**: the default network `bridge` with the agent's `--icc=false` (a `--link` opens ports on the default bridge only, as in Docker); the server container created with `--expose 5201 --expose 7000`, the client with `--link` to the server, so the measured traffic is allowed by the link policy (checked: a connection to the unexposed port 7001 is dropped as `link_port_not_allowed`).\n");
    md.push_str("- **iptables off**: the bridge mode above as is (c1 172.18.0.2 -> c2 172.18.0.3). **on**: the same plus what Docker 28 (iptables firewaller) installs for an `icc=false` network with `docker run --link c2` where c2 exposes 5201 and 7000: `setIcc` replaces `-A DOCKER-FORWARD -i BR -j ACCEPT` by `-A DOCKER-FORWARD -i BR -o BR -j DROP` followed by `-A DOCKER-FORWARD -i BR ! -o BR -j ACCEPT`, and the legacy-link code adds, per exposed port, `-A DOCKER -s CLIENT -d SERVER -i BR -o BR -p tcp --dport PORT -j ACCEPT` and the reply rule `-A DOCKER -s SERVER -d CLIENT -i BR -o BR -p tcp --sport PORT -j ACCEPT` (the DOCKER chain is reached from DOCKER-FORWARD -> DOCKER-BRIDGE before the DROP). Established packets are still accepted first by DOCKER-CT. These filter rules only see bridged traffic because net.bridge.bridge-nf-call-iptables=1 (checked: c1 -> c2:7001 works with icc=true and is dropped with icc=false).\n\n");
    md.push_str(
        "| metric | mode | policy off | policy on | on / off |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut jiso = Vec::new();
    for (key, title, unit, hb) in ISO_METRICS {
        for m in modes {
            let off = get(agg, key, "off", m);
            let on = get(agg, key, "on", m);
            let r = ratio(on, off);
            let _ = writeln!(
                md,
                "| {title} ({unit}, {} is better) | {} | {} | {} | {} |",
                if *hb { "higher" } else { "lower" },
                m.name(),
                cell(off),
                cell(on),
                ratio_cell(r)
            );
            jiso.push(json!({"metric": key, "mode": m.name(), "on_over_off": r}));
            push(key, title, unit, *hb, "off", m);
            push(key, title, unit, *hb, "on", m);
        }
    }
    md.push_str("\n| metric | dataplane on / iptables on | dataplane off / iptables off |\n| --- | --- | --- |\n");
    let mut jcross = Vec::new();
    for (key, title, unit, _) in ISO_METRICS {
        let on = ratio(
            get(agg, key, "on", Mode::Dataplane),
            get(agg, key, "on", Mode::Iptables),
        );
        let off = ratio(
            get(agg, key, "off", Mode::Dataplane),
            get(agg, key, "off", Mode::Iptables),
        );
        let _ = writeln!(
            md,
            "| {title} ({unit}) | {} | {} |",
            ratio_cell(on),
            ratio_cell(off)
        );
        jcross.push(json!({"metric": key, "dataplane_on_over_iptables_on": on, "dataplane_off_over_iptables_off": off}));
    }
    md.push_str("\nThe iptables rule set with the policy on (filter table; raw and nat as above, without published scaling ports):\n\n```\n");
    let filter: Vec<&str> = env
        .iso_rules
        .split("*filter")
        .nth(1)
        .unwrap_or("")
        .lines()
        .collect();
    let _ = writeln!(md, "*filter{}", filter.join("\n"));
    md.push_str("```\n");

    let cpu = super::measure::flood_cpu();
    let _ = writeln!(
        md,
        "\n## Early drop\n\nA flood of 60-byte UDP frames (64 source ports, destination port {}) from the outside netns straight to container 2's IP (not a published port), addressed to the host uplink's MAC: `taskset -c {cpu} dp-flood` (AF_PACKET, sendmmsg, qdisc bypass) for {} s per run. The veth delivers every frame to the host netns in softirq context on the sender's CPU {cpu}, so that CPU's softirq time (/proc/stat `cpu{cpu}` 7th value, USER_HZ ticks) over the dropped packets is the drop work per packet. dataplane: the uplink's early-drop program drops it (uplink mode {} on this veth uplink, from `ip link show` and the pinned links: `dp_xdp_uplink` in the xdp modes, `dp_tc_uplink` at TC ingress in tcx) (counter: `direct_access_from_outside` from `GET /v1/drops`, before/after); iptables: Docker 28's direct-access rule in the raw table, `-A PREROUTING -d CONTAINER_IP/32 ! -i br-bench -j DROP` (Docker 28 installs one per container, the modelled rule set has three and the flood matches the second; counter: the DROP rules' packets from `iptables -t raw -L PREROUTING -v -x -n`, before/after).\n",
        super::topo::FLOOD_PORT,
        plan.flood_secs,
        env.xdp_mode
    );
    md.push_str(
        "| metric | iptables | dataplane | dataplane / iptables |\n| --- | --- | --- | --- |\n",
    );
    for (key, title, unit, hb) in FLOOD_METRICS {
        let i = get(agg, key, "udp", Mode::Iptables);
        let d = get(agg, key, "udp", Mode::Dataplane);
        let _ = writeln!(
            md,
            "| {title} ({unit}, {} is better) | {} | {} | {} |",
            if *hb { "higher" } else { "lower" },
            cell(i),
            cell(d),
            ratio_cell(ratio(d, i))
        );
        for m in modes {
            push(key, title, unit, *hb, "udp", m);
        }
    }
    let r = early_drop_ratio(agg);
    let _ = writeln!(
        md,
        "\n**Early drop rate per core relative to iptables** (iptables ns/packet / dataplane ns/packet, medians): {}. Target >= 5x: {}.\n",
        ratio_cell(r),
        match r {
            Some(r) if r >= 5.0 => "met",
            Some(_) => "**MISSED**",
            None => "not measured",
        }
    );
    let virtual_mode = env.xdp_mode == "xdp-generic" || env.xdp_mode == "tcx";
    if r.is_some_and(|r| r < 5.0) && !virtual_mode {
        let _ = writeln!(
            md,
            "The uplink ran in {} mode; no explanation of the miss is derived for that case.\n",
            env.xdp_mode
        );
    }
    if r.is_some_and(|r| r < 5.0) && virtual_mode {
        md.push_str("Why: the uplink here is a veth, and on veth uplinks the agent does its early work at TC ingress (`tcx`, the default) or in generic XDP; both run after the skb exists (see uplink.md, `--only uplink`, for the modes side by side). Before the tcx mode the agent attached XDP in generic mode (native XDP on a veth disables the peer's TSO and makes the veth copy every packet into a page, which costs the normal traffic more than it saves). Generic XDP runs in `netif_receive_skb` after the skb has been allocated and filled, so an XDP drop saves only what the raw-table DROP still goes through (ip_rcv and the raw PREROUTING hook) while both pay for the veth transmit, the backlog and the skb: a ratio near 1x (the measured value above), far from 5x. The >= 5x target assumes a NIC driver with native XDP, where the program runs on the receive ring before any skb is allocated; no such NIC is available on this machine, so the target cannot be evaluated as intended here.\n\n");
    }
    md.push_str("Per run (dropped must equal sent; any difference is shown):\n\n| repetition | mode | sent | dropped | sent - dropped | seconds | softirq s | ns/packet |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let mut jruns = Vec::new();
    let mut mismatches = 0;
    for f in &env.flood_runs {
        let diff = f.sent as i64 - f.dropped as i64;
        if diff != 0 {
            mismatches += 1;
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {}{} | {:.3} | {:.2} | {} |",
            f.rep + 1,
            f.mode.name(),
            f.sent,
            f.dropped,
            diff,
            if diff != 0 { " (**differs**)" } else { "" },
            f.seconds,
            f.softirq_s,
            f.ns_per_packet().map_or("n/a".into(), fmt_num)
        );
        jruns.push(json!({
            "repetition": f.rep + 1,
            "mode": f.mode.name(),
            "sent": f.sent,
            "dropped": f.dropped,
            "sent_minus_dropped": diff,
            "seconds": f.seconds,
            "softirq_seconds": f.softirq_s,
            "ns_per_packet": f.ns_per_packet(),
        }));
    }
    if mismatches == 0 {
        md.push_str("\nEvery run dropped exactly the packets it sent.\n");
    } else {
        let _ = writeln!(
            md,
            "\n{mismatches} run(s) counted a different number of drops than packets sent (packets lost before the drop point, e.g. a full backlog queue, or counted elsewhere).\n"
        );
    }
    json!({
        "isolation": {
            "on_over_off": jiso,
            "dataplane_vs_iptables": jcross,
        },
        "early_drop": {
            "cpu": cpu,
            "seconds_per_run": plan.flood_secs,
            "iptables_ns_over_dataplane_ns": r,
            "target": 5.0,
            "met": r.map(|r| r >= 5.0),
            "uplink": "veth",
            "xdp_mode": env.xdp_mode,
            "uplink_mode": env.xdp_mode,
            "runs": jruns,
            "runs_with_sent_ne_dropped": mismatches,
        },
    })
}

pub(super) fn write(dir: &Path, env: &Env, plan: &Plan, samples: &[Sample]) -> Result<()> {
    let agg = aggregate(samples);
    let mut tg = targets(&agg, plan);
    let modes = Mode::ALL;

    let mut md = String::new();
    let _ = writeln!(md, "# Dataplane benchmark report\n");
    let _ = writeln!(
        md,
        "Level `{}`: {} repetition(s), modes interleaved in rotation within each repetition; throughput {} s per run, RR {} ms, CRR {} ms, published-port CRR {} ms at N = {:?}. Cells: median [min-max over repetitions], then the ratio of the median to the iptables column (`ipt`) and to the ceiling column (`ceil`) of the same run. Total wall time {:.0} s.\n",
        env.level,
        plan.reps,
        plan.tput_secs,
        plan.rr.as_millis(),
        plan.crr.as_millis(),
        plan.scale_crr.as_millis(),
        plan.port_counts,
        env.wall_secs
    );
    if plan.level == Level::Smoke {
        md.push_str("**Smoke level: tiny durations, 1 repetition — these figures only show that the harness works, they are not measurements to compare.**\n\n");
    }

    md.push_str("## Environment\n\n| item | value |\n| --- | --- |\n");
    for (k, v) in [
        ("kernel (uname -r)", env.kernel.clone()),
        (
            "dataplane uplink mode (veth uplink)",
            format!(
                "{} (`--only uplink` compares the modes: uplink.md)",
                env.xdp_mode
            ),
        ),
        ("CPUs", format!("{} x {}", env.cpus, env.cpu_model)),
        ("iperf3", env.iperf3.clone()),
        (
            "sockperf",
            format!(
                "{} (installed; RR is measured with dp-loadgen)",
                env.sockperf
            ),
        ),
        (
            "dataplane",
            format!(
                "{} ({} build of the agent)",
                env.dataplane, env.agent_profile
            ),
        ),
        ("iptables", env.iptables.clone()),
        (
            "bridge netfilter",
            if env.bridge_nf {
                "on: net.bridge.bridge-nf-call-iptables=1 in the iptables host netns".into()
            } else {
                "NOT AVAILABLE: /proc/sys/net/bridge/bridge-nf-call-iptables does not exist (br_netfilter not loaded); bridged container-to-container traffic bypasses iptables".to_string()
            },
        ),
    ] {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    md.push_str("\nTopologies (all in namespaces created by the run, names carry the pid):\n\n");
    md.push_str("- **ceiling**: two namespaces joined by one veth pair (10.232.0.1 <-> 10.232.0.2), no bridge, no rules; both paths use this pair.\n");
    md.push_str("- **iptables**: a host netns with an uplink veth to an outside netns (10.231.0.2 <-> 10.231.0.1), bridge `br-bench` (172.18.0.1/16) with three container namespaces (172.18.0.2-4) on veths, ip_forward=1, Docker's rules loaded with `ip netns exec HOST iptables-restore`; ports 5201 and 7000 published to container 2.\n");
    md.push_str("- **dataplane**: the same host/outside pair, `dataplane agent --netns HOST --uplink ...` with the eBPF datapath; containers created by the agent on a user network `bench-net` (the first default pool, 172.18.0.0/16; the default `bridge` runs with icc off for the isolation setup), container 2 with `-p 5201:5201 -p 7000:7000`, the port-scaling container with `-p RANGE:RANGE`.\n");
    md.push_str("- **real Docker**: not measured: no dockerd in this harness yet.\n\n");
    md.push_str("Correctness checks done before measuring:\n\n");
    for c in &env.checks {
        let _ = writeln!(md, "- {c}");
    }

    md.push_str("\n## Rule set (iptables mode)\n\n");
    md.push_str("The rules Docker's libnetwork bridge driver (iptables firewaller) programs with docker 28 defaults (iptables=true, ip-forward=true, userland-proxy=true, icc=true, ip-masq=true) for one bridge network: nat PREROUTING and OUTPUT jump to a DOCKER chain holding one DNAT rule per published port (`! -i BRIDGE`), POSTROUTING masquerades the subnet leaving through another interface; filter FORWARD (policy DROP) jumps to DOCKER-USER (empty, RETURN) and DOCKER-FORWARD, which runs DOCKER-CT (conntrack RELATED,ESTABLISHED ACCEPT), DOCKER-ISOLATION-STAGE-1/2 (traffic between bridge networks), DOCKER-BRIDGE -> DOCKER (one ACCEPT per published port, then DROP of anything else entering the bridge) and accepts what leaves the bridge; the raw table drops packets to a container IP that did not arrive on the bridge (docker 28's direct-routing protection, one rule per container). With userland-proxy=true Docker adds no per-port hairpin MASQUERADE rule. The bench uses `br-bench` for `docker0` and 172.18.0.0/16. With one published port (7000 -> 172.18.0.3:7000) it reads:\n\n```\n");
    md.push_str(&env.rules_example);
    md.push_str("```\n\nIn the published-ports tests the base ports (5201, 7000) come first and the N scaling ports after them, the measured one last.\n");

    let mut jmetrics = Vec::new();
    for (title, desc, defs) in SECTIONS {
        let _ = writeln!(md, "\n## {title}\n\n{desc}\n");
        for def in *defs {
            let ps = paths(&agg, def.key);
            if ps.is_empty() {
                continue;
            }
            let _ = writeln!(
                md,
                "### {} ({}, {} is better)\n",
                def.title,
                def.unit,
                if def.higher_better { "higher" } else { "lower" }
            );
            let numeric = ps.iter().all(|p| p.parse::<u64>().is_ok());
            let _ = writeln!(
                md,
                "| {} | ceiling | iptables | dataplane | real Docker |",
                if numeric { "ports" } else { "path" }
            );
            md.push_str("| --- | --- | --- | --- | --- |\n");
            for p in &ps {
                let mut row = format!("| {p} |");
                for m in modes {
                    let a = get(&agg, def.key, p, m);
                    let cell = match a {
                        None => "n/a".to_string(),
                        Some(a) => {
                            let mut c = format!(
                                "{} [{}-{}]",
                                fmt_num(a.median),
                                fmt_num(a.min),
                                fmt_num(a.max)
                            );
                            let ri = ratio(Some(a), get(&agg, def.key, p, Mode::Iptables));
                            let rc = ratio(Some(a), get(&agg, def.key, p, Mode::Ceiling));
                            if let Some(r) = ri {
                                let _ = write!(c, " · {r:.2}x ipt");
                            }
                            if let Some(r) = rc {
                                let _ = write!(c, " · {r:.2}x ceil");
                            }
                            jmetrics.push(json!({
                                "metric": def.key,
                                "title": def.title,
                                "unit": def.unit,
                                "higher_is_better": def.higher_better,
                                "path": p,
                                "mode": m.name(),
                                "median": a.median,
                                "min": a.min,
                                "max": a.max,
                                "samples": a.samples,
                                "ratio_vs_iptables": ri,
                                "ratio_vs_ceiling": rc,
                            }));
                            c
                        }
                    };
                    let _ = write!(row, " {cell} |");
                }
                row.push_str(" not measured |");
                let _ = writeln!(md, "{row}");
            }
            md.push('\n');
        }
    }

    let jiso = isolation_sections(&mut md, &agg, env, plan, &mut jmetrics);
    let jcost = match &env.cost {
        Some(c) => {
            let c2c = |m: &str, mode| get(&agg, m, "c2c", mode);
            let (j, t) = super::cost_report::section(
                &mut md,
                c,
                ratio(c2c("rr_p50", Mode::Dataplane), c2c("rr_p50", Mode::Ceiling)),
                ratio(c2c("tput_1", Mode::Dataplane), c2c("tput_1", Mode::Ceiling)),
            );
            tg.extend(
                t.into_iter()
                    .map(|(name, met, detail)| Target { name, met, detail }),
            );
            j
        }
        None => Value::Null,
    };

    md.push_str("\n## Plots\n\n");
    let plots = [
        (
            "ports_crr_rate",
            "ports_rate.svg",
            "New connections/s vs published ports",
        ),
        (
            "ports_first_p50",
            "ports_latency.svg",
            "connect + first response p50 (us) vs published ports",
        ),
        (
            "program_ms",
            "program_time.svg",
            "Programming time (ms) vs published ports",
        ),
    ];
    for (metric, file, title) in plots {
        let svg = super::plot::plot(&agg, metric, title);
        fs::write(dir.join(file), svg).with_context(|| format!("writing {file}"))?;
        let _ = writeln!(md, "![{title}]({file})\n");
    }

    md.push_str("## Targets\n\n| target | result | detail |\n| --- | --- | --- |\n");
    for t in &tg {
        let r = match t.met {
            Some(true) => "met",
            Some(false) => "**MISSED**",
            None => "not evaluated",
        };
        let _ = writeln!(md, "| {} | {r} | {} |", t.name, t.detail);
    }
    let missed: Vec<&Target> = tg.iter().filter(|t| t.met == Some(false)).collect();
    if missed.is_empty() {
        md.push_str("\nNo target was missed in this run.\n");
    } else {
        let _ = writeln!(md, "\nMissed in this run ({}):\n", missed.len());
        for t in missed {
            let _ = writeln!(md, "- {}: {}", t.name, t.detail);
        }
    }
    md.push_str(&super::docker_report::markdown(env.docker.as_ref()));
    md.push_str(
        "\n## Other sections\n\n- Names (DNS): `dns.md`, `dns.json`\n- Monitor (tracing off vs on): `monitor.md`, `monitor.json`\n- Overlay (multi-host: datapath against the underlay and the kernel VXLAN path, convergence, scale): `overlay.md`, `overlay.json`, `overlay_sync.svg`, `overlay_rss.svg`\n- Uplink modes (generic XDP, tcx, native XDP on the veth uplink; `--only uplink`): `uplink.md`, `uplink.json`\n",
    );

    let j = json!({
        "environment": {
            "kernel": env.kernel,
            "cpus": env.cpus,
            "cpu_model": env.cpu_model,
            "iperf3": env.iperf3,
            "sockperf": env.sockperf,
            "dataplane": env.dataplane,
            "agent_profile": env.agent_profile,
            "iptables": env.iptables,
            "bridge_netfilter": env.bridge_nf,
        },
        "config": {
            "level": env.level,
            "repetitions": plan.reps,
            "throughput_seconds": plan.tput_secs,
            "rr_ms": plan.rr.as_millis() as u64,
            "crr_ms": plan.crr.as_millis() as u64,
            "ports_crr_ms": plan.scale_crr.as_millis() as u64,
            "port_counts": plan.port_counts,
            "wall_seconds": env.wall_secs,
        },
        "checks": env.checks,
        "metrics": jmetrics,
        "isolation": jiso["isolation"],
        "early_drop": jiso["early_drop"],
        "per_packet_cost": jcost,
        "targets": tg.iter().map(|t| json!({"target": t.name, "met": t.met, "detail": t.detail})).collect::<Vec<Value>>(),
        "real_docker": super::docker_report::json(env.docker.as_ref()),
    });
    fs::write(dir.join("report.md"), md)?;
    fs::write(dir.join("report.json"), serde_json::to_string_pretty(&j)?)?;
    Ok(())
}

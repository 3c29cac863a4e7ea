//! IPv6 rows: container-to-container and outside-to-published-port over
//! IPv6, on the single-host topology of the run with IPv6 added to each
//! mode: the direct veth pair (ceiling), the Linux bridge with Docker's
//! ip6tables rule set (`rules::DockerRules::render6`, as Docker 27+ programs
//! it with `ip6tables=true`: DNAT to the container's IPv6 address, ULA
//! masquerade, the same filter chains) and the agent with a dual-stack
//! network. One iperf3 stream, dp-loadgen rr and crr per path, the modes
//! interleaved in each repetition. Writes `ipv6.md` and `ipv6.json`.

use std::fmt::Write as _;
use std::{fs, path::Path, process::Command, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use super::{
    measure::{iperf, loadgen, probe},
    rules::{DockerRules, PortMap},
    topo::{in_ns, ns_path, World, BRIDGE, IPERF_PORT, RR_PORT},
    Plan,
};
use crate::capture_ok;

const CEIL_A: &str = "fd00:232::1";
const CEIL_B: &str = "fd00:232::2";
const BR6_GW: &str = "fd00:18::1";
const BR6_SUBNET: &str = "fd00:18::/64";
const BR6_C1: &str = "fd00:18::2";
const BR6_C2: &str = "fd00:18::3";
/// IPv6 of the host's uplink (both bridge and dataplane modes) and of the
/// outside namespace.
const UP6_HOST: &str = "fd00:231::2";
const UP6_OUT: &str = "fd00:231::1";
const DP6_NET: &str = "bench6";
const DP6_SUBNET4: &str = "10.233.0.0/24";
const DP6_SUBNET: &str = "fd00:233::/64";
const DP6_C1: &str = "fd00:233::10";
const DP6_C2: &str = "fd00:233::11";
/// Host ports published for the IPv6 server (the IPv4 rows use
/// IPERF_PORT/RR_PORT on the host).
const PUB_IPERF: u16 = 15201;
const PUB_RR: u16 = 17000;

/// One measured path: a client namespace and the server it reaches.
#[derive(Clone, Debug)]
struct Target {
    client: String,
    addr: String,
    iperf_port: u16,
    rr_port: u16,
}

#[derive(Clone, Debug)]
struct Mode6 {
    name: &'static str,
    c2c: Target,
    published: Target,
}

struct Row {
    mode: &'static str,
    path: &'static str,
    metric: &'static str,
    value: f64,
}

fn ok(cmd: &mut Command) -> Result<String> {
    capture_ok(cmd, Duration::from_mins(1))
}

fn ip(args: &[&str]) -> Result<()> {
    ok(Command::new("ip").args(args)).map(|_| ())
}

fn sysctl(ns: &str, kv: &[&str]) -> Result<()> {
    ok(in_ns(&ns_path(ns), "sysctl").arg("-qw").args(kv)).map(|_| ())
}

/// IPv6 on `dev` in namespace `ns` (the agent's namespaces start with it
/// disabled on new devices), then `addr` without duplicate detection.
fn add6(ns: &str, dev: &str, addr: &str) -> Result<()> {
    sysctl(ns, &[&format!("net.ipv6.conf.{dev}.disable_ipv6=0")])?;
    ip(&["-n", ns, "addr", "add", addr, "dev", dev, "nodad"])
}

fn bracket(addr: &str, port: u16) -> String {
    format!("[{addr}]:{port}")
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The ceiling's veth pair (`topo::World::setup_ceiling`) with IPv6: the
/// client reaches the server directly on both paths.
fn setup_ceiling(pid: u32) -> Result<Mode6> {
    let a = format!("dpb-c1-{pid}");
    add6(&a, &format!("bca{pid}"), &format!("{CEIL_A}/64"))?;
    add6(
        &format!("dpb-c2-{pid}"),
        &format!("bcb{pid}"),
        &format!("{CEIL_B}/64"),
    )?;
    let t = Target {
        client: ns_path(&a),
        addr: CEIL_B.into(),
        iperf_port: IPERF_PORT,
        rr_port: RR_PORT,
    };
    Ok(Mode6 {
        name: "ceiling",
        c2c: t.clone(),
        published: t,
    })
}

/// IPv6 on the uplink of host namespace `h` and its outside namespace `o`.
fn uplink6(h: &str, o: &str, hi: &str, oi: &str) -> Result<()> {
    add6(h, hi, &format!("{UP6_HOST}/64"))?;
    add6(o, oi, &format!("{UP6_OUT}/64"))
}

fn setup_ip6tables(pid: u32) -> Result<Mode6> {
    let (h, o) = (format!("dpb-ih-{pid}"), format!("dpb-io-{pid}"));
    uplink6(&h, &o, &format!("biu{pid}"), &format!("bio{pid}"))?;
    add6(&h, BRIDGE, &format!("{BR6_GW}/64"))?;
    for (k, addr) in [(1, BR6_C1), (2, BR6_C2)] {
        let c = format!("dpb-i{k}-{pid}");
        add6(&c, &format!("bi{k}{pid}"), &format!("{addr}/64"))?;
        ip(&["-n", &c, "-6", "route", "add", "default", "via", BR6_GW])?;
    }
    sysctl(&h, &["net.ipv6.conf.all.forwarding=1"])?;
    if World::bridge_nf_available(&h) {
        ok(Command::new("ip").args([
            "netns",
            "exec",
            &h,
            "sysctl",
            "-qw",
            "net.bridge.bridge-nf-call-ip6tables=1",
        ]))?;
    }
    let rules = DockerRules {
        bridge: BRIDGE,
        subnet: BR6_SUBNET,
        container_ips: &[BR6_C1.into(), BR6_C2.into()],
        ports: &[
            PortMap {
                host_port: PUB_IPERF,
                container_ip: BR6_C2.into(),
                container_port: IPERF_PORT,
            },
            PortMap {
                host_port: PUB_RR,
                container_ip: BR6_C2.into(),
                container_port: RR_PORT,
            },
        ],
        icc: true,
        links: &[],
    }
    .render6();
    let path = std::env::temp_dir().join(format!("dataplane-bench-{pid}-ip6tables.rules"));
    fs::write(&path, rules)?;
    ok(in_ns(&ns_path(&h), "ip6tables-restore").arg(&path))
        .context("loading Docker's ip6tables rules")?;
    let _ = fs::remove_file(&path);
    Ok(Mode6 {
        name: "ip6tables",
        c2c: Target {
            client: ns_path(&format!("dpb-i1-{pid}")),
            addr: BR6_C2.into(),
            iperf_port: IPERF_PORT,
            rr_port: RR_PORT,
        },
        published: Target {
            client: ns_path(&o),
            addr: UP6_HOST.into(),
            iperf_port: PUB_IPERF,
            rr_port: PUB_RR,
        },
    })
}

fn setup_dataplane(w: &mut World) -> Result<Mode6> {
    let pid = std::process::id();
    let (h, o) = (format!("dpb-dh-{pid}"), format!("dpb-do-{pid}"));
    uplink6(&h, &o, &format!("bdu{pid}"), &format!("bdo{pid}"))?;
    ok(w.dp().args([
        "network",
        "create",
        "--ipv6",
        "--subnet",
        DP6_SUBNET4,
        "--subnet",
        DP6_SUBNET,
        DP6_NET,
    ]))?;
    ok(w.dp().args([
        "container",
        "create",
        "--network",
        DP6_NET,
        "--ip6",
        DP6_C1,
        "bench6-c1",
    ]))?;
    ok(w.dp().args([
        "container",
        "create",
        "--network",
        DP6_NET,
        "--ip6",
        DP6_C2,
        "-p",
        &format!("{PUB_IPERF}:{IPERF_PORT}"),
        "-p",
        &format!("{PUB_RR}:{RR_PORT}"),
        "bench6-c2",
    ]))?;
    let (p1, _) = w.container("bench6-c1")?;
    let (p2, _) = w.container("bench6-c2")?;
    let mut c = in_ns(&p2, "iperf3");
    c.args(["-s", "-p", &IPERF_PORT.to_string()]);
    w.spawn_bg(&mut c)?;
    let mut c = in_ns(&p2, w.loadgen());
    c.args(["server", "--port", &RR_PORT.to_string()]);
    w.spawn_bg(&mut c)?;
    Ok(Mode6 {
        name: "dataplane",
        c2c: Target {
            client: p1,
            addr: DP6_C2.into(),
            iperf_port: IPERF_PORT,
            rr_port: RR_PORT,
        },
        published: Target {
            client: ns_path(&o),
            addr: UP6_HOST.into(),
            iperf_port: PUB_IPERF,
            rr_port: PUB_RR,
        },
    })
}

/// Needs the three single-host topologies of `w` set up.
pub(super) fn measure(w: &mut World, plan: &Plan, out_dir: &Path) -> Result<()> {
    println!("==> ipv6 (ceiling, ip6tables bridge, dataplane dual stack)");
    if super::measure::version("sh", &["-c", "command -v ip6tables-restore"]).is_empty() {
        bail!("`ip6tables-restore` not found (run `cargo xtask setup`)");
    }
    let pid = std::process::id();
    let modes = [
        setup_ceiling(pid)?,
        setup_ip6tables(pid)?,
        setup_dataplane(w)?,
    ];
    for m in &modes {
        for (path, t) in [("c2c", &m.c2c), ("outside->published", &m.published)] {
            probe(w.loadgen(), &t.client, &bracket(&t.addr, t.rr_port))
                .with_context(|| format!("{} {path} over IPv6", m.name))?;
        }
    }
    let mut rows = Vec::new();
    for rep in 0..plan.reps {
        for i in 0..modes.len() {
            let m = &modes[(i + rep) % modes.len()];
            for (path, t) in [("c2c", &m.c2c), ("outside->published", &m.published)] {
                let tp = iperf(&t.client, &t.addr, t.iperf_port, 1, plan.tput_secs)?;
                let addr = bracket(&t.addr, t.rr_port);
                let rr = loadgen(w.loadgen(), &t.client, "rr", &addr, plan.rr)?;
                let crr = loadgen(w.loadgen(), &t.client, "crr", &addr, plan.crr)?;
                println!(
                    "  {:<9} {path}: {:.2} Gbit/s, rr p50 {:.1} us, crr {:.0}/s",
                    m.name,
                    tp.gbps,
                    rr.f("p50_us"),
                    crr.f("rate")
                );
                for (metric, value) in [
                    ("tput_gbps", tp.gbps),
                    ("rr_p50_us", rr.f("p50_us")),
                    ("rr_rate", rr.f("rate")),
                    ("crr_rate", crr.f("rate")),
                ] {
                    rows.push(Row {
                        mode: m.name,
                        path,
                        metric,
                        value,
                    });
                }
            }
        }
    }
    if rows.iter().any(|r| !r.value.is_finite() || r.value <= 0.0) {
        bail!("an IPv6 measurement came back empty");
    }
    write(out_dir, plan, &rows)
}

fn write(out_dir: &Path, plan: &Plan, rows: &[Row]) -> Result<()> {
    let mut md = String::new();
    let _ = writeln!(md, "# IPv6\n");
    let _ = writeln!(
        md,
        "Per path: one iperf3 stream ({:.0} s), dp-loadgen rr ({} ms) and crr ({} ms), {} \
         repetition(s), modes interleaved; medians. ceiling: a direct veth pair; ip6tables: a \
         Linux bridge with Docker's ip6tables rule set (DNAT [host]:{PUB_IPERF} -> \
         [{BR6_C2}]:{IPERF_PORT}, ULA masquerade, the filter chains); dataplane: a dual-stack \
         network ({DP6_SUBNET}), published [{UP6_HOST}]:{PUB_IPERF} -> [{DP6_C2}]:{IPERF_PORT}. \
         Higher is better except rr_p50_us.\n",
        plan.tput_secs,
        plan.rr.as_millis(),
        plan.crr.as_millis(),
        plan.reps
    );
    let _ = writeln!(
        md,
        "| path | metric | ceiling | ip6tables | dataplane | dataplane/ceiling | dataplane/ip6tables |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    for path in ["c2c", "outside->published"] {
        for metric in ["tput_gbps", "rr_p50_us", "rr_rate", "crr_rate"] {
            let pick = |mode: &str| {
                median(
                    rows.iter()
                        .filter(|r| r.mode == mode && r.path == path && r.metric == metric)
                        .map(|r| r.value)
                        .collect(),
                )
            };
            let (c, i, d) = (pick("ceiling"), pick("ip6tables"), pick("dataplane"));
            let _ = writeln!(
                md,
                "| {path} | {metric} | {c:.2} | {i:.2} | {d:.2} | {:.2}x | {:.2}x |",
                d / c,
                d / i
            );
            json_rows.push(json!({
                "path": path, "metric": metric,
                "ceiling": c, "ip6tables": i, "dataplane": d,
            }));
        }
    }
    fs::write(out_dir.join("ipv6.md"), &md)?;
    fs::write(
        out_dir.join("ipv6.json"),
        serde_json::to_string_pretty(&json!({ "rows": json_rows }))
            .map_err(|e| anyhow!("ipv6.json: {e}"))?,
    )?;
    print!("{md}");
    Ok(())
}

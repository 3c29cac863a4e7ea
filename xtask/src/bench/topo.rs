//! The benchmark topologies, all inside network namespaces this process
//! creates (names carry the pid). `World` owns every kernel object and
//! process it made; `Drop` tears everything down, also after errors and
//! Ctrl-C.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::rules::{DockerRules, Link, PortMap};
use crate::{capture_ok, describe, mounts_under};

#[path = "topo_agent.rs"]
mod agent;

pub(super) const UPLINK_HOST_IP: &str = "10.231.0.2";
/// The dataplane network of the measured pair (icc on); the default bridge
/// runs with icc off for the isolation setup.
const BENCH_NET: &str = "bench-net";
pub(super) const UPLINK_OUT_IP: &str = "10.231.0.1";
pub(super) const BRIDGE: &str = "br-bench";
pub(super) const BR_SUBNET: &str = "172.18.0.0/16";
pub(super) const BR_GW: &str = "172.18.0.1";
pub(super) const IPERF_PORT: u16 = 5201;
pub(super) const RR_PORT: u16 = 7000;
pub(super) const SCALE_BASE: u16 = 20000;
/// A port the isolation servers listen on but do not expose: the link
/// policy must drop connections to it.
pub(super) const ISO_DENIED_PORT: u16 = 7001;
/// UDP port of the early-drop flood (no server, not published).
pub(super) const FLOOD_PORT: u16 = 9999;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Mode {
    Ceiling,
    Iptables,
    Dataplane,
}

impl Mode {
    pub(super) const ALL: [Mode; 3] = [Mode::Ceiling, Mode::Iptables, Mode::Dataplane];
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::Ceiling => "ceiling",
            Mode::Iptables => "iptables",
            Mode::Dataplane => "dataplane",
        }
    }
}

/// The linked client/server pair of the isolation benchmark.
#[derive(Clone, Debug, Default)]
pub(super) struct IsoPair {
    /// netns path of the client (created with `--link server`).
    pub client: String,
    pub server_ip: String,
}

/// Where the clients and servers of one mode live.
#[derive(Clone, Debug, Default)]
pub(super) struct Endpoints {
    /// netns path of the container-to-container client (container 1).
    pub c1: String,
    pub c2_ip: String,
    /// netns path of the outside client.
    pub out: String,
    /// Address the outside client connects to (published ports).
    pub pub_ip: String,
    /// Host netns name (iptables-save), if the mode has one.
    pub host_ns: Option<String>,
}

pub(super) struct World {
    pid: u32,
    pub tmp: PathBuf,
    bin: PathBuf,
    loadgen: PathBuf,
    netns: Vec<String>,
    children: Vec<Option<Child>>,
    agent: Option<Child>,
    agent_started: bool,
    bpffs: PathBuf,
    pub agent_log: PathBuf,
    cleaned: bool,
    pub ceiling: Endpoints,
    pub iptables: Endpoints,
    pub dataplane: Endpoints,
    /// Background server of the dataplane port-scaling container.
    scale_server: Option<usize>,
    scale_container: bool,
    /// Published scaling ports currently programmed in the iptables mode.
    ipt_ports: u32,
    /// iptables mode runs with icc=false + the link rules.
    ipt_isolated: bool,
    /// Dataplane icc=false network with a linked pair.
    pub dp_iso: Option<IsoPair>,
}

pub(super) fn ns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// A command run inside the network namespace at `path`.
pub(super) fn in_ns(path: &str, prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={path}")).arg(prog);
    c
}

fn ok(cmd: &mut Command) -> Result<String> {
    capture_ok(cmd, Duration::from_mins(1))
}

fn ip(args: &[&str]) -> Result<()> {
    ok(Command::new("ip").args(args)).map(|_| ())
}

impl World {
    pub(super) fn new(bin: PathBuf, loadgen: PathBuf) -> Result<Self> {
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("dataplane-bench-{pid}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(World {
            pid,
            agent_log: tmp.join("agent.log"),
            tmp,
            bin,
            loadgen,
            netns: Vec::new(),
            children: Vec::new(),
            agent: None,
            agent_started: false,
            bpffs: PathBuf::from(format!("/sys/fs/bpf/dataplane-bench-{pid}")),
            cleaned: false,
            ceiling: Endpoints::default(),
            iptables: Endpoints::default(),
            dataplane: Endpoints::default(),
            scale_server: None,
            scale_container: false,
            ipt_ports: 0,
            ipt_isolated: false,
            dp_iso: None,
        })
    }

    pub(super) fn endpoints(&self, m: Mode) -> &Endpoints {
        match m {
            Mode::Ceiling => &self.ceiling,
            Mode::Iptables => &self.iptables,
            Mode::Dataplane => &self.dataplane,
        }
    }

    pub(super) fn loadgen(&self) -> &PathBuf {
        &self.loadgen
    }

    /// The agent's bpffs directory (pinned maps and links).
    pub(super) fn bpffs(&self) -> &std::path::Path {
        &self.bpffs
    }

    /// A namespace of the run (`dpb-TAG-PID`), deleted by `cleanup`.
    pub(super) fn add_ns(&mut self, tag: &str) -> Result<String> {
        let name = format!("dpb-{tag}-{}", self.pid);
        ip(&["netns", "add", &name])?;
        self.netns.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    fn ifname(&self, tag: &str) -> String {
        // <= 15 chars: 3-char tag + pid (<= 7 digits) + index.
        format!("{tag}{}", self.pid)
    }

    /// Spawns a long-running process; returns its slot.
    pub(super) fn spawn_bg(&mut self, cmd: &mut Command) -> Result<usize> {
        let log = fs::File::create(self.tmp.join(format!("bg-{}.log", self.children.len())))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting `{}`", describe(cmd)))?;
        self.children.push(Some(child));
        Ok(self.children.len() - 1)
    }

    pub(super) fn kill_bg(&mut self, slot: usize) {
        if let Some(mut c) = self.children.get_mut(slot).and_then(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn client_sysctls(path: &str) -> Result<()> {
        // Many short connections: reuse TIME_WAIT ports, wide port range.
        ok(in_ns(path, "sysctl").args([
            "-qw",
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=1024 65000",
        ]))
        .map(|_| ())
    }

    fn servers(&mut self, path: &str, rr_ports: &[u16]) -> Result<()> {
        let mut c = in_ns(path, "iperf3");
        c.args(["-s", "-p", &IPERF_PORT.to_string()]);
        self.spawn_bg(&mut c)?;
        let mut c = in_ns(path, &self.loadgen);
        c.arg("server");
        for p in rr_ports {
            c.args(["--port", &p.to_string()]);
        }
        self.spawn_bg(&mut c)?;
        Ok(())
    }

    /// Two namespaces joined by one veth pair: no bridge, no rules.
    pub(super) fn setup_ceiling(&mut self) -> Result<()> {
        let a = self.add_ns("c1")?;
        let b = self.add_ns("c2")?;
        let (ia, ib) = (self.ifname("bca"), self.ifname("bcb"));
        ip(&[
            "link", "add", &ia, "netns", &a, "type", "veth", "peer", "name", &ib, "netns", &b,
        ])?;
        ip(&["-n", &a, "addr", "add", "10.232.0.1/24", "dev", &ia])?;
        ip(&["-n", &b, "addr", "add", "10.232.0.2/24", "dev", &ib])?;
        ip(&["-n", &a, "link", "set", &ia, "up"])?;
        ip(&["-n", &b, "link", "set", &ib, "up"])?;
        let (pa, pb) = (ns_path(&a), ns_path(&b));
        Self::client_sysctls(&pa)?;
        self.servers(&pb, &[RR_PORT])?;
        self.ceiling = Endpoints {
            c1: pa.clone(),
            c2_ip: "10.232.0.2".into(),
            out: pa,
            pub_ip: "10.232.0.2".into(),
            host_ns: None,
        };
        Ok(())
    }

    /// Host + outside namespaces joined by the uplink veth.
    fn host_and_outside(&mut self, tag: char) -> Result<(String, String, String)> {
        let h = self.add_ns(&format!("{tag}h"))?;
        let o = self.add_ns(&format!("{tag}o"))?;
        let (hi, oi) = (
            self.ifname(&format!("b{tag}u")),
            self.ifname(&format!("b{tag}o")),
        );
        ip(&[
            "link", "add", &hi, "netns", &h, "type", "veth", "peer", "name", &oi, "netns", &o,
        ])?;
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("{UPLINK_HOST_IP}/24"),
            "dev",
            &hi,
        ])?;
        ip(&[
            "-n",
            &o,
            "addr",
            "add",
            &format!("{UPLINK_OUT_IP}/24"),
            "dev",
            &oi,
        ])?;
        ip(&["-n", &h, "link", "set", &hi, "up"])?;
        ip(&["-n", &o, "link", "set", &oi, "up"])?;
        ip(&["-n", &h, "route", "add", "default", "via", UPLINK_OUT_IP])?;
        Self::client_sysctls(&ns_path(&o))?;
        Ok((h, o, hi))
    }

    pub(super) fn bridge_nf_available(host_ns: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", host_ns, "test", "-e"])
            .arg("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Linux bridge + Docker's iptables rules. Returns whether bridge
    /// netfilter could be enabled.
    pub(super) fn setup_iptables(&mut self, scale_ports: &[u16]) -> Result<bool> {
        let (h, o, _) = self.host_and_outside('i')?;
        ip(&["-n", &h, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("{BR_GW}/16"),
            "dev",
            BRIDGE,
        ])?;
        ip(&["-n", &h, "link", "set", BRIDGE, "up"])?;
        let mut paths = Vec::new();
        for k in 1..=3u8 {
            let c = self.add_ns(&format!("i{k}"))?;
            let (hv, cv) = (
                self.ifname(&format!("bh{k}")),
                self.ifname(&format!("bi{k}")),
            );
            ip(&[
                "link", "add", &hv, "netns", &h, "type", "veth", "peer", "name", &cv, "netns", &c,
            ])?;
            ip(&["-n", &h, "link", "set", &hv, "master", BRIDGE])?;
            ip(&["-n", &h, "link", "set", &hv, "up"])?;
            let addr = format!("172.18.0.{}/16", k + 1);
            ip(&["-n", &c, "addr", "add", &addr, "dev", &cv])?;
            ip(&["-n", &c, "link", "set", &cv, "up"])?;
            ip(&["-n", &c, "route", "add", "default", "via", BR_GW])?;
            paths.push(ns_path(&c));
        }
        ok(Command::new("ip").args([
            "netns",
            "exec",
            &h,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        let bridge_nf = Self::bridge_nf_available(&h);
        if bridge_nf {
            ok(Command::new("ip").args([
                "netns",
                "exec",
                &h,
                "sysctl",
                "-qw",
                "net.bridge.bridge-nf-call-iptables=1",
            ]))?;
        }
        Self::client_sysctls(&paths[0])?;
        self.servers(&paths[1], &[RR_PORT, ISO_DENIED_PORT])?;
        // The port-scaling server listens on every measured (last) port.
        let mut c = in_ns(&paths[2], &self.loadgen);
        c.arg("server");
        for p in scale_ports {
            c.args(["--port", &p.to_string()]);
        }
        self.spawn_bg(&mut c)?;
        self.iptables = Endpoints {
            c1: paths[0].clone(),
            c2_ip: "172.18.0.3".into(),
            out: ns_path(&o),
            pub_ip: UPLINK_HOST_IP.into(),
            host_ns: Some(h),
        };
        self.program_iptables(0)?;
        Ok(bridge_nf)
    }

    /// Replaces the host netns' rule set with Docker's rules for the two
    /// base ports plus `n` scaling ports on container 3 (the measured port,
    /// SCALE_BASE + n - 1, last). Returns the iptables-restore wall time.
    pub(super) fn program_iptables(&mut self, n: u32) -> Result<Duration> {
        let h = self.iptables.host_ns.clone().expect("iptables mode set up");
        self.ipt_ports = n;
        let mut ports = vec![
            PortMap {
                host_port: IPERF_PORT,
                container_ip: "172.18.0.3".into(),
                container_port: IPERF_PORT,
            },
            PortMap {
                host_port: RR_PORT,
                container_ip: "172.18.0.3".into(),
                container_port: RR_PORT,
            },
        ];
        for i in 0..n {
            let p = SCALE_BASE + i as u16;
            ports.push(PortMap {
                host_port: p,
                container_ip: "172.18.0.4".into(),
                container_port: p,
            });
        }
        let ips: Vec<String> = (2..=4).map(|k| format!("172.18.0.{k}")).collect();
        let links = if self.ipt_isolated {
            vec![ipt_link()]
        } else {
            Vec::new()
        };
        let text = DockerRules {
            bridge: BRIDGE,
            subnet: BR_SUBNET,
            container_ips: &ips,
            ports: &ports,
            icc: !self.ipt_isolated,
            links: &links,
        }
        .render();
        let file = self.tmp.join("rules.v4");
        fs::write(&file, text)?;
        let f = fs::File::open(&file)?;
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &h, "iptables-restore"])
            .stdin(f)
            .output()
            .context("iptables-restore")?;
        let dt = t.elapsed();
        if !out.status.success() {
            bail!(
                "iptables-restore failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(dt)
    }

    /// Switches the iptables mode between Docker's defaults (icc=true) and
    /// icc=false with container 1 linked to container 2 (keeps the number
    /// of published scaling ports).
    pub(super) fn set_iptables_isolation(&mut self, on: bool) -> Result<()> {
        self.ipt_isolated = on;
        self.program_iptables(self.ipt_ports).map(|_| ())
    }

    /// The link rules' view of the iptables isolated setup, for the report.
    #[expect(
        clippy::unused_self,
        reason = "part of the topology's view, next to its siblings"
    )]
    pub(super) fn iptables_isolation_rules(&self) -> String {
        let ips = vec!["172.18.0.2".to_string(), "172.18.0.3".to_string()];
        DockerRules {
            bridge: BRIDGE,
            subnet: BR_SUBNET,
            container_ips: &ips,
            ports: &[],
            icc: false,
            links: &[ipt_link()],
        }
        .render()
    }

    /// The dataplane's isolation setup: the default bridge with icc off, a server
    /// container exposing the measured ports and a client created with
    /// `--link` to it.
    pub(super) fn setup_dataplane_isolation(&mut self) -> Result<()> {
        // The default bridge, icc off (the agent runs with --icc=false):
        // links open ports there only, as in Docker.
        let net = "bridge";
        ok(self.dp().args([
            "container",
            "create",
            "--network",
            net,
            "--expose",
            &IPERF_PORT.to_string(),
            "--expose",
            &RR_PORT.to_string(),
            "bench-is",
        ]))?;
        ok(self.dp().args([
            "container",
            "create",
            "--network",
            net,
            "--link",
            "bench-is",
            "bench-ic",
        ]))?;
        let (ps, ips) = self.container("bench-is")?;
        let (pc, _) = self.container("bench-ic")?;
        Self::client_sysctls(&pc)?;
        self.servers(&ps, &[RR_PORT, ISO_DENIED_PORT])?;
        self.dp_iso = Some(IsoPair {
            client: pc,
            server_ip: ips,
        });
        Ok(())
    }

    /// Global drop counters of the dataplane (`GET /v1/drops`).
    pub(super) fn dataplane_drops(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let sock = self.tmp.join("dataplane.sock");
        let s = ok(Command::new("curl")
            .args(["-sf", "--max-time", "10", "--unix-socket"])
            .arg(&sock)
            .arg("http://x/v1/drops"))?;
        serde_json::from_str(&s).with_context(|| format!("parsing /v1/drops: {s}"))
    }

    /// Packets counted by the DROP rules of the raw PREROUTING chain of the
    /// iptables host netns (the direct-access rules).
    pub(super) fn iptables_raw_drops(&self) -> Result<u64> {
        let h = self
            .iptables
            .host_ns
            .as_deref()
            .expect("iptables mode set up");
        let s = ok(Command::new("ip").args([
            "netns",
            "exec",
            h,
            "iptables",
            "-t",
            "raw",
            "-L",
            "PREROUTING",
            "-v",
            "-x",
            "-n",
        ]))?;
        let mut n = 0;
        for l in s.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 2 && f[2] == "DROP" {
                n += f[0]
                    .parse::<u64>()
                    .with_context(|| format!("counter in {l:?}"))?;
            }
        }
        Ok(n)
    }

    /// (outside interface, MAC of the host's uplink) of mode `m`.
    pub(super) fn uplink_link(&self, m: Mode) -> Result<(String, String)> {
        let (tag, h) = match m {
            Mode::Iptables => ('i', self.iptables.host_ns.as_deref()),
            Mode::Dataplane => ('d', self.dataplane.host_ns.as_deref()),
            Mode::Ceiling => bail!("the ceiling has no uplink"),
        };
        let h = h.expect("mode set up");
        let up = self.ifname(&format!("b{tag}u"));
        let mac = ok(Command::new("ip").args([
            "netns",
            "exec",
            h,
            "cat",
            &format!("/sys/class/net/{up}/address"),
        ]))?;
        Ok((self.ifname(&format!("b{tag}o")), mac.trim().to_string()))
    }

    /// XDP attach mode on the dataplane uplink as `ip link` shows it:
    /// "generic", "native", "offload" or "none".
    pub(super) fn dataplane_xdp_mode(&self) -> Result<String> {
        let h = self.dataplane.host_ns.as_deref().expect("dataplane set up");
        let up = self.ifname("bdu");
        let s = ok(Command::new("ip").args(["-n", h, "link", "show", "dev", &up]))?;
        let first = s.lines().next().unwrap_or("");
        let words: Vec<&str> = first.split_whitespace().collect();
        Ok(if words.contains(&"xdpgeneric") {
            "generic"
        } else if words.contains(&"xdpoffload") {
            "offload"
        } else if words.contains(&"xdp") || words.contains(&"xdpdrv") {
            "native"
        } else {
            "none"
        }
        .into())
    }

    pub(super) fn dp(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("DATAPLANE_SOCKET", self.tmp.join("dataplane.sock"))
            .env("NO_COLOR", "1");
        c
    }

    fn agent_dir_args(&self, host_ns: &str, uplink: &str) -> Vec<std::ffi::OsString> {
        vec![
            "--netns".into(),
            ns_path(host_ns).into(),
            "--state-dir".into(),
            self.tmp.join("state").into(),
            "--run-dir".into(),
            self.tmp.join("run").into(),
            "--bpffs".into(),
            self.bpffs.clone().into(),
            "--socket".into(),
            self.tmp.join("dataplane.sock").into(),
            "--uplink".into(),
            uplink.into(),
        ]
    }

    /// Container `name`: (netns path, IP).
    pub(super) fn container(&self, name: &str) -> Result<(String, String)> {
        let s = ok(self.dp().args(["container", "inspect", name]))?;
        let v: serde_json::Value = serde_json::from_str(&s)?;
        let netns = v["netns"]
            .as_str()
            .ok_or_else(|| anyhow!("no netns in {v}"))?
            .to_string();
        let ip = v["endpoints"][0]["ip"]
            .as_str()
            .ok_or_else(|| anyhow!("no ip in {v}"))?
            .to_string();
        Ok((netns, ip))
    }

    pub(super) fn setup_dataplane(&mut self) -> Result<()> {
        let (h, o, uplink) = self.host_and_outside('d')?;
        self.dataplane.host_ns = Some(h.clone());
        // `DATAPLANE_BENCH_UPLINK_MODE`: the agent's --uplink-mode (default auto).
        let mode = std::env::var("DATAPLANE_BENCH_UPLINK_MODE").ok();
        self.spawn_agent(&h, &uplink, mode.as_deref())?;
        ok(self.dp().args(["network", "create", BENCH_NET]))?;
        ok(self
            .dp()
            .args(["container", "create", "--network", BENCH_NET, "bench-c1"]))?;
        ok(self.dp().args([
            "container",
            "create",
            "--network",
            BENCH_NET,
            "-p",
            &format!("{IPERF_PORT}:{IPERF_PORT}"),
            "-p",
            &format!("{RR_PORT}:{RR_PORT}"),
            // UDP through the published port (per-packet cost, 64-byte UDP).
            "-p",
            &format!("{IPERF_PORT}:{IPERF_PORT}/udp"),
            "bench-c2",
        ]))?;
        let (p1, _) = self.container("bench-c1")?;
        let (p2, ip2) = self.container("bench-c2")?;
        Self::client_sysctls(&p1)?;
        self.servers(&p2, &[RR_PORT])?;
        self.dataplane = Endpoints {
            c1: p1,
            c2_ip: ip2,
            out: ns_path(&o),
            pub_ip: UPLINK_HOST_IP.into(),
            host_ns: Some(h),
        };
        Ok(())
    }

    /// Replaces the dataplane port-scaling container with one publishing
    /// `n` ports (SCALE_BASE..SCALE_BASE+n-1, same container ports) and
    /// starts its server on the last one. Returns the wall time of
    /// `container create` as the client sees it.
    pub(super) fn program_dataplane(&mut self, n: u32) -> Result<Duration> {
        self.remove_scale_container()?;
        let last = SCALE_BASE + (n - 1) as u16;
        let spec = if n == 1 {
            format!("{SCALE_BASE}:{SCALE_BASE}")
        } else {
            format!("{SCALE_BASE}-{last}:{SCALE_BASE}-{last}")
        };
        let t = Instant::now();
        ok(self.dp().args([
            "container",
            "create",
            "--network",
            BENCH_NET,
            "-p",
            &spec,
            "bench-c3",
        ]))?;
        let dt = t.elapsed();
        self.scale_container = true;
        let (p3, _) = self.container("bench-c3")?;
        let mut c = in_ns(&p3, &self.loadgen);
        c.args(["server", "--port", &last.to_string()]);
        self.scale_server = Some(self.spawn_bg(&mut c)?);
        Ok(dt)
    }

    pub(super) fn remove_scale_container(&mut self) -> Result<()> {
        if let Some(s) = self.scale_server.take() {
            self.kill_bg(s);
        }
        if self.scale_container {
            ok(self.dp().args(["container", "rm", "bench-c3"]))?;
            self.scale_container = false;
        }
        Ok(())
    }

    #[expect(
        clippy::unused_self,
        reason = "part of the topology's view, next to its siblings"
    )]
    pub(super) fn iptables_save(&self, host_ns: &str) -> Result<String> {
        ok(Command::new("ip").args(["netns", "exec", host_ns, "iptables-save"]))
    }

    /// Tears everything down; returns what could not be removed.
    pub(super) fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut problems = Vec::new();
        for c in &mut self.children {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(mut agent) = self.agent.take() {
            if let Some(p) = crate::stop_agent_process(&mut agent, Duration::from_secs(15)) {
                problems.push(p);
            }
        }
        if self.agent_started {
            if let Some(h) = self.dataplane.host_ns.clone() {
                let uplink = self.ifname("bdu");
                let out = Command::new(&self.bin)
                    .args(["agent", "--cleanup", "--purge"])
                    .args(self.agent_dir_args(&h, &uplink))
                    .env("NO_COLOR", "1")
                    .stdin(Stdio::null())
                    .output();
                match out {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => problems.push(format!(
                        "agent --cleanup failed ({}): {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => problems.push(format!("agent --cleanup: {e}")),
                }
            }
        }
        for ns in self.netns.drain(..).rev() {
            match Command::new("ip").args(["netns", "del", &ns]).status() {
                Ok(s) if s.success() => {}
                other => problems.push(format!("ip netns del {ns}: {other:?}")),
            }
        }
        if self.bpffs.exists() {
            problems.push(format!("{} was left behind; removed", self.bpffs.display()));
            let _ = fs::remove_dir_all(&self.bpffs);
        }
        for m in mounts_under(&self.tmp) {
            problems.push(format!("mount {} was left behind; unmounted", m.display()));
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        if let Err(e) = fs::remove_dir_all(&self.tmp) {
            problems.push(format!("removing {}: {e}", self.tmp.display()));
        }
        problems
    }

    pub(super) fn agent_log_tail(&self) -> String {
        let s = fs::read_to_string(&self.agent_log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Container 1 (172.18.0.2) linked to container 2 (172.18.0.3) on the
/// measured ports, as `docker run --link c2` with c2 exposing them.
fn ipt_link() -> Link {
    Link {
        client_ip: "172.18.0.2".into(),
        server_ip: "172.18.0.3".into(),
        ports: vec![IPERF_PORT, RR_PORT],
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("bench cleanup: {p}");
        }
    }
}

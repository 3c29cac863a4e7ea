//! The overlay benchmark's simulated cluster: an underlay namespace with a
//! Linux bridge (the physical switch) and etcd, and hosts whose uplink veths
//! are ports of that bridge (192.0.2.11, .12, ... /24), each running its own
//! agent with `--cluster-store`. Also the baseline of the same two hosts:
//! Flannel's vxlan backend programmed by hand (a kernel VXLAN device with
//! static FDB and neighbour entries, a route per remote host subnet and a
//! Linux bridge for the local containers; no eBPF on that path). Names carry
//! the pid; `Drop` removes everything, also after errors.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::topo::{in_ns, ns_path};
use crate::{capture, capture_ok, check_interrupted, mounts_under, stop_agent_process};

pub(super) const UNDERLAY_IP: &str = "192.0.2.254";
const STORE: &str = "etcd://192.0.2.254:2379";
pub(super) const ETCD_URL: &str = "http://192.0.2.254:2379";
/// The agent's key prefix (cluster::keys::DEFAULT_PREFIX).
pub(super) const PREFIX: &str = "/dataplane/v1";
/// The hand-made kernel VXLAN path (Flannel's layout): VNI, UDP port (not
/// the agent's 4789) and the per-host /24 of 10.92.0.0/16.
const KVX_DEV: &str = "kvx0";
const KVX_VNI: &str = "4242";
const KVX_PORT: &str = "4790";

fn ok(cmd: &mut Command) -> Result<String> {
    capture_ok(cmd, Duration::from_mins(1))
}

fn ip(args: &[&str]) -> Result<()> {
    ok(Command::new("ip").args(args)).map(|_| ())
}

/// One simulated host.
pub(super) struct OvHost {
    /// 1-based index (h1 = 192.0.2.11).
    pub k: usize,
    pub ns: String,
    pub uplink: String,
    pub addr: String,
    dir: PathBuf,
    bpffs: PathBuf,
    agent: Option<Child>,
    agent_started: bool,
}

impl OvHost {
    pub(super) fn node_name(&self) -> String {
        format!("h{}", self.k)
    }

    pub(super) fn sock(&self) -> PathBuf {
        self.dir.join("dataplane.sock")
    }

    pub(super) fn bpffs(&self) -> &std::path::Path {
        &self.bpffs
    }

    pub(super) fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    fn dir_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--netns".into(),
            ns_path(&self.ns).into(),
            "--state-dir".into(),
            self.dir.join("state").into(),
            "--run-dir".into(),
            self.dir.join("run").into(),
            "--bpffs".into(),
            self.bpffs.clone().into(),
            "--socket".into(),
            self.sock().into(),
            "--uplink".into(),
            self.uplink.clone().into(),
        ]
    }
}

pub(super) struct OvWorld {
    pid: u32,
    bin: PathBuf,
    pub tmp: PathBuf,
    pub underlay: String,
    netns: Vec<String>,
    pub hosts: Vec<OvHost>,
    etcd: Option<Child>,
    children: Vec<Option<Child>>,
    cleaned: bool,
}

impl OvWorld {
    /// The underlay with its bridge and etcd; no hosts yet.
    pub(super) fn new(bin: PathBuf) -> Result<Self> {
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("dataplane-ovbench-{pid}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let mut w = OvWorld {
            pid,
            bin,
            tmp,
            underlay: String::new(),
            netns: Vec::new(),
            hosts: Vec::new(),
            etcd: None,
            children: Vec::new(),
            cleaned: false,
        };
        w.underlay = w.add_ns("u")?;
        let u = w.underlay.clone();
        ip(&["-n", &u, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &u, "addr", "add", "192.0.2.254/24", "dev", "br0"])?;
        ip(&["-n", &u, "link", "set", "br0", "up"])?;
        w.start_etcd()?;
        Ok(w)
    }

    fn add_ns(&mut self, tag: &str) -> Result<String> {
        let name = format!("dpo-{tag}-{}", self.pid);
        ip(&["netns", "add", &name])?;
        self.netns.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    fn start_etcd(&mut self) -> Result<()> {
        let log = fs::File::create(self.tmp.join("etcd.log"))?;
        let mut c = in_ns(&ns_path(&self.underlay), "etcd");
        c.arg("--name=u")
            .arg(format!("--data-dir={}", self.tmp.join("etcd").display()))
            .arg(format!("--listen-client-urls={ETCD_URL}"))
            .arg(format!("--advertise-client-urls={ETCD_URL}"))
            .arg("--listen-peer-urls=http://127.0.0.1:2380")
            .arg("--initial-advertise-peer-urls=http://127.0.0.1:2380")
            .arg("--initial-cluster=u=http://127.0.0.1:2380")
            // Room for the simulated 5,000-node cluster.
            .arg("--quota-backend-bytes=4294967296")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        self.etcd = Some(
            c.spawn()
                .context("starting etcd (cargo xtask setup installs etcd-server)")?,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            check_interrupted()?;
            let mut h = in_ns(&ns_path(&self.underlay), "etcdctl");
            h.args(["--endpoints", ETCD_URL, "endpoint", "health"]);
            if capture(&mut h, Duration::from_secs(5))?.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not answer within 30s (see {})",
                    self.tmp.join("etcd.log").display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds host `k` (namespace, uplink into the underlay bridge, default
    /// route via the underlay); returns its index in `hosts`.
    pub(super) fn add_host(&mut self, k: usize) -> Result<usize> {
        let ns = self.add_ns(&format!("h{k}"))?;
        let (up, port) = (format!("ou{k}-{}", self.pid), format!("ob{k}-{}", self.pid));
        let u = self.underlay.clone();
        ip(&[
            "link", "add", &up, "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &u,
        ])?;
        let addr = format!("192.0.2.{}", 10 + k);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &up])?;
        ip(&["-n", &ns, "link", "set", &up, "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", UNDERLAY_IP])?;
        ip(&["-n", &u, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &u, "link", "set", &port, "up"])?;
        let dir = self.tmp.join(format!("h{k}"));
        fs::create_dir_all(&dir)?;
        self.hosts.push(OvHost {
            k,
            ns,
            uplink: up,
            addr,
            dir,
            bpffs: PathBuf::from(format!("/sys/fs/bpf/dataplane-ovbench-{}-{k}", self.pid)),
            agent: None,
            agent_started: false,
        });
        Ok(self.hosts.len() - 1)
    }

    /// Starts the agent of host index `i` and waits until it answers (the
    /// agent answers once it has listed the cluster state). Returns the time
    /// from spawning it to its first answer.
    pub(super) fn start_agent(&mut self, i: usize) -> Result<Duration> {
        let h = &mut self.hosts[i];
        let log = fs::File::create(h.dir.join("agent.log"))?;
        let mut c = Command::new(&self.bin);
        c.arg("agent")
            .args(h.dir_args())
            .args(["--cluster-store", STORE, "--node-name", &h.node_name()])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let t = Instant::now();
        h.agent_started = true;
        h.agent = Some(c.spawn().context("starting an agent")?);
        let deadline = t + Duration::from_mins(3);
        loop {
            check_interrupted()?;
            let h = &mut self.hosts[i];
            if let Some(st) = h.agent.as_mut().and_then(|a| a.try_wait().ok().flatten()) {
                h.agent = None;
                let k = h.k;
                bail!(
                    "the agent of h{k} exited during start-up ({st}):\n{}",
                    self.log_tail(i)
                );
            }
            let mut info = self.dp(i);
            info.arg("info");
            if self.hosts[i].sock().exists()
                && capture(&mut info, Duration::from_secs(10))?
                    .status
                    .success()
            {
                return Ok(t.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent of h{} did not answer within 3 min",
                    self.hosts[i].k
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the agent of host index `i` and removes what it made.
    pub(super) fn stop_agent(&mut self, i: usize) -> Vec<String> {
        let mut problems = Vec::new();
        let h = &mut self.hosts[i];
        if let Some(mut a) = h.agent.take() {
            if let Some(p) = stop_agent_process(&mut a, Duration::from_secs(15)) {
                problems.push(p);
            }
        }
        if h.agent_started {
            h.agent_started = false;
            let out = Command::new(&self.bin)
                .args(["agent", "--cleanup", "--purge"])
                .args(h.dir_args())
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => problems.push(format!(
                    "h{}: agent --cleanup failed ({}): {}",
                    h.k,
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => problems.push(format!("agent --cleanup: {e}")),
            }
        }
        problems
    }

    /// The CLI against host index `i`'s agent.
    pub(super) fn dp(&self, i: usize) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("DATAPLANE_SOCKET", self.hosts[i].sock())
            .env("NO_COLOR", "1");
        c
    }

    pub(super) fn dp_ok(&self, i: usize, args: &[&str]) -> Result<String> {
        ok(self.dp(i).args(args))
    }

    /// Creates container `name` on host index `i`; returns (netns path, IP).
    pub(super) fn container(&self, i: usize, net: &str, name: &str) -> Result<(String, String)> {
        let s = self.dp_ok(
            i,
            &[
                "--format",
                "json",
                "container",
                "create",
                "--network",
                net,
                name,
            ],
        )?;
        parse_container(&s)
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
            .context("starting a background process")?;
        self.children.push(Some(child));
        Ok(self.children.len() - 1)
    }

    /// iperf3 and dp-loadgen servers in `ns` (a netns path).
    pub(super) fn servers(
        &mut self,
        ns: &str,
        loadgen: &std::path::Path,
        iperf_port: u16,
        rr_port: u16,
    ) -> Result<()> {
        let mut c = in_ns(ns, "iperf3");
        c.args(["-s", "-p", &iperf_port.to_string()]);
        self.spawn_bg(&mut c)?;
        let mut c = in_ns(ns, loadgen);
        c.args(["server", "--port", &rr_port.to_string()]);
        self.spawn_bg(&mut c)?;
        Ok(())
    }

    /// Flannel's vxlan backend between host indices `a` and `b`, by hand:
    /// on each host a VXLAN device (learning off, its own port) with a
    /// static FDB entry and a permanent neighbour per peer, a route to the
    /// peer's /24 through it, and a Linux bridge holding one container
    /// (10.92.K.2/24, MTU = the VXLAN device's). Returns the containers'
    /// (netns path, IP) of `a` and `b`.
    pub(super) fn kernel_vxlan(&mut self, a: usize, b: usize) -> Result<[(String, String); 2]> {
        let mut out = Vec::new();
        let macs: Vec<String> = [a, b]
            .iter()
            .map(|&i| format!("02:92:00:00:00:{:02x}", self.hosts[i].k))
            .collect();
        for (n, &i) in [a, b].iter().enumerate() {
            let (ns, up, addr, k) = {
                let h = &self.hosts[i];
                (h.ns.clone(), h.uplink.clone(), h.addr.clone(), h.k)
            };
            ip(&[
                "-n",
                &ns,
                "link",
                "add",
                KVX_DEV,
                "address",
                &macs[n],
                "type",
                "vxlan",
                "id",
                KVX_VNI,
                "dstport",
                KVX_PORT,
                "local",
                &addr,
                "dev",
                &up,
                "nolearning",
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.92.{k}.0/32"),
                "dev",
                KVX_DEV,
            ])?;
            ip(&["-n", &ns, "link", "set", KVX_DEV, "up"])?;
            let br = format!("kbr{k}");
            ip(&["-n", &ns, "link", "add", &br, "type", "bridge"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.92.{k}.1/24"),
                "dev",
                &br,
            ])?;
            ip(&["-n", &ns, "link", "set", &br, "up"])?;
            let c = self.add_ns(&format!("k{k}"))?;
            let (hv, cv) = (format!("kv{k}-{}", self.pid), "eth0".to_string());
            ip(&[
                "link", "add", &hv, "netns", &ns, "type", "veth", "peer", "name", &cv, "netns", &c,
            ])?;
            ip(&[
                "-n", &ns, "link", "set", &hv, "master", &br, "mtu", "1450", "up",
            ])?;
            ip(&["-n", &c, "link", "set", &cv, "mtu", "1450", "up"])?;
            ip(&[
                "-n",
                &c,
                "addr",
                "add",
                &format!("10.92.{k}.2/24"),
                "dev",
                &cv,
            ])?;
            ip(&[
                "-n",
                &c,
                "route",
                "add",
                "default",
                "via",
                &format!("10.92.{k}.1"),
            ])?;
            ok(in_ns(&ns_path(&ns), "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
            out.push((ns_path(&c), format!("10.92.{k}.2")));
        }
        for (n, (&i, &peer)) in [(a, b), (b, a)].iter().map(|(x, y)| (x, y)).enumerate() {
            let ns = self.hosts[i].ns.clone();
            let (pk, paddr) = (self.hosts[peer].k, self.hosts[peer].addr.clone());
            let pmac = &macs[1 - n];
            let gw = format!("10.92.{pk}.0");
            ip(&[
                "-n",
                &ns,
                "neigh",
                "add",
                &gw,
                "lladdr",
                pmac,
                "dev",
                KVX_DEV,
                "nud",
                "permanent",
            ])?;
            ok(Command::new("bridge").args([
                "-n",
                &ns,
                "fdb",
                "append",
                pmac,
                "dev",
                KVX_DEV,
                "dst",
                &paddr,
                "self",
                "permanent",
            ]))?;
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                &format!("10.92.{pk}.0/24"),
                "via",
                &gw,
                "dev",
                KVX_DEV,
                "onlink",
            ])?;
        }
        let b2 = out.pop().ok_or_else(|| anyhow!("no container"))?;
        let a2 = out.pop().ok_or_else(|| anyhow!("no container"))?;
        Ok([a2, b2])
    }

    pub(super) fn log_tail(&self, i: usize) -> String {
        let s = fs::read_to_string(self.hosts[i].dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
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
        for i in 0..self.hosts.len() {
            problems.extend(self.stop_agent(i));
        }
        if let Some(mut e) = self.etcd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
        for ns in self.netns.drain(..).rev() {
            match Command::new("ip").args(["netns", "del", &ns]).status() {
                Ok(s) if s.success() => {}
                other => problems.push(format!("ip netns del {ns}: {other:?}")),
            }
        }
        for h in &self.hosts {
            if h.bpffs.exists() {
                problems.push(format!("{} was left behind; removed", h.bpffs.display()));
                let _ = fs::remove_dir_all(&h.bpffs);
            }
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
}

/// (netns path, first endpoint's IP) of `container create --format json`.
pub(super) fn parse_container(s: &str) -> Result<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(s).with_context(|| format!("container JSON: {s}"))?;
    let netns = v["netns"]
        .as_str()
        .ok_or_else(|| anyhow!("no netns in {v}"))?;
    let ip = v["endpoints"][0]["ip"]
        .as_str()
        .ok_or_else(|| anyhow!("no ip in {v}"))?;
    Ok((netns.to_string(), ip.to_string()))
}

impl Drop for OvWorld {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("overlay bench cleanup: {p}");
        }
    }
}

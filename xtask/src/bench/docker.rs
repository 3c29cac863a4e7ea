//! The "Real Docker" section of `cargo xtask bench`: the same topologies
//! measured through a real dockerd (20.10 as Debian ships it), twice in one
//! run and interleaved: containers on a network of Docker's own bridge
//! driver (its iptables rules, docker-proxy) and containers on a network of
//! the dataplane agent's Docker plugin (`-d`/`--ipam-driver`), both under
//! the same dockerd.
//!
//! Everything lives in namespaces of the run: a "host" namespace with an
//! uplink veth to an "outside" namespace; dockerd runs in the host
//! namespace with its defaults (`--iptables=true`, docker-proxy, ip forward,
//! masquerade, its own `docker0` with `--bip`) and, in a mount namespace of
//! its own, the run's directory bind-mounted over /run/docker (where it
//! discovers plugin sockets; the real one is never written); its data root,
//! exec root, socket, pid file and cgroup parent are the run's. A second
//! agent (own state, run directory, bpffs and socket) serves the plugin in
//! the same host namespace. The image is a `docker import` of
//! busybox-static; the servers (iperf3, dp-loadgen) are host binaries run in
//! a container's namespace (`nsenter --net=/proc/PID/ns/net`).
//!
//! Paths: `c2c` (container 1 -> container 2's address), `outside->published`
//! (outside namespace -> the uplink address's published port),
//! `host->published` (the host namespace -> the same address and port).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt as _;

use anyhow::{anyhow, bail, Context, Result};

use super::docker_report::{DockerRun, Mode};
use super::measure::{iperf, loadgen, probe};
use super::topo::{in_ns, ns_path, World, IPERF_PORT, RR_PORT};
use super::Plan;
use crate::{capture, capture_ok, check_interrupted, describe};

const IMAGE: &str = "dpbench-dk";
const PLUGIN: &str = "dpbench";
const HOST_IP: &str = "10.237.0.2";
const OUT_IP: &str = "10.237.0.1";
/// Docker's bridge network, the plugin's network, docker0 and the agent's
/// default bridge: all distinct.
const BRIDGE_SUBNET: &str = "10.241.0.0/24";
const PLUGIN_SUBNET: &str = "10.240.0.0/24";
const DOCKER0_BIP: &str = "10.239.0.1/24";
const AGENT_BIP: &str = "10.238.0.1/24";

/// Host ports published by container 2 of each mode (iperf3, RR).
fn host_ports(m: Mode) -> (u16, u16) {
    match m {
        Mode::Bridge => (IPERF_PORT, RR_PORT),
        Mode::Plugin => (IPERF_PORT + 1000, RR_PORT + 1000),
    }
}

/// Whether the section can run here; otherwise why not.
pub(super) fn unavailable() -> Option<String> {
    for p in [
        "/usr/sbin/dockerd",
        "/usr/sbin/docker-proxy",
        "/usr/bin/unshare",
    ] {
        if !Path::new(p).exists() {
            return Some(format!(
                "{p} is not installed (`cargo xtask setup` installs docker.io)"
            ));
        }
    }
    let has = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for t in ["docker", "containerd", "runc", "iptables-save"] {
        if !has(t) {
            return Some(format!("`{t}` is not installed"));
        }
    }
    if busybox().is_none() {
        return Some("busybox-static is not installed".into());
    }
    None
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// One mode's clients and targets.
#[derive(Clone, Default)]
struct Ends {
    /// netns of container 1 (`/proc/PID/ns/net`).
    c1: String,
    c2_ip: String,
}

/// dockerd, the plugin's agent and the servers; torn down on drop.
struct Rig {
    dir: PathBuf,
    bin: PathBuf,
    host_ns: String,
    out_ns: String,
    uplink: String,
    bpffs: PathBuf,
    dockerd: Option<Child>,
    agent: Option<Child>,
    agent_started: bool,
    servers: Vec<Child>,
    ends: [Ends; 2],
}

/// Measure the section (or say why it was skipped).
pub(super) fn measure(w: &mut World, plan: &Plan, bin: &Path) -> Result<DockerRun> {
    println!("==> real Docker (bridge driver vs the dataplane plugin, same dockerd)");
    if let Some(why) = unavailable() {
        println!("skipped: {why}");
        return Ok(DockerRun::skipped(why));
    }
    let mut rig = Rig::new(w, bin)?;
    let res = rig.run(w, plan);
    if res.is_err() {
        eprintln!("--- dockerd log (tail) ---\n{}", rig.tail("dockerd.log"));
        eprintln!("--- plugin agent log (tail) ---\n{}", rig.tail("agent.log"));
    }
    let problems = rig.teardown();
    let run = res?;
    if !problems.is_empty() {
        bail!(
            "real Docker section: cleanup incomplete: {}",
            problems.join("; ")
        );
    }
    Ok(run)
}

impl Rig {
    fn new(w: &mut World, bin: &Path) -> Result<Rig> {
        let pid = std::process::id();
        let host = w.add_ns("kh")?;
        let out = w.add_ns("ko")?;
        let (hi, oi) = (format!("bku{pid}"), format!("bko{pid}"));
        let ip = |args: &[&str]| capture_ok(Command::new("ip").args(args), Duration::from_mins(1));
        ip(&[
            "link", "add", &hi, "netns", &host, "type", "veth", "peer", "name", &oi, "netns", &out,
        ])?;
        ip(&[
            "-n",
            &host,
            "addr",
            "add",
            &format!("{HOST_IP}/24"),
            "dev",
            &hi,
        ])?;
        ip(&[
            "-n",
            &out,
            "addr",
            "add",
            &format!("{OUT_IP}/24"),
            "dev",
            &oi,
        ])?;
        ip(&["-n", &host, "link", "set", &hi, "up"])?;
        ip(&["-n", &out, "link", "set", &oi, "up"])?;
        ip(&["-n", &host, "route", "add", "default", "via", OUT_IP])?;
        let dir = w.tmp.join("docker-section");
        fs::create_dir_all(dir.join("run-docker/plugins"))?;
        let rig = Rig {
            dir,
            bin: bin.to_path_buf(),
            host_ns: ns_path(&host),
            out_ns: ns_path(&out),
            uplink: hi,
            bpffs: PathBuf::from(format!("/sys/fs/bpf/dataplane-benchdk-{pid}")),
            dockerd: None,
            agent: None,
            agent_started: false,
            servers: Vec::new(),
            ends: [Ends::default(), Ends::default()],
        };
        // Not in the host namespace: the agent takes the published port
        // range from its ephemeral range.
        client_sysctls(&rig.out_ns)?;
        Ok(rig)
    }

    fn tail(&self, file: &str) -> String {
        let s = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn agent_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--netns".into(),
            self.host_ns.clone().into(),
            "--state-dir".into(),
            self.dir.join("state").into(),
            "--run-dir".into(),
            self.dir.join("run").into(),
            "--bpffs".into(),
            self.bpffs.clone().into(),
            "--socket".into(),
            self.dir.join("dataplane.sock").into(),
            "--uplink".into(),
            self.uplink.clone().into(),
        ]
    }

    fn start_agent(&mut self) -> Result<()> {
        let log = fs::File::create(self.dir.join("agent.log"))?;
        let mut c = Command::new(&self.bin);
        c.arg("agent")
            .args(self.agent_args())
            .args(["--bip", AGENT_BIP, "--docker-plugin", PLUGIN])
            .arg("--docker-plugin-dir")
            .arg(self.dir.join("run-docker/plugins"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        self.agent_started = true;
        self.agent = Some(c.spawn().context("starting the plugin's agent")?);
        let sock = self.dir.join(format!("run-docker/plugins/{PLUGIN}.sock"));
        wait_for("the plugin socket", || {
            if let Some(st) = self
                .agent
                .as_mut()
                .and_then(|a| a.try_wait().ok().flatten())
            {
                bail!("the plugin's agent exited during start-up ({st})");
            }
            Ok(sock.exists())
        })
    }

    fn start_dockerd(&mut self) -> Result<String> {
        let d = self.dir.display().to_string();
        fs::write(self.dir.join("daemon.json"), "{}")?;
        // The mount point of the private plugin directory (nothing is
        // written into the real one).
        fs::create_dir_all("/run/docker")?;
        let script = format!(
            "mount --bind {d}/run-docker /run/docker && exec dockerd --config-file {d}/daemon.json \
             --data-root {d}/data --exec-root {d}/exec --host unix://{d}/docker.sock \
             --pidfile {d}/docker.pid --bip {DOCKER0_BIP} --cgroup-parent=/dataplane-benchdk-{pid}",
            pid = std::process::id()
        );
        let log = fs::File::create(self.dir.join("dockerd.log"))?;
        let mut c = in_ns(&self.host_ns, "unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.dockerd = Some(
            c.spawn()
                .with_context(|| format!("starting `{}`", describe(&c)))?,
        );
        let mut version = String::new();
        wait_for("dockerd", || {
            if let Some(st) = self
                .dockerd
                .as_mut()
                .and_then(|a| a.try_wait().ok().flatten())
            {
                bail!(
                    "dockerd exited during start-up ({st}):\n{}",
                    self.tail("dockerd.log")
                );
            }
            match self.cli(&["version", "--format", "{{.Server.Version}}"]) {
                Ok(v) => {
                    version = v;
                    Ok(true)
                }
                Err(_) => Ok(false),
            }
        })?;
        Ok(version)
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null());
        let out = capture(&mut c, Duration::from_mins(2))?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                describe(&c),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn import_image(&self) -> Result<()> {
        let root = self.dir.join("rootfs");
        fs::create_dir_all(root.join("bin"))?;
        let bb = busybox().ok_or_else(|| anyhow!("busybox-static is not installed"))?;
        fs::copy(&bb, root.join("bin/busybox"))?;
        for l in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(l))?;
        }
        let tar = self.dir.join("image.tar");
        capture_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            Duration::from_mins(1),
        )?;
        self.cli(&["import", &tar.display().to_string(), IMAGE])?;
        let _ = fs::remove_file(&tar);
        Ok(())
    }

    /// Two containers on `network`; container 2 publishes the servers'
    /// ports and runs them.
    fn containers(&mut self, m: Mode, network: &str, loadgen: &Path) -> Result<()> {
        let (hp_tput, hp_rr) = host_ports(m);
        let tag = m.tag();
        let c1 = format!("{tag}-c1");
        let c2 = format!("{tag}-c2");
        self.cli(&[
            "run",
            "-d",
            "--network",
            network,
            "--name",
            &c1,
            IMAGE,
            "/bin/sleep",
            "1000000",
        ])?;
        self.cli(&[
            "run",
            "-d",
            "--network",
            network,
            "--name",
            &c2,
            "-p",
            &format!("{hp_tput}:{IPERF_PORT}"),
            "-p",
            &format!("{hp_rr}:{RR_PORT}"),
            IMAGE,
            "/bin/sleep",
            "1000000",
        ])?;
        let netns = |name: &str| -> Result<String> {
            let pid = self.cli(&["inspect", "-f", "{{.State.Pid}}", name])?;
            Ok(format!("/proc/{pid}/ns/net"))
        };
        let (n1, n2) = (netns(&c1)?, netns(&c2)?);
        let ip2 = self.cli(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &c2,
        ])?;
        client_sysctls(&n1)?;
        for mut c in [
            {
                let mut c = in_ns(&n2, "iperf3");
                c.args(["-s", "-p", &IPERF_PORT.to_string()]);
                c
            },
            {
                let mut c = in_ns(&n2, loadgen);
                c.args(["server", "--port", &RR_PORT.to_string()]);
                c
            },
        ] {
            let log =
                fs::File::create(self.dir.join(format!("server-{}.log", self.servers.len())))?;
            let child = c
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting `{}`", describe(&c)))?;
            self.servers.push(child);
        }
        self.ends[m as usize] = Ends { c1: n1, c2_ip: ip2 };
        Ok(())
    }

    /// (client netns, iperf3 address, iperf3 port, RR address) of a path.
    fn target(&self, m: Mode, path: &str) -> (String, String, u16, String) {
        let e = &self.ends[m as usize];
        let (hp_tput, hp_rr) = host_ports(m);
        match path {
            "c2c" => (
                e.c1.clone(),
                e.c2_ip.clone(),
                IPERF_PORT,
                format!("{}:{RR_PORT}", e.c2_ip),
            ),
            "outside->published" => (
                self.out_ns.clone(),
                HOST_IP.into(),
                hp_tput,
                format!("{HOST_IP}:{hp_rr}"),
            ),
            _ => (
                self.host_ns.clone(),
                HOST_IP.into(),
                hp_tput,
                format!("{HOST_IP}:{hp_rr}"),
            ),
        }
    }

    fn run(&mut self, w: &World, plan: &Plan) -> Result<DockerRun> {
        let lg = w.loadgen().clone();
        self.start_agent()?;
        let version = self.start_dockerd()?;
        self.import_image()?;
        self.cli(&["network", "create", "--subnet", BRIDGE_SUBNET, "dk-bridge"])?;
        self.cli(&[
            "network",
            "create",
            "-d",
            PLUGIN,
            "--ipam-driver",
            PLUGIN,
            "--subnet",
            PLUGIN_SUBNET,
            "dk-plugin",
        ])?;
        self.containers(Mode::Bridge, "dk-bridge", &lg)?;
        self.containers(Mode::Plugin, "dk-plugin", &lg)?;
        let mut run = DockerRun::new(version);
        for m in Mode::ALL {
            for path in PATHS {
                let (ns, _, _, rr) = self.target(m, path);
                probe(&lg, &ns, &rr).with_context(|| format!("{}: {path}", m.name()))?;
            }
        }
        run.checks.push(
            "a request/response went through c2c, outside->published and host->published with both drivers".into(),
        );
        self.check_rules(&mut run)?;
        println!("ok: both drivers forward every path; iptables rules only for Docker's bridge");

        for rep in 0..plan.reps {
            check_interrupted()?;
            println!("==> real Docker, repetition {}/{}", rep + 1, plan.reps);
            let order = if rep % 2 == 0 {
                Mode::ALL
            } else {
                [Mode::Plugin, Mode::Bridge]
            };
            for path in PATHS {
                for m in order {
                    let (ns, ip, port, _) = self.target(m, path);
                    let t = iperf(&ns, &ip, port, 1, plan.tput_secs)
                        .with_context(|| format!("{}: throughput {path}", m.name()))?;
                    println!("  {:<14} tput {path}: {:.2} Gbit/s", m.name(), t.gbps);
                    run.push("tput_1", path, m, t.gbps);
                }
                for m in order {
                    let (ns, _, _, rr) = self.target(m, path);
                    let r = loadgen(&lg, &ns, "rr", &rr, plan.rr)
                        .with_context(|| format!("{}: rr {path}", m.name()))?;
                    println!(
                        "  {:<14} rr {path}: p50 {:.1} us p99 {:.1} us",
                        m.name(),
                        r.f("p50_us"),
                        r.f("p99_us")
                    );
                    run.push("rr_p50", path, m, r.f("p50_us"));
                    run.push("rr_p99", path, m, r.f("p99_us"));
                }
                for m in order {
                    let (ns, _, _, rr) = self.target(m, path);
                    let r = loadgen(&lg, &ns, "crr", &rr, plan.crr)
                        .with_context(|| format!("{}: crr {path}", m.name()))?;
                    println!(
                        "  {:<14} crr {path}: {:.0} conn/s ({} errors)",
                        m.name(),
                        r.f("rate"),
                        r.f("errors")
                    );
                    run.push("crr_rate", path, m, r.f("rate"));
                }
            }
        }
        Ok(run)
    }

    /// Docker's bridge network has its DNAT rules and docker-proxy; nothing
    /// in the host namespace's rule set names the plugin's network or ports.
    fn check_rules(&self, run: &mut DockerRun) -> Result<()> {
        let save = capture_ok(
            &mut in_ns(&self.host_ns, "iptables-save"),
            Duration::from_mins(1),
        )?;
        let rules: Vec<&str> = save.lines().filter(|l| l.starts_with("-A ")).collect();
        let dnat = rules.iter().filter(|l| l.contains("-j DNAT")).count();
        let (bt, br) = host_ports(Mode::Bridge);
        for p in [bt, br] {
            if !rules
                .iter()
                .any(|l| l.contains("-j DNAT") && l.contains(&format!("--dport {p}")))
            {
                bail!("Docker's bridge driver made no DNAT rule for port {p}:\n{save}");
            }
        }
        let (pt, pr) = host_ports(Mode::Plugin);
        let plugin_net = PLUGIN_SUBNET.trim_end_matches(".0/24");
        if let Some(r) = rules.iter().find(|l| {
            l.contains(plugin_net)
                || l.contains(&format!("--dport {pt}"))
                || l.contains(&format!("--dport {pr}"))
        }) {
            bail!("an iptables rule names the plugin's network or ports: {r}");
        }
        let proxies = capture_ok(
            Command::new("pgrep").args([
                "-c",
                "-f",
                &format!("docker-proxy .*-host-ip 0.0.0.0 -host-port {bt} "),
            ]),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
        run.rules = rules.len();
        run.dnat = dnat;
        run.checks.push(format!(
            "host netns after setup: {} iptables rules (`-A` lines), {dnat} of them DNAT, all for Docker's bridge network; none names the plugin's subnet {PLUGIN_SUBNET} or its host ports {pt}/{pr}; docker-proxy processes for bridge port {bt}: {}",
            rules.len(),
            proxies.trim()
        ));
        Ok(())
    }

    /// Containers, dockerd, the agent and its pins; returns what could not
    /// be removed.
    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for mut s in self.servers.drain(..) {
            let _ = s.kill();
            let _ = s.wait();
        }
        if let Some(mut d) = self.dockerd.take() {
            if let Ok(ids) = self.cli(&["ps", "-aq"]) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids);
                    if let Err(e) = self.cli(&args) {
                        problems.push(format!("docker rm -f: {e:#}"));
                    }
                }
            }
            for n in ["dk-bridge", "dk-plugin"] {
                let _ = self.cli(&["network", "rm", n]);
            }
            // SAFETY: kill(2) on our own child (nsenter, unshare and sh
            // exec dockerd).
            unsafe {
                libc::kill(d.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(d.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
            }
            if matches!(d.try_wait(), Ok(None)) {
                problems.push("dockerd did not stop on SIGTERM within 30 s; killed".into());
                let _ = d.kill();
            }
            let _ = d.wait();
        }
        if let Some(mut a) = self.agent.take() {
            if let Some(p) = crate::stop_agent_process(&mut a, Duration::from_secs(15)) {
                problems.push(p);
            }
        }
        if self.agent_started {
            self.agent_started = false;
            match Command::new(&self.bin)
                .args(["agent", "--cleanup", "--purge"])
                .args(self.agent_args())
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => problems.push(format!(
                    "plugin agent --cleanup failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => problems.push(format!("plugin agent --cleanup: {e}")),
            }
        }
        if self.bpffs.exists() {
            let _ = fs::remove_dir_all(&self.bpffs);
        }
        for m in crate::mounts_under(&self.dir) {
            problems.push(format!("mount {} was left behind; unmounted", m.display()));
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
        problems
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for p in self.teardown() {
            eprintln!("bench cleanup (real Docker): {p}");
        }
    }
}

const PATHS: [&str; 3] = ["c2c", "outside->published", "host->published"];

fn client_sysctls(ns: &str) -> Result<()> {
    capture_ok(
        in_ns(ns, "sysctl").args([
            "-qw",
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=1024 65000",
        ]),
        Duration::from_mins(1),
    )
    .map(|_| ())
}

/// Polls `ready` every 200 ms for up to a minute.
fn wait_for(what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        check_interrupted()?;
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not come up within 60 s");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

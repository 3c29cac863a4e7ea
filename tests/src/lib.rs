//! Namespace integration-test harness for the dataplane agent.
//!
//! Every [`Host`] is a private world: a "host" network namespace running its
//! own agent (with its own state, run dir, bpffs directory and API socket) and
//! an "outside" namespace on the other end of the host's uplink veth. All
//! names include the test process id and a per-process counter so tests can
//! run in parallel, and everything is torn down on drop, also when a test
//! panics.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// BPF_PROG_TEST_RUN fixtures (for the `prog_run*` tests).
pub mod prog_run;

/// A private dockerd (for the Docker plugin tests).
pub mod docker;
/// Helpers of the IPv6 (dual stack) tests.
pub mod ipv6;
/// Simulated multi-host clusters (overlay tests).
pub mod multihost;
/// Dual-stack overlay helpers (IPv6 across simulated hosts).
pub mod multihost6;
/// A private Podman with the CNI backend (for the CNI plugin tests).
pub mod podman;
/// Helpers of the port-publishing tests.
pub mod ports_util;
/// Servers and clients run inside the namespaces.
pub mod scripts;
pub use scripts::*;
/// Commands with timeouts, background processes.
pub mod process;
pub use process::*;

use serde_json::Value;

/// Where a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ns {
    /// The agent's host namespace.
    Host,
    /// The namespace on the far side of the uplink.
    Outside,
    /// A container (through `dataplane container exec`).
    Container(String),
}

impl Ns {
    pub fn c(name: &str) -> Ns {
        Ns::Container(name.to_string())
    }
}

/// A test world: host + outside namespaces and an agent.
pub struct Host {
    pub id: String,
    pub host_ns: String,
    pub out_ns: String,
    /// Uplink interface in the host namespace.
    pub uplink: String,
    /// Its peer in the outside namespace.
    pub outside_if: String,
    pub uplink_ip: String,
    pub outside_ip: String,
    pub dir: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    agent: Option<Child>,
    counter: AtomicU32,
}

impl Host {
    /// Create the namespaces and start an agent.
    pub fn start() -> Host {
        let mut h = Host::new();
        h.setup_namespaces();
        h.start_agent();
        h
    }

    fn new() -> Host {
        let (pid, n) = unique();
        let id = format!("dpt-{pid}-{n}");
        // A /24 of 10.200.0.0/16 per test (distinct for every Host of a process).
        let octet = (pid % 251 + n) % 256;
        let dir = std::env::temp_dir().join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Host {
            host_ns: format!("{id}-h"),
            out_ns: format!("{id}-o"),
            uplink: format!("u{}x{n}", pid % 10000),
            outside_if: format!("o{}x{n}", pid % 10000),
            uplink_ip: format!("10.200.{octet}.2"),
            outside_ip: format!("10.200.{octet}.1"),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/{id}")),
            socket: dir.join("sock"),
            dir,
            id,
            agent: None,
            counter: AtomicU32::new(0),
        }
    }

    fn setup_namespaces(&mut self) {
        let (h, o) = (self.host_ns.clone(), self.out_ns.clone());
        sh_ok("ip", &["netns", "add", &h]);
        sh_ok("ip", &["netns", "add", &o]);
        sh_ok(
            "ip",
            &[
                "link",
                "add",
                &self.uplink,
                "netns",
                &h,
                "type",
                "veth",
                "peer",
                "name",
                &self.outside_if,
                "netns",
                &o,
            ],
        );
        let up = format!("{}/24", self.uplink_ip);
        let out = format!("{}/24", self.outside_ip);
        sh_ok("ip", &["-n", &h, "addr", "add", &up, "dev", &self.uplink]);
        sh_ok("ip", &["-n", &h, "link", "set", &self.uplink, "up"]);
        sh_ok("ip", &["-n", &h, "link", "set", "lo", "up"]);
        sh_ok(
            "ip",
            &["-n", &o, "addr", "add", &out, "dev", &self.outside_if],
        );
        sh_ok("ip", &["-n", &o, "link", "set", &self.outside_if, "up"]);
        sh_ok("ip", &["-n", &o, "link", "set", "lo", "up"]);
        sh_ok(
            "ip",
            &["-n", &h, "route", "add", "default", "via", &self.outside_ip],
        );
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A fresh unique name with a prefix (for files, ports...).
    pub fn next(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    pub fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.host_ns)
    }

    fn agent_dir_args(&self) -> Vec<String> {
        vec![
            "--netns".into(),
            self.netns_path(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
            "--run-dir".into(),
            self.run_dir().display().to_string(),
            "--bpffs".into(),
            self.bpffs.display().to_string(),
            "--socket".into(),
            self.socket.display().to_string(),
        ]
    }

    /// Start the agent (again) with the same directories and wait until it answers.
    pub fn start_agent(&mut self) {
        self.start_agent_with(&[]);
    }

    /// SIGTERM the agent and wait for it to exit (SIGKILL after 10 s).
    pub fn stop_agent(&mut self) {
        let Some(mut c) = self.agent.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("agent ignored SIGTERM for 10s; log:\n{}", self.log());
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGKILL the agent (a crash) and reap it.
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn agent_running(&mut self) -> bool {
        matches!(
            self.agent.as_mut().map(std::process::Child::try_wait),
            Some(Ok(None))
        )
    }

    /// The CLI's command with `--socket`.
    pub fn cli_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(dataplane_bin());
        c.arg("--socket").arg(&self.socket).args(args);
        c
    }

    /// Run the CLI.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(&mut self.cli_cmd(args))
    }

    /// Run the CLI, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "dataplane {args:?} failed ({}): {}{}",
            o.status,
            stderr(&o),
            stdout(&o)
        );
        stdout(&o)
    }

    /// Run the CLI, assert it fails, return stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            !o.status.success(),
            "dataplane {args:?} succeeded but should have failed: {}",
            stdout(&o)
        );
        stderr(&o)
    }

    /// A command that runs in `ns`.
    pub fn cmd_in(&self, ns: &Ns, args: &[&str]) -> Command {
        match ns {
            Ns::Host | Ns::Outside => {
                let name = if *ns == Ns::Host {
                    &self.host_ns
                } else {
                    &self.out_ns
                };
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name]).args(args);
                c
            }
            Ns::Container(n) => {
                let mut c = self.cli_cmd(&["container", "exec", n, "--"]);
                c.args(args);
                c
            }
        }
    }

    pub fn run_in(&self, ns: &Ns, args: &[&str]) -> Output {
        run(&mut self.cmd_in(ns, args))
    }

    /// Run in `ns`, assert success, return stdout.
    pub fn run_ok(&self, ns: &Ns, args: &[&str]) -> String {
        let o = self.run_in(ns, args);
        assert!(
            o.status.success(),
            "{args:?} in {ns:?} failed ({}): {}{}",
            o.status,
            stderr(&o),
            stdout(&o)
        );
        stdout(&o)
    }

    pub fn exec(&self, container: &str, args: &[&str]) -> Output {
        self.run_in(&Ns::c(container), args)
    }

    pub fn exec_ok(&self, container: &str, args: &[&str]) -> String {
        self.run_ok(&Ns::c(container), args)
    }

    pub fn host_exec(&self, args: &[&str]) -> Output {
        self.run_in(&Ns::Host, args)
    }

    pub fn outside_exec(&self, args: &[&str]) -> Output {
        self.run_in(&Ns::Outside, args)
    }

    /// Start a background process in `ns`.
    pub fn spawn_in(&self, ns: &Ns, args: &[&str]) -> Bg {
        let mut cmd = self.cmd_in(ns, args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let desc = format!("{args:?} in {ns:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let err = reader(child.stderr.take().unwrap());
        Bg {
            child: Some(child),
            desc,
            stdout_lines: rx,
            stderr: Some(err),
            file: None,
        }
    }

    fn server(&self, ns: &Ns, script: &str, bind: &str, port: u16) -> Bg {
        let file = self.dir.join(format!("peers-{}", self.next()));
        let p = port.to_string();
        let f = file.display().to_string();
        let mut bg = self.spawn_in(ns, &[python(), "-c", script, bind, &p, &f]);
        bg.file = Some(file);
        bg.wait_line("READY", Duration::from_secs(10));
        bg
    }

    /// A TCP echo server in `ns` on `bind:port` that records its peers (`Bg::lines`).
    pub fn tcp_server(&self, ns: &Ns, bind: &str, port: u16) -> Bg {
        self.server(ns, TCP_SERVER, bind, port)
    }

    /// A UDP echo server in `ns` on `bind:port` that records its peers.
    pub fn udp_server(&self, ns: &Ns, bind: &str, port: u16) -> Bg {
        self.server(ns, UDP_SERVER, bind, port)
    }

    /// Whether a TCP echo through `ip:port` works from `ns` (2 s timeout).
    pub fn tcp_ok(&self, ns: &Ns, ip: &str, port: u16) -> bool {
        let p = port.to_string();
        let o = run_timeout(
            &mut self.cmd_in(ns, &[python(), "-c", TCP_CLIENT, ip, &p, "2"]),
            Duration::from_secs(15),
        );
        o.status.success()
    }

    /// Whether a UDP echo through `ip:port` works from `ns` (3 tries, 3 s in all).
    pub fn udp_ok(&self, ns: &Ns, ip: &str, port: u16) -> bool {
        let p = port.to_string();
        let o = run_timeout(
            &mut self.cmd_in(ns, &[python(), "-c", UDP_CLIENT, ip, &p, "3"]),
            Duration::from_secs(15),
        );
        o.status.success()
    }

    /// One ping with a 1 s timeout.
    pub fn ping_once(&self, ns: &Ns, ip: &str) -> bool {
        self.run_in(ns, &["ping", "-n", "-c1", "-W1", ip])
            .status
            .success()
    }

    /// Ping, up to 3 attempts.
    pub fn ping(&self, ns: &Ns, ip: &str) -> bool {
        (0..3).any(|_| self.ping_once(ns, ip))
    }

    /// `container inspect` as JSON.
    pub fn inspect_container(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["container", "inspect", name])).unwrap()
    }

    /// `network inspect` as JSON.
    pub fn inspect_network(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["network", "inspect", name])).unwrap()
    }

    /// `<kind> ls --format json`.
    pub fn ls(&self, kind: &str) -> Value {
        serde_json::from_str(&self.ok(&[kind, "ls", "--format", "json"])).unwrap()
    }

    /// A container's first endpoint IP.
    pub fn ip_of(&self, container: &str) -> String {
        let v = self.inspect_container(container);
        v["endpoints"][0]["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("{container} has no endpoint: {v}"))
            .to_string()
    }

    /// A container's endpoint on `network`.
    pub fn endpoint(&self, container: &str, network: &str) -> Value {
        let v = self.inspect_container(container);
        v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["network"] == network)
            .cloned()
            .unwrap_or_else(|| panic!("{container} has no endpoint on {network}: {v}"))
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.bpffs.join("maps").join(name)
    }

    /// `bpftool map dump pinned` of a map, as JSON (an array of entries).
    pub fn map_dump(&self, name: &str) -> Value {
        let p = self.map_path(name).display().to_string();
        let out = sh_ok("bpftool", &["-j", "map", "dump", "pinned", &p]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bpftool output {out:?}: {e}"))
    }

    /// The `formatted` key/value pairs of a map dump.
    pub fn map_entries(&self, name: &str) -> Vec<(Value, Value)> {
        self.map_dump(name)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["formatted"]["key"].clone(),
                    e["formatted"]["value"].clone(),
                )
            })
            .collect()
    }

    pub fn link_pin(&self, prog: &str, ifname: &str) -> PathBuf {
        self.bpffs.join("links").join(format!("{prog}@{ifname}"))
    }

    /// ifindex of an interface in the host namespace.
    pub fn host_ifindex(&self, ifname: &str) -> u64 {
        let out = self.run_ok(
            &Ns::Host,
            &["cat", &format!("/sys/class/net/{ifname}/ifindex")],
        );
        out.trim().parse().unwrap()
    }

    /// `ip -j link show dev` in `ns`.
    pub fn link_json(&self, ns: &Ns, dev: &str) -> Value {
        let out = self.run_ok(ns, &["ip", "-j", "link", "show", "dev", dev]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// Everything a rejected request must leave as it was.
    pub fn snapshot(&self) -> Snapshot {
        let mut netns_files: Vec<String> = std::fs::read_dir(self.run_dir().join("netns"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        netns_files.sort();
        let links = sh_ok("ip", &["-n", &self.host_ns, "-o", "link"]);
        // IPv6 DAD flips "tentative" on link-local addresses by itself.
        let addrs = sh_ok("ip", &["-n", &self.host_ns, "-o", "addr"])
            .replace(" tentative", "")
            .replace(" dadfailed", "");
        let routes = sh_ok("ip", &["-n", &self.host_ns, "-o", "route"]);
        let mut networks = self.ls("network");
        let mut containers = self.ls("container");
        strip_counters(&mut networks);
        strip_counters(&mut containers);
        let mut endpoints: Vec<String> = self
            .map_entries("DP_ENDPOINTS")
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        endpoints.sort();
        Snapshot {
            netns_files,
            links: links.lines().map(str::to_string).collect(),
            addrs,
            routes,
            networks,
            containers,
            endpoints,
        }
    }
}

fn strip_counters(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("counters");
            m.remove("drops");
            for (_, x) in m.iter_mut() {
                strip_counters(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_counters),
        _ => {}
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub netns_files: Vec<String>,
    pub links: Vec<String>,
    pub addrs: String,
    pub routes: String,
    pub networks: Value,
    pub containers: Value,
    pub endpoints: Vec<String>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if Path::new(&self.netns_path()).exists() {
            let args = self.agent_dir_args();
            let _ = Command::new(dataplane_bin())
                .args(["agent", "--cleanup", "--purge"])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Namespace mounts the cleanup may have missed.
        if let Ok(rd) = std::fs::read_dir(self.run_dir().join("netns")) {
            for e in rd.flatten() {
                let _ = nix_umount(&e.path());
            }
        }
        let _ = nix_umount(&self.run_dir().join("host.netns"));
        quiet("ip", &["netns", "del", &self.host_ns]);
        quiet("ip", &["netns", "del", &self.out_ns]);
        if self.bpffs.exists() {
            let _ = nix_umount(&self.bpffs);
            let _ = std::fs::remove_dir_all(&self.bpffs);
        }
        if std::env::var_os("DPT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn nix_umount(p: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Assert a CLI error is one line `Error: ...` containing every `needle`
/// (case-insensitive).
pub fn assert_error(stderr: &str, needles: &[&str]) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got {stderr:?}");
    assert!(
        lines[0].starts_with("Error: "),
        "expected 'Error: ...', got {stderr:?}"
    );
    let low = lines[0].to_lowercase();
    for n in needles {
        assert!(
            low.contains(&n.to_lowercase()),
            "error {stderr:?} does not mention {n:?}"
        );
    }
}

/// Poll `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// An IP as bpftool prints it (array of byte numbers).
pub fn ip_bytes(ip: &str) -> Value {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    Value::from(ip.octets().iter().map(|b| *b as u64).collect::<Vec<_>>())
}

impl Host {
    /// Like [`Host::start`], with extra agent flags (e.g. `--port-range`).
    pub fn start_with(extra_agent_args: &[&str]) -> Host {
        let mut h = Host::new();
        h.setup_namespaces();
        h.start_agent_with(extra_agent_args);
        h
    }

    /// The namespaces of a test world without an agent (start one with
    /// [`Host::start_agent_with`]).
    pub fn new_namespaces_only() -> Host {
        let mut h = Host::new();
        h.setup_namespaces();
        h
    }

    /// The agent's directory flags (`--netns`, `--state-dir`, ...).
    pub fn agent_args(&self) -> Vec<String> {
        self.agent_dir_args()
    }

    /// Like [`Host::start_agent`], with extra agent flags.
    pub fn start_agent_with(&mut self, extra_agent_args: &[&str]) {
        assert!(self.agent.is_none(), "agent already running");
        // `DATAPLANE_TEST_UPLINK_MODE`: every agent in that --uplink-mode
        // (unless the test picks one).
        let mode: Vec<String> = match uplink_mode_env() {
            Some(m) if !extra_agent_args.contains(&"--uplink-mode") => {
                vec!["--uplink-mode".into(), m]
            }
            _ => Vec::new(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(dataplane_bin())
            .arg("agent")
            .args(self.agent_dir_args())
            .args(&mode)
            .args(extra_agent_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env_remove("DATAPLANE_SOCKET")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", dataplane_bin().display()));
        self.agent = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(st))) = self.agent.as_mut().map(std::process::Child::try_wait) {
                self.agent = None;
                panic!("agent exited early ({st}); log:\n{}", self.log());
            }
            if self.socket.exists() && self.cli(&["info"]).status.success() {
                return;
            }
            assert!(
                Instant::now() <= deadline,
                "agent did not answer within 20s; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's global drop counters (`dataplane drops`), by reason name.
    pub fn global_drops(&self) -> Value {
        let out = self.ok(&["drops", "--format", "json"]);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`dataplane drops` printed {out:?}: {e}"))
    }
}

/// `DATAPLANE_TEST_UPLINK_MODE` (`xdp-generic`, `xdp-native`, `tcx`,
/// `auto`): the `--uplink-mode` of every agent the tests start.
pub fn uplink_mode_env() -> Option<String> {
    std::env::var("DATAPLANE_TEST_UPLINK_MODE")
        .ok()
        .filter(|m| !m.is_empty())
}

/// The programs the agent keeps on each served host interface in the tests'
/// uplink mode (the test uplinks are veths: `auto` is `tcx` there).
pub fn uplink_programs() -> &'static [&'static str] {
    match uplink_mode_env().as_deref() {
        Some("xdp-generic" | "xdp-native") => &["dp_from_uplink", "dp_xdp_uplink"],
        _ => &["dp_tc_uplink"],
    }
}

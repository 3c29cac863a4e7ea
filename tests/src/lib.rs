//! Namespace integration-test harness for the dataplane agent.
//!
//! Every [`Host`] is a private world: a "host" network namespace running its
//! own agent (with its own state, run dir, bpffs directory and API socket) and
//! an "outside" namespace on the other end of the host's uplink veth. All
//! names include the test process id and a per-process counter so tests can
//! run in parallel, and everything is torn down on drop, also when a test
//! panics.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
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
/// A private Podman with the CNI backend (for the CNI plugin tests).
pub mod podman;

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Default timeout of helper commands.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The `dataplane` binary under test.
pub fn dataplane_bin() -> PathBuf {
    match std::env::var_os("DATAPLANE_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/dataplane"),
    }
}

/// The Python interpreter used for small traffic helpers.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A unique (pid, n) pair for this test process.
pub fn unique() -> (u32, u32) {
    (std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// Run a command to completion, killing it after `timeout`.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let s = child.wait().unwrap();
                let stdout = out.join().unwrap_or_default();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "{desc} timed out after {timeout:?} ({s})\nstdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Run a command (default timeout).
pub fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, CMD_TIMEOUT)
}

/// Run a program with arguments; panic unless it succeeds; stdout.
pub fn sh_ok(prog: &str, args: &[&str]) -> String {
    let o = run(Command::new(prog).args(args));
    assert!(
        o.status.success(),
        "{prog} {args:?} failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn quiet(prog: &str, args: &[&str]) -> bool {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

/// A background process (a server), killed on drop.
pub struct Bg {
    child: Option<Child>,
    desc: String,
    stdout_lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
    /// A file the process writes to (peer log of the servers), if any.
    pub file: Option<PathBuf>,
}

impl Bg {
    /// Wait for a line on the process's stdout.
    pub fn wait_line(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(l) if l.trim() == want => return,
                Ok(_) => {}
                Err(_) => {
                    let st = self.kill();
                    let err = self.take_stderr();
                    panic!(
                        "{} did not print {want:?} within {timeout:?} (exit {st:?}); stderr: {err}",
                        self.desc
                    );
                }
            }
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(
            self.child.as_mut().map(std::process::Child::try_wait),
            Some(Ok(None))
        )
    }

    /// Wait for it to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(s))) = self.child.as_mut().map(std::process::Child::try_wait) {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }

    /// Lines of `file` (e.g. the peers a server saw).
    pub fn lines(&self) -> Vec<String> {
        self.file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP server: accepts connections, appends the peer address to argv[3],
/// then echoes lines back.
pub const TCP_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("READY", flush=True)
def handle(c, a):
    with open(sys.argv[3], "a") as f:
        f.write(a[0] + "\n")
    f = c.makefile("rwb")
    try:
        for line in f:
            f.write(line)
            f.flush()
    except Exception:
        pass
    c.close()
while True:
    c, a = s.accept()
    threading.Thread(target=handle, args=(c, a), daemon=True).start()
"#;

/// A UDP server: appends the peer address to argv[3] and echoes datagrams.
pub const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
while True:
    d, a = s.recvfrom(65535)
    with open(sys.argv[3], "a") as f:
        f.write(a[0] + "\n")
    s.sendto(d, a)
"#;

/// TCP client: connect, send a line, expect it back. Exit 0 on success.
pub const TCP_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.settimeout(float(sys.argv[3]))
s.sendall(b"hello dataplane\n")
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.decode().strip())
sys.exit(0 if buf == b"hello dataplane\n" else 1)
"#;

/// UDP client: send a datagram, expect it back (3 tries). Exit 0 on success.
pub const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]) / 3)
for i in range(3):
    s.sendto(b"hello udp", (sys.argv[1], int(sys.argv[2])))
    try:
        d, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    if d == b"hello udp":
        print(a[0])
        sys.exit(0)
sys.exit(1)
"#;

/// A long-running TCP client: sends a numbered line every 100 ms for
/// argv[3] seconds, counts the echoes and writes a JSON report to argv[4].
pub const TCP_STREAM_CLIENT: &str = r#"
import json, socket, sys, time
res = {"sent": 0, "received": 0, "error": None, "stall": 0.0, "max_rtt": 0.0}
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    s.settimeout(5)
    f = s.makefile("rwb")
    print("CONNECTED", flush=True)
    end = time.time() + float(sys.argv[3])
    while time.time() < end:
        t0 = time.time()
        msg = b"%d\n" % res["sent"]
        f.write(msg)
        f.flush()
        res["sent"] += 1
        line = f.readline()
        if line != msg:
            res["error"] = "bad echo %r for %r" % (line, msg)
            break
        res["received"] += 1
        rtt = time.time() - t0
        res["max_rtt"] = max(res["max_rtt"], rtt)
        if rtt > 0.05:
            res["stall"] += rtt
        time.sleep(0.1)
    s.close()
except Exception as e:
    res["error"] = repr(e)
with open(sys.argv[4], "w") as out:
    json.dump(res, out)
"#;

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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(dataplane_bin())
            .arg("agent")
            .args(self.agent_dir_args())
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

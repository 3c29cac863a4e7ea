//! `cargo xtask demo`: the main scene on embedded defaults (no external
//! services), checked step by step, and torn down even on failure.

use super::*;

mod ipv6;

const HOST_UPLINK_ADDR: &str = "10.201.0.2";
const OUTSIDE_ADDR: &str = "10.201.0.1";
const FRONTEND_SUBNET: &str = "10.210.0.0/24";

/// Everything the demo creates; `Drop` tears it down, so cleanup happens on
/// errors, failed checks and interruptions as well.
struct Demo {
    bin: PathBuf,
    host_ns: String,
    out_ns: String,
    host_if: String,
    out_if: String,
    tmp: PathBuf,
    bpffs: PathBuf,
    log: PathBuf,
    created_host: bool,
    created_out: bool,
    agent_started: bool,
    agent: Option<Child>,
    background: Vec<Child>,
    cleaned: bool,
    step: u32,
}

impl Demo {
    fn new(bin: PathBuf) -> Result<Self> {
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("dataplane-demo-{pid}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .with_context(|| format!("removing stale {}", tmp.display()))?;
        }
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Demo {
            bin,
            host_ns: format!("dpdemo-host-{pid}"),
            out_ns: format!("dpdemo-out-{pid}"),
            // Short, unique, and not `dp...` (the agent's own veth prefix).
            host_if: format!("up{pid}"),
            out_if: format!("out{pid}"),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/dataplane-demo-{pid}")),
            log: tmp.join("agent.log"),
            tmp,
            created_host: false,
            created_out: false,
            agent_started: false,
            agent: None,
            background: Vec::new(),
            cleaned: false,
            step: 0,
        })
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.join("state")
    }
    fn run_dir(&self) -> PathBuf {
        self.tmp.join("run")
    }
    fn socket(&self) -> PathBuf {
        self.tmp.join("dataplane.sock")
    }
    fn host_netns_path(&self) -> String {
        format!("/run/netns/{}", self.host_ns)
    }

    fn header(&mut self, title: &str) {
        self.step += 1;
        println!();
        println!("==> [{}] {title}", self.step);
    }

    /// A CLI command against the demo agent (socket passed through the env).
    fn dp(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("DATAPLANE_SOCKET", self.socket())
            .env("NO_COLOR", "1");
        c
    }

    fn agent_dir_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--netns".into(),
            self.host_netns_path().into(),
            "--state-dir".into(),
            self.state_dir().into(),
            "--run-dir".into(),
            self.run_dir().into(),
            "--bpffs".into(),
            self.bpffs.clone().into(),
            "--socket".into(),
            self.socket().into(),
        ]
    }

    /// Prints and runs a command, shows its output, fails on a non-zero exit.
    fn show(&self, cmd: &mut Command) -> Result<String> {
        println!("$ {}", self.pretty(cmd));
        let out = capture(cmd, Duration::from_secs(30))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        print_indented(&stdout);
        print_indented(&stderr);
        if !out.status.success() {
            bail!("`{}` failed ({})", self.pretty(cmd), out.status);
        }
        Ok(stdout)
    }

    /// The command line as a reader would type it (`dataplane` for the binary).
    fn pretty(&self, cmd: &Command) -> String {
        let s = describe(cmd);
        let bin = self.bin.to_string_lossy();
        match s.strip_prefix(bin.as_ref()) {
            Some(rest) => format!("dataplane{rest}"),
            None => s,
        }
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let mut c = Command::new("ip");
        c.args(args);
        self.show(&mut c).map(|_| ())
    }

    fn topology(&mut self) -> Result<()> {
        self.header(
            "simulated host: a network namespace with an uplink veth to an `outside` namespace",
        );
        let (h, o) = (self.host_ns.clone(), self.out_ns.clone());
        let (hi, oi) = (self.host_if.clone(), self.out_if.clone());
        self.ip(&["netns", "add", &h])?;
        self.created_host = true;
        self.ip(&["netns", "add", &o])?;
        self.created_out = true;
        self.ip(&[
            "link", "add", &hi, "netns", &h, "type", "veth", "peer", "name", &oi, "netns", &o,
        ])?;
        let host_cidr = format!("{HOST_UPLINK_ADDR}/24");
        let out_cidr = format!("{OUTSIDE_ADDR}/24");
        self.ip(&["-n", &h, "addr", "add", &host_cidr, "dev", &hi])?;
        self.ip(&["-n", &h, "link", "set", &hi, "up"])?;
        self.ip(&["-n", &h, "link", "set", "lo", "up"])?;
        self.ip(&["-n", &o, "addr", "add", &out_cidr, "dev", &oi])?;
        self.ip(&["-n", &o, "link", "set", &oi, "up"])?;
        self.ip(&["-n", &o, "link", "set", "lo", "up"])?;
        self.ip(&["-n", &h, "route", "add", "default", "via", OUTSIDE_ADDR])?;
        // IPv6 on the uplink too (the dual-stack scene).
        let (h6, o6) = (
            format!("{}/64", ipv6::HOST_UPLINK_ADDR6),
            format!("{}/64", ipv6::OUTSIDE_ADDR6),
        );
        self.ip(&["-n", &h, "addr", "add", &h6, "dev", &hi, "nodad"])?;
        self.ip(&["-n", &o, "addr", "add", &o6, "dev", &oi, "nodad"])?;
        Ok(())
    }

    fn start_agent(&mut self) -> Result<()> {
        self.header("start the agent inside the host namespace");
        let log = fs::File::create(&self.log)?;
        let mut c = Command::new(&self.bin);
        c.arg("agent")
            .args(self.agent_dir_args())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a Ctrl-C in the terminal reaches xtask
            // only, which then stops the agent in order.
            .process_group(0);
        println!("$ {} &   (log: {})", self.pretty(&c), self.log.display());
        self.agent_started = true;
        self.agent = Some(c.spawn().context("starting the agent")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            check_interrupted()?;
            if let Some(st) = self.agent.as_mut().expect("spawned").try_wait()? {
                self.agent = None;
                bail!("the agent exited during start-up ({st})");
            }
            if self.socket().exists() {
                let out = capture(self.dp().arg("info"), Duration::from_secs(5))?;
                if out.status.success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent did not answer on {} within 30s",
                    self.socket().display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        println!("agent is up");
        self.show(self.dp().arg("info"))?;
        Ok(())
    }

    fn spawn_background(&mut self, cmd: &mut Command) -> Result<()> {
        println!("$ {} &", self.pretty(cmd));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting `{}`", self.pretty(cmd)))?;
        self.background.push(child);
        Ok(())
    }

    /// Retries a client command until its output contains `want` (servers
    /// need a moment to listen). Returns the last output.
    fn until_output(&self, cmd: &mut Command, want: &str) -> Result<String> {
        println!("$ {}", self.pretty(cmd));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = capture(cmd, Duration::from_secs(10))?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && stdout.contains(want) {
                print_indented(&stdout);
                return Ok(stdout);
            }
            if Instant::now() > deadline {
                print_indented(&stdout);
                print_indented(&String::from_utf8_lossy(&out.stderr));
                bail!("expected {want:?} from `{}`", self.pretty(cmd));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn inspect(&self, what: &str, name: &str) -> Result<serde_json::Value> {
        let s = capture_ok(
            self.dp().args([what, "inspect", name]),
            Duration::from_secs(10),
        )?;
        serde_json::from_str(&s).with_context(|| format!("parsing `{what} inspect {name}`"))
    }

    fn container_ip(&self, name: &str) -> Result<String> {
        let v = self.inspect("container", name)?;
        v["endpoints"][0]["ip"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("container {name} has no endpoint IP: {v}"))
    }

    fn scenario(&mut self) -> Result<()> {
        self.topology()?;
        self.start_agent()?;

        self.header("create a user network `frontend`");
        self.show(
            self.dp()
                .args(["network", "create", "--subnet", FRONTEND_SUBNET, "frontend"]),
        )?;

        self.header("containers `web` and `client` on frontend, `db` on the default bridge");
        self.show(
            self.dp()
                .args(["container", "create", "--network", "frontend", "web"]),
        )?;
        self.show(
            self.dp()
                .args(["container", "create", "--network", "frontend", "client"]),
        )?;
        self.show(self.dp().args(["container", "create", "db"]))?;

        self.header("networks and containers");
        self.show(self.dp().args(["network", "ls"]))?;
        self.show(self.dp().args(["container", "ls"]))?;
        let db = self.inspect("container", "db")?;
        if db["endpoints"][0]["network"].as_str() != Some("bridge") {
            bail!("db should be on the default network `bridge`: {db}");
        }

        self.header("host namespace: gateway addresses on dp0 and one /32 route per container");
        let h = self.host_ns.clone();
        self.ip(&["-n", &h, "-br", "addr", "show", "dev", "dp0"])?;
        self.ip(&["-n", &h, "route", "show"])?;

        let web_ip = self.container_ip("web")?;
        self.header(&format!("ping client -> web ({web_ip})"));
        self.show(self.dp().args([
            "container",
            "exec",
            "client",
            "--",
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &web_ip,
        ]))
        .context("client cannot ping web")?;

        self.header("TCP: a server in web, the client connects");
        self.spawn_background(self.dp().args([
            "container",
            "exec",
            "web",
            "--",
            "socat",
            "TCP-LISTEN:8080,reuseaddr,fork",
            "SYSTEM:echo hello from web",
        ]))?;
        let web_addr = format!("TCP:{web_ip}:8080");
        self.until_output(
            self.dp().args([
                "container",
                "exec",
                "client",
                "--",
                "socat",
                "-T",
                "5",
                "-u",
                &web_addr,
                "STDOUT",
            ]),
            "hello from web",
        )?;

        self.header(&format!(
            "outbound: client -> a server in the outside namespace ({OUTSIDE_ADDR}), masqueraded"
        ));
        let out_ns = self.out_ns.clone();
        self.spawn_background(Command::new("ip").args([
            "netns",
            "exec",
            &out_ns,
            "socat",
            "TCP-LISTEN:9090,reuseaddr,fork",
            "SYSTEM:echo outside server sees peer $SOCAT_PEERADDR",
        ]))?;
        let out_addr = format!("TCP:{OUTSIDE_ADDR}:9090");
        let seen = self.until_output(
            self.dp().args([
                "container",
                "exec",
                "client",
                "--",
                "socat",
                "-T",
                "5",
                "-u",
                &out_addr,
                "STDOUT",
            ]),
            "outside server sees peer",
        )?;
        let peer = seen.split_whitespace().last().unwrap_or_default();
        if peer != HOST_UPLINK_ADDR {
            bail!(
                "the outside server saw {peer:?}, expected the uplink address {HOST_UPLINK_ADDR}"
            );
        }
        println!("ok: the outside sees the uplink address {HOST_UPLINK_ADDR}, not the container's");

        self.header("publish a port: `api` on frontend with -p 8000:8080, reached from outside");
        self.show(self.dp().args([
            "container",
            "create",
            "--network",
            "frontend",
            "-p",
            "8000:8080",
            "api",
        ]))?;
        self.show(self.dp().args(["container", "port", "api"]))?;
        self.spawn_background(self.dp().args([
            "container",
            "exec",
            "api",
            "--",
            "socat",
            "TCP-LISTEN:8080,reuseaddr,fork",
            "SYSTEM:echo api sees client $SOCAT_PEERADDR",
        ]))?;
        let published = format!("TCP:{HOST_UPLINK_ADDR}:8000");
        let seen = self.until_output(
            Command::new("ip").args([
                "netns", "exec", &out_ns, "socat", "-T", "5", "-u", &published, "STDOUT",
            ]),
            "api sees client",
        )?;
        let client = seen.split_whitespace().last().unwrap_or_default();
        if client != OUTSIDE_ADDR {
            bail!("the published server saw {client:?}, expected the real client {OUTSIDE_ADDR}");
        }
        println!("ok: translated on the uplink (dp_tc_uplink at TC ingress on this veth); the container sees the real client {OUTSIDE_ADDR}");

        self.header("isolation: db (network bridge) cannot reach web (network frontend)");
        let web_direct = format!("TCP:{web_ip}:8080,connect-timeout=2");
        let mut c = self.dp();
        c.args([
            "container",
            "exec",
            "db",
            "--",
            "socat",
            "-T",
            "2",
            "-u",
            &web_direct,
            "STDOUT",
        ]);
        println!("$ {}", describe(&c));
        let st = c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        if st.success() {
            bail!("db reached web across networks");
        }
        let v = self.inspect("container", "db")?;
        let dropped = v["endpoints"][0]["counters"]["drops"]["cross_network"]
            .as_u64()
            .unwrap_or(0);
        println!("    refused; db's endpoint counted {dropped} cross_network drops");
        if dropped == 0 {
            bail!("no cross_network drop counted on db");
        }
        self.show(self.dp().arg("drops"))?;

        self.header("pinned maps: DP_ENDPOINTS (bpftool, with BTF field names)");
        let map = self.bpffs.join("maps/DP_ENDPOINTS");
        let mut c = Command::new("bpftool");
        c.args(["map", "dump", "pinned"]).arg(&map);
        println!("$ {}", describe(&c));
        let dump = capture_ok(&mut c, Duration::from_secs(10))?;
        let lines: Vec<&str> = dump.lines().collect();
        for l in lines.iter().take(30) {
            println!("    {l}");
        }
        if lines.len() > 30 {
            println!("    ... ({} more lines)", lines.len() - 30);
        }
        if let Ok(serde_json::Value::Array(entries)) = serde_json::from_str(&dump) {
            println!("({} endpoints in the map)", entries.len());
            if entries.len() < 3 {
                bail!(
                    "DP_ENDPOINTS has {} entries, expected at least 3",
                    entries.len()
                );
            }
        }

        self.header("per-endpoint counters of client");
        let v = self.inspect("container", "client")?;
        let counters = &v["endpoints"][0]["counters"];
        println!("$ dataplane container inspect client   (endpoints[0].counters)");
        println!(
            "    {}",
            serde_json::to_string_pretty(counters)?.replace('\n', "\n    ")
        );
        for k in ["tx_packets", "rx_packets"] {
            if counters[k].as_u64().unwrap_or(0) == 0 {
                bail!("client's {k} counter is zero after traffic: {counters}");
            }
        }

        self.header(
            "a point-to-point link between client and db (the Docker guide's, as a command)",
        );
        self.show(self.dp().args([
            "p2p",
            "create",
            "--ip",
            "10.1.1.1",
            "--peer-ip",
            "10.1.1.2",
            "client",
            "db",
        ]))?;
        self.until_output(
            self.dp().args([
                "container",
                "exec",
                "client",
                "--",
                "ping",
                "-c1",
                "-W1",
                "10.1.1.2",
            ]),
            "1 received",
        )?;
        println!("ok: client and db talk over their own link, beside their networks");
        self.show(self.dp().args(["p2p", "rm", "client-db"]))?;

        self.header("a `lan` network: a container with an address of the host's LAN");
        self.show(self.dp().args([
            "network",
            "create",
            "--driver",
            "lan",
            "--parent",
            &self.host_if,
            "--subnet",
            "10.201.0.0/24",
            "--ip-range",
            "10.201.0.128/25",
            "--gateway",
            OUTSIDE_ADDR,
            "lan",
        ]))?;
        self.show(
            self.dp()
                .args(["container", "create", "--network", "lan", "lanweb"]),
        )?;
        let lan_ip = self.container_ip("lanweb")?;
        let out_ns = self.out_ns.clone();
        self.until_output(
            Command::new("ip").args(["netns", "exec", &out_ns, "ping", "-c1", "-W1", &lan_ip]),
            "1 received",
        )?;
        println!(
            "ok: the LAN reaches lanweb at {lan_ip} directly (proxy ARP and delivery in eBPF, no bridge, no NAT)"
        );

        self.ipv6_scene()?;

        self.header("no iptables or ip6tables rules and no Linux bridge in the host namespace");
        for save in ["iptables-save", "ip6tables-save"] {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &h, save]);
            let rules = self.show(&mut c)?;
            if rules.trim().is_empty() {
                println!("    (empty)");
            }
            if let Some(rule) = rules.lines().find(|l| l.starts_with("-A ")) {
                bail!("unexpected {save} rule in the host namespace: {rule}");
            }
        }
        let bridges =
            self.show(Command::new("ip").args(["-n", &h, "-o", "link", "show", "type", "bridge"]))?;
        if !bridges.trim().is_empty() {
            bail!("unexpected Linux bridge in the host namespace");
        }
        println!("    (no bridge devices)");
        Ok(())
    }

    /// Tears everything down; returns what could not be removed.
    fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut problems = Vec::new();
        println!();
        println!("==> cleanup");
        for mut c in self.background.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut agent) = self.agent.take() {
            println!("$ kill -TERM {}", agent.id());
            if let Some(p) = stop_agent_process(&mut agent, Duration::from_secs(10)) {
                problems.push(p);
            }
        }
        if self.agent_started {
            let mut c = Command::new(&self.bin);
            c.args(["agent", "--cleanup", "--purge"])
                .args(self.agent_dir_args())
                .env("NO_COLOR", "1");
            println!("$ {}", self.pretty(&c));
            // Not interruptible: the cleanup must finish even after Ctrl-C.
            match c.stdin(Stdio::null()).output() {
                Ok(o) => {
                    print_indented(&String::from_utf8_lossy(&o.stdout));
                    print_indented(&String::from_utf8_lossy(&o.stderr));
                    if !o.status.success() {
                        problems.push(format!("agent --cleanup failed ({})", o.status));
                    }
                }
                Err(e) => problems.push(format!("agent --cleanup: {e}")),
            }
        }
        for (created, ns) in [
            (self.created_out, self.out_ns.clone()),
            (self.created_host, self.host_ns.clone()),
        ] {
            if created {
                println!("$ ip netns del {ns}");
                match Command::new("ip").args(["netns", "del", &ns]).status() {
                    Ok(s) if s.success() => {}
                    other => problems.push(format!("ip netns del {ns}: {other:?}")),
                }
            }
        }
        if self.bpffs.exists() {
            problems.push(format!("{} was left behind; removed", self.bpffs.display()));
            let _ = fs::remove_dir_all(&self.bpffs);
        }
        // Mounts the agent may have left under the temp dir (netns bind mounts).
        for m in mounts_under(&self.tmp) {
            problems.push(format!("mount {} was left behind; unmounted", m.display()));
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        println!("$ rm -rf {}", self.tmp.display());
        if let Err(e) = fs::remove_dir_all(&self.tmp) {
            problems.push(format!("removing {}: {e}", self.tmp.display()));
        }
        for p in &problems {
            println!("cleanup: {p}");
        }
        problems
    }

    fn dump_agent_log(&self) {
        if let Ok(s) = fs::read_to_string(&self.log) {
            let lines: Vec<&str> = s.lines().collect();
            let from = lines.len().saturating_sub(40);
            println!("--- agent log (last {} lines) ---", lines.len() - from);
            for l in &lines[from..] {
                println!("    {l}");
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.cleanup();
    }
}

pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(s) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = s
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    // Deepest first.
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

fn print_indented(s: &str) {
    for l in s.lines() {
        println!("    {l}");
    }
}

/// Stop an agent we started: SIGTERM (it leaves the datapath in place and
/// exits), SIGKILL after `grace`. Returns a problem to report, if any.
pub(crate) fn stop_agent_process(
    agent: &mut std::process::Child,
    grace: Duration,
) -> Option<String> {
    let mut problem = None;
    if let Ok(None) = agent.try_wait() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while let Ok(None) = agent.try_wait() {
            if Instant::now() > deadline {
                problem = Some("the agent ignored SIGTERM; killed".to_string());
                let _ = agent.kill();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = agent.wait();
    }
    problem
}

pub(crate) fn demo() -> Result<()> {
    if !is_root() {
        bail!("the demo creates network namespaces and loads eBPF programs: run it as root");
    }
    for tool in [
        "ip",
        "socat",
        "bpftool",
        "iptables-save",
        "ip6tables-save",
        "ping",
    ] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file());
        if !found {
            bail!("`{tool}` not found (run `cargo xtask setup`)");
        }
    }
    let start = Instant::now();
    let bin = build(false)?;
    let mut d = Demo::new(bin)?;
    let res = d.scenario();
    if res.is_err() {
        d.dump_agent_log();
    }
    let problems = d.cleanup();
    drop(d);
    res?;
    if !problems.is_empty() {
        bail!("cleanup incomplete: {}", problems.join("; "));
    }
    println!();
    println!(
        "demo: all checks passed in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

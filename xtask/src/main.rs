//! Developer tasks for the dataplane workspace: `cargo xtask <command>`.
//!
//! * `setup`  installs what a fresh Debian 12 machine lacks (idempotent).
//! * `build`  builds the agent (`dataplane` binary).
//! * `test`   builds the agent and runs the test suites against it.
//! * `demo`   runs the whole product in throw-away network namespaces.
//! * `bench`  measures the dataplane against a direct veth pair and Docker's
//!   iptables bridge mode (see `bench/mod.rs`).

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod soak;

#[derive(Parser)]
#[command(name = "xtask", about = "Developer tasks for the dataplane workspace")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain and system packages that are missing (idempotent).
    Setup,
    /// Build the agent (`target/<profile>/dataplane`).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build the agent and run the test suites (needs root).
    ///
    /// Arguments after `--` are passed to `cargo test`, e.g.
    /// `cargo xtask test -- masquerade -- --nocapture`.
    Test {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run a narrated end-to-end demo in throw-away namespaces (needs root).
    Demo,
    /// Benchmark: ceiling vs Docker's iptables bridge mode vs the dataplane
    /// (needs root); writes report.md, report.json and SVG plots.
    Bench {
        /// Short runs (under 5 minutes).
        #[arg(long, conflicts_with = "smoke")]
        quick: bool,
        /// Tiny runs for CI (seconds): 1 repetition, 1 and 10 ports.
        #[arg(long, alias = "smallest")]
        smoke: bool,
        /// Output directory for results (default: bench-out/ in the repo).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Benchmark the release build of the agent.
        #[arg(long)]
        release: bool,
        /// Run only one section: `overlay` (multi-host overlay networks).
        #[arg(long, value_name = "SECTION")]
        only: Option<String>,
    },
    /// Reliability and security suite (needs root): crash consistency,
    /// tamper repair, races, security, packet fuzzing at full size (or
    /// `--smoke`); writes report.md and report.json.
    Soak {
        /// CI size (minutes).
        #[arg(long)]
        smoke: bool,
        /// Fraction of the full size (e.g. 0.1).
        #[arg(long, conflicts_with = "smoke")]
        scale: Option<f64>,
        /// Seed of every random choice (default: the one CI uses).
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: soak-out/ in the repo).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only the parts whose test name contains this (e.g. `crash`).
        #[arg(long)]
        only: Option<String>,
        /// Scale of one part, PART=FRACTION (e.g. `crash=0.2`), repeatable.
        #[arg(long, value_parser = soak::parse_part_scale, conflicts_with = "smoke")]
        part_scale: Vec<(String, f64)>,
    },
}

/// Set by the SIGINT/SIGTERM handler; long waits poll it and bail out so
/// that the cleanup guards run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn main() {
    let cli = Cli::parse();
    if let Err(e) = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("xtask: interrupted again, exiting without cleanup");
            std::process::exit(130);
        }
        eprintln!("xtask: interrupted, cleaning up...");
    }) {
        eprintln!("xtask: warning: cannot install the signal handler: {e}");
    }
    add_cargo_bin_to_path();
    let res = match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Build { release } => setup()
            .and_then(|()| build(release))
            .map(|bin| println!("built {}", bin.display())),
        Cmd::Test { args } => setup().and_then(|()| test(&args)),
        Cmd::Demo => setup().and_then(|()| demo()),
        Cmd::Bench {
            quick,
            smoke,
            out,
            release,
            only,
        } => setup().and_then(|()| {
            bench::bench(bench::Opts {
                level: if smoke {
                    bench::Level::Smoke
                } else if quick {
                    bench::Level::Quick
                } else {
                    bench::Level::Full
                },
                out,
                release,
                only,
            })
        }),
        Cmd::Soak {
            smoke,
            scale,
            seed,
            out,
            only,
            part_scale,
        } => setup().and_then(|()| build(false)).and_then(|bin| {
            soak::soak(
                &soak::Opts {
                    smoke,
                    scale,
                    seed,
                    out,
                    only,
                    part_scales: part_scale,
                },
                &bin,
            )
        }),
    };
    if let Err(e) = res {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(if INTERRUPTED.load(Ordering::SeqCst) {
            130
        } else {
            1
        });
    }
}

// ---------------------------------------------------------------------------
// helpers

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn home_cargo_bin() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|p| p.join("bin"))
}

/// Tools installed by `cargo install` (bpf-linker) must be found by the
/// nested builds even when ~/.cargo/bin is not on PATH.
fn add_cargo_bin_to_path() {
    let Some(bin) = home_cargo_bin() else { return };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    let mut parts = vec![bin];
    parts.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(parts) {
        std::env::set_var("PATH", joined);
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|".contains(c)) {
            let _ = write!(s, " '{}'", a.replace('\'', "'\\''"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs a command with inherited stdio; fails unless it exits 0.
fn run(cmd: &mut Command) -> Result<()> {
    check_interrupted()?;
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs a command with captured output and a deadline; it is killed on
/// timeout or interruption. The exit status is returned, not checked.
fn capture(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    check_interrupted()?;
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{what}`"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if INTERRUPTED.load(Ordering::SeqCst) || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            check_interrupted()?;
            bail!("`{what}` timed out after {}s", timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// `capture` + success check; returns stdout.
fn capture_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let out = capture(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// setup

/// Packages the build, tests and demo cannot do without.
const ESSENTIAL_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "bpftool",
    "iproute2",
    "iputils-ping",
    "socat",
    "python3-scapy",
    "iptables",
    // Used by the tests: bulk transfers, `nft list ruleset`, the agent's API.
    "iperf3",
    "nftables",
    "curl",
    "util-linux",
    // The cluster store: the agent's etcd client is generated with protoc at
    // build time; its tests run a real etcd (etcdctl for debugging).
    "protobuf-compiler",
    "etcd-server",
    "etcd-client",
    // dig: the embedded DNS tests query the resolver with an independent client.
    "bind9-dnsutils",
    // The Docker plugin tests run a private dockerd (20.10; pulls in
    // containerd, runc, tini) with an image made from busybox-static.
    "docker.io",
    "busybox-static",
    // The CNI plugin's end-to-end tests run a private Podman (4.3, CNI
    // backend; conmon, runc) with the same busybox image.
    "podman",
    "containernetworking-plugins",
];

/// Packages used by the benchmarks and for debugging; missing ones only warn.
const OPTIONAL_PACKAGES: &[&str] = &["tcpdump", "wrk", "sockperf", "docker.io", "busybox-static"];

fn setup() -> Result<()> {
    apt_packages()?;
    rust_toolchain()?;
    bpf_linker()?;
    Ok(())
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_available(pkg: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            let s = String::from_utf8_lossy(&o.stdout);
            s.lines().any(|l| {
                let l = l.trim();
                l.starts_with("Candidate:") && !l.contains("(none)")
            })
        })
}

fn apt_packages() -> Result<()> {
    let all = ESSENTIAL_PACKAGES.iter().chain(OPTIONAL_PACKAGES);
    let missing: Vec<&str> = all.copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        println!(
            "ok: debian packages ({} installed)",
            ESSENTIAL_PACKAGES.len() + OPTIONAL_PACKAGES.len()
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "debian packages missing: {}; run `cargo xtask setup` as root",
            missing.join(" ")
        );
    }
    println!(
        "installing: apt-get update (missing: {})",
        missing.join(" ")
    );
    run(Command::new("apt-get").arg("update"))?;
    let mut install = Vec::new();
    let mut unavailable_essential = Vec::new();
    for p in missing {
        if apt_available(p) {
            install.push(p);
        } else if ESSENTIAL_PACKAGES.contains(&p) {
            unavailable_essential.push(p);
        } else {
            println!(
                "warning: optional package {p} is not available from apt; continuing without it"
            );
        }
    }
    if !unavailable_essential.is_empty() {
        let mut msg = format!(
            "required debian packages not available from the configured apt sources: {}",
            unavailable_essential.join(" ")
        );
        if unavailable_essential.iter().any(|p| p.contains("-22")) {
            msg.push_str(
                "\nLLVM 22 comes from https://apt.llvm.org (add the bookworm llvm-toolchain-bookworm-22 \
                 repository, e.g. with its llvm.sh script) and re-run `cargo xtask setup`",
            );
        }
        bail!(msg);
    }
    if install.is_empty() {
        return Ok(());
    }
    println!("installing: {}", install.join(" "));
    // The package would start dockerd in the root namespace (docker0,
    // iptables rules): the tests run their own. policy-rc.d keeps it down.
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    let made_policy = install.contains(&"docker.io") && !policy.exists();
    if made_policy {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            policy,
            "#!/bin/sh\n# cargo xtask setup: no service starts\nexit 101\n",
        )?;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))?;
    }
    let res = run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(&install));
    if made_policy {
        let _ = std::fs::remove_file(policy);
    }
    res?;
    Ok(())
}

fn rust_toolchain() -> Result<()> {
    let list = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("rustup not found: install it from https://rustup.rs")?;
    let has_nightly = String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"));
    if has_nightly {
        println!("ok: rust toolchain nightly");
    } else {
        println!("installing: rust toolchain nightly");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let comps = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup component list")?;
    if String::from_utf8_lossy(&comps.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        println!("ok: rust-src for nightly");
    } else {
        println!("installing: rust-src for nightly");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn bpf_linker_version() -> Option<String> {
    let mut candidates = vec![PathBuf::from("bpf-linker")];
    if let Some(bin) = home_cargo_bin() {
        candidates.push(bin.join("bpf-linker"));
    }
    candidates.into_iter().find_map(|p| {
        let o = Command::new(&p).arg("--version").output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
}

fn bpf_linker() -> Result<()> {
    if let Some(v) = bpf_linker_version() {
        println!("ok: {v}");
        return Ok(());
    }
    println!("installing: bpf-linker (cargo install, LLVM 22; takes a few minutes)");
    run(cargo()
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")
        .args([
            "install",
            "bpf-linker",
            // The version checked to build against Debian's LLVM 22 here.
            "--version",
            "0.13.0",
            "--no-default-features",
            "--features",
            "llvm-22",
        ]))?;
    match bpf_linker_version() {
        Some(v) => {
            println!("ok: {v}");
            Ok(())
        }
        None => bail!("bpf-linker was installed but `bpf-linker --version` still fails"),
    }
}

// ---------------------------------------------------------------------------
// build / test

fn build(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "-p", "dataplane-agent"]);
    if release {
        c.arg("--release");
    }
    println!("$ {}", describe(&c));
    run(&mut c)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("dataplane");
    if !bin.is_file() {
        bail!("build succeeded but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// Totals of the `test result:` lines of a `cargo test` run.
#[derive(Default, Debug, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    /// Adds the counts of a libtest summary line such as
    /// `test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
    /// Returns whether the line was one.
    fn add_line(&mut self, line: &str) -> bool {
        let Some(i) = line.find("test result:") else {
            return false;
        };
        let rest = &line[i + "test result:".len()..];
        let mut found = false;
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            // "ok. 5 passed" / "FAILED. 1 passed" / "2 failed" / "1 ignored"
            for w in words.windows(2) {
                let Ok(n) = w[0].parse::<u64>() else { continue };
                match w[1] {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => continue,
                }
                found = true;
            }
        }
        found
    }

    /// The closing line: `N passed, N failed[, N skipped]`.
    fn summary(&self) -> String {
        let mut s = format!("{} passed, {} failed", self.passed, self.failed);
        if self.ignored > 0 {
            let _ = write!(s, ", {} skipped", self.ignored);
        }
        s
    }
}

/// Builds the agent, runs `cargo test` on the host crates with its output
/// streamed through, and ends with one line `N passed, N failed[, N skipped]`
/// summed over every `test result:` line (CI judges a run by that closing
/// line). Exits with cargo's status when the tests fail, so nothing is
/// printed after the summary. A failed cargo run without any failed test
/// (compile error, crashed test binary) counts as one failure, so the
/// closing line of a failed run never reads `0 failed`.
fn test(extra: &[String]) -> Result<()> {
    let start = Instant::now();
    let bin = match build(false) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            println!("xtask test: FAILED (build) after {:.0?}", start.elapsed());
            let t = TestTotals {
                failed: 1,
                ..Default::default()
            };
            println!("{}", t.summary());
            std::process::exit(if INTERRUPTED.load(Ordering::SeqCst) {
                130
            } else {
                1
            });
        }
    };
    let mut c = cargo();
    c.env("DATAPLANE_BIN", &bin).args([
        "test",
        "-p",
        "dataplane-common",
        "-p",
        "dataplane-agent",
        "-p",
        "dataplane-tests",
    ]);
    c.args(extra);
    println!("$ DATAPLANE_BIN={} {}", bin.display(), describe(&c));
    check_interrupted()?;
    let mut child = c
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{}`", describe(&c)))?;
    let mut totals = TestTotals::default();
    {
        use std::io::{BufRead, Write};
        let out = child.stdout.take().expect("piped");
        let mut reader = std::io::BufReader::new(out);
        let mut buf = Vec::new();
        let stdout = std::io::stdout();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    let mut lock = stdout.lock();
                    let _ = lock.write_all(&buf);
                    let _ = lock.flush();
                    totals.add_line(&String::from_utf8_lossy(&buf));
                }
                Err(e) => {
                    eprintln!("xtask test: reading cargo's output: {e}");
                    break;
                }
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    let secs = start.elapsed().as_secs();
    if status.success() {
        println!("xtask test: PASSED (build and tests) in {secs}s");
        println!("{}", totals.summary());
        return Ok(());
    }
    println!("xtask test: FAILED (tests: `cargo test` {status}) after {secs}s");
    if totals.failed == 0 {
        totals.failed = 1;
    }
    println!("{}", totals.summary());
    if INTERRUPTED.load(Ordering::SeqCst) {
        std::process::exit(130);
    }
    std::process::exit(status.code().filter(|c| *c != 0).unwrap_or(1));
}

// ---------------------------------------------------------------------------
// demo

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
        println!("ok: translated by XDP on the uplink; the container sees the real client {OUTSIDE_ADDR}");

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

        self.header("no iptables rules and no Linux bridge in the host namespace");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &h, "iptables-save"]);
        let rules = self.show(&mut c)?;
        if rules.trim().is_empty() {
            println!("    (empty)");
        }
        if let Some(rule) = rules.lines().find(|l| l.starts_with("-A ")) {
            bail!("unexpected iptables rule in the host namespace: {rule}");
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

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
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

fn demo() -> Result<()> {
    if !is_root() {
        bail!("the demo creates network namespaces and loads eBPF programs: run it as root");
    }
    for tool in ["ip", "socat", "bpftool", "iptables-save", "ping"] {
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

#[cfg(test)]
mod test_totals {
    use super::TestTotals;

    #[test]
    fn sums_libtest_summaries() {
        let mut t = TestTotals::default();
        assert!(t.add_line(
            "test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n"
        ));
        assert!(t.add_line(
            "test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 4 filtered out; finished in 1.00s"
        ));
        assert!(!t.add_line("running 5 tests"));
        assert!(!t.add_line("test foo ... ok"));
        assert_eq!(
            t,
            TestTotals {
                passed: 7,
                failed: 3,
                ignored: 1
            }
        );
        assert_eq!(t.summary(), "7 passed, 3 failed, 1 skipped");
        t.ignored = 0;
        assert_eq!(t.summary(), "7 passed, 3 failed");
    }
}

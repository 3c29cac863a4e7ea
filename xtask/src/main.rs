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
mod demo;
use demo::{mounts_under, stop_agent_process};
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
        /// Run only one section: `overlay` (multi-host overlay networks),
        /// `ipv6` (the IPv6 rows), `uplink` (the uplink modes side by side)
        /// or `cost` (per-packet cost of the eBPF programs).
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
        Cmd::Demo => setup().and_then(|()| demo::demo()),
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
    // Every test binary runs even when one fails: the summary counts all
    // failures.
    c.env("DATAPLANE_BIN", &bin).args([
        "test",
        "--no-fail-fast",
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

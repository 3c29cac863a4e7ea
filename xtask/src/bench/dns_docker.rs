//! The baseline of the DNS section: Docker's embedded resolver (dockerd as
//! installed, 20.10 on Debian 12) on a user-defined network, in a namespace
//! of the run. dockerd is isolated by its flags (`--data-root`,
//! `--exec-root`, `--host unix://...`, `--pidfile` under the run's
//! directory, `--bridge=none --iptables=false --ip6tables=false`, a
//! cgroup parent of its own); the image is a `docker import` of a tar made
//! from busybox-static. Everything is removed by [`Docker::stop`] (also on
//! drop).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use super::topo::{in_ns, ns_path, World};
use crate::{capture, describe};

const IMAGE: &str = "dpbench-busybox";
const NETWORK: &str = "dnsbench";
const SUBNET: &str = "10.238.0.0/24";

/// A private dockerd with two containers on a user-defined network.
pub(super) struct Docker {
    dir: PathBuf,
    dockerd: Option<Child>,
    /// netns path of the client container (`/proc/PID/ns/net`).
    pub client_ns: String,
    pub version: String,
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Whether a baseline can run here; otherwise why not.
pub(super) fn available() -> Result<(), String> {
    let has = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for t in ["dockerd", "docker", "containerd", "runc"] {
        if !has(t) {
            return Err(format!("`{t}` is not installed"));
        }
    }
    if busybox().is_none() {
        return Err("busybox-static is not installed".into());
    }
    Ok(())
}

impl Docker {
    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args);
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

    /// Start dockerd in a namespace of the run and the two containers
    /// (`target_name` and a client).
    pub(super) fn start(w: &mut World, target_name: &str) -> Result<Docker> {
        let ns = w.add_ns("dkr")?;
        let dir = w.tmp.join("docker");
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin"))?;
        let bb = busybox().ok_or_else(|| anyhow!("busybox-static is not installed"))?;
        fs::copy(&bb, rootfs.join("bin/busybox"))?;
        for l in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(l))?;
        }
        let tar = dir.join("image.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()?;
        if !st.success() {
            bail!("tar of the busybox image failed");
        }
        let log = fs::File::create(dir.join("dockerd.log"))?;
        let p = |f: &str| dir.join(f).display().to_string();
        let mut c = in_ns(&ns_path(&ns), "dockerd");
        c.args([
            "--data-root",
            &p("data"),
            "--exec-root",
            &p("exec"),
            "--host",
            &format!("unix://{}", p("docker.sock")),
            "--pidfile",
            &p("docker.pid"),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            &format!("--cgroup-parent=/dataplane-bench-{}", std::process::id()),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        let child = c
            .spawn()
            .with_context(|| format!("starting `{}`", describe(&c)))?;
        let mut d = Docker {
            dir,
            dockerd: Some(child),
            client_ns: String::new(),
            version: String::new(),
        };
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Ok(v) = d.cli(&["version", "--format", "{{.Server.Version}}"]) {
                d.version = v;
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "dockerd did not answer within 60 s: {}",
                    fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        d.cli(&["import", &tar.display().to_string(), IMAGE])?;
        d.cli(&["network", "create", "--subnet", SUBNET, NETWORK])?;
        for name in [target_name, "dns-client"] {
            d.cli(&[
                "run",
                "-d",
                "--network",
                NETWORK,
                "--name",
                name,
                IMAGE,
                "/bin/sleep",
                "1000000",
            ])?;
        }
        let pid = d.cli(&["inspect", "-f", "{{.State.Pid}}", "dns-client"])?;
        d.client_ns = format!("/proc/{pid}/ns/net");
        Ok(d)
    }

    /// Remove the containers, stop dockerd, remove its directories.
    pub(super) fn stop(&mut self) {
        let Some(mut child) = self.dockerd.take() else {
            return;
        };
        let _ = self.cli(&["rm", "-f", "dns-target", "dns-client"]);
        // SAFETY: kill(2) on the pid of our own child (nsenter execs dockerd).
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        unmount_under(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lazily unmount whatever dockerd left mounted under `dir`.
fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

//! The dataplane agent of the benchmark topology: start it, restart it in
//! another uplink mode (`--uplink-mode`), and read the mode its uplink runs.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::World;
use crate::{capture, check_interrupted};

impl World {
    /// Starts the agent in the dataplane host netns (`--uplink-mode
    /// MODE` if given) and waits until it answers.
    pub(super) fn spawn_agent(&mut self, h: &str, uplink: &str, mode: Option<&str>) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.agent_log)?;
        let mut c = Command::new(&self.bin);
        c.arg("agent")
            .args(self.agent_dir_args(h, uplink))
            // The default bridge is the isolation setup's (icc off + links);
            // the measured pair uses a network of its own.
            .arg("--icc=false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if let Some(m) = mode {
            c.args(["--uplink-mode", m]);
        }
        self.agent_started = true;
        self.agent = Some(c.spawn().context("starting the agent")?);
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            check_interrupted()?;
            if let Some(st) = self.agent.as_mut().expect("spawned").try_wait()? {
                self.agent = None;
                bail!("the agent exited during start-up ({st})");
            }
            if self.tmp.join("dataplane.sock").exists()
                && capture(self.dp().arg("info"), Duration::from_secs(5))?
                    .status
                    .success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the agent did not answer within 60s");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Restarts the dataplane agent with `--uplink-mode MODE` (SIGTERM, then
    /// the same directories: containers, maps and links stay; the uplink's
    /// programs are swapped by the reconciler) and waits until the uplink
    /// carries that mode's programs.
    pub(in crate::bench) fn restart_dataplane(&mut self, mode: &str) -> Result<()> {
        if let Some(mut a) = self.agent.take() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped.
            unsafe {
                libc::kill(a.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while a.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = a.kill();
                    let _ = a.wait();
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = fs::remove_file(self.tmp.join("dataplane.sock"));
        let h = self.dataplane.host_ns.clone().expect("dataplane set up");
        let uplink = self.ifname("bdu");
        self.spawn_agent(&h, &uplink, Some(mode))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.dataplane_uplink_mode()?;
            if now == mode.replace("auto", "tcx") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the uplink runs {now} after a restart with --uplink-mode {mode}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The dataplane uplink's mode as the kernel shows it: "xdp-generic",
    /// "xdp-native", "xdp-offload" (from `ip link show`), else "tcx" when
    /// `dp_tc_uplink` is pinned on it, else "none".
    pub(in crate::bench) fn dataplane_uplink_mode(&self) -> Result<String> {
        let xdp = self.dataplane_xdp_mode()?;
        if xdp != "none" {
            return Ok(format!("xdp-{xdp}"));
        }
        let pin = self
            .bpffs
            .join("links")
            .join(format!("dp_tc_uplink@{}", self.ifname("bdu")));
        Ok(if pin.exists() { "tcx" } else { "none" }.into())
    }
}

//! A private Podman (4.3, CNI backend) for the CNI plugin's end-to-end
//! tests.
//!
//! Every `podman` call runs in the test's host namespace (where the agent
//! runs; `nsenter --net`) with a private containers.conf (`CONTAINERS_CONF`):
//! - `network_backend = "cni"`, `network_config_dir` holding only the
//!   test's conflist, `cni_plugin_dirs` holding only `dataplane-cni` (and
//!   Debian's `loopback`);
//! - `default_ulimits` lowered to what this machine allows (nofile within
//!   the hard limit, nproc 4096: CAP_SYS_RESOURCE is not available here);
//! - file locks, tmp dir, events log and storage (`--root`, `--runroot`,
//!   vfs) under the test's directory; `cgroupfs`;
//! - `enable_port_reservation = false` and the plugin's `portReservation =
//!   "agent"`: the agent holds the host ports (or both `true`/`"runtime"`:
//!   conmon holds them); the datapath publishes them either way.
//!
//! The image is `podman import`ed from Debian's busybox-static (nothing is
//! pulled).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use crate::{run_timeout, stderr, stdout, Host};

/// The busybox image the tests run.
pub const IMAGE: &str = "localhost/dpbusybox:1";
const BUSYBOX: &str = "/bin/busybox";
const PODMAN: &str = "/usr/bin/podman";

/// Applets linked in the image.
const APPLETS: &[&str] = &[
    "sh", "httpd", "wget", "sleep", "cat", "ip", "echo", "ping", "true", "timeout", "hostname",
];

/// A CGI script answering the client's address (`/cgi-bin/addr`).
const ADDR_CGI: &str = "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"$REMOTE_ADDR\"\n";

/// Why the Podman tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    for p in [PODMAN, BUSYBOX, "/usr/bin/conmon", "/usr/bin/nsenter"] {
        if !Path::new(p).exists() {
            return Some(format!(
                "{p} is missing (`cargo xtask setup` installs podman, containernetworking-plugins \
                 and busybox-static)"
            ));
        }
    }
    None
}

/// Skip a test (with a message) when Podman is not installed.
#[macro_export]
macro_rules! require_podman {
    () => {
        if let Some(why) = $crate::podman::unavailable() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

pub struct Podman {
    pub dir: PathBuf,
    conf: PathBuf,
    netns: String,
}

impl Podman {
    /// A Podman whose CNI network `network` is the agent's network of the
    /// same name; imports the image.
    pub fn start(h: &Host, network: &str) -> Podman {
        Podman::start_with(h, network, false)
    }

    /// Like [`Podman::start`]; `port_reservation` is Podman's
    /// `enable_port_reservation` (conmon binds the published host ports).
    pub fn start_with(h: &Host, network: &str, port_reservation: bool) -> Podman {
        let dir = h.dir.join("podman");
        let net_d = dir.join("net.d");
        let plugins = dir.join("cni-bin");
        for d in [&net_d, &plugins, &dir.join("tmp")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let cni = crate::dataplane_bin().with_file_name("dataplane-cni");
        std::os::unix::fs::symlink(&cni, plugins.join("dataplane-cni")).unwrap();
        if Path::new("/usr/lib/cni/loopback").exists() {
            std::os::unix::fs::symlink("/usr/lib/cni/loopback", plugins.join("loopback")).unwrap();
        }
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [{
                "type": "dataplane-cni",
                "network": network,
                "socket": h.socket,
                "capabilities": {"portMappings": true, "aliases": true, "ips": true, "mac": true},
                // Podman's conmon binds the host ports when it reserves them.
                "portReservation": if port_reservation { "runtime" } else { "agent" },
            }],
        });
        std::fs::write(
            net_d.join(format!("50-{network}.conflist")),
            serde_json::to_string_pretty(&conflist).unwrap(),
        )
        .unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "private"
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{net_d}"
cni_plugin_dirs = ["{plugins}"]
default_network = "{network}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events.log"
lock_type = "file"
tmp_dir = "{dir}/tmp"
enable_port_reservation = {port_reservation}
runtime = "runc"
"#,
                net_d = net_d.display(),
                plugins = plugins.display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let p = Podman {
            dir,
            conf,
            netns: h.netns_path(),
        };
        p.import_image();
        p
    }

    fn import_image(&self) {
        let root = self.dir.join("image");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("www/cgi-bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        let cgi = root.join("www/cgi-bin/addr");
        std::fs::write(&cgi, ADDR_CGI).unwrap();
        std::fs::set_permissions(&cgi, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let tar = self.dir.join("image.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "tar: {}", stderr(&o));
        self.ok(&["import", &tar.display().to_string(), IMAGE]);
        let _ = std::fs::remove_file(&tar);
    }

    /// `podman ARGS` in the test's host namespace (90 s at most).
    pub fn podman(&self, args: &[&str]) -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns))
            .arg("--")
            .arg(PODMAN)
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .env_remove("DATAPLANE_SOCKET");
        run_timeout(&mut c, Duration::from_secs(90))
    }

    /// `podman ARGS`, asserting success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.podman(args);
        assert!(
            o.status.success(),
            "podman {args:?} failed ({}): {}{}",
            o.status,
            stderr(&o),
            stdout(&o)
        );
        stdout(&o)
    }

    /// `podman ARGS`, asserting failure; stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let o = self.podman(args);
        assert!(
            !o.status.success(),
            "podman {args:?} succeeded: {}",
            stdout(&o)
        );
        stderr(&o)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers first (their CNI DEL runs while the agent is up), then
        // whatever storage mounts are left.
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut mine: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| Path::new(p).starts_with(&self.dir))
                .collect();
            mine.sort_unstable_by_key(|p| std::cmp::Reverse(p.len()));
            for p in mine {
                let _ = Command::new("umount").args(["-l", p]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A private dockerd for the Docker plugin tests.
//!
//! dockerd runs in the test's host namespace (where the agent runs) inside
//! a mount and PID namespace of its own (`unshare --mount --pid --fork`):
//! - its plugin directory /run/docker/plugins is the test's own directory
//!   (bind-mounted there, privately: the real /run/docker/plugins is never
//!   written; dockerd 20.10 has no flag to move it);
//! - its data root, exec root, socket, pid file and config are under the
//!   test's directory; no bridge, no iptables, no ip forwarding or masquerade
//!   changes;
//! - it is PID 1 of its namespace, so its managed containerd, the shims and
//!   every container die with it (nothing outlives the test).
//!
//! The image is `docker import`ed from Debian's busybox-static (nothing is
//! pulled). Its `wget -T` crashes (busybox 1.35): the tests use `timeout`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{run_timeout, stderr, stdout, Host};

/// The busybox image the tests run.
pub const IMAGE: &str = "dpbusybox:1";
const BUSYBOX: &str = "/bin/busybox";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// Applets linked in the image.
const APPLETS: &[&str] = &[
    "sh", "httpd", "wget", "sleep", "cat", "ip", "nslookup", "hostname", "nc", "echo", "ping",
    "ls", "true", "timeout",
];

/// A CGI script answering the client's address (`/cgi-bin/addr`).
const ADDR_CGI: &str = "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"$REMOTE_ADDR\"\n";

/// The client address the CGI answered (busybox httpd reports IPv4 clients
/// as IPv4-mapped IPv6, `[::ffff:a.b.c.d]`).
pub fn client_addr(body: &str) -> String {
    body.trim()
        .trim_start_matches('[')
        .trim_start_matches("::ffff:")
        .trim_end_matches(']')
        .to_string()
}

/// Why the Docker tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    for p in [DOCKERD, "/usr/bin/docker", BUSYBOX, "/usr/bin/unshare"] {
        if !Path::new(p).exists() {
            return Some(format!(
                "{p} is missing (`cargo xtask setup` installs docker.io and busybox-static)"
            ));
        }
    }
    None
}

/// Skip the calling test (with a message) when dockerd is not installed.
#[macro_export]
macro_rules! require_docker {
    () => {
        if let Some(why) = $crate::docker::unavailable() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

pub struct Dockerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    /// Directory bind-mounted over /run/docker in dockerd's mount namespace.
    pub run_docker: PathBuf,
    netns: String,
    child: Option<Child>,
}

impl Dockerd {
    /// The agent flags that serve plugin `name` where this dockerd finds it.
    pub fn plugin_args(h: &Host, name: &str) -> Vec<String> {
        vec![
            "--docker-plugin".into(),
            name.into(),
            "--docker-plugin-dir".into(),
            Self::run_docker_dir(h)
                .join("plugins")
                .display()
                .to_string(),
        ]
    }

    fn run_docker_dir(h: &Host) -> PathBuf {
        h.dir.join("run-docker")
    }

    /// Start dockerd in `h`'s host namespace and import the busybox image.
    pub fn start(h: &Host) -> Dockerd {
        let dir = h.dir.join("docker");
        let run_docker = Self::run_docker_dir(h);
        std::fs::create_dir_all(run_docker.join("plugins")).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        // The mount point for the private plugin directory (Docker's own
        // runtime directory; nothing is written into it).
        std::fs::create_dir_all("/run/docker").unwrap();
        let mut d = Dockerd {
            sock: dir.join("docker.sock"),
            dir,
            run_docker,
            netns: h.netns_path(),
            child: None,
        };
        d.launch();
        d.import_image();
        d
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "dockerd already running");
        let d = self.dir.display().to_string();
        let script = format!(
            "mount --bind {rd} /run/docker && exec {DOCKERD} --config-file {d}/daemon.json \
             --data-root {d}/data --exec-root {d}/exec --host unix://{d}/docker.sock \
             --pidfile {d}/docker.pid --bridge=none --iptables=false --ip6tables=false \
             --ip-forward=false --ip-masq=false --userland-proxy=false",
            rd = self.run_docker.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .unwrap();
        let _ = std::fs::remove_file(&self.sock);
        // Left by a SIGKILL: they name PIDs of the dead namespace, which
        // the new one reuses (dockerd would refuse to start, or wait for a
        // containerd that is not there).
        let _ = std::fs::remove_file(self.dir.join("docker.pid"));
        let _ = std::fs::remove_file(self.dir.join("exec/containerd/containerd.pid"));
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns))
            .args([
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child=SIGTERM",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if self.sock.exists() && self.docker(&["version"]).status.success() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("dockerd exited ({st}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn import_image(&self) {
        let root = self.dir.join("image");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("www/cgi-bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
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
    }

    /// `docker ARGS` against this dockerd (60 s at most).
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut c = Command::new("/usr/bin/docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .stdin(Stdio::null());
        run_timeout(&mut c, Duration::from_mins(1))
    }

    /// `docker ARGS`, asserted to succeed; its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}{}\ndockerd log tail:\n{}",
            stderr(&o),
            stdout(&o),
            tail(&self.log(), 20)
        );
        stdout(&o).trim().to_string()
    }

    /// `docker ARGS`, asserted to fail; its stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            !o.status.success(),
            "docker {args:?} succeeded: {}",
            stdout(&o)
        );
        stderr(&o)
    }

    /// Stop dockerd: SIGTERM (it stops its containers), or SIGKILL of the
    /// whole PID namespace when `kill`.
    pub fn stop(&mut self, kill: bool) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
        let pid = i32::try_from(c.id()).unwrap();
        // SIGKILL of `unshare` would orphan dockerd: kill the PID
        // namespace's init (dockerd, unshare's only child) instead.
        let target = child_of(pid).unwrap_or(pid);
        // SAFETY: kill(2) on a process we started (or its only child).
        unsafe {
            libc::kill(target, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Stop and start dockerd again (same data root).
    pub fn restart(&mut self, kill: bool) {
        self.stop(kill);
        self.launch();
    }
}

fn child_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first (Docker tells the plugin), then dockerd; killing
        // the PID namespace's init takes whatever is left with it.
        if self.child.is_some() {
            let ids = stdout(&self.docker(&["ps", "-aq"]));
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        self.stop(false);
        self.stop(true);
    }
}

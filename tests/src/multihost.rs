//! A simulated cluster for the overlay tests: an "underlay" namespace with a
//! Linux bridge (the physical switch) and etcd, and N [`Host`]s whose uplink
//! veths are ports of that bridge (192.0.2.11, .12, ... /24; the underlay
//! itself is 192.0.2.254, the hosts' default gateway and "outside"). Each
//! host runs its own agent with `--cluster-store etcd://192.0.2.254:2379`.
//! Unique names per cluster; everything is removed on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{quiet, sh_ok, unique, Host};

/// The underlay's own address (etcd, outside services).
pub const UNDERLAY_IP: &str = "192.0.2.254";
pub const STORE: &str = "etcd://192.0.2.254:2379";

pub struct Cluster {
    /// Underlay namespace name.
    pub underlay: String,
    pub hosts: Vec<Host>,
    dir: PathBuf,
    etcd: Option<Child>,
}

impl Cluster {
    /// `n` hosts named h1..hn, agents started (with `extra` flags).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let (pid, k) = unique();
        let underlay = format!("dpc-{pid}-{k}-u");
        let dir = std::env::temp_dir().join(&underlay);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        sh_ok("ip", &["netns", "add", &underlay]);
        let mut c = Cluster {
            underlay: underlay.clone(),
            hosts: Vec::new(),
            dir,
            etcd: None,
        };
        sh_ok(
            "ip",
            &["-n", &underlay, "link", "add", "br0", "type", "bridge"],
        );
        sh_ok(
            "ip",
            &[
                "-n",
                &underlay,
                "addr",
                "add",
                "192.0.2.254/24",
                "dev",
                "br0",
            ],
        );
        sh_ok("ip", &["-n", &underlay, "link", "set", "br0", "up"]);
        sh_ok("ip", &["-n", &underlay, "link", "set", "lo", "up"]);
        c.start_etcd();
        for i in 1..=n {
            let h = c.add_host(i);
            c.hosts.push(h);
        }
        for i in 1..=n {
            let name = format!("h{i}");
            let mut args = vec!["--cluster-store", STORE, "--node-name", &name];
            args.extend_from_slice(extra);
            c.hosts[i - 1].start_agent_with(&args);
        }
        c
    }

    fn add_host(&self, i: usize) -> Host {
        let mut h = Host::new();
        h.out_ns.clone_from(&self.underlay);
        h.uplink_ip = format!("192.0.2.{}", 10 + i);
        h.outside_ip = UNDERLAY_IP.to_string();
        let hn = h.host_ns.clone();
        sh_ok("ip", &["netns", "add", &hn]);
        sh_ok(
            "ip",
            &[
                "link",
                "add",
                &h.uplink,
                "netns",
                &hn,
                "type",
                "veth",
                "peer",
                "name",
                &h.outside_if,
                "netns",
                &self.underlay,
            ],
        );
        let up = format!("{}/24", h.uplink_ip);
        sh_ok("ip", &["-n", &hn, "addr", "add", &up, "dev", &h.uplink]);
        sh_ok("ip", &["-n", &hn, "link", "set", &h.uplink, "up"]);
        sh_ok("ip", &["-n", &hn, "link", "set", "lo", "up"]);
        sh_ok(
            "ip",
            &["-n", &hn, "route", "add", "default", "via", UNDERLAY_IP],
        );
        let u = &self.underlay;
        sh_ok(
            "ip",
            &["-n", u, "link", "set", &h.outside_if, "master", "br0"],
        );
        sh_ok("ip", &["-n", u, "link", "set", &h.outside_if, "up"]);
        h
    }

    /// Starts etcd in the underlay (again, on the same data) and waits for it.
    pub fn start_etcd(&mut self) {
        assert!(self.etcd.is_none(), "etcd is running");
        let data = self.dir.join("etcd");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let url = format!("http://{UNDERLAY_IP}:2379");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.underlay))
            .arg("etcd")
            .arg("--name=u")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg("--listen-peer-urls=http://127.0.0.1:2380")
            .arg("--initial-advertise-peer-urls=http://127.0.0.1:2380")
            .arg("--initial-cluster=u=http://127.0.0.1:2380")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd (install etcd-server: cargo xtask setup)");
        self.etcd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.underlay))
                .args(["etcdctl", "--endpoints", &url, "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if o.is_ok_and(|s| s.success()) {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills etcd (its data stays for [`Cluster::start_etcd`]).
    pub fn stop_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a command in the underlay namespace (nsenter: keeps bpffs).
    pub fn underlay_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.underlay))
            .args(args);
        c
    }

    pub fn h(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    pub fn h_mut(&mut self, i: usize) -> &mut Host {
        &mut self.hosts[i - 1]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents and their namespaces first (Host's drop), then etcd and
        // the underlay.
        self.hosts.clear();
        self.stop_etcd();
        quiet("ip", &["netns", "del", &self.underlay]);
        if std::env::var_os("DPT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

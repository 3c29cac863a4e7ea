//! Test support: a private network namespace with a real etcd in it, and a
//! way to run async client code inside that namespace.
//!
//! The namespace is made by a short-lived thread (`unshare(CLONE_NEWNET)`)
//! and held by a file descriptor; code runs in it on a fresh thread that
//! `setns`es first and then drives a current-thread tokio runtime (never a
//! multi-threaded runtime's workers). etcd is spawned from such a thread, so
//! it listens on 127.0.0.1 of the private namespace only.

use std::fs::File;
use std::future::Future;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};

/// A fresh network namespace with `lo` up.
pub(crate) struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    pub(crate) fn new() -> NetNs {
        let fd = std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let status = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("run ip");
            assert!(status.success(), "ip link set lo up");
            OwnedFd::from(File::open("/proc/thread-self/ns/net").expect("open own netns"))
        })
        .join()
        .expect("netns thread");
        NetNs { fd }
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    pub(crate) fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs an async body in the namespace on a current-thread runtime.
    pub(crate) fn block_on<F, Fut>(&self, f: F)
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = ()>,
    {
        self.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f());
        });
    }
}

/// A real etcd server (Debian's etcd-server) in a namespace; killed and its
/// data directory removed on drop.
pub(crate) struct Etcd<'a> {
    ns: &'a NetNs,
    dir: PathBuf,
    child: Option<Child>,
}

pub(crate) const ETCD_URL: &str = "http://127.0.0.1:2379";
pub(crate) const ETCD_STORE: &str = "etcd://127.0.0.1:2379";

impl<'a> Etcd<'a> {
    pub(crate) fn start(ns: &'a NetNs) -> Etcd<'a> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dp-etcd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("etcd dir");
        let mut e = Etcd {
            ns,
            dir,
            child: None,
        };
        e.restart();
        e
    }

    /// Starts etcd (again) on the same data directory and waits until it
    /// accepts connections.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let data = self.dir.join("data");
        let log = File::create(self.dir.join("etcd.log")).expect("etcd log");
        let child = self.ns.run(|| {
            Command::new("etcd")
                .arg("--name=t")
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!("--listen-client-urls={ETCD_URL}"))
                .arg(format!("--advertise-client-urls={ETCD_URL}"))
                .arg("--listen-peer-urls=http://127.0.0.1:2380")
                .arg("--initial-advertise-peer-urls=http://127.0.0.1:2380")
                .arg("--initial-cluster=t=http://127.0.0.1:2380")
                .arg("--log-level=warn")
                .arg("--logger=zap")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .expect("spawn etcd (install etcd-server: cargo xtask setup)")
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let up = self.ns.run(|| loop {
            if TcpStream::connect("127.0.0.1:2379").is_ok() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        assert!(up, "etcd did not start; log: {}", self.log());
    }

    /// Kills etcd (SIGKILL: an outage, not a clean shutdown).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd<'_> {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

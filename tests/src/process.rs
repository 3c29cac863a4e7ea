//! Running commands in tests: timeouts, captured output, background
//! processes killed on drop.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

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

pub(crate) fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
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

pub(crate) fn quiet(prog: &str, args: &[&str]) -> bool {
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

/// A background process (a server), killed on drop.
pub struct Bg {
    pub(crate) child: Option<Child>,
    pub(crate) desc: String,
    pub(crate) stdout_lines: mpsc::Receiver<String>,
    pub(crate) stderr: Option<thread::JoinHandle<Vec<u8>>>,
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

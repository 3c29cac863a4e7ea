//! Small TCP load generator for `cargo xtask bench`.
//!
//! * `server --port P [--port P...]` answers fixed-size requests with
//!   fixed-size responses on every port until killed.
//! * `rr --addr IP:PORT --duration-ms MS` one connection, request/response
//!   ping-pong; prints JSON with the per-request round-trip percentiles.
//! * `crr --addr IP:PORT --duration-ms MS [--threads N]` connect, one
//!   request/response, close, repeatedly (the server closes first, as a
//!   request starting with `c` asks); prints JSON with the connection rate
//!   and the connect+first-response latency percentiles.
//! * `probe --addr IP:PORT [--timeout-ms MS]` succeeds once one
//!   request/response went through (retrying until the timeout).
//!
//! Every JSON result includes the process' CPU time (getrusage).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dp-loadgen",
    about = "TCP RR/CRR load generator for the benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Request and response size in bytes.
    #[arg(long, global = true, default_value_t = 32)]
    size: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve request/response on the given ports ([::], IPv4 and IPv6).
    Server {
        #[arg(long = "port", required = true)]
        ports: Vec<u16>,
        /// Accepting threads per port.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Request/response over one connection for a fixed duration.
    Rr {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        duration_ms: u64,
    },
    /// Connect/request/response/close for a fixed duration.
    Crr {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        duration_ms: u64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// One request/response, retried until it succeeds or the timeout.
    Probe {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Server { ports, workers } => server(&ports, workers, cli.size),
        Cmd::Rr { addr, duration_ms } => rr(addr, Duration::from_millis(duration_ms), cli.size),
        Cmd::Crr {
            addr,
            duration_ms,
            threads,
        } => crr(
            addr,
            Duration::from_millis(duration_ms),
            threads.max(1),
            cli.size,
        ),
        Cmd::Probe { addr, timeout_ms } => probe(addr, Duration::from_millis(timeout_ms), cli.size),
    };
    if let Err(e) = res {
        eprintln!("dp-loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn serve_conn(mut s: TcpStream, size: usize) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; size];
    loop {
        if s.read_exact(&mut buf).is_err() {
            return;
        }
        if s.write_all(&buf).is_err() {
            return;
        }
        // A CRR request: the server closes first, so the TIME_WAIT state
        // stays on the server and the client's ports are free at once.
        if buf.first() == Some(&b'c') {
            return;
        }
    }
}

fn server(ports: &[u16], workers: usize, size: usize) -> Result<()> {
    let mut handles = Vec::new();
    for &p in ports {
        // [::] takes IPv4 too (bindv6only=0); a namespace without IPv6
        // falls back to 0.0.0.0.
        let l = TcpListener::bind(("::", p))
            .or_else(|_| TcpListener::bind(("0.0.0.0", p)))
            .with_context(|| format!("bind port {p}"))?;
        for _ in 0..workers.max(1) {
            let l = l.try_clone()?;
            handles.push(thread::spawn(move || loop {
                match l.accept() {
                    Ok((s, _)) => serve_conn(s, size),
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }));
        }
    }
    eprintln!("dp-loadgen: serving on {ports:?}");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// One request/response on an open connection.
fn exchange(s: &mut TcpStream, req: &[u8], resp: &mut [u8]) -> std::io::Result<()> {
    s.write_all(req)?;
    s.read_exact(resp)
}

fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64
}

fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `ru` outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn latency_json(lat_ns: &mut [u64]) -> String {
    lat_ns.sort_unstable();
    let mean = if lat_ns.is_empty() {
        0.0
    } else {
        lat_ns.iter().map(|&v| v as f64).sum::<f64>() / lat_ns.len() as f64
    };
    format!(
        "\"p50_us\":{:.3},\"p90_us\":{:.3},\"p99_us\":{:.3},\"max_us\":{:.3},\"mean_us\":{:.3}",
        percentile(lat_ns, 50.0) / 1e3,
        percentile(lat_ns, 90.0) / 1e3,
        percentile(lat_ns, 99.0) / 1e3,
        lat_ns.last().copied().unwrap_or(0) as f64 / 1e3,
        mean / 1e3
    )
}

fn rr(addr: SocketAddr, duration: Duration, size: usize) -> Result<()> {
    let mut s = connect(addr, Duration::from_secs(5)).with_context(|| format!("connect {addr}"))?;
    let req = vec![b'r'; size];
    let mut resp = vec![0u8; size];
    // Warm-up (ARP, conntrack entry, caches) before timing.
    for _ in 0..50 {
        exchange(&mut s, &req, &mut resp)?;
    }
    let cpu0 = cpu_seconds();
    let mut lat = Vec::with_capacity(200_000);
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        exchange(&mut s, &req, &mut resp).context("request/response")?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds();
    let n = lat.len();
    println!(
        "{{\"requests\":{n},\"seconds\":{secs:.6},\"rate\":{:.3},{},\"cpu_user_s\":{:.6},\"cpu_sys_s\":{:.6}}}",
        n as f64 / secs,
        latency_json(&mut lat),
        cpu1.0 - cpu0.0,
        cpu1.1 - cpu0.1
    );
    Ok(())
}

fn crr(addr: SocketAddr, duration: Duration, threads: usize, size: usize) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..threads {
        let stop = stop.clone();
        hs.push(thread::spawn(move || {
            let req = vec![b'c'; size];
            let mut resp = vec![0u8; size];
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut last_err = String::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = connect(addr, Duration::from_secs(2)).and_then(|mut s| {
                    exchange(&mut s, &req, &mut resp)?;
                    let first = t.elapsed();
                    // Wait for the server's FIN, then close.
                    let mut rest = [0u8; 16];
                    while s.read(&mut rest)? > 0 {}
                    Ok(first)
                });
                match r {
                    Ok(first) => lat.push(first.as_nanos() as u64),
                    Err(e) => {
                        errors += 1;
                        last_err = e.to_string();
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            (lat, errors, last_err)
        }));
    }
    while start.elapsed() < duration {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut last_err = String::new();
    for h in hs {
        let (l, e, le) = h.join().expect("worker thread");
        lat.extend(l);
        errors += e;
        if !le.is_empty() {
            last_err = le;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds();
    if lat.is_empty() {
        bail!("no connection to {addr} succeeded ({errors} errors, last: {last_err})");
    }
    let n = lat.len();
    println!(
        "{{\"connections\":{n},\"errors\":{errors},\"seconds\":{secs:.6},\"rate\":{:.3},{},\"cpu_user_s\":{:.6},\"cpu_sys_s\":{:.6}}}",
        n as f64 / secs,
        latency_json(&mut lat),
        cpu1.0 - cpu0.0,
        cpu1.1 - cpu0.1
    );
    Ok(())
}

fn probe(addr: SocketAddr, timeout: Duration, size: usize) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let req = vec![b'p'; size];
    let mut resp = vec![0u8; size];
    loop {
        let r = connect(addr, Duration::from_secs(1))
            .and_then(|mut s| exchange(&mut s, &req, &mut resp));
        match r {
            Ok(()) => {
                println!("ok {addr}");
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => bail!("{addr}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

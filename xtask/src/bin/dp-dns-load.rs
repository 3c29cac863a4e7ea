//! The DNS benchmark's helper (`cargo xtask bench`, section "Names (DNS)"),
//! a thin front end of `dataplane_agent::dns::bench`, run inside a
//! namespace with `nsenter`:
//!
//! - `dp-dns-load load TARGET CLIENTS SECS NAME...`: closed-loop UDP clients
//!   asking TARGET (ip:port) for the names in turn; prints one JSON line
//!   (qps, p50_us, p99_us, answered, not_noerror, timeouts).
//! - `dp-dns-load upstream BIND ADDR`: a stand-in upstream on BIND (ip:port)
//!   answering every A query with ADDR.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use dataplane_agent::dns::bench::{run_blocking, serve_fixed, Load};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match try_main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(args: &[String]) -> Result<(), String> {
    match args {
        [cmd, target, clients, secs, names @ ..] if cmd == "load" && !names.is_empty() => {
            let load = Load {
                target: target
                    .parse()
                    .map_err(|e| format!("target {target}: {e}"))?,
                names: names.to_vec(),
                clients: clients.parse().map_err(|e| format!("clients: {e}"))?,
                duration: Duration::from_secs_f64(
                    secs.parse().map_err(|e| format!("seconds: {e}"))?,
                ),
            };
            let r = run_blocking(&load).map_err(|e| e.to_string())?;
            println!(
                "{{\"qps\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"answered\":{},\"not_noerror\":{},\"timeouts\":{}}}",
                r.qps,
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6,
                r.answered,
                r.not_noerror,
                r.timeouts
            );
            Ok(())
        }
        [cmd, bind, addr] if cmd == "upstream" => {
            let bind: SocketAddr = bind.parse().map_err(|e| format!("bind {bind}: {e}"))?;
            let addr = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
            let sock = std::net::UdpSocket::bind(bind).map_err(|e| format!("{bind}: {e}"))?;
            println!("READY");
            serve_fixed(&sock, addr).map_err(|e| e.to_string())
        }
        _ => Err("usage: dp-dns-load load TARGET CLIENTS SECS NAME... | upstream BIND ADDR".into()),
    }
}

//! The command line: one file per subcommand group, each with its clap
//! types, an `execute()` and its output formatting.
//!
//! | file | commands |
//! |---|---|
//! | `agent.rs` | `dataplane agent` (the daemon, `--cleanup`) |
//! | `network.rs` | `dataplane network ...` |
//! | `container.rs` | `dataplane container ...` |
//! | `node.rs` | `dataplane node ls` (cluster nodes) |
//! | `p2p.rs` | `dataplane p2p create|ls|rm` (point-to-point links) |
//! | `info.rs` | `dataplane info`, `dataplane drops` |
//! | `monitor.rs` | `dataplane monitor` (live drop and trace events) |
//! | `flows.rs` | `dataplane flows` (translation tables in words) |
//!
//! Errors are printed as one line `Error: <message>`; the exit code is that
//! of the error's kind ([`dataplane_agent::error::ErrorKind::exit_code`],
//! README "Exit codes"); clap exits with 2 on a command line it cannot parse.

pub(crate) mod agent;
mod api_socket;
pub(crate) mod container;
pub(crate) mod flows;
pub(crate) mod info;
pub(crate) mod monitor;
pub(crate) mod network;
pub(crate) mod node;
pub(crate) mod p2p;

use std::{future::Future, path::PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use dataplane_agent::client::Client;

#[derive(Parser)]
#[command(
    name = "dataplane",
    version,
    about = "Container networking with an eBPF datapath"
)]
pub(crate) struct Cli {
    /// The agent's API socket.
    #[arg(
        long,
        global = true,
        env = "DATAPLANE_SOCKET",
        default_value = "/run/dataplane/dataplane.sock"
    )]
    socket: PathBuf,
    /// Output format of ls/inspect/drops.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node agent (daemon).
    Agent(Box<agent::AgentArgs>),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage containers (network namespaces owned by the agent).
    #[command(subcommand)]
    Container(container::ContainerCmd),
    /// Cluster nodes (agents started with --cluster-store).
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Point-to-point links between containers (or a container and the host).
    #[command(subcommand)]
    P2p(p2p::P2pCmd),
    /// Show the agent's settings.
    Info,
    /// Show the datapath's drop counters by reason (all endpoints and the uplink).
    Drops,
    /// Live events of the datapath: drops with reason, traces, named.
    Monitor(monitor::MonitorArgs),
    /// Masquerade, published-port, hairpin and link flows, named.
    Flows(flows::FlowsArgs),
}

/// What a client command needs: where the agent is and how to print.
pub(crate) struct Ctx {
    socket: PathBuf,
    pub format: Format,
}

impl Ctx {
    /// Run one exchange with the agent on a runtime of its own (dropped on
    /// return: `container exec` must be single-threaded when it enters the
    /// namespace).
    pub(crate) fn call<T, F: Future<Output = Result<T>>>(
        &self,
        f: impl FnOnce(Client) -> F,
    ) -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(f(Client::new(&self.socket)))
    }
}

impl Cli {
    pub(crate) fn execute(self) -> Result<()> {
        let ctx = Ctx {
            socket: self.socket,
            format: self.format,
        };
        match self.cmd {
            Cmd::Agent(args) => agent::execute(*args, &ctx.socket),
            Cmd::Network(c) => network::execute(c, &ctx),
            Cmd::Container(c) => container::execute(c, &ctx),
            Cmd::Node(c) => node::execute(&c, &ctx),
            Cmd::P2p(c) => p2p::execute(c, &ctx),
            Cmd::Info => info::execute_info(&ctx),
            Cmd::Drops => info::execute_drops(&ctx),
            Cmd::Monitor(a) => monitor::execute(&a, &ctx),
            Cmd::Flows(a) => flows::execute(&a, &ctx),
        }
    }
}

/// `rm A B C`: remove each (`/v1/{what}/NAME`), printing the name of each
/// removed and the error of each that failed, as Docker; fails if any did.
pub(crate) fn remove_each(what: &str, names: &[String], ctx: &Ctx) -> Result<()> {
    let mut first_err = None;
    for name in names {
        let path = format!("/v1/{what}/{name}");
        match ctx.call(|c| async move { Ok(c.delete(&path).await?) }) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                if first_err.is_some() {
                    eprintln!("Error: {e:#}");
                } else {
                    first_err = Some(e);
                }
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<width$}", c, width = w[i]))
            .collect();
        println!("{}", s.join("   ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(std::string::String::as_str).collect());
    }
}

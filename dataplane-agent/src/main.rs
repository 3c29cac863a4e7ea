//! `dataplane`: the node agent (`dataplane agent`) and its CLI.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dataplane_agent::{
    api,
    client::Client,
    engine::{AgentConfig, Engine, XdpModeChoice},
    model::*,
};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "dataplane",
    version,
    about = "Container networking with an eBPF datapath"
)]
struct Cli {
    /// The agent's API socket.
    #[arg(
        long,
        global = true,
        env = "DATAPLANE_SOCKET",
        default_value = "/run/dataplane/dataplane.sock"
    )]
    socket: PathBuf,
    /// Output format of ls/inspect.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node agent (daemon).
    Agent(AgentArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage containers (network namespaces owned by the agent).
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Show the agent's settings.
    Info,
}

#[derive(Args)]
struct AgentArgs {
    /// Directory of the persisted desired state.
    #[arg(long, default_value = "/var/lib/dataplane")]
    state_dir: PathBuf,
    /// Directory of runtime files (netns bind mounts).
    #[arg(long, default_value = "/run/dataplane")]
    run_dir: PathBuf,
    /// bpffs directory for pinned maps and links (mounted if needed).
    #[arg(long, default_value = "/sys/fs/bpf/dataplane")]
    bpffs: PathBuf,
    /// Uplink interface (default: the interface of the default route).
    #[arg(long)]
    uplink: Option<String>,
    /// Gateway/prefix of the default `bridge` network.
    #[arg(long, default_value = "172.17.0.1/16")]
    bip: String,
    /// Masquerade source ports, MIN-MAX (default: above the host's ephemeral range).
    #[arg(long, value_parser = parse_port_range)]
    nat_port_range: Option<(u16, u16)>,
    /// Random published host ports, MIN-MAX (default: the host's ephemeral range).
    #[arg(long, value_parser = parse_port_range)]
    port_range: Option<(u16, u16)>,
    /// cgroup v2 directory for the socket programs (published ports from the
    /// host); default: the cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified).
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// XDP attach mode on the uplink: auto (native on NICs, generic on
    /// virtual devices such as veth), native or generic.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// Run inside this network namespace (entered with setns before anything starts).
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Remove every kernel object the agent made, then exit.
    #[arg(long)]
    cleanup: bool,
    /// With --cleanup: also delete the persisted state.
    #[arg(long, requires = "cleanup")]
    purge: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a network.
    Create {
        name: String,
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        ip_range: Option<String>,
        #[arg(long)]
        mtu: Option<u32>,
        #[arg(long)]
        internal: bool,
        /// Inter-container communication (--icc=false isolates containers).
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        icc: Option<bool>,
        #[arg(long, short)]
        driver: Option<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show a network as JSON.
    Inspect { name: String },
    /// Remove a network.
    #[command(alias = "remove")]
    Rm { name: String },
    /// Connect a container to a network.
    Connect {
        network: String,
        container: String,
        #[arg(long)]
        ip: Option<String>,
    },
    /// Disconnect a container from a network.
    Disconnect { network: String, container: String },
}

#[derive(Subcommand)]
enum ContainerCmd {
    /// Create a container (a network namespace with its endpoints).
    Create {
        name: String,
        /// A network name, host, none or container:NAME.
        #[arg(long, alias = "net")]
        network: Option<String>,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp].
        #[arg(short = 'p', long = "publish", value_name = "SPEC")]
        publish: Vec<String>,
        /// Publish every exposed port on a random host port.
        #[arg(short = 'P', long = "publish-all")]
        publish_all: bool,
        /// Expose a port: PORT[-END][/tcp|/udp].
        #[arg(long, value_name = "PORT")]
        expose: Vec<String>,
        /// Link to another container: NAME[:ALIAS].
        #[arg(long = "link", value_name = "NAME[:ALIAS]")]
        links: Vec<String>,
    },
    /// Show a container's published ports.
    Port { name: String },
    /// List containers.
    #[command(alias = "list")]
    Ls,
    /// Show a container as JSON.
    Inspect { name: String },
    /// Remove a container.
    #[command(alias = "remove")]
    Rm { name: String },
    /// Run a command inside a container's network namespace.
    Exec {
        name: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let a: u16 = a.parse().map_err(|_| format!("bad port {a:?}"))?;
    let b: u16 = b.parse().map_err(|_| format!("bad port {b:?}"))?;
    if a == 0 || b < a {
        return Err(format!("bad range {s:?}"));
    }
    Ok((a, b))
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Agent(args) => run_agent(args, &cli.socket),
        cmd => run_client(cmd, &cli.socket, cli.format),
    };
    if let Err(e) = res {
        eprintln!("Error: {e:#}");
        let code = e
            .downcast_ref::<dataplane_agent::error::Error>()
            .map_or(1, |e| e.kind().exit_code());
        std::process::exit(code);
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("DATAPLANE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // aya-log emits `log` records; route them into tracing too.
    let _ = tracing_log::LogTracer::init();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The agent holds one socket per published port: use the hard fd limit.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn run_agent(args: AgentArgs, socket: &Path) -> Result<()> {
    // Enter the host namespace before any thread exists, so that every
    // runtime thread lives in it.
    if let Some(ns) = &args.netns {
        let f = std::fs::File::open(ns).with_context(|| format!("opening {}", ns.display()))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    }
    init_tracing();
    raise_nofile_limit();
    let cfg = AgentConfig {
        state_dir: args.state_dir,
        run_dir: args.run_dir,
        bpffs: args.bpffs,
        uplink: args.uplink,
        bip: args.bip,
        nat_port_range: args.nat_port_range,
        port_range: args.port_range,
        cgroup: args.cgroup,
        xdp_mode: match args.xdp_mode {
            XdpModeArg::Auto => XdpModeChoice::Auto,
            XdpModeArg::Native => XdpModeChoice::Native,
            XdpModeArg::Generic => XdpModeChoice::Generic,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    if args.cleanup {
        return rt.block_on(async {
            Engine::cleanup(&cfg, args.purge).await?;
            let _ = std::fs::remove_file(socket);
            info!("cleanup done");
            Ok(())
        });
    }
    rt.block_on(serve(cfg, socket))
}

async fn serve(cfg: AgentConfig, socket: &Path) -> Result<()> {
    let engine = Engine::start(cfg).await?;
    engine.spawn_flow_gc()?;
    engine.spawn_reconciler()?;
    if let Err(e) = engine.watch_addresses() {
        tracing::warn!("not following host address changes (only every 10 s): {e:#}");
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    info!(socket = %socket.display(), "agent ready");

    let refresh = Arc::clone(&engine);
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(10));
        loop {
            t.tick().await;
            refresh.refresh_addresses().await;
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        info!("shutting down; the datapath keeps forwarding");
    };
    axum::serve(listener, api::router(engine))
        .with_graceful_shutdown(shutdown)
        .await?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

fn run_client(cmd: Cmd, socket: &Path, format: Format) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::new(socket);
    // exec leaves the runtime before entering the namespace.
    if let Cmd::Container(ContainerCmd::Exec { name, cmd }) = cmd {
        let c: ContainerView = rt.block_on(client.get(&format!("/v1/containers/{name}")))?;
        drop(rt);
        return exec_in(&c, &cmd);
    }
    rt.block_on(client_cmd(cmd, &client, format))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
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
    for r in &rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
}

async fn client_cmd(cmd: Cmd, c: &Client, format: Format) -> Result<()> {
    match cmd {
        Cmd::Agent(_) => unreachable!(),
        Cmd::Info => print_json(&c.get::<AgentInfo>("/v1/info").await?),
        Cmd::Network(n) => match n {
            NetworkCmd::Create {
                name,
                subnet,
                gateway,
                ip_range,
                mtu,
                internal,
                icc,
                driver,
            } => {
                let v: NetworkView = c
                    .post(
                        "/v1/networks",
                        &NetworkCreate {
                            name,
                            driver,
                            subnet,
                            gateway,
                            ip_range,
                            mtu,
                            internal,
                            icc,
                        },
                    )
                    .await?;
                match format {
                    Format::Json => print_json(&v),
                    Format::Table => {
                        println!("{}", v.name);
                        Ok(())
                    }
                }
            }
            NetworkCmd::Ls => {
                let v: Vec<NetworkView> = c.get("/v1/networks").await?;
                if format == Format::Json {
                    return print_json(&v);
                }
                print_table(
                    &[
                        "NAME",
                        "DRIVER",
                        "SUBNET",
                        "GATEWAY",
                        "MTU",
                        "INTERNAL",
                        "ICC",
                        "CONTAINERS",
                    ],
                    v.iter()
                        .map(|n| {
                            vec![
                                n.name.clone(),
                                n.driver.clone(),
                                n.subnet.to_string(),
                                n.gateway.to_string(),
                                n.mtu.to_string(),
                                n.internal.to_string(),
                                n.icc.to_string(),
                                n.containers.len().to_string(),
                            ]
                        })
                        .collect(),
                );
                Ok(())
            }
            NetworkCmd::Inspect { name } => print_json(
                &c.get::<NetworkView>(&format!("/v1/networks/{name}"))
                    .await?,
            ),
            NetworkCmd::Rm { name } => {
                c.delete(&format!("/v1/networks/{name}")).await?;
                println!("{name}");
                Ok(())
            }
            NetworkCmd::Connect {
                network,
                container,
                ip,
            } => {
                let _: ContainerView = c
                    .post(
                        &format!("/v1/networks/{network}/connect"),
                        &ConnectRequest { container, ip },
                    )
                    .await?;
                Ok(())
            }
            NetworkCmd::Disconnect { network, container } => {
                let _: serde_json::Value = c
                    .post(
                        &format!("/v1/networks/{network}/disconnect"),
                        &ConnectRequest {
                            container,
                            ip: None,
                        },
                    )
                    .await?;
                Ok(())
            }
        },
        Cmd::Container(cc) => match cc {
            ContainerCmd::Create {
                name,
                network,
                ip,
                hostname,
                publish,
                publish_all,
                expose,
                links,
            } => {
                let v: ContainerView = c
                    .post(
                        "/v1/containers",
                        &ContainerCreate {
                            name,
                            network,
                            ip,
                            hostname,
                            publish,
                            publish_all,
                            expose,
                            links,
                        },
                    )
                    .await?;
                match format {
                    Format::Json => print_json(&v),
                    Format::Table => {
                        println!("{}", v.id);
                        Ok(())
                    }
                }
            }
            ContainerCmd::Ls => {
                let v: Vec<ContainerView> = c.get("/v1/containers").await?;
                if format == Format::Json {
                    return print_json(&v);
                }
                print_table(
                    &[
                        "ID",
                        "NAME",
                        "NETWORK MODE",
                        "NETWORKS",
                        "ADDRESSES",
                        "PORTS",
                    ],
                    v.iter()
                        .map(|ct| {
                            vec![
                                ct.id[..12].to_string(),
                                ct.name.clone(),
                                ct.network_mode.clone(),
                                ct.endpoints
                                    .iter()
                                    .map(|e| e.network.clone())
                                    .collect::<Vec<_>>()
                                    .join(","),
                                ct.endpoints
                                    .iter()
                                    .map(|e| format!("{}/{}", e.ip, e.prefix_len))
                                    .collect::<Vec<_>>()
                                    .join(","),
                                ports_summary(&ct.ports),
                            ]
                        })
                        .collect(),
                );
                Ok(())
            }
            ContainerCmd::Port { name } => {
                let v: ContainerView = c.get(&format!("/v1/containers/{name}")).await?;
                if format == Format::Json {
                    return print_json(&v.ports);
                }
                for m in &v.ports {
                    println!("{}", m.describe());
                }
                Ok(())
            }
            ContainerCmd::Inspect { name } => print_json(
                &c.get::<ContainerView>(&format!("/v1/containers/{name}"))
                    .await?,
            ),
            ContainerCmd::Rm { name } => {
                c.delete(&format!("/v1/containers/{name}")).await?;
                println!("{name}");
                Ok(())
            }
            ContainerCmd::Exec { .. } => unreachable!(),
        },
    }
}

fn ports_summary(ports: &[dataplane_agent::ports::PortMapping]) -> String {
    let mut s: Vec<String> = ports
        .iter()
        .take(4)
        .map(|m| {
            format!(
                "{}:{}->{}/{}",
                m.host_ip,
                m.host_port,
                m.container_port,
                m.proto.as_str()
            )
        })
        .collect();
    if ports.len() > 4 {
        s.push(format!("(+{} more)", ports.len() - 4));
    }
    s.join(", ")
}

/// Enter the container's network namespace (and a UTS namespace with its
/// hostname, if it has one) and replace this process with `cmd`.
fn exec_in(c: &ContainerView, cmd: &[String]) -> Result<()> {
    let f = std::fs::File::open(&c.netns)
        .with_context(|| format!("opening the namespace of {} at {}", c.name, c.netns))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    if let Some(h) = &c.hostname {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).context("unshare(UTS)")?;
        nix::unistd::sethostname(h).context("sethostname")?;
    }
    let args: Vec<CString> = cmd
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("argument with a NUL byte"))?;
    if args.is_empty() {
        bail!("no command given");
    }
    let err = nix::unistd::execvp(&args[0], &args).unwrap_err();
    bail!("cannot run {}: {err}", cmd[0])
}

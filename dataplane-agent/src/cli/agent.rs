//! `dataplane agent`: the node agent (daemon) and `--cleanup`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use dataplane_agent::{
    api,
    engine::{AddressPool, AgentConfig, ClusterOptions, DaemonDefaults, Engine, UplinkMode},
    monitor::{metrics, Monitor},
};
use tracing::info;

#[derive(Args)]
pub(crate) struct AgentArgs {
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
    /// Inter-container communication on the default bridge (as dockerd's
    /// --icc; applied when the default bridge is first created).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    icc: bool,
    /// MTU of the default network (as dockerd's --mtu).
    #[arg(long, default_value_t = dataplane_agent::model::DEFAULT_MTU)]
    mtu: u32,
    /// The default network hands out addresses from this sub-range of
    /// --bip only (as dockerd's --fixed-cidr).
    #[arg(long, value_name = "CIDR")]
    fixed_cidr: Option<ipnet::Ipv4Net>,
    /// Masquerade the default network's traffic leaving the host (as
    /// dockerd's --ip-masq).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    ip_masq: bool,
    /// Host address of ports published without one (as dockerd's --ip).
    #[arg(long, value_name = "IP", default_value_t = std::net::Ipv4Addr::UNSPECIFIED)]
    ip: std::net::Ipv4Addr,
    /// DNS server of containers that give none (repeatable; dockerd's --dns).
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// DNS search domain of containers that give none (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Where automatic subnets come from: base=CIDR,size=PREFIX (repeatable;
    /// replaces the defaults, as dockerd's --default-address-pool).
    #[arg(long, value_name = "base=CIDR,size=N")]
    default_address_pool: Vec<String>,
    /// The default network is dual stack (as dockerd's --ipv6).
    #[arg(long)]
    ipv6: bool,
    /// IPv6 subnet of the default network (as dockerd's --fixed-cidr-v6;
    /// default: the first free fd00:dead:N::/64).
    #[arg(long, value_name = "CIDR")]
    fixed_cidr_v6: Option<String>,
    /// Not supported: there is no Linux bridge (refused with the reason).
    #[arg(short = 'b', long, hide = true, value_name = "BRIDGE")]
    bridge: Option<String>,
    /// Not supported: there are no iptables rules (refused with the reason).
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    iptables: Option<String>,
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
    /// Where the uplink's early work (direct-access drops, published ports)
    /// runs: auto (native XDP on NICs, TC on virtual devices such as veth),
    /// xdp-native, xdp-generic or tcx (one TC ingress program).
    #[arg(long, value_enum, default_value_t = UplinkModeArg::Auto)]
    uplink_mode: UplinkModeArg,
    /// The former spelling: native = --uplink-mode xdp-native, generic =
    /// xdp-generic, auto = auto.
    #[arg(long, value_enum, conflicts_with = "uplink_mode", hide = true)]
    xdp_mode: Option<XdpModeArg>,
    /// The host's resolver settings: upstreams of the embedded DNS resolver
    /// and the servers of containers on the default bridge.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Run inside this network namespace (entered with setns before anything starts).
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Cluster store for overlay networks: etcd://HOST:PORT[,HOST:PORT...].
    #[arg(long)]
    cluster_store: Option<String>,
    /// Underlay address other nodes send VXLAN to (default: the uplink's).
    #[arg(long, requires = "cluster_store")]
    cluster_advertise: Option<std::net::Ipv4Addr>,
    /// This node's name in the cluster (default: the host name).
    #[arg(long, requires = "cluster_store")]
    node_name: Option<String>,
    /// UDP port of the VXLAN device.
    #[arg(long, default_value_t = dataplane_agent::cluster::DEFAULT_VXLAN_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    vxlan_port: u16,
    /// Serve the Docker network plugin (NetworkDriver and IpamDriver) under
    /// this driver name: `docker network create -d NAME --ipam-driver NAME`.
    #[arg(long, value_name = "NAME")]
    docker_plugin: Option<String>,
    /// Where the plugin's socket `NAME.sock` goes (dockerd discovers
    /// /run/docker/plugins).
    #[arg(long, default_value = dataplane_agent::docker::DEFAULT_PLUGIN_DIR, requires = "docker_plugin")]
    docker_plugin_dir: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9423).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Group of the API socket (name or gid; default root). The socket is
    /// owned by root with mode 0660: members of this group may use the API.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Remove every kernel object the agent made, then exit.
    #[arg(long)]
    cleanup: bool,
    /// With --cleanup: also delete the persisted state.
    #[arg(long, requires = "cleanup")]
    purge: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum UplinkModeArg {
    Auto,
    XdpNative,
    XdpGeneric,
    Tcx,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

/// dockerd's flags that have no meaning here: refuse them, saying why.
fn refuse_docker_only_flags(args: &AgentArgs) -> Result<()> {
    if args.bridge.is_some() {
        anyhow::bail!(
            "-b/--bridge is not supported: dataplane attaches containers with veth pairs steered by eBPF, without a Linux bridge (see README: Differences from Docker)"
        );
    }
    if args.iptables.is_some() {
        anyhow::bail!(
            "--iptables is not supported: dataplane writes no iptables rules, its datapath is eBPF (see README: Differences from Docker)"
        );
    }
    Ok(())
}

fn parse_port_range(s: &str) -> Result<(u16, u16), dataplane_agent::ports::PortError> {
    dataplane_agent::ports::parse_port_range(s)
}

/// Run the agent (or clean up after it).
pub(crate) fn execute(args: AgentArgs, socket: &Path) -> Result<()> {
    run_agent(args, socket)
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
    refuse_docker_only_flags(&args)?;
    let defaults = DaemonDefaults {
        mtu: args.mtu,
        fixed_cidr: args.fixed_cidr,
        ipv6: args.ipv6,
        fixed_cidr_v6: args
            .fixed_cidr_v6
            .as_deref()
            .map(|s| {
                s.parse::<ipnet::Ipv6Net>().map_err(|_| {
                    anyhow::anyhow!(
                        "invalid --fixed-cidr-v6 {s:?}: expected an IPv6 CIDR such as fd00:1::/64"
                    )
                })
            })
            .transpose()?,
        ip_masq: args.ip_masq,
        bind_ip: args.ip,
        dns: args.dns,
        dns_search: args.dns_search,
        address_pools: if args.default_address_pool.is_empty() {
            DaemonDefaults::default().address_pools
        } else {
            args.default_address_pool
                .iter()
                .map(|p| AddressPool::parse(p))
                .collect::<Result<_>>()?
        },
    };
    if !args.cleanup {
        defaults.validate(&args.bip)?;
    }
    let cfg = AgentConfig {
        state_dir: args.state_dir,
        run_dir: args.run_dir,
        bpffs: args.bpffs,
        uplink: args.uplink,
        bip: args.bip,
        icc: args.icc,
        nat_port_range: args.nat_port_range,
        port_range: args.port_range,
        cgroup: args.cgroup,
        uplink_mode: match (args.xdp_mode, args.uplink_mode) {
            (Some(XdpModeArg::Native), _) | (None, UplinkModeArg::XdpNative) => {
                UplinkMode::XdpNative
            }
            (Some(XdpModeArg::Generic), _) | (None, UplinkModeArg::XdpGeneric) => {
                UplinkMode::XdpGeneric
            }
            (None, UplinkModeArg::Tcx) => UplinkMode::Tcx,
            (Some(XdpModeArg::Auto), _) | (None, UplinkModeArg::Auto) => UplinkMode::Auto,
        },
        cluster: args.cluster_store.map(|store| ClusterOptions {
            store,
            advertise: args.cluster_advertise,
            node_name: args.node_name,
            vxlan_port: args.vxlan_port,
        }),
        resolv_conf: args.resolv_conf,
        defaults,
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
    if let Some(name) = &args.docker_plugin {
        dataplane_agent::docker::validate_plugin_name(name)?;
    }
    let gid = super::api_socket::resolve_group(args.socket_group.as_deref())?;
    let docker = args.docker_plugin.map(|n| (n, args.docker_plugin_dir));
    rt.block_on(serve(cfg, socket, gid, docker, args.metrics_addr))
}

async fn serve(
    cfg: AgentConfig,
    socket: &Path,
    socket_gid: u32,
    docker: Option<(String, PathBuf)>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> Result<()> {
    let engine = Engine::start(cfg).await?;
    let monitor = Monitor::open(&engine.config().bpffs)?;
    monitor.spawn_reader()?;
    if let Some(addr) = metrics_addr {
        metrics::serve(addr, Arc::clone(&engine), Arc::clone(&monitor)).await?;
    }
    engine.spawn_flow_gc()?;
    engine.spawn_reconciler()?;
    if let Err(e) = engine.watch_addresses() {
        tracing::warn!("not following host address changes (only every 10 s): {e:#}");
    }
    let listener = super::api_socket::bind(socket, socket_gid)?;
    let docker_sock = match &docker {
        Some((name, dir)) => Some(dataplane_agent::docker::serve(
            Arc::clone(&engine),
            name,
            dir,
        )?),
        None => None,
    };
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
    let app = api::router(Arc::clone(&engine))
        .merge(dataplane_agent::monitor::router(
            Arc::clone(&engine),
            monitor,
        ))
        .layer(axum::middleware::from_fn(metrics::track));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    engine.stop_resolvers().await;
    let _ = std::fs::remove_file(socket);
    if let Some(s) = docker_sock {
        let _ = std::fs::remove_file(s);
    }
    Ok(())
}

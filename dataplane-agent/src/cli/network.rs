//! `dataplane network ...`: create, ls, inspect, rm, connect, disconnect.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use dataplane_agent::model::{ConnectRequest, ContainerView, NetworkCreate, NetworkView};

use super::{print_json, print_table, Ctx, Format};

#[derive(Subcommand)]
pub(crate) enum NetworkCmd {
    /// Create a network.
    Create {
        name: String,
        /// Subnet in CIDR format; give one IPv4 and one IPv6 (with --ipv6)
        /// for a dual-stack network.
        #[arg(long)]
        subnet: Vec<String>,
        /// Gateway of the subnet of the same family (repeatable, as --subnet).
        #[arg(long)]
        gateway: Vec<String>,
        /// Range addresses are allocated from (repeatable, as --subnet).
        #[arg(long)]
        ip_range: Vec<String>,
        /// Dual stack: IPv6 as well (an IPv6 --subnet, or a default one).
        #[arg(long)]
        ipv6: bool,
        #[arg(long)]
        mtu: Option<u32>,
        #[arg(long)]
        internal: bool,
        /// Inter-container communication (--icc=false isolates containers).
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        icc: Option<bool>,
        #[arg(long, short)]
        driver: Option<String>,
        /// Driver option KEY=VALUE (Docker's `com.docker.network.*`).
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opt: Vec<String>,
        /// `--driver lan`: the host interface on the LAN (also `-o parent=IFACE`).
        #[arg(long, value_name = "IFACE")]
        parent: Option<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show a network as JSON.
    Inspect { name: String },
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network.
    Connect {
        network: String,
        container: String,
        #[arg(long)]
        ip: Option<String>,
        /// Static IPv6 address (dual-stack networks with a user subnet).
        #[arg(long)]
        ip6: Option<String>,
        /// A name of the container on this network (embedded DNS); repeatable.
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
    },
    /// Disconnect a container from a network.
    Disconnect {
        network: String,
        container: String,
        /// Accepted as Docker's (a disconnect here never needs it).
        #[arg(short, long)]
        force: bool,
    },
}

pub(crate) fn execute(cmd: NetworkCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        NetworkCmd::Create {
            name,
            subnet,
            gateway,
            ip_range,
            ipv6,
            mtu,
            internal,
            icc,
            driver,
            opt,
            parent,
        } => {
            let (subnet, subnet6) = by_family("--subnet", subnet)?;
            let (gateway, gateway6) = by_family("--gateway", gateway)?;
            let (ip_range, ip_range6) = by_family("--ip-range", ip_range)?;
            let options = opt
                .iter()
                .map(|o| {
                    o.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow!("invalid option {o:?}: expected KEY=VALUE"))
                })
                .collect::<Result<_>>()?;
            let req = NetworkCreate {
                name,
                driver,
                subnet,
                gateway,
                ip_range,
                mtu,
                internal,
                icc,
                options,
                parent,
                ipv6,
                subnet6,
                gateway6,
                ip_range6,
            };
            let v: NetworkView =
                ctx.call(|c| async move { Ok(c.post("/v1/networks", &req).await?) })?;
            match ctx.format {
                Format::Json => print_json(&v),
                Format::Table => {
                    println!("{}", v.name);
                    Ok(())
                }
            }
        }
        NetworkCmd::Ls => {
            let v: Vec<NetworkView> =
                ctx.call(|c| async move { Ok(c.get("/v1/networks").await?) })?;
            if ctx.format == Format::Json {
                return print_json(&v);
            }
            print_ls(&v);
            Ok(())
        }
        NetworkCmd::Inspect { name } => {
            let path = format!("/v1/networks/{name}");
            let v: NetworkView = ctx.call(|c| async move { Ok(c.get(&path).await?) })?;
            print_json(&v)
        }
        NetworkCmd::Rm { names } => super::remove_each("networks", &names, ctx),
        NetworkCmd::Connect {
            network,
            container,
            ip,
            ip6,
            aliases,
        } => {
            let path = format!("/v1/networks/{network}/connect");
            let req = ConnectRequest {
                container,
                ip,
                ip6,
                force: false,
                aliases,
                ..Default::default()
            };
            let _: ContainerView = ctx.call(|c| async move { Ok(c.post(&path, &req).await?) })?;
            Ok(())
        }
        NetworkCmd::Disconnect {
            network,
            container,
            force,
        } => {
            let path = format!("/v1/networks/{network}/disconnect");
            let req = ConnectRequest {
                container,
                ip: None,
                force,
                ..Default::default()
            };
            let _: serde_json::Value =
                ctx.call(|c| async move { Ok(c.post(&path, &req).await?) })?;
            Ok(())
        }
    }
}

/// Split a repeated `--subnet`/`--gateway`/`--ip-range` into its IPv4 and
/// IPv6 value (at most one of each family, as Docker's).
fn by_family(flag: &str, values: Vec<String>) -> Result<(Option<String>, Option<String>)> {
    let (v6, v4): (Vec<String>, Vec<String>) = values.into_iter().partition(|v| v.contains(':'));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(anyhow!(
            "{flag} given more than once for one address family (one IPv4 and one IPv6 at most)"
        ));
    }
    Ok((v4.into_iter().next(), v6.into_iter().next()))
}

fn print_ls(v: &[NetworkView]) {
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
        &v.iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    n.driver.clone(),
                    n.subnet.map_or_else(|| "-".into(), |s| s.to_string()),
                    n.gateway.map_or_else(|| "-".into(), |g| g.to_string()),
                    n.mtu.to_string(),
                    n.internal.to_string(),
                    n.icc.to_string(),
                    n.containers.len().to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
}

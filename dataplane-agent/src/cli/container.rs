//! `dataplane container ...`: create, port, ls, inspect, rm, exec, attach,
//! detach.

use std::ffi::CString;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use dataplane_agent::{
    dns::files::ExecMounts,
    model::{AttachRequest, ContainerCreate, ContainerView},
    ports::{ExposedPort, PortMapping, Proto},
};

use super::{print_json, print_table, Ctx, Format};

#[derive(Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing clap's derive fields gains nothing"
)]
pub(crate) enum ContainerCmd {
    /// Create a container (a network namespace with its endpoints).
    Create {
        name: String,
        /// A network name, host, none or container:NAME.
        #[arg(long, alias = "net")]
        network: Option<String>,
        #[arg(long)]
        ip: Option<String>,
        /// Static IPv6 address (dual-stack networks with a user subnet).
        #[arg(long)]
        ip6: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp].
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
        /// A name of the container on its network (embedded DNS); repeatable.
        #[arg(long = "network-alias", alias = "net-alias", value_name = "NAME")]
        network_aliases: Vec<String>,
        /// Upstream DNS server for names that are not local; repeatable.
        #[arg(long = "dns", value_name = "IP")]
        dns: Vec<String>,
        /// Search domain in the container's resolv.conf; repeatable.
        #[arg(long = "dns-search", value_name = "DOMAIN")]
        dns_search: Vec<String>,
        /// resolv.conf option (e.g. ndots:2); repeatable.
        #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPTION")]
        dns_options: Vec<String>,
        /// Add a line to the container's /etc/hosts: NAME:IP (or NAME:host-gateway).
        #[arg(long = "add-host", value_name = "NAME:IP")]
        add_hosts: Vec<String>,
    },
    /// Show a container's published ports (of one container port: PORT[/PROTO]).
    Port {
        name: String,
        #[arg(value_name = "PORT[/PROTO]")]
        port: Option<String>,
    },
    /// List containers.
    #[command(alias = "list")]
    Ls,
    /// Show a container as JSON.
    Inspect { name: String },
    /// Remove one or more containers.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Run a command inside a container's network namespace.
    Exec {
        name: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Adopt a network namespace someone else made as container NAME (then
    /// `network connect NET NAME`).
    Attach {
        name: String,
        /// Path of the namespace (e.g. /run/netns/X, /proc/PID/ns/net).
        #[arg(
            long,
            value_name = "PATH",
            required_unless_present = "pid",
            conflicts_with = "pid"
        )]
        netns: Option<String>,
        /// The namespace of this process; its exit ends the attachment.
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
    },
    /// Give an attached namespace back (only the agent's interfaces go).
    Detach {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub(crate) fn execute(cmd: ContainerCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        ContainerCmd::Create {
            name,
            network,
            ip,
            ip6,
            hostname,
            publish,
            publish_all,
            expose,
            links,
            network_aliases,
            dns,
            dns_search,
            dns_options,
            add_hosts,
        } => {
            let req = ContainerCreate {
                name,
                network,
                ip,
                ip6,
                hostname,
                publish,
                publish_all,
                expose,
                links,
                network_aliases,
                dns,
                dns_search,
                dns_options,
                add_hosts,
            };
            let v: ContainerView =
                ctx.call(|c| async move { Ok(c.post("/v1/containers", &req).await?) })?;
            match ctx.format {
                Format::Json => print_json(&v),
                Format::Table => {
                    println!("{}", v.id);
                    Ok(())
                }
            }
        }
        ContainerCmd::Ls => {
            let v: Vec<ContainerView> =
                ctx.call(|c| async move { Ok(c.get("/v1/containers").await?) })?;
            if ctx.format == Format::Json {
                return print_json(&v);
            }
            print_ls(&v);
            Ok(())
        }
        ContainerCmd::Port { name, port } => {
            let v = inspect(ctx, &name)?;
            let filter = port.as_deref().map(parse_port_filter).transpose()?;
            let ports: Vec<&PortMapping> = v
                .ports
                .iter()
                .filter(|m| {
                    filter.is_none_or(|(p, proto)| m.container_port == p && m.proto == proto)
                })
                .collect();
            if let (Some((p, proto)), true) = (filter, ports.is_empty()) {
                bail!(
                    "no public port '{p}/{}' published for {name}",
                    proto.as_str()
                );
            }
            if ctx.format == Format::Json {
                return print_json(&ports);
            }
            for m in ports {
                if filter.is_some() {
                    println!("{}:{}", m.host_ip, m.host_port);
                } else {
                    println!("{}", m.describe());
                }
            }
            Ok(())
        }
        ContainerCmd::Inspect { name } => print_json(&inspect(ctx, &name)?),
        ContainerCmd::Rm { names } => super::remove_each("containers", &names, ctx),
        // The runtime is gone once `inspect` returns: setns needs a
        // single-threaded process.
        ContainerCmd::Exec { name, cmd } => exec_in(&inspect(ctx, &name)?, &cmd),
        ContainerCmd::Attach { name, netns, pid } => {
            let req = AttachRequest {
                name,
                netns,
                pid,
                owner: None,
            };
            let v: ContainerView =
                ctx.call(|c| async move { Ok(c.post("/v1/attach", &req).await?) })?;
            match ctx.format {
                Format::Json => print_json(&v),
                Format::Table => {
                    println!("{}", v.id);
                    Ok(())
                }
            }
        }
        ContainerCmd::Detach { names } => {
            for name in names {
                let path = format!("/v1/containers/{name}/detach");
                let _: serde_json::Value =
                    ctx.call(|c| async move { Ok(c.post(&path, &serde_json::json!({})).await?) })?;
                println!("{name}");
            }
            Ok(())
        }
    }
}

/// `PORT[/PROTO]` of `container port NAME PORT`.
fn parse_port_filter(s: &str) -> Result<(u16, Proto)> {
    let (p, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, Proto::parse(proto)?),
        None => (s, Proto::Tcp),
    };
    let p: u16 = p
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| anyhow!("invalid port {s:?}: expected PORT[/PROTO]"))?;
    Ok((p, proto))
}

fn inspect(ctx: &Ctx, name: &str) -> Result<ContainerView> {
    let path = format!("/v1/containers/{name}");
    ctx.call(|c| async move { Ok(c.get(&path).await?) })
}

/// The first 12 characters of an id (all of a shorter one).
fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

fn print_ls(v: &[ContainerView]) {
    print_table(
        &[
            "ID",
            "NAME",
            "NETWORK MODE",
            "NETWORKS",
            "ADDRESSES",
            "PORTS",
        ],
        &v.iter()
            .map(|ct| {
                vec![
                    short_id(&ct.id).to_string(),
                    ct.name.clone(),
                    match &ct.owner {
                        // The runtime's container id (CNI) or `cli`.
                        Some(o) => format!("{}:{}", ct.network_mode, short_id(o)),
                        None => ct.network_mode.clone(),
                    },
                    ct.endpoints
                        .iter()
                        .map(|e| e.network.clone())
                        .collect::<Vec<_>>()
                        .join(","),
                    ct.endpoints
                        .iter()
                        .map(|e| {
                            if e.global_ipv6_address.is_empty() {
                                format!("{}/{}", e.ip, e.prefix_len)
                            } else {
                                format!(
                                    "{}/{} {}/{}",
                                    e.ip,
                                    e.prefix_len,
                                    e.global_ipv6_address,
                                    e.global_ipv6_prefix_len
                                )
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    ports_summary(&ct.ports, &ct.expose),
                ]
            })
            .collect::<Vec<_>>(),
    );
}

/// Published ports, then exposed ports nothing publishes (`80/tcp`), as
/// `docker ps`.
fn ports_summary(ports: &[PortMapping], expose: &[ExposedPort]) -> String {
    let mut all: Vec<String> = ports
        .iter()
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
    all.extend(
        expose
            .iter()
            .filter(|e| {
                !ports
                    .iter()
                    .any(|m| m.container_port == e.port && m.proto == e.proto)
            })
            .map(|e| format!("{}/{}", e.port, e.proto.as_str())),
    );
    let n = all.len();
    let mut s: Vec<String> = all.into_iter().take(4).collect();
    if n > 4 {
        s.push(format!("(+{} more)", n - 4));
    }
    s.join(", ")
}

/// Enter the container's network namespace (and a UTS namespace with its
/// hostname, if it has one), mount its hosts / resolv.conf / hostname over
/// /etc in a private mount namespace, and replace this process with `cmd`.
fn exec_in(c: &ContainerView, cmd: &[String]) -> Result<()> {
    let mounts = c
        .files_dir
        .as_deref()
        .map(|d| ExecMounts::prepare(std::path::Path::new(d)))
        .transpose()?;
    let f = std::fs::File::open(&c.netns)
        .with_context(|| format!("opening the namespace of {} at {}", c.name, c.netns))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    if let Some(m) = &mounts {
        m.apply()
            .context("mounting the container's resolver files")?;
    }
    if let Some(h) = &c.hostname {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).context("unshare(UTS)")?;
        nix::unistd::sethostname(h).context("sethostname")?;
    }
    let args: Vec<CString> = cmd
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("argument with a NUL byte"))?;
    let Some(prog) = args.first() else {
        bail!("no command given");
    };
    match nix::unistd::execvp(prog, &args) {
        Err(err) => bail!("cannot run {}: {err}", cmd.join(" ")),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_never_panic() {
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id(""), "");
    }
}

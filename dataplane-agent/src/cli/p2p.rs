//! `dataplane p2p create|ls|rm`: point-to-point links between two
//! containers, or a container and the host.

use anyhow::Result;
use clap::Subcommand;
use dataplane_agent::model::{P2pCreate, P2pView};

use super::{print_json, print_table, remove_each, Ctx, Format};

#[derive(Subcommand)]
pub(crate) enum P2pCmd {
    /// Join A and B (container names, or `host`) by a veth pair of their
    /// own, with /32 addresses and a host route to the peer on each end.
    Create {
        /// A's address (default: a free pair of 169.254.200.0/24).
        #[arg(long, requires = "peer_ip")]
        ip: Option<String>,
        /// B's address.
        #[arg(long, requires = "ip")]
        peer_ip: Option<String>,
        /// The link's name (default: A-B).
        #[arg(long)]
        name: Option<String>,
        a: String,
        b: String,
    },
    /// List the point-to-point links.
    Ls,
    /// Remove point-to-point links (both interfaces).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub(crate) fn execute(cmd: P2pCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        P2pCmd::Create {
            ip,
            peer_ip,
            name,
            a,
            b,
        } => {
            let req = P2pCreate {
                name,
                a,
                b,
                ip,
                peer_ip,
            };
            let v: P2pView = ctx.call(|c| async move { Ok(c.post("/v1/p2p", &req).await?) })?;
            if ctx.format == Format::Json {
                return print_json(&v);
            }
            println!("{}", v.name);
            Ok(())
        }
        P2pCmd::Ls => {
            let links: Vec<P2pView> = ctx.call(|c| async move { Ok(c.get("/v1/p2p").await?) })?;
            if ctx.format == Format::Json {
                return print_json(&links);
            }
            let rows: Vec<Vec<String>> = links
                .iter()
                .map(|l| {
                    vec![
                        l.name.clone(),
                        format!("{} ({}, {})", l.a, l.a_interface, l.a_ip),
                        format!("{} ({}, {})", l.b, l.b_interface, l.b_ip),
                    ]
                })
                .collect();
            print_table(&["NAME", "A", "B"], &rows);
            Ok(())
        }
        P2pCmd::Rm { names } => remove_each("p2p", &names, ctx),
    }
}

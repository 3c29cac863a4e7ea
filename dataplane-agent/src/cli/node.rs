//! `dataplane node ls`: the nodes of the cluster (with `--cluster-store`).

use anyhow::Result;
use clap::Subcommand;
use dataplane_agent::engine::NodeView;

use super::{print_json, print_table, Ctx, Format};

#[derive(Subcommand)]
pub(crate) enum NodeCmd {
    /// List the cluster's nodes: name, underlay address, state, endpoints.
    Ls,
}

pub(crate) fn execute(cmd: &NodeCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        NodeCmd::Ls => {
            let nodes: Vec<NodeView> =
                ctx.call(|c| async move { Ok(c.get("/v1/nodes").await?) })?;
            if ctx.format == Format::Json {
                return print_json(&nodes);
            }
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|n| {
                    vec![
                        if n.local {
                            format!("{} *", n.name)
                        } else {
                            n.name.clone()
                        },
                        n.address.map(|a| a.to_string()).unwrap_or_default(),
                        n.state.clone(),
                        n.endpoints.to_string(),
                    ]
                })
                .collect();
            print_table(&["NAME", "ADDRESS", "STATE", "ENDPOINTS"], &rows);
            Ok(())
        }
    }
}

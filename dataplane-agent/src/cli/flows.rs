//! `dataplane flows`: masquerade, published-port, hairpin and link flows.

use anyhow::Result;
use clap::Args;
use dataplane_agent::monitor::flows::FlowView;

use super::{print_json, print_table, Ctx, Format};

#[derive(Args)]
pub(crate) struct FlowsArgs {
    /// Only flows of this container.
    #[arg(long)]
    container: Option<String>,
}

pub(crate) fn execute(args: &FlowsArgs, ctx: &Ctx) -> Result<()> {
    let path = match &args.container {
        Some(c) => format!("/v1/flows?container={c}"),
        None => "/v1/flows".to_string(),
    };
    let flows: Vec<FlowView> = ctx.call(|c| async move { Ok(c.get(&path).await?) })?;
    if ctx.format == Format::Json {
        return print_json(&flows);
    }
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            let who = match (&f.container, &f.network) {
                (Some(c), Some(n)) => format!("{c}@{n}"),
                (Some(c), None) => c.clone(),
                _ => "-".into(),
            };
            vec![
                f.kind.clone(),
                f.proto.clone(),
                who,
                f.from.clone(),
                f.to.clone(),
                f.translated.clone(),
                format!("{}s", f.age_s),
                f.state.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "KIND",
            "PROTO",
            "CONTAINER",
            "FROM",
            "TO",
            "TRANSLATED",
            "AGE",
            "STATE",
        ],
        &rows,
    );
    Ok(())
}

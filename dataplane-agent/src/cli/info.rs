//! `dataplane info` (the agent's settings) and `dataplane drops` (the
//! datapath's drop counters by reason).

use std::collections::BTreeMap;

use anyhow::Result;
use dataplane_agent::model::AgentInfo;

use super::{print_json, print_table, Ctx, Format};

pub(crate) fn execute_info(ctx: &Ctx) -> Result<()> {
    let v: AgentInfo = ctx.call(|c| async move { Ok(c.get("/v1/info").await?) })?;
    print_json(&v)
}

pub(crate) fn execute_drops(ctx: &Ctx) -> Result<()> {
    let v: BTreeMap<String, u64> = ctx.call(|c| async move { Ok(c.get("/v1/drops").await?) })?;
    if ctx.format == Format::Json {
        return print_json(&v);
    }
    print_table(
        &["REASON", "PACKETS"],
        &v.iter()
            .map(|(r, n)| vec![r.clone(), n.to_string()])
            .collect::<Vec<_>>(),
    );
    Ok(())
}

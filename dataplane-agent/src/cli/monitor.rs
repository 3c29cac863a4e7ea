//! `dataplane monitor`: live drop and trace events, named.

use anyhow::Result;
use clap::{Args, ValueEnum};
use dataplane_agent::monitor::EventView;

use super::{Ctx, Format};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EventType {
    /// Dropped packets, with the reason.
    Drop,
    /// Packets the datapath redirected or translated (rate-limited).
    Trace,
    /// Both.
    All,
}

#[derive(Args)]
pub(crate) struct MonitorArgs {
    /// Which events.
    #[arg(long = "type", value_enum, default_value_t = EventType::Drop)]
    kind: EventType,
    /// Only events of this container (its interface, or either side).
    #[arg(long)]
    container: Option<String>,
}

pub(crate) fn execute(args: &MonitorArgs, ctx: &Ctx) -> Result<()> {
    let kind = match args.kind {
        EventType::Drop => "drop",
        EventType::Trace => "trace",
        EventType::All => "all",
    };
    let mut path = format!("/v1/monitor?type={kind}");
    if let Some(c) = &args.container {
        path.push_str("&container=");
        path.push_str(c);
    }
    let json = ctx.format == Format::Json;
    ctx.call(|c| async move {
        c.get_lines(
            &path,
            || eprintln!("Listening for {kind} events (Ctrl-C to stop)..."),
            |line| {
                if json {
                    println!("{}", String::from_utf8_lossy(line));
                } else if let Ok(ev) = serde_json::from_slice::<EventView>(line) {
                    println!("{}", ev.line());
                } else {
                    // A note of the agent (events lost to a slow reader).
                    println!("{}", String::from_utf8_lossy(line));
                }
                Ok(true)
            },
        )
        .await?;
        Ok(())
    })
}

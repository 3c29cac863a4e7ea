//! `dataplane`: the node agent (`dataplane agent`) and its CLI ([`cli`]).

mod cli;

use clap::Parser;

fn main() {
    let res = cli::Cli::parse().execute();
    if let Err(e) = res {
        eprintln!("Error: {e:#}");
        let code = e
            .downcast_ref::<dataplane_agent::error::Error>()
            .map_or(1, |e| e.kind().exit_code());
        std::process::exit(code);
    }
}

//! Writes the eBPF object embedded in the agent (`dataplane_agent::datapath::object()`)
//! to the file given as the only argument, so that `cargo xtask bench` can load
//! the very programs the agent runs into BPF_PROG_TEST_RUN without linking the
//! agent into xtask itself.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: dp-ebpf-object OUT_FILE");
        return ExitCode::from(2);
    };
    match std::fs::write(&path, dataplane_agent::datapath::object()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: writing {}: {e}", path.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}

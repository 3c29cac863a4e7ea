//! `dataplane-cni`: the CNI plugin binary. Reads the spec's environment and
//! the network configuration on stdin, prints the result or the error JSON
//! on stdout (see `dataplane_agent::cni`).

use std::io::{Read, Write};

fn main() {
    let env = dataplane_agent::cni::Env::from_process();
    let mut stdin = Vec::new();
    // VERSION may come with an empty stdin.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let out = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dataplane_agent::cni::run(&env, &stdin)),
        Err(e) => dataplane_agent::cni::Outcome {
            stdout: Some(serde_json::json!({
                "cniVersion": "1.1.0", "code": 5, "msg": format!("cannot start: {e}"),
            })),
            exit_code: 1,
        },
    };
    if let Some(v) = out.stdout {
        let mut o = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut o, &v);
        let _ = o.write_all(b"\n");
    }
    std::process::exit(out.exit_code);
}

//! Builds the eBPF object (dataplane-ebpf) with the nightly toolchain and
//! bpf-linker (`--btf`), and places it in OUT_DIR for `include_bytes_aligned!`.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../dataplane-ebpf");
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed={root}/Cargo.toml");
    println!(
        "cargo:rerun-if-changed={}/../dataplane-common/src",
        env!("CARGO_MANIFEST_DIR")
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "dataplane-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs (run `cargo xtask setup` first)")
}

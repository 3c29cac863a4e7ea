//! `cargo xtask soak`: runs the reliability and security suite's parts
//! ([`parts::PARTS`], ordinary test binaries of `dataplane-tests`) at full
//! size (or `--smoke`), with one seed, and writes `report.md` and
//! `report.json` with every figure, the seed and how long each part ran.
//! Fails if any loss or leak count is not 0.

mod parts;
mod report;

use std::{fmt::Write as _, path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

/// Options of the verb.
pub(crate) struct Opts {
    /// CI size instead of the full one.
    pub(crate) smoke: bool,
    /// Fraction of the full size (default 1).
    pub(crate) scale: Option<f64>,
    pub(crate) seed: Option<u64>,
    pub(crate) out: Option<PathBuf>,
    /// Only the parts whose test name contains this.
    pub(crate) only: Option<String>,
    /// Per-part scales: (part name fragment, fraction of the full size).
    pub(crate) part_scales: Vec<(String, f64)>,
}

/// `NAME=FRACTION` of `--part-scale`.
pub(crate) fn parse_part_scale(s: &str) -> Result<(String, f64), String> {
    let (name, f) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PART=FRACTION, e.g. crash=0.2"))?;
    let f: f64 = f
        .parse()
        .map_err(|_| format!("{s:?}: {f:?} is not a number"))?;
    if !(f > 0.0 && f <= 1.0) || name.is_empty() {
        return Err(format!(
            "{s:?}: expected PART=FRACTION with 0 < FRACTION <= 1"
        ));
    }
    Ok((name.to_string(), f))
}

pub(crate) fn soak(o: &Opts, bin: &std::path::Path) -> Result<()> {
    let root = crate::workspace_root();
    let out = o.out.clone().unwrap_or_else(|| root.join("soak-out"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The tests run in their package's directory: give them an absolute path.
    let out = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let figures_dir = out.join("figures");
    let _ = std::fs::remove_dir_all(&figures_dir);
    let seed = o.seed.unwrap_or(0x5eed_0013);
    let mut runs = Vec::new();
    for part in parts::PARTS
        .iter()
        .filter(|p| o.only.as_deref().is_none_or(|f| p.test.contains(f)))
    {
        let started = Instant::now();
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.current_dir(&root)
            .env("DATAPLANE_BIN", bin)
            .env("DP_SOAK_SEED", seed.to_string())
            .env("DP_SOAK_OUT", &figures_dir)
            .args([
                "test",
                "-p",
                "dataplane-tests",
                "--test",
                part.test,
                "--",
                "--test-threads=1",
            ]);
        if !o.smoke {
            let scale = o
                .part_scales
                .iter()
                .find(|(n, _)| part.test.contains(n.as_str()))
                .map_or(o.scale.unwrap_or(1.0), |(_, f)| *f);
            c.env("DP_SOAK_SCALE", scale.to_string());
        }
        println!("xtask soak: {} ({})", part.test, part.title);
        let st = c
            .status()
            .with_context(|| format!("running {}", part.test))?;
        runs.push(report::Run {
            part,
            passed: st.success(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let command = format!(
        "cargo xtask soak{}{}{} --seed {seed}",
        if o.smoke { " --smoke" } else { "" },
        o.scale.map(|s| format!(" --scale {s}")).unwrap_or_default(),
        o.part_scales.iter().fold(String::new(), |mut acc, (n, f)| {
            let _ = write!(acc, " --part-scale {n}={f}");
            acc
        })
    );
    let failed = report::write(&out, &figures_dir, &runs, seed, &command)?;
    println!("xtask soak: report in {}", out.join("report.md").display());
    if !failed.is_empty() {
        bail!("soak failed: {}", failed.join("; "));
    }
    Ok(())
}

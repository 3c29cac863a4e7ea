//! The soak report: `report.json` (every figure of every part, the seed,
//! the command) and `report.md` (the same as tables).

use std::{fmt::Write as _, path::Path};

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::parts::Part;

/// How one part's test binary ended.
pub(crate) struct Run {
    pub(crate) part: &'static Part,
    pub(crate) passed: bool,
    pub(crate) seconds: f64,
}

/// Write both reports; returns what failed (a test, or a loss/leak count
/// that is not 0, or figures that are missing).
pub(crate) fn write(
    out: &Path,
    figures_dir: &Path,
    runs: &[Run],
    seed: u64,
    command: &str,
) -> Result<Vec<String>> {
    let mut failed = Vec::new();
    let mut parts = Map::new();
    let mut md = format!(
        "# Reliability and security soak\n\nCommand: `{command}`  \nSeed: `{seed}` ({seed:#x})\n\n"
    );
    for r in runs {
        if !r.passed {
            failed.push(format!("{} failed", r.part.test));
        }
        let _ = writeln!(
            md,
            "## {}\n\n`{}`: {} in {:.0} s\n",
            r.part.title,
            r.part.test,
            if r.passed { "passed" } else { "FAILED" },
            r.seconds
        );
        for f in r.part.figures {
            let path = figures_dir.join(format!("{f}.json"));
            let v: Value = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null);
            let Some(obj) = v.as_object() else {
                failed.push(format!("{f}: no figures written"));
                continue;
            };
            for k in r.part.must_be_zero {
                if let Some(n) = obj.get(*k).and_then(Value::as_u64) {
                    if n != 0 {
                        failed.push(format!("{f}.{k} = {n}"));
                    }
                }
            }
            let _ = writeln!(md, "| {f} | value |\n|---|---|");
            for (k, x) in obj {
                let mark = if r.part.must_be_zero.contains(&k.as_str()) {
                    " (must be 0)"
                } else {
                    ""
                };
                let _ = writeln!(md, "| {k}{mark} | {x} |");
            }
            md.push('\n');
            parts.insert((*f).to_string(), v);
        }
    }
    let _ = writeln!(
        md,
        "Result: {}\n",
        if failed.is_empty() {
            "every loss and leak count is 0".to_string()
        } else {
            format!("FAILED: {}", failed.join("; "))
        }
    );
    let total: f64 = runs.iter().map(|r| r.seconds).sum();
    let j = json!({
        "command": command,
        "seed": seed,
        "seconds": total,
        "passed": failed.is_empty(),
        "failures": failed,
        "parts": parts,
    });
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&j)?)?;
    std::fs::write(out.join("report.md"), md)?;
    Ok(failed)
}

//! The kernel's per-program BPF statistics (run count and run time) of the
//! agent's programs: enabling them for one measurement only, finding the
//! agent's programs through its pinned links, and the helper calls in the
//! programs as loaded (`bpftool prog dump xlated`).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use aya::programs::links::{FdLink, PinnedLink};

/// BPF run-time statistics, on while this value lives. BPF_ENABLE_STATS
/// keeps them on only while the returned fd is open, so nothing global is
/// left on if the harness dies.
pub(super) struct StatsOn {
    _fd: OwnedFd,
}

pub(super) fn enable() -> Result<StatsOn> {
    let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| anyhow!("BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): {e}"))?;
    Ok(StatsOn { _fd: fd })
}

/// `kernel.bpf_stats_enabled`: whether someone (another process, the
/// sysctl) has the statistics on globally right now, which makes the
/// "stats off" side of the overhead measurement not off.
pub(super) fn enabled_globally() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .ok()
        .map(|s| s.trim() != "0")
}

/// The agent's programs by name, with their ids, from its pinned links
/// (`<bpffs>/links/<program>@<interface>`): ids of programs loaded by other
/// processes on this machine (tests running in parallel load the same
/// program names) are never picked up.
pub(super) fn agent_programs(bpffs: &Path) -> Result<BTreeMap<String, u32>> {
    let dir = bpffs.join("links");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((prog, _)) = name.split_once('@') else {
            continue;
        };
        let link = PinnedLink::from_pin(e.path())
            .map_err(|err| anyhow!("opening link pin {}: {err}", e.path().display()))?;
        let id = FdLink::from(link)
            .info()
            .map_err(|err| anyhow!("link info of {}: {err}", e.path().display()))?
            .program_id();
        if let Some(old) = out.insert(prog.to_string(), id) {
            if old != id {
                bail!("links of {prog} point to different programs ({old} and {id})");
            }
        }
    }
    if out.is_empty() {
        bail!("no pinned links under {}", dir.display());
    }
    Ok(out)
}

/// Run count and total run time (ns) of one program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counters {
    pub runs: u64,
    pub ns: u64,
}

impl Counters {
    pub(super) fn since(self, before: Counters) -> Counters {
        Counters {
            runs: self.runs.saturating_sub(before.runs),
            ns: self.ns.saturating_sub(before.ns),
        }
    }

    pub(super) fn ns_per_run(self) -> Option<f64> {
        (self.runs > 0).then(|| self.ns as f64 / self.runs as f64)
    }
}

/// Counters of the programs `ids` (name -> id). A program that is gone is
/// an error: the agent keeps its programs loaded for the whole run.
pub(super) fn read(ids: &BTreeMap<String, u32>) -> Result<BTreeMap<String, Counters>> {
    let mut by_id = BTreeMap::new();
    // Programs of other processes may be unloaded while we iterate: their
    // errors are skipped, ours are checked below.
    for info in aya::programs::loaded_programs().flatten() {
        by_id.insert(
            info.id(),
            Counters {
                runs: info.run_count(),
                ns: info.run_time().as_nanos() as u64,
            },
        );
    }
    ids.iter()
        .map(|(name, id)| {
            by_id
                .get(id)
                .map(|c| (name.clone(), *c))
                .ok_or_else(|| anyhow!("program {name} (id {id}) is not loaded any more"))
        })
        .collect()
}

/// Helper calls in the program as the kernel runs it (after the
/// verifier's rewrites: array lookups are inlined and disappear, hash
/// lookups become direct calls of the map's lookup function), by callee.
pub(super) fn xlated_calls(id: u32) -> Result<BTreeMap<String, u32>> {
    let out = Command::new("bpftool")
        .args(["prog", "dump", "xlated", "id", &id.to_string()])
        .output()
        .context("running bpftool prog dump xlated")?;
    if !out.status.success() {
        bail!(
            "bpftool prog dump xlated id {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(count_calls(&String::from_utf8_lossy(&out.stdout)))
}

/// Counts `call NAME#ID` instructions of a `bpftool prog dump xlated`
/// listing by NAME (`call pc+N` bpf-to-bpf calls count as `bpf-to-bpf`).
fn count_calls(listing: &str) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for l in listing.lines() {
        let Some(i) = l.find(") call ") else { continue };
        let callee = l[i + ") call ".len()..].trim();
        let name = if callee.starts_with("pc") {
            "bpf-to-bpf".to_string()
        } else {
            callee.split('#').next().unwrap_or(callee).to_string()
        };
        *m.entry(name).or_insert(0) += 1;
    }
    m
}

/// Whether a callee of `xlated_calls` is a map lookup.
pub(super) fn is_map_lookup(callee: &str) -> bool {
    callee.contains("lookup_elem") && !callee.contains("fib")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_of_an_xlated_listing_by_callee() {
        let l = "   0: (bf) r6 = r1\n  12: (85) call __htab_map_lookup_elem#262144\n  13: (85) call bpf_skb_store_bytes#123\n  20: (85) call __htab_map_lookup_elem#262144\n  21: (85) call pc+4\n  22: (07) r1 += 8\n";
        let m = count_calls(l);
        assert_eq!(m.get("__htab_map_lookup_elem"), Some(&2));
        assert_eq!(m.get("bpf_skb_store_bytes"), Some(&1));
        assert_eq!(m.get("bpf-to-bpf"), Some(&1));
        assert_eq!(m.len(), 3);
        assert!(is_map_lookup("__htab_map_lookup_elem"));
        assert!(!is_map_lookup("bpf_fib_lookup"));
    }
}

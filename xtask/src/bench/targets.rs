//! The report's targets: what the benchmark is meant to show, evaluated on
//! the medians of the run.

use std::collections::BTreeMap;

use super::report::{fmt_num, get, paths, ratio, Agg, Key};
use super::topo::Mode;
use super::Plan;

/// One target: what, whether met (None: not evaluated), the figures.
pub(super) struct Target {
    pub name: String,
    pub met: Option<bool>,
    pub detail: String,
}

pub(super) fn targets(agg: &BTreeMap<Key, Agg>, plan: &Plan) -> Vec<Target> {
    let mut t = Vec::new();
    let dp = Mode::Dataplane;
    for m in ["tput_1", "tput_4"] {
        let d = get(agg, m, "c2c", dp);
        let c = get(agg, m, "c2c", Mode::Ceiling);
        let i = get(agg, m, "c2c", Mode::Iptables);
        let rc = ratio(d, c);
        let ri = ratio(d, i);
        t.push(Target {
            name: format!("dataplane c2c throughput ({m}) >= 0.95x ceiling"),
            met: rc.map(|r| r >= 0.95),
            detail: rc.map_or("not measured".into(), |r| format!("{r:.3}x ceiling")),
        });
        t.push(Target {
            name: format!("dataplane c2c throughput ({m}) >= 1.2x iptables"),
            met: ri.map(|r| r >= 1.2),
            detail: ri.map_or("not measured".into(), |r| format!("{r:.3}x iptables")),
        });
    }
    for path in ["c2c", "outside->published"] {
        let r = ratio(
            get(agg, "rr_p50", path, dp),
            get(agg, "rr_p50", path, Mode::Ceiling),
        );
        t.push(Target {
            name: format!("dataplane RR latency p50 ({path}) within 1.05x ceiling"),
            met: r.map(|r| r <= 1.05),
            detail: r.map_or("not measured".into(), |r| format!("{r:.3}x ceiling")),
        });
    }
    let ns = paths(agg, "ports_crr_rate");
    let rates: Vec<f64> = ns
        .iter()
        .filter_map(|n| get(agg, "ports_crr_rate", n, dp).map(|a| a.median))
        .collect();
    if rates.len() >= 2 {
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        let first = rates[0];
        let last = *rates.last().expect("non-empty");
        t.push(Target {
            name: format!(
                "dataplane published-port new-connection rate flat from {} to {} ports (within 5%)",
                ns[0],
                ns.last().expect("non-empty")
            ),
            met: Some(lo >= 0.95 * hi),
            detail: format!(
                "{} -> {} conn/s ({:.3}x); min/max over N = {:.3}",
                fmt_num(first),
                fmt_num(last),
                last / first,
                lo / hi
            ),
        });
    }
    let r = early_drop_ratio(agg);
    t.push(Target {
        name: "dataplane early drop rate per core >= 5x iptables (softirq ns per dropped packet, iptables / dataplane)".into(),
        met: r.map(|r| r >= 5.0),
        detail: r.map_or("not measured".into(), |r| {
            format!(
                "{r:.2}x iptables{}",
                if r < 5.0 {
                    " (veth uplink, early drop at TC ingress (tcx) or in generic XDP: both run after skb allocation; the target assumes native XDP on a NIC, not available here; see Early drop)"
                } else {
                    ""
                }
            )
        }),
    });
    let max_n = plan.port_counts.iter().max().copied().unwrap_or(0);
    match get(agg, "program_ms", "10000", dp) {
        Some(a) => t.push(Target {
            name: "dataplane programs 10,000 published ports in under 1 s".into(),
            met: Some(a.median < 1000.0),
            detail: format!("{} ms (median)", fmt_num(a.median)),
        }),
        None => t.push(Target {
            name: "dataplane programs 10,000 published ports in under 1 s".into(),
            met: None,
            detail: format!("not evaluated at this level (largest N = {max_n})"),
        }),
    }
    t
}

/// iptables ns/packet over dataplane ns/packet (medians).
pub(super) fn early_drop_ratio(agg: &BTreeMap<Key, Agg>) -> Option<f64> {
    ratio(
        get(agg, "flood_ns_pkt", "udp", Mode::Iptables),
        get(agg, "flood_ns_pkt", "udp", Mode::Dataplane),
    )
}

//! `dataplane flows`: the translation tables in words. Masquerade flows
//! (`DP_NAT_OUT`: container -> masqueraded address:port -> destination),
//! published-port and hairpin flows (`DP_CT`, request direction: client ->
//! published address:port -> container) and link flows (`DP_POLICY_CT`:
//! connections a `--link` allowed), with their age and state.

use std::{collections::HashMap, net::Ipv4Addr};

use dataplane_common::{CtEntry, FlowKey, NatEntry, CT_F_REPLY_DIR, NAT_F_CLOSING, NAT_F_REPLIED};
use serde::{Deserialize, Serialize};

use super::{decode::proto_name, names::Names, tables::Tables};
use crate::datapath::monotonic_ns;

/// One flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowView {
    /// `masquerade`, `published`, `hairpin`, `link`.
    pub kind: String,
    pub proto: String,
    /// The container the flow belongs to (the masqueraded one, the target
    /// of a published port, the linking one).
    pub container: Option<String>,
    pub network: Option<String>,
    /// Who opened the flow, `ip:port`.
    pub from: String,
    /// Where it was sent, `ip:port` (a published port: the host's address).
    pub to: String,
    /// What the datapath rewrote: the masquerade source, or the container
    /// a published port leads to (with the hairpin source).
    pub translated: String,
    /// Seconds since the flow's last packet.
    pub age_s: u64,
    /// `replied`, `unreplied` or `closing` (TCP FIN/RST seen).
    pub state: String,
}

fn addr(ip: [u8; 4], port: u16) -> String {
    if port == 0 {
        Ipv4Addr::from(ip).to_string()
    } else {
        format!("{}:{port}", Ipv4Addr::from(ip))
    }
}

fn state(flags: u16) -> String {
    if flags & NAT_F_CLOSING != 0 {
        "closing"
    } else if flags & NAT_F_REPLIED != 0 {
        "replied"
    } else {
        "unreplied"
    }
    .into()
}

fn age(now: u64, last: u64) -> u64 {
    now.saturating_sub(last) / 1_000_000_000
}

/// Flags and last packet of a flow: both directions' entries together
/// (replies mark the reverse entry), as the flow garbage collector sees it.
fn merge(flags: u16, last: u64, back: Option<(u16, u64)>) -> (u16, u64) {
    match back {
        Some((f, l)) => (flags | f, last.max(l)),
        None => (flags, last),
    }
}

fn masquerade(
    names: &Names,
    now: u64,
    k: &FlowKey,
    v: &NatEntry,
    back: Option<(u16, u64)>,
) -> FlowView {
    let who = names.ip(Ipv4Addr::from(k.src));
    let (flags, last) = merge(v.flags, v.last_seen_ns, back);
    FlowView {
        kind: "masquerade".into(),
        proto: proto_name(k.proto),
        container: who.map(|w| w.container.clone()),
        network: who.map(|w| w.network.clone()),
        from: addr(k.src, k.sport),
        to: addr(k.dst, k.dport),
        translated: addr(v.addr, v.port),
        age_s: age(now, last),
        state: state(flags),
    }
}

fn translated(
    names: &Names,
    now: u64,
    k: &FlowKey,
    v: &CtEntry,
    back: Option<(u16, u64)>,
) -> FlowView {
    let (flags, last) = merge(v.flags, v.last_seen_ns, back);
    let target = names.ip(Ipv4Addr::from(v.dst));
    let hairpin = names.ip(Ipv4Addr::from(k.src)).is_some();
    let mut t = addr(v.dst, v.dport);
    if v.src != k.src {
        t = format!("{t} from {}", addr(v.src, v.sport));
    }
    FlowView {
        kind: if hairpin { "hairpin" } else { "published" }.into(),
        proto: proto_name(k.proto),
        container: target.map(|w| w.container.clone()),
        network: target.map(|w| w.network.clone()),
        from: addr(k.src, k.sport),
        to: addr(k.dst, k.dport),
        translated: t,
        age_s: age(now, last),
        state: state(flags),
    }
}

fn link(names: &Names, now: u64, reply: &FlowKey, last: u64) -> FlowView {
    // Keyed by the reply (linked -> linking container).
    let who = names.ip(Ipv4Addr::from(reply.dst));
    FlowView {
        kind: "link".into(),
        proto: proto_name(reply.proto),
        container: who.map(|w| w.container.clone()),
        network: who.map(|w| w.network.clone()),
        from: addr(reply.dst, reply.dport),
        to: addr(reply.src, reply.sport),
        translated: "-".into(),
        age_s: age(now, last),
        state: "allowed".into(),
    }
}

/// Every flow of the tables, with names; only those of `container` if given
/// (its own, or reaching it).
pub fn list(tables: &Tables, names: &Names, container: Option<&str>) -> Vec<FlowView> {
    let now = monotonic_ns();
    let mut out: Vec<FlowView> = Vec::new();
    let nat_in: HashMap<FlowKey, NatEntry> = tables.nat_in().into_iter().collect();
    for (k, v) in tables.nat_out() {
        // The reply as it arrives on the uplink.
        let rev = FlowKey::new(k.dst, v.addr, k.dport, v.port, k.proto);
        let back = nat_in.get(&rev).map(|b| (b.flags, b.last_seen_ns));
        out.push(masquerade(names, now, &k, &v, back));
    }
    let ct: HashMap<FlowKey, CtEntry> = tables.ct().into_iter().collect();
    for (k, v) in &ct {
        if v.flags & CT_F_REPLY_DIR == 0 {
            // The reply as the container sends it.
            let rev = FlowKey::new(v.dst, v.src, v.dport, v.sport, k.proto);
            let back = ct.get(&rev).map(|b| (b.flags, b.last_seen_ns));
            out.push(translated(names, now, k, v, back));
        } else {
            // Only the reply direction is kept for published ports reached
            // from outside (XDP translates requests from DP_PORTS): the
            // request is the reply's rewrite, reversed.
            let req = FlowKey::new(v.dst, v.src, v.dport, v.sport, k.proto);
            if !ct.contains_key(&req) {
                let as_request = CtEntry {
                    src: k.dst,
                    dst: k.src,
                    sport: k.dport,
                    dport: k.sport,
                    ..*v
                };
                out.push(translated(names, now, &req, &as_request, None));
            }
        }
    }
    for (k, v) in tables.policy_ct() {
        out.push(link(names, now, &k, v));
    }
    if let Some(c) = container {
        out.retain(|f| {
            f.container.as_deref() == Some(c) || {
                let from_ip = f.from.split(':').next().and_then(|s| s.parse().ok());
                from_ip
                    .and_then(|ip| names.ip(ip))
                    .is_some_and(|w| w.container == c)
            }
        });
    }
    out.sort_by(|a, b| (&a.kind, &a.container, &a.from).cmp(&(&b.kind, &b.container, &b.from)));
    out
}

/// Table sizes and the masquerade ports in use, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowCounts {
    pub nat_out: usize,
    pub nat_in: usize,
    pub ct: usize,
    pub policy_ct: usize,
    /// Distinct masquerade source ports in use.
    pub nat_ports: usize,
}

pub fn counts(tables: &Tables) -> FlowCounts {
    let outs = tables.nat_out();
    let ports: std::collections::HashSet<(u16, u8)> =
        outs.iter().map(|(k, v)| (v.port, k.proto)).collect();
    FlowCounts {
        nat_out: outs.len(),
        nat_in: tables.nat_in().len(),
        ct: tables.ct().len(),
        policy_ct: tables.policy_ct().len(),
        nat_ports: ports.len(),
    }
}

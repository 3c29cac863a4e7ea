//! An event as `/v1/monitor` streams it: the decoded event with names.

use std::{fmt::Write, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::{
    decode::{proto_name, Decoded, Tuple},
    names::Names,
};

/// One side of a packet: address, port, and whose it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Peer {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The container with this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `ip:port` is a port published to this container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_to: Option<String>,
    /// The host's uplink address (masquerade).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    /// Wall clock, seconds since the epoch.
    pub time: f64,
    /// `drop` or `trace`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Drops: the reason (`dataplane drops` names); traces: `redirected`
    /// (to another interface), `passed` (XDP, on to TC), `to_stack` (up
    /// the host's stack), `tx`, `forwarded`.
    pub what: String,
    /// The program: from_container, to_container, from_uplink, xdp_uplink,
    /// from_overlay.
    pub point: String,
    /// Where: `container@network` for a container's veth, `uplink`, `vxlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    pub ifindex: u32,
    pub len: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<Peer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<Peer>,
    /// Traces of translated packets: the two sides before translation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_src: Option<Peer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_dst: Option<Peer>,
}

fn peer(names: &Names, ip: Ipv4Addr, port: u16, proto: u8) -> Peer {
    let who = names.ip(ip);
    Peer {
        ip,
        port,
        container: who.map(|w| w.container.clone()),
        network: who.map(|w| w.network.clone()),
        published_to: if who.is_none() {
            names.published(ip, port, proto).cloned()
        } else {
            None
        },
        host: names.uplink_ip() == Some(ip),
    }
}

fn sides(names: &Names, t: Option<Tuple>) -> (Option<Peer>, Option<Peer>) {
    match t {
        Some(t) => (
            Some(peer(names, t.src, t.sport, t.proto)),
            Some(peer(names, t.dst, t.dport, t.proto)),
        ),
        None => (None, None),
    }
}

impl EventView {
    pub fn new(ev: &Decoded, names: &Names, mono_now_ns: u64, wall_now: f64) -> EventView {
        let (src, dst) = sides(names, ev.tuple);
        let (orig_src, orig_dst) = sides(names, ev.orig);
        let age = mono_now_ns.saturating_sub(ev.ts_ns) as f64 / 1e9;
        EventView {
            time: wall_now - age,
            kind: if ev.drop { "drop" } else { "trace" }.into(),
            what: ev.what.clone(),
            point: ev.point.into(),
            interface: names.interface(ev.ifindex),
            ifindex: ev.ifindex,
            len: ev.len,
            proto: ev.tuple.map(|t| proto_name(t.proto)),
            src,
            dst,
            orig_src,
            orig_dst,
        }
    }

    /// Whether `container` is involved: its interface or either side.
    pub fn involves(&self, container: &str) -> bool {
        let mine = |p: &Option<Peer>| {
            p.as_ref().is_some_and(|p| {
                p.container.as_deref() == Some(container)
                    || p.published_to.as_deref() == Some(container)
            })
        };
        self.interface
            .as_deref()
            .is_some_and(|i| i.split('@').next() == Some(container))
            || mine(&self.src)
            || mine(&self.dst)
            || mine(&self.orig_src)
            || mine(&self.orig_dst)
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let side = |p: &Option<Peer>| match p {
            None => "?".to_string(),
            Some(p) => {
                let mut s = if p.port == 0 {
                    p.ip.to_string()
                } else {
                    format!("{}:{}", p.ip, p.port)
                };
                if let Some(c) = &p.container {
                    let _ = write!(s, " ({c}@{})", p.network.as_deref().unwrap_or("?"));
                } else if let Some(c) = &p.published_to {
                    let _ = write!(s, " (published to {c})");
                } else if p.host {
                    s += " (host)";
                }
                s
            }
        };
        let mut line = format!(
            "{:<5} {:<26} {:<4} {} -> {}",
            self.kind.to_uppercase(),
            self.what,
            self.proto.as_deref().unwrap_or("-"),
            side(&self.src),
            side(&self.dst),
        );
        if self.orig_src.is_some() {
            let _ = write!(
                line,
                "  (was {} -> {})",
                side(&self.orig_src),
                side(&self.orig_dst)
            );
        }
        let _ = write!(
            line,
            "  at {} on {}",
            self.point,
            self.interface
                .clone()
                .unwrap_or_else(|| format!("ifindex {}", self.ifindex))
        );
        line
    }
}

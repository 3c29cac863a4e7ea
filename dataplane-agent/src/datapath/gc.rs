//! Expiry of idle flows in the NAT and CT tables.

use super::*;

/// Garbage collection of the flow tables, with map handles of its own (opened
/// from the pins), so that it runs on its own thread without holding the
/// engine: walking large maps takes many syscalls.
pub struct Gc {
    nat_out: HashMap<MapData, FlowKey, NatEntry>,
    nat_in: HashMap<MapData, FlowKey, NatEntry>,
    ct: HashMap<MapData, FlowKey, CtEntry>,
    policy_ct: HashMap<MapData, FlowKey, u64>,
}

fn open_pinned<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    root: &Path,
    name: &str,
) -> Result<T> {
    let md = MapData::from_pin(root.join("maps").join(name))
        .with_context(|| format!("opening pinned map {name}"))?;
    let map = aya::maps::Map::from_map_data(md)?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Gc {
    pub fn open(root: &Path) -> Result<Gc> {
        Ok(Gc {
            nat_out: open_pinned(root, map_names::NAT_OUT)?,
            nat_in: open_pinned(root, map_names::NAT_IN)?,
            ct: open_pinned(root, map_names::CT)?,
            policy_ct: open_pinned(root, map_names::POLICY_CT)?,
        })
    }

    /// Expire everything idle past its timeout; returns how many entries.
    pub fn run(&mut self) -> usize {
        self.gc_nat() + self.gc_ct()
    }

    /// Remove masquerade entries idle past their timeout. Returns how many
    /// flows were expired.
    fn gc_nat(&mut self) -> usize {
        let now = monotonic_ns();
        let expired = |k: &FlowKey, v: &NatEntry| {
            let timeout = if v.flags & NAT_F_CLOSING != 0 {
                NAT_TIMEOUT_TCP_CLOSING
            } else if v.flags & NAT_F_REPLIED == 0 {
                NAT_TIMEOUT_UNREPLIED
            } else {
                match k.proto {
                    6 => NAT_TIMEOUT_TCP,
                    17 => NAT_TIMEOUT_UDP,
                    _ => NAT_TIMEOUT_ICMP,
                }
            };
            now.saturating_sub(v.last_seen_ns) > timeout * 1_000_000_000
        };
        let mut n = 0;
        let outs: Vec<(FlowKey, NatEntry)> = self.nat_out.iter().filter_map(Result::ok).collect();
        for (k, v) in outs {
            // A flow is alive if either direction was seen recently.
            let rev = FlowKey {
                src: k.dst,
                dst: v.addr,
                sport: k.dport,
                dport: v.port,
                proto: k.proto,
                _pad: [0; 3],
            };
            let back = self.nat_in.get(&rev, 0).ok();
            let last = back.map_or(v.last_seen_ns, |b| b.last_seen_ns.max(v.last_seen_ns));
            let flags = v.flags | back.map_or(0, |b| b.flags);
            if expired(
                &k,
                &NatEntry {
                    last_seen_ns: last,
                    flags,
                    ..v
                },
            ) {
                let _ = self.nat_out.remove(&k);
                let _ = self.nat_in.remove(&rev);
                n += 1;
            }
        }
        // Reverse entries whose forward entry is gone (LRU eviction).
        let ins: Vec<(FlowKey, NatEntry)> = self.nat_in.iter().filter_map(Result::ok).collect();
        for (k, v) in ins {
            let fwd = FlowKey {
                src: v.addr,
                dst: k.src,
                sport: v.port,
                dport: k.sport,
                proto: k.proto,
                _pad: [0; 3],
            };
            if self.nat_out.get(&fwd, 0).is_err() && expired(&k, &v) {
                let _ = self.nat_in.remove(&k);
                n += 1;
            }
        }
        n
    }

    /// Expire idle translated flows and link-allowed replies. Returns how many.
    fn gc_ct(&mut self) -> usize {
        let now = monotonic_ns();
        let timeout = |proto: u8| match proto {
            6 => NAT_TIMEOUT_TCP,
            17 => NAT_TIMEOUT_UDP,
            _ => NAT_TIMEOUT_ICMP,
        } * 1_000_000_000;
        let mut n = 0;
        let entries: std::collections::HashMap<FlowKey, CtEntry> =
            self.ct.iter().filter_map(Result::ok).collect();
        // Hairpin flows have two entries (each direction's wire tuple): the
        // pair lives as long as either side is active.
        let partner = |k: &FlowKey, v: &CtEntry| FlowKey {
            src: v.dst,
            dst: v.src,
            sport: v.dport,
            dport: v.sport,
            proto: k.proto,
            _pad: [0; 3],
        };
        let dead: Vec<FlowKey> = entries
            .iter()
            .filter(|(k, v)| {
                let (last, flags) = entries
                    .get(&partner(k, v))
                    .map_or((v.last_seen_ns, v.flags), |p| {
                        (p.last_seen_ns.max(v.last_seen_ns), p.flags | v.flags)
                    });
                // Like the masquerade: closed and never-answered flows go soon.
                let limit = if flags & NAT_F_CLOSING != 0 {
                    NAT_TIMEOUT_TCP_CLOSING * 1_000_000_000
                } else if flags & NAT_F_REPLIED == 0 {
                    NAT_TIMEOUT_UNREPLIED * 1_000_000_000
                } else {
                    timeout(k.proto)
                };
                now.saturating_sub(last) > limit
            })
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            let _ = self.ct.remove(&k);
            n += 1;
        }
        let dead: Vec<FlowKey> = self
            .policy_ct
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| now.saturating_sub(*v) > timeout(k.proto))
            .map(|(k, _)| k)
            .collect();
        for k in dead {
            let _ = self.policy_ct.remove(&k);
            n += 1;
        }
        n
    }
}

pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default();
    t.as_nanos() as u64
}

//! Expiry of idle IPv6 flows (`DP_NAT6_OUT`/`DP_NAT6_IN`, `DP_CT6`) and of
//! stale fragment translations (`DP_FRAGS6`), with the timeouts of the IPv4
//! tables (`gc.rs`): handles of its own, opened from the pins, run on the
//! flow-gc thread.

use std::collections::HashMap as StdHashMap;

use dataplane_common::{
    nat6_map_names, CtEntry6, FlowKey6, FragEntry6, FragKey6, NatEntry6, FRAG_TIMEOUT_NS,
};

use super::{gc::monotonic_ns, nat6::open_pinned, *};

pub struct Gc6 {
    nat_out: HashMap<MapData, FlowKey6, NatEntry6>,
    nat_in: HashMap<MapData, FlowKey6, NatEntry6>,
    ct: HashMap<MapData, FlowKey6, CtEntry6>,
    frags: HashMap<MapData, FragKey6, FragEntry6>,
}

/// Seconds a flow may stay idle, by its protocol and flags.
fn timeout_s(proto: u8, flags: u16) -> u64 {
    if flags & NAT_F_CLOSING != 0 {
        NAT_TIMEOUT_TCP_CLOSING
    } else if flags & NAT_F_REPLIED == 0 {
        NAT_TIMEOUT_UNREPLIED
    } else {
        match proto {
            6 => NAT_TIMEOUT_TCP,
            17 => NAT_TIMEOUT_UDP,
            _ => NAT_TIMEOUT_ICMP,
        }
    }
}

fn idle(now: u64, last: u64, proto: u8, flags: u16) -> bool {
    now.saturating_sub(last) > timeout_s(proto, flags) * 1_000_000_000
}

impl Gc6 {
    pub fn open(root: &Path) -> Result<Gc6> {
        Ok(Gc6 {
            nat_out: open_pinned(root, nat6_map_names::NAT6_OUT)?,
            nat_in: open_pinned(root, nat6_map_names::NAT6_IN)?,
            ct: open_pinned(root, nat6_map_names::CT6)?,
            frags: open_pinned(root, nat6_map_names::FRAGS6)?,
        })
    }

    /// Expire everything idle past its timeout; returns how many entries.
    pub fn run(&mut self) -> usize {
        self.gc_nat() + self.gc_ct() + self.gc_frags()
    }

    fn gc_nat(&mut self) -> usize {
        let now = monotonic_ns();
        let mut n = 0;
        let outs: Vec<(FlowKey6, NatEntry6)> = self.nat_out.iter().filter_map(Result::ok).collect();
        for (k, v) in outs {
            // Alive while either direction was seen recently.
            let rev = FlowKey6::new(k.dst, v.addr, k.dport, v.port, k.proto);
            let back = self.nat_in.get(&rev, 0).ok();
            let last = back.map_or(v.last_seen_ns, |b| b.last_seen_ns.max(v.last_seen_ns));
            let flags = v.flags | back.map_or(0, |b| b.flags);
            if idle(now, last, k.proto, flags) {
                let _ = self.nat_out.remove(&k);
                let _ = self.nat_in.remove(&rev);
                n += 1;
            }
        }
        // Reverse entries whose forward entry is gone (LRU eviction).
        let ins: Vec<(FlowKey6, NatEntry6)> = self.nat_in.iter().filter_map(Result::ok).collect();
        for (k, v) in ins {
            let fwd = FlowKey6::new(v.addr, k.src, v.port, k.sport, k.proto);
            if self.nat_out.get(&fwd, 0).is_err() && idle(now, v.last_seen_ns, k.proto, v.flags) {
                let _ = self.nat_in.remove(&k);
                n += 1;
            }
        }
        n
    }

    /// Both entries of a tracked flow (each direction's wire tuple) live as
    /// long as either side is active.
    fn gc_ct(&mut self) -> usize {
        let now = monotonic_ns();
        let entries: StdHashMap<FlowKey6, CtEntry6> =
            self.ct.iter().filter_map(Result::ok).collect();
        let partner =
            |k: &FlowKey6, v: &CtEntry6| FlowKey6::new(v.dst, v.src, v.dport, v.sport, k.proto);
        let dead: Vec<FlowKey6> = entries
            .iter()
            .filter(|(k, v)| {
                let (last, flags) = entries
                    .get(&partner(k, v))
                    .map_or((v.last_seen_ns, v.flags), |p| {
                        (p.last_seen_ns.max(v.last_seen_ns), p.flags | v.flags)
                    });
                idle(now, last, k.proto, flags)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in &dead {
            let _ = self.ct.remove(k);
        }
        dead.len()
    }

    fn gc_frags(&mut self) -> usize {
        let now = monotonic_ns();
        let dead: Vec<FragKey6> = self
            .frags
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| now.saturating_sub(v.first_seen_ns) > FRAG_TIMEOUT_NS)
            .map(|(k, _)| k)
            .collect();
        for k in &dead {
            let _ = self.frags.remove(k);
        }
        dead.len()
    }
}

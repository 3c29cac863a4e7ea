//! The IPv6 side of the datapath (dual stack): the tail-called IPv6
//! programs, put into `DP_CALLS` once loaded, and handles on the IPv6 maps
//! (`dataplane_common::ip6`), kept in sync by the engine and reconciler.

use dataplane_common::{
    ip6_map_names, ip6_prog_names, nat6_prog_names, Endpoint6, Endpoint6Key, EndpointInfo,
    Network6Info, CALL_EGRESS6, CALL_FROM_CONTAINER6, CALL_FROM_OVERLAY6, CALL_FROM_UPLINK6,
};

use super::*;

pub struct Ip6Maps {
    pub endpoints6: HashMap<MapData, Endpoint6Key, EndpointInfo>,
    pub if_endpoints6: HashMap<MapData, u32, Endpoint6>,
    pub networks6: HashMap<MapData, u32, Network6Info>,
}

/// Load the IPv6 programs of `ebpf` and put them into their `DP_CALLS`
/// slots (a pinned program array keeps them while the agent is down; a
/// restarted agent replaces them in place, with no gap).
pub(super) fn load_calls(ebpf: &mut Ebpf) -> Result<()> {
    for (name, slot) in [
        (ip6_prog_names::FROM_CONTAINER6, CALL_FROM_CONTAINER6),
        (ip6_prog_names::FROM_OVERLAY6, CALL_FROM_OVERLAY6),
        (nat6_prog_names::FROM_UPLINK6, CALL_FROM_UPLINK6),
        (nat6_prog_names::EGRESS6, CALL_EGRESS6),
    ] {
        load_call(ebpf, name, slot)?;
    }
    Ok(())
}

fn load_call(ebpf: &mut Ebpf, name: &str, slot: u32) -> Result<()> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("loading program {name} (verifier)"))?;
    let fd = prog.fd()?.try_clone()?;
    let map = ebpf
        .map_mut(ip6_map_names::CALLS)
        .ok_or_else(|| anyhow!("map {} missing from the object", ip6_map_names::CALLS))?;
    let mut calls = aya::maps::ProgramArray::try_from(map)
        .with_context(|| format!("map {} has an unexpected type", ip6_map_names::CALLS))?;
    calls
        .set(slot, &fd, 0)
        .with_context(|| format!("putting {name} into {}", ip6_map_names::CALLS))?;
    Ok(())
}

impl Ip6Maps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Ip6Maps> {
        Ok(Ip6Maps {
            endpoints6: take(ebpf, ip6_map_names::ENDPOINTS6)?,
            if_endpoints6: take(ebpf, ip6_map_names::IF_ENDPOINTS6)?,
            networks6: take(ebpf, ip6_map_names::NETWORKS6)?,
        })
    }
}

/// What the IPv6 maps should hold (computed by the engine from its state).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ip6Want {
    pub endpoints6: std::collections::HashMap<Endpoint6Key, EndpointInfo>,
    pub if_endpoints6: std::collections::HashMap<u32, Endpoint6>,
    pub networks6: std::collections::HashMap<u32, Network6Info>,
}

impl Ip6Maps {
    /// Make the three maps hold exactly `want` (the diff only is written);
    /// returns how many entries changed.
    pub fn sync(&mut self, want: &Ip6Want) -> Result<usize> {
        Ok(
            super::overlay::sync_map(&mut self.endpoints6, &want.endpoints6)?
                + super::overlay::sync_map(&mut self.if_endpoints6, &want.if_endpoints6)?
                + super::overlay::sync_map(&mut self.networks6, &want.networks6)?,
        )
    }

    /// A dual-stack endpoint: its IPv6 address maps to its IPv4 record
    /// `info`, and its host veth (`info.ifindex`) to its IPv6 address.
    pub fn upsert_endpoint6(&mut self, ip: std::net::Ipv6Addr, info: EndpointInfo) -> Result<()> {
        let ip = ip.octets();
        self.endpoints6.insert(Endpoint6Key { ip }, info, 0)?;
        self.if_endpoints6
            .insert(info.ifindex, Endpoint6 { ip }, 0)?;
        Ok(())
    }

    /// Remove an endpoint's IPv6 entries (`ifindex`: its host veth's, when
    /// known; else the one its `DP_ENDPOINTS6` entry names).
    pub fn remove_endpoint6(&mut self, ip: std::net::Ipv6Addr, ifindex: Option<u32>) {
        let key = Endpoint6Key { ip: ip.octets() };
        let ifindex = ifindex.or_else(|| self.endpoints6.get(&key, 0).ok().map(|i| i.ifindex));
        let _ = self.endpoints6.remove(&key);
        if let Some(i) = ifindex {
            let _ = self.if_endpoints6.remove(&i);
        }
    }

    pub fn upsert_network6(&mut self, id: u32, info: Network6Info) -> Result<()> {
        self.networks6.insert(id, info, 0)?;
        Ok(())
    }

    pub fn remove_network6(&mut self, id: u32) {
        let _ = self.networks6.remove(&id);
    }

    /// The `DP_ENDPOINTS6` entries, by IPv6 address.
    pub fn endpoints6(&self) -> std::collections::HashMap<std::net::Ipv6Addr, EndpointInfo> {
        self.endpoints6
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (std::net::Ipv6Addr::from(k.ip), v))
            .collect()
    }
}

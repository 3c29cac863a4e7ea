//! The IPv6 side of the datapath (dual stack): the tail-called IPv6
//! programs, put into `DP_CALLS` once loaded, and handles on the IPv6 maps
//! (`dataplane_common::ip6`), kept in sync by the engine and reconciler.

use dataplane_common::{
    ip6_map_names, ip6_prog_names, nat6_prog_names, Endpoint6, Endpoint6Key, EndpointInfo,
    Network6Info, CALL_FROM_CONTAINER6, CALL_FROM_UPLINK6,
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
        (nat6_prog_names::FROM_UPLINK6, CALL_FROM_UPLINK6),
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

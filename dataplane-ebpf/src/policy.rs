//! Container-to-container policy shared by the IPv4 and IPv6 paths
//! (`from_container`, `from_container6`): `--link` on icc=false networks.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use dataplane_common::{DropReason, EndpointInfo, FlowKey, LinkKey};

use crate::maps::{DP_LINKS, DP_POLICY_CT};

/// On an icc=false network: the linking container may open connections to
/// the linked one on its exposed ports, and the replies of those flow back.
/// Everything else between them is denied. `DP_LINKS` and `DP_POLICY_CT`
/// are keyed by the IPv4 identities, so a link covers both families;
/// `ports`: (source, destination, protocol) of a TCP/UDP packet.
#[inline(always)]
pub fn icc_denied(
    ep: &EndpointInfo,
    peer: &EndpointInfo,
    ports: Option<(u16, u16, u8)>,
) -> Option<DropReason> {
    if let Some((sport, dport, proto)) = ports {
        let flow = FlowKey::new(ep.ip, peer.ip, sport, dport, proto);
        let allowed = LinkKey {
            src: ep.ip,
            dst: peer.ip,
            port: dport,
            proto,
            _pad: 0,
        };
        // SAFETY: a BPF helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        if unsafe { DP_LINKS.get(&allowed) }.is_some() {
            let reply = flow.reversed();
            // Refresh in place; an LRU insert per packet would allocate.
            match DP_POLICY_CT.get_ptr_mut(&reply) {
                // SAFETY: the pointer the map lookup returned, valid for this program run; the value is plain data.
                Some(ts) => unsafe { *ts = now },
                None => {
                    let _ = DP_POLICY_CT.insert(&reply, &now, 0);
                }
            }
            return None;
        }
        if let Some(ts) = DP_POLICY_CT.get_ptr_mut(&flow) {
            // SAFETY: the pointer the map lookup returned, valid for this program run; the value is plain data.
            unsafe { *ts = now };
            return None;
        }
    }
    let any = |a: [u8; 4], b: [u8; 4]| {
        let k = LinkKey {
            src: a,
            dst: b,
            port: 0,
            proto: 0,
            _pad: 0,
        };
        // SAFETY: map lookup; the value (plain data) is read at once and not kept.
        unsafe { DP_LINKS.get(&k) }.is_some()
    };
    if any(ep.ip, peer.ip) || any(peer.ip, ep.ip) {
        Some(DropReason::LinkPortNotAllowed)
    } else {
        Some(DropReason::IccDisabled)
    }
}

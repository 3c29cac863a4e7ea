//! `lan` networks on their parent interface (called from the parent's TC
//! ingress, `dp_from_uplink`): containers with addresses of the host's LAN,
//! reached without translation and without a Linux bridge.
//!
//! - ARP requests for such a container's address are answered with the
//!   parent's MAC (proxy ARP), so the LAN sends their traffic to the host;
//! - IPv4 to such a container is delivered into its namespace with
//!   `bpf_redirect_peer`, but only when it arrived on its network's parent:
//!   from any other interface it is direct access, dropped.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use dataplane_common::{DropReason, EndpointInfo, EndpointKey, EP_F_LAN};

use crate::{
    forward,
    maps::{self, DP_ENDPOINTS, DP_LAN_PARENTS},
    parse::{self, ETH_LEN},
};

const ARP_REQUEST: u16 = 1;

/// Answer an ARP request for a `lan` container's address that arrived on
/// its network's parent; anything else goes on to the stack.
#[inline(always)]
pub fn arp(ctx: &TcContext, ifindex: u32) -> Result<i32, DropReason> {
    parse::pull(ctx, ETH_LEN + 28);
    let Some(a) = parse::read::<[u8; 28]>(ctx, ETH_LEN) else {
        return Ok(TC_ACT_OK);
    };
    let op = u16::from_be_bytes([a[6], a[7]]);
    if a[0..6] != [0, 1, 8, 0, 6, 4] || op != ARP_REQUEST {
        return Ok(TC_ACT_OK);
    }
    let spa = [a[14], a[15], a[16], a[17]];
    let tpa = [a[24], a[25], a[26], a[27]];
    if tpa == spa {
        // Gratuitous ARP: nothing to answer.
        return Ok(TC_ACT_OK);
    }
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: tpa }) }).copied() else {
        return Ok(TC_ACT_OK);
    };
    if ep.flags & EP_F_LAN == 0 {
        return Ok(TC_ACT_OK);
    }
    // SAFETY: map lookup; the value (plain data) is copied out at once.
    let Some(parent) = (unsafe { DP_LAN_PARENTS.get(ep.net_id) }).copied() else {
        return Ok(TC_ACT_OK);
    };
    if parent.ifindex != ifindex {
        return Ok(TC_ACT_OK);
    }
    let sha = [a[8], a[9], a[10], a[11], a[12], a[13]];
    // Back out of the parent, towards the asker.
    forward::arp_reply(ctx, ifindex, &parent.mac, sha, spa, tpa)
}

/// IPv4 for a `lan` container: delivered if it came from its parent.
#[inline(always)]
pub fn deliver(ctx: &TcContext, ifindex: u32, ep: &EndpointInfo) -> Result<i32, DropReason> {
    // SAFETY: map lookup; only a field is read, at once.
    let from_parent = match unsafe { DP_LAN_PARENTS.get(ep.net_id) } {
        Some(p) => p.ifindex == ifindex,
        None => false,
    };
    if !from_parent {
        maps::count_endpoint_drop(ep.ifindex, DropReason::DirectAccessFromOutside);
        return Err(DropReason::DirectAccessFromOutside);
    }
    forward::deliver(ctx, ep)
}

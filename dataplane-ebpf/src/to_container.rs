//! TC egress on the host side of a container's veth: what the host's stack
//! sends towards a container.
//!
//! The datapath delivers into containers with `bpf_redirect_peer`, which
//! skips this hook; what remains is the host's own traffic (its sockets,
//! ICMP errors, ARP: no ingress device) and the ARP replies and IPv6
//! neighbour advertisements `dp_from_container(6)` bounces back out of the
//! same veth. Anything the stack
//! forwards here came in through some interface — a second NIC, a tunnel, a
//! VLAN-0 frame unwrapped by the kernel, a source route — without going
//! through a translation: direct access, dropped on every host interface at
//! once, including interfaces that appear later.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use dataplane_common::DropReason;

use crate::{
    events, maps,
    ndp::{ICMPV6_NEIGH_ADVERT, NDP_HOP_LIMIT},
    parse::{self, ETH_LEN, ETH_P_ARP, ETH_P_IPV6},
    parse6::IPPROTO_ICMPV6,
};

#[classifier]
pub fn dp_to_container(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading its fields is a plain context access.
    let (ifindex, ingress, protocol) = unsafe {
        let skb = ctx.skb.skb;
        ((*skb).ifindex, (*skb).ingress_ifindex, (*skb).protocol)
    };
    if ingress == 0 {
        // Made by the host itself.
        return TC_ACT_OK;
    }
    if ingress == ifindex {
        let proto = u16::from_be(protocol as u16);
        // dp_from_container's ARP reply, back out of the veth it came in by.
        if proto == ETH_P_ARP {
            return TC_ACT_OK;
        }
        // Its IPv6 twin: dp_from_container6's neighbour advertisement.
        if proto == ETH_P_IPV6 && is_neighbour_advert(&ctx) {
            return TC_ACT_OK;
        }
    }
    maps::count_drop(ifindex, DropReason::DirectAccessFromOutside);
    events::drop(
        events::settings(),
        &ctx,
        dataplane_common::MON_AT_TO_CONTAINER,
        ifindex,
        DropReason::DirectAccessFromOutside,
    );
    TC_ACT_SHOT
}

/// An ICMPv6 neighbour advertisement right after the IPv6 header, with the
/// hop limit neighbour discovery requires.
#[inline(always)]
fn is_neighbour_advert(ctx: &TcContext) -> bool {
    // From the next header (offset 6 of the IPv6 header) to the ICMPv6 type.
    match parse::read::<[u8; 35]>(ctx, ETH_LEN + 6) {
        Some(b) => b[0] == IPPROTO_ICMPV6 && b[1] == NDP_HOP_LIMIT && b[34] == ICMPV6_NEIGH_ADVERT,
        None => false,
    }
}

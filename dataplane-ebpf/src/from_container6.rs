//! IPv6 from a container: tail-called by `dp_from_container` (its entry
//! point) for every IPv6 frame, with a stack frame of its own.
//!
//! An endpoint without an IPv6 address (no `DP_IF_ENDPOINTS6` entry) sends
//! no IPv6: its frames are dropped (`unsupported_ethertype`), as all IPv6
//! was before dual stack.

use aya_ebpf::{bindings::TC_ACT_SHOT, macros::classifier, programs::TcContext};
use dataplane_common::DropReason;

use crate::{events, maps};

#[classifier]
pub fn dp_from_container6(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the __sk_buff context this program was called with;
    // reading one of its fields is a plain context access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mon = events::start(&ctx);
    match try_from_container6(&ctx, ifindex) {
        Ok(action) => {
            events::trace_tc(
                mon,
                &ctx,
                dataplane_common::MON_AT_FROM_CONTAINER,
                ifindex,
                action,
            );
            action
        }
        Err(reason) => {
            maps::count_drop(ifindex, reason);
            events::drop(
                mon,
                &ctx,
                dataplane_common::MON_AT_FROM_CONTAINER,
                ifindex,
                reason,
            );
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn try_from_container6(_ctx: &TcContext, ifindex: u32) -> Result<i32, DropReason> {
    // SAFETY: map lookup; the value is copied out at once.
    let Some(_ep6) = (unsafe { maps::DP_IF_ENDPOINTS6.get(ifindex) }).copied() else {
        return Err(DropReason::UnsupportedEthertype);
    };
    // The IPv6 datapath (neighbour discovery, forwarding, policy) lands here.
    Err(DropReason::UnsupportedEthertype)
}

//! TC ingress on the uplink:
//! - packets for published ports, already translated to a container address
//!   by the XDP program (which drops any other packet for a container
//!   address), are delivered straight into the container's namespace;
//! - replies to masqueraded flows are translated back and delivered the same
//!   way.
//! Anything else goes to the host's stack untouched.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use dataplane_common::{DropReason, EndpointKey, FlowKey};

use crate::{
    maps::{self, DP_ENDPOINTS},
    nat::{self, Side},
    parse::{
        self, Frag, ETH_LEN, ETH_P_IP, ICMP_ECHO_REPLY, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
    },
};

#[classifier]
pub fn dp_from_uplink(ctx: TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    parse::pull_headers(&ctx);
    let Some(eth) = parse::read::<[u8; 14]>(&ctx, 0) else {
        maps::count_drop(ifindex, DropReason::Malformed);
        return TC_ACT_SHOT;
    };
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IP {
        return TC_ACT_OK;
    }
    let Some(cfg) = maps::config() else {
        return TC_ACT_OK;
    };
    let Ok(mut ip) = parse::parse_ipv4(&ctx, ETH_LEN) else {
        // Not ours to judge: the host's stack drops what is broken.
        return TC_ACT_OK;
    };
    if let Some(ep) = unsafe { DP_ENDPOINTS.get(EndpointKey { ip: ip.dst }) } {
        // Published port, translated by dp_xdp_uplink.
        return nat::deliver(&ctx, ep);
    }
    if ip.dst != cfg.uplink_ip || ip.frag != Frag::No || !ip.has_l4 {
        return TC_ACT_OK;
    }
    let key = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => FlowKey {
            src: ip.src,
            dst: ip.dst,
            sport: ip.sport,
            dport: ip.dport,
            proto: ip.proto,
            _pad: [0; 3],
        },
        IPPROTO_ICMP if ip.icmp_type == ICMP_ECHO_REPLY => {
            // The identifier was translated on the way out; the parser put it
            // in `sport`, the reverse key has it as the destination "port".
            ip.dport = ip.sport;
            FlowKey {
                src: ip.src,
                dst: ip.dst,
                sport: 0,
                dport: ip.sport,
                proto: ip.proto,
                _pad: [0; 3],
            }
        }
        _ => return TC_ACT_OK,
    };
    let Some(back) = nat::rnat_entry(&key, &ip) else {
        return TC_ACT_OK;
    };
    let Some(ep) = (unsafe { DP_ENDPOINTS.get(EndpointKey { ip: back.addr }) }).copied() else {
        // The container is gone.
        maps::count_drop(ifindex, DropReason::NoRoute);
        return TC_ACT_SHOT;
    };
    if ip.ttl <= 1 {
        return TC_ACT_OK;
    }
    if nat::rewrite(&ctx, &ip, Side::Dst, back.addr, back.port).is_err()
        || nat::dec_ttl(&ctx, &ip).is_err()
    {
        maps::count_drop(ifindex, DropReason::Malformed);
        return TC_ACT_SHOT;
    }
    nat::deliver(&ctx, &ep)
}

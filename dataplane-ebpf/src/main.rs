//! dataplane's eBPF programs.
//!
//! One file per attach point:
//! - `from_container`: TC ingress on the host side of every container veth;
//!   IPv6 goes on in `from_container6` (a tail call through `DP_CALLS`):
//!   IPv6 parsing in `parse6`, neighbour discovery in `ndp`, destinations
//!   beyond the host in `egress6`.
//! - `to_container`: TC egress on the same veths (nothing forwarded by the
//!   host's stack reaches a container).
//! - `from_uplink`: TC ingress on the host's uplink; IPv6 goes on in
//!   `from_uplink6` (a tail call through `DP_CALLS`).
//! - `xdp_uplink`: XDP on the host's uplink (early drops, published ports).
//! - `from_overlay`: TC ingress on the VXLAN device (packets from other
//!   nodes); its inner IPv6 goes on in `from_overlay6` (a tail call);
//!   `overlay` holds the egress side used by `from_container` and
//!   `from_container6`.
//! - `sock`: cgroup connect4/sendmsg4/recvmsg4 (published ports from the
//!   host); `sock6` the same for IPv6.
//!
//! Maps are defined once, in `maps`; packet parsing with explicit bounds checks
//! lives in `parse`, checksum arithmetic in `csum`; address translation in
//! `nat`; fragments of translated flows in `frag`, ICMP errors a container
//! sends about them in `icmp_err`; delivery and forwarding
//! (redirects, route lookups) in `forward`.
//! Each program's body returns `Result<action, DropReason>` and its entry
//! point counts the drop.
#![no_std]
#![no_main]

mod csum;
mod egress6;
mod events;
mod forward;
mod frag;
mod frag6;
mod from_container;
mod from_container6;
mod from_overlay;
mod from_overlay6;
mod from_uplink;
mod from_uplink6;
mod icmp6_err;
mod icmp_err;
mod lan;
mod maps;
mod nat;
mod nat6;
mod ndp;
mod overlay;
mod parse;
mod parse6;
mod policy;
mod sock;
mod sock6;
mod to_container;
mod xdp_uplink;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// SAFETY: the licence symbol the kernel reads; no other item has this name
// or lives in this section.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

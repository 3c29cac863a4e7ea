//! IPv6 (dual stack): keys, values and names of the IPv6 maps.
//!
//! A dual-stack endpoint keeps its IPv4 record (`EndpointInfo`, in
//! `DP_ENDPOINTS`/`DP_IF_ENDPOINTS`) as its identity: `DP_ENDPOINTS6` maps its
//! IPv6 address to that same record, so that every policy keyed by the IPv4
//! identity (networks, `--icc=false`, `--link`) applies to IPv6 unchanged.
//! `DP_IF_ENDPOINTS6` gives the IPv6 address of the endpoint behind a
//! host-side veth (anti-spoofing), `DP_NETWORKS6` a network's IPv6 subnet and
//! gateway (by the same network id as `DP_NETWORKS`).
//!
//! The IPv6 programs are reached by tail calls from the IPv4 ones' entry
//! points (their frames stay separate: `dp_from_container` is close to the
//! 512-byte stack limit), through the program array `DP_CALLS`.

/// Names of the pinned IPv6 maps.
pub mod ip6_map_names {
    /// IPv6 address -> the endpoint's `EndpointInfo`.
    pub const ENDPOINTS6: &str = "DP_ENDPOINTS6";
    /// host-side ifindex -> `Endpoint6` (the endpoint's IPv6 address).
    pub const IF_ENDPOINTS6: &str = "DP_IF_ENDPOINTS6";
    /// network id -> `Network6Info`.
    pub const NETWORKS6: &str = "DP_NETWORKS6";
    /// Program array of the tail-called programs (`CALL_*` slots).
    pub const CALLS: &str = "DP_CALLS";
    pub const ALL: [&str; 4] = [ENDPOINTS6, IF_ENDPOINTS6, NETWORKS6, CALLS];
}

/// Names of the tail-called programs.
pub mod ip6_prog_names {
    /// IPv6 from a container (tail-called by `dp_from_container`).
    pub const FROM_CONTAINER6: &str = "dp_from_container6";
    /// Inner IPv6 from the overlay (tail-called by `dp_from_overlay`).
    pub const FROM_OVERLAY6: &str = "dp_from_overlay6";
}

/// `DP_CALLS` slot of `dp_from_container6`.
pub const CALL_FROM_CONTAINER6: u32 = 0;
/// `DP_CALLS` slot of `dp_from_overlay6` (1 and 2 are the north-south
/// programs').
pub const CALL_FROM_OVERLAY6: u32 = 3;
/// `DP_CALLS` size.
pub const MAX_CALLS: u32 = 16;

/// Key of `DP_ENDPOINTS6`: an endpoint's IPv6 address (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Endpoint6Key {
    pub ip: [u8; 16],
}

/// `DP_IF_ENDPOINTS6` value (key: the host-side ifindex): the endpoint's
/// IPv6 address on that veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Endpoint6 {
    pub ip: [u8; 16],
}

/// Network IPv6 flag: traffic to beyond the host is masqueraded to the
/// outgoing interface's IPv6 address (the default for ULA subnets, as Docker
/// 27+ does with ip6tables); without it the network is routed (its
/// addresses leave untranslated).
pub const NET6_F_MASQ: u32 = 1;

/// `DP_NETWORKS6` value (key: the network id of `DP_NETWORKS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Network6Info {
    pub subnet: [u8; 16],
    pub gateway: [u8; 16],
    pub prefix_len: u32,
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<Endpoint6Key>() == 16);
const _: () = assert!(core::mem::size_of::<Endpoint6>() == 16);
const _: () = assert!(core::mem::size_of::<Network6Info>() == 40);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data without padding or invalid bit patterns.
    unsafe impl aya::Pod for Endpoint6Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Endpoint6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Network6Info {}
}

//! Helpers of the IPv6 (dual stack) tests: networks, the IPv6 maps'
//! entries, host-side interfaces.

use std::net::Ipv6Addr;

use serde_json::{json, Value};

use crate::{ip_bytes, Host, Ns};

/// A dual-stack network `name`: IPv4 subnet `v4`, IPv6 subnet `v6`.
pub fn dual(h: &Host, name: &str, v4: &str, v6: &str) {
    h.ok(&[
        "network", "create", "--ipv6", "--subnet", v4, "--subnet", v6, name,
    ]);
}

/// An IPv6 address as bpftool shows a `[u8; 16]` field.
pub fn v6_bytes(ip: &str) -> Value {
    json!(ip.parse::<Ipv6Addr>().unwrap().octets())
}

/// The host-side interface of `c`'s endpoint on `net`.
pub fn host_if(h: &Host, c: &str, net: &str) -> String {
    h.endpoint(c, net)["host_interface"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `disable_ipv6` of a host-side interface.
pub fn host_ipv6_disabled(h: &Host, ifname: &str) -> bool {
    let p = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    h.run_ok(&Ns::Host, &["cat", &p]).trim() == "1"
}

/// The `DP_ENDPOINTS6` value of `ip6`, if any.
pub fn endpoints6_entry(h: &Host, ip6: &str) -> Option<Value> {
    let k = v6_bytes(ip6);
    h.map_entries("DP_ENDPOINTS6")
        .into_iter()
        .find(|(key, _)| key["ip"] == k)
        .map(|(_, v)| v)
}

/// The `DP_ENDPOINTS` value of `ip4`, if any.
pub fn endpoints_entry(h: &Host, ip4: &str) -> Option<Value> {
    let k = ip_bytes(ip4);
    h.map_entries("DP_ENDPOINTS")
        .into_iter()
        .find(|(key, _)| key["ip"] == k)
        .map(|(_, v)| v)
}

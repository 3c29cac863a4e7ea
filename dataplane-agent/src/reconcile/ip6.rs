//! Dual stack: the IPv6 maps (`DP_ENDPOINTS6`, `DP_IF_ENDPOINTS6`,
//! `DP_NETWORKS6`), the networks' IPv6 gateways on `dp0` and the host's /128
//! routes to the endpoints converge to what the engine's state says
//! (`engine::ipv6::want`). Runs after the IPv4 steps of a pass, so that a
//! re-made endpoint's new ifindex and `DP_ENDPOINTS` record are used.

use anyhow::Result;
use tracing::info;

use crate::{
    engine::{ipv6, Engine, Inner},
    kernel6,
};

impl Engine {
    /// One pass; returns the number of changes.
    pub(super) async fn converge_ip6(&self, g: &mut Inner) -> Result<usize> {
        let v4 = g.dp.endpoints();
        let want = ipv6::want(g, &v4);
        let mut n = g.dp.ip6.sync(&want)?;
        if n > 0 {
            info!(entries = n, "repairing: IPv6 map entries");
        }
        let (gateways, routes) = ipv6::want_host(g);
        if gateways.is_empty() {
            // No dual-stack network: nothing of ours to look for (and no
            // IPv6 dumps on hosts without IPv6). A removed network took its
            // gateway with it. No IPv6 ports either (no dump needed).
            return Ok(n + crate::engine::host_ifs6::sync_ports(g)?);
        }
        let have = kernel6::gateways6(&g.host).await?;
        for gw in gateways.difference(&have) {
            info!(gateway = %gw, "repairing: IPv6 gateway address");
            kernel6::add_gateway6(&g.host, *gw).await?;
            n += 1;
        }
        for gw in have.difference(&gateways) {
            info!(gateway = %gw, "collecting an IPv6 gateway no network owns");
            kernel6::del_gateway6(&g.host, *gw).await?;
            n += 1;
        }
        let have = kernel6::host_routes128(&g.host).await?;
        for (ip, ifindex, gw) in routes {
            if have.get(&ip) != Some(&ifindex) {
                info!(ip = %ip, "repairing: host route to an IPv6 endpoint");
                kernel6::add_host_route6(&g.host, ip, ifindex, Some(gw)).await?;
                n += 1;
            }
        }
        // The north-south side: host IPv6 addresses, published ports.
        n += crate::engine::host_ifs6::sync(g).await?;
        Ok(n)
    }
}

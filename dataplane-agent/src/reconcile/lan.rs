//! `lan` networks: `DP_LAN_PARENTS` follows the parents' ifindex and MAC,
//! and a parent that is not the uplink gets the uplink's TC ingress program
//! (proxy ARP, delivery to its `lan` containers, and the same direct-access
//! protection as the uplink) while a `lan` network uses it.

use std::collections::BTreeSet;

use anyhow::Result;
use dataplane_common::prog_names;
use tracing::info;

use crate::{
    engine::{Engine, Inner, LAN_DRIVER},
    kernel,
};

impl Engine {
    /// One pass; returns the number of changes.
    pub(super) async fn converge_lan(&self, g: &mut Inner) -> Result<usize> {
        let mut n = self.sync_lan_parents(g).await?;
        let uplink = g.uplink.as_ref().map(|u| u.name.clone());
        let parents: BTreeSet<String> = g
            .networks
            .values()
            .filter(|n| n.driver == LAN_DRIVER)
            .filter_map(|n| n.parent.clone())
            .filter(|p| Some(p) != uplink.as_ref())
            .collect();
        for p in &parents {
            let key = (prog_names::FROM_UPLINK.to_string(), p.clone());
            if g.fixed_links.contains(&key) || kernel::netdev_by_name(&g.host, p).await?.is_none() {
                continue;
            }
            self.attach_uplink(g, prog_names::FROM_UPLINK, p)?;
            info!(parent = %p, "lan parent: attached {}", prog_names::FROM_UPLINK);
            g.fixed_links.insert(key);
            n += 1;
        }
        // Parents no lan network uses any more: the plan collects their link.
        let stale: Vec<(String, String)> = g
            .fixed_links
            .iter()
            .filter(|(prog, ifname)| {
                prog == prog_names::FROM_UPLINK
                    && Some(ifname) != uplink.as_ref()
                    && !parents.contains(ifname)
            })
            .cloned()
            .collect();
        for k in stale {
            g.fixed_links.remove(&k);
            n += 1;
        }
        Ok(n)
    }
}

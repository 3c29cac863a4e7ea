//! `lan` networks: `DP_LAN_PARENTS` follows the parents' ifindex and MAC.
//! A parent always has an IPv4 address on the LAN (`network create`
//! checks it), so it is one of the host interfaces that carry the uplink's
//! programs ([`crate::engine`]'s `host_ifs`): proxy ARP, delivery to its
//! `lan` containers and the direct-access protection run there.

use anyhow::Result;

use crate::engine::{Engine, Inner};

impl Engine {
    /// One pass; returns the number of changes.
    pub(super) async fn converge_lan(&self, g: &mut Inner) -> Result<usize> {
        self.sync_lan_parents(g).await
    }
}

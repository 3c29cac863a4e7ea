//! Point-to-point links ([`crate::engine`]'s `p2p`): re-make a link whose
//! interfaces or addresses vanished (while both ends' namespaces exist) and
//! delete host-side ends (`dpp<id>`) that no link owns.

use anyhow::Result;
use tracing::info;

use crate::{
    engine::{p2p_host_ifname_id, Engine, Inner},
    kernel,
};

impl Engine {
    /// One pass over the links; returns the number of repairs.
    pub(super) async fn converge_p2p(&self, g: &mut Inner) -> Result<usize> {
        let mut steps = 0;
        let links: Vec<_> = g.p2p.values().cloned().collect();
        for l in &links {
            let ends_exist = [&l.a, &l.b]
                .iter()
                .all(|e| kernel::is_netns_mount(&self.p2p_end_netns(e)));
            if !ends_exist || self.p2p_intact(l).await? {
                continue;
            }
            info!(link = %l.name, "repairing: re-making p2p link");
            self.make_p2p(l).await?;
            steps += 1;
        }
        for (_, name) in kernel::netdev_names(&g.host).await? {
            let Some(id) = p2p_host_ifname_id(&name) else {
                continue;
            };
            if !links.iter().any(|l| l.id == id) {
                info!(interface = %name, "collecting a p2p end no link owns");
                kernel::delete_netdev(&g.host, &name).await?;
                steps += 1;
            }
        }
        Ok(steps)
    }
}

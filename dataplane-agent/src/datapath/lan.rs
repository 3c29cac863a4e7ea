//! `DP_LAN_PARENTS`: the parent interface of each `lan` network, opened from
//! its pin and synced to a wanted state (the diff only is written).

use std::collections::HashMap as StdHashMap;

use dataplane_common::{lan_map_names, LanParent};

use super::{
    overlay::{open_pinned, sync_map},
    *,
};

impl Datapath {
    /// Make `DP_LAN_PARENTS` hold exactly `want` (network id -> parent).
    pub fn sync_lan_parents(&self, want: &StdHashMap<u32, LanParent>) -> Result<usize> {
        let mut map: HashMap<MapData, u32, LanParent> =
            open_pinned(&self.root, lan_map_names::PARENTS)?;
        sync_map(&mut map, want)
    }
}

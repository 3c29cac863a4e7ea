//! `DP_LAN_PARENTS`: the parent interface of each `lan` network, opened from
//! its pin and synced to a wanted state (the diff only is written).

use std::collections::HashMap as StdHashMap;

use dataplane_common::{lan_map_names, LanParent};

use super::*;

impl Datapath {
    /// Make `DP_LAN_PARENTS` hold exactly `want` (network id -> parent).
    pub fn sync_lan_parents(&self, want: &StdHashMap<u32, LanParent>) -> Result<usize> {
        let md = MapData::from_pin(self.root.join("maps").join(lan_map_names::PARENTS))
            .context("opening pinned map DP_LAN_PARENTS")?;
        let mut map: HashMap<MapData, u32, LanParent> =
            HashMap::try_from(aya::maps::Map::from_map_data(md)?)?;
        let have: StdHashMap<u32, LanParent> = map.iter().filter_map(Result::ok).collect();
        let mut n = 0;
        for k in have.keys() {
            if !want.contains_key(k) {
                let _ = map.remove(k);
                n += 1;
            }
        }
        for (k, v) in want {
            if have.get(k) != Some(v) {
                map.insert(k, v, 0)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

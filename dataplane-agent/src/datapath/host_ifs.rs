//! `DP_HOST_IFS`: the host interfaces served besides the uplink (ifindex ->
//! the IPv4 address traffic leaving through it is masqueraded to), with a
//! handle of its own opened from the pin and synced to a wanted list.

use std::collections::HashMap as StdHashMap;

use dataplane_common::{host_if_map_names, HostIf};

use super::*;

pub struct HostIfMap {
    map: HashMap<MapData, u32, HostIf>,
}

impl HostIfMap {
    pub fn open(root: &Path) -> Result<HostIfMap> {
        let md = MapData::from_pin(root.join("maps").join(host_if_map_names::HOST_IFS))
            .with_context(|| format!("opening pinned map {}", host_if_map_names::HOST_IFS))?;
        let map = aya::maps::Map::from_map_data(md)?;
        Ok(HostIfMap {
            map: HashMap::try_from(map).context("DP_HOST_IFS has an unexpected type")?,
        })
    }

    /// Make the map hold exactly `want` (ifindex, address); returns how many
    /// entries changed.
    pub fn sync(&mut self, want: &[(u32, [u8; 4])]) -> Result<usize> {
        let want: StdHashMap<u32, HostIf> = want
            .iter()
            .map(|(i, ip)| (*i, HostIf { ip: *ip }))
            .collect();
        let have: StdHashMap<u32, HostIf> = self.map.iter().filter_map(Result::ok).collect();
        let mut n = 0;
        for k in have.keys().filter(|k| !want.contains_key(*k)) {
            self.map.remove(k)?;
            n += 1;
        }
        for (k, v) in &want {
            if have.get(k) != Some(v) {
                self.map.insert(*k, *v, 0)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

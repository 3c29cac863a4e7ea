//! The IPv6 north-south maps the agent writes: `DP_PORTS6` (published
//! ports on the host's IPv6 addresses), `DP_HOST_IPS6` (the host's own IPv6
//! addresses) and `DP_HOST_IFS6` (host interface -> the IPv6 address
//! traffic routed out of it is masqueraded to). Handles of their own,
//! opened from the pins and synced to what the engine wants (the diff only
//! is written).

use std::collections::HashMap as StdHashMap;

use dataplane_common::{nat6_map_names, Endpoint6Key, HostIf6, PortKey6, PortTarget6};

use super::*;

pub struct Nat6Maps {
    ports6: HashMap<MapData, PortKey6, PortTarget6>,
    host_ips6: HashMap<MapData, Endpoint6Key, u32>,
    host_ifs6: HashMap<MapData, u32, HostIf6>,
}

/// What the IPv6 north-south maps should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Nat6Want {
    pub ports6: StdHashMap<PortKey6, PortTarget6>,
    pub host_ips6: StdHashMap<Endpoint6Key, u32>,
    pub host_ifs6: StdHashMap<u32, HostIf6>,
}

pub(super) fn open_pinned<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    root: &Path,
    name: &str,
) -> Result<T> {
    let md = MapData::from_pin(root.join("maps").join(name))
        .with_context(|| format!("opening pinned map {name}"))?;
    let map = aya::maps::Map::from_map_data(md)?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Nat6Maps {
    pub fn open(root: &Path) -> Result<Nat6Maps> {
        Ok(Nat6Maps {
            ports6: open_pinned(root, nat6_map_names::PORTS6)?,
            host_ips6: open_pinned(root, nat6_map_names::HOST_IPS6)?,
            host_ifs6: open_pinned(root, nat6_map_names::HOST_IFS6)?,
        })
    }

    /// Make `DP_PORTS6` hold exactly `want`; returns how many entries changed.
    pub fn sync_ports(&mut self, want: &StdHashMap<PortKey6, PortTarget6>) -> Result<usize> {
        super::overlay::sync_map(&mut self.ports6, want)
    }

    /// Make the maps hold exactly `want`; returns how many entries changed.
    pub fn sync(&mut self, want: &Nat6Want) -> Result<usize> {
        Ok(super::overlay::sync_map(&mut self.ports6, &want.ports6)?
            + super::overlay::sync_map(&mut self.host_ips6, &want.host_ips6)?
            + super::overlay::sync_map(&mut self.host_ifs6, &want.host_ifs6)?)
    }
}

impl Datapath {
    /// Handles on the IPv6 north-south maps (opened from the pins).
    pub fn nat6_maps(&self) -> Result<Nat6Maps> {
        Nat6Maps::open(&self.root)
    }
}

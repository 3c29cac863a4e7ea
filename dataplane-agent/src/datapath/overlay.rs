//! The overlay's maps (`DP_OV_*`) and the remote endpoints' `DP_ENDPOINTS`
//! entries (flagged `EP_F_REMOTE`), with handles of their own opened from
//! the pins, synced to a wanted state computed from the cluster view: the
//! diff only is written, so a pass with nothing new costs map walks.

use std::collections::HashMap as StdHashMap;

use dataplane_common::{
    overlay_map_names, OverlayConfig, OverlayNode, RemoteEndpoint, RemoteKey, EP_F_REMOTE,
};

use super::*;

/// What the overlay maps should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OverlayWant {
    /// Remote endpoints: `DP_ENDPOINTS` value (flags `EP_F_REMOTE`), node
    /// key and VNI.
    pub remote: StdHashMap<RemoteKey, (EndpointInfo, RemoteEndpoint)>,
    pub nodes: StdHashMap<u32, OverlayNode>,
    /// Underlay address -> node key.
    pub peers: StdHashMap<[u8; 4], u32>,
    /// VNI -> local network id.
    pub vnis: StdHashMap<u32, u32>,
    pub config: OverlayConfig,
}

pub struct OverlayMaps {
    endpoints: HashMap<MapData, EndpointKey, EndpointInfo>,
    remote: HashMap<MapData, RemoteKey, RemoteEndpoint>,
    nodes: HashMap<MapData, u32, OverlayNode>,
    peers: HashMap<MapData, EndpointKey, u32>,
    vnis: HashMap<MapData, u32, u32>,
    config: Array<MapData, OverlayConfig>,
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

/// Makes `map` hold exactly `want`; returns how many entries changed.
pub(super) fn sync_map<K, V>(
    map: &mut HashMap<MapData, K, V>,
    want: &StdHashMap<K, V>,
) -> Result<usize>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod + PartialEq,
{
    let have: StdHashMap<K, V> = map.iter().filter_map(Result::ok).collect();
    let mut n = 0;
    for k in have.keys() {
        if !want.contains_key(k) {
            let _ = map.remove(k);
            n += 1;
        }
    }
    for (k, v) in want {
        if have.get(k) != Some(v) {
            map.insert(*k, *v, 0)?;
            n += 1;
        }
    }
    Ok(n)
}

impl OverlayMaps {
    /// Opens the pinned maps (after [`Datapath::load`] created them).
    pub fn open(root: &Path) -> Result<OverlayMaps> {
        Ok(OverlayMaps {
            endpoints: open_pinned(root, map_names::ENDPOINTS)?,
            remote: open_pinned(root, overlay_map_names::REMOTE)?,
            nodes: open_pinned(root, overlay_map_names::NODES)?,
            peers: open_pinned(root, overlay_map_names::PEERS)?,
            vnis: open_pinned(root, overlay_map_names::VNIS)?,
            config: open_pinned(root, overlay_map_names::CONFIG)?,
        })
    }

    /// Writes what differs from `want`; returns how many entries changed.
    /// Nodes and VNIs first, remote endpoints last (and removals of remote
    /// endpoints before their nodes), so that no lookup chain is half-made.
    pub fn sync(&mut self, want: &OverlayWant) -> Result<usize> {
        let mut n = 0;
        if self.config.get(&0, 0).ok() != Some(want.config) {
            self.config.set(0, want.config, 0)?;
            n += 1;
        }
        let nodes = want.nodes.clone();
        let peers: StdHashMap<EndpointKey, u32> = want
            .peers
            .iter()
            .map(|(ip, id)| (EndpointKey { ip: *ip }, *id))
            .collect();
        // Additions of nodes and VNIs before the endpoints that use them.
        for (k, v) in &nodes {
            if self.nodes.get(k, 0).ok() != Some(*v) {
                self.nodes.insert(*k, *v, 0)?;
                n += 1;
            }
        }
        for (k, v) in &want.vnis {
            if self.vnis.get(k, 0).ok() != Some(*v) {
                self.vnis.insert(*k, *v, 0)?;
                n += 1;
            }
        }
        let remote: StdHashMap<RemoteKey, RemoteEndpoint> =
            want.remote.iter().map(|(k, (_, r))| (*k, *r)).collect();
        n += sync_map(&mut self.remote, &remote)?;
        // DP_ENDPOINTS: only the entries flagged remote are ours.
        let have: StdHashMap<EndpointKey, EndpointInfo> = self
            .endpoints
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.flags & EP_F_REMOTE != 0)
            .collect();
        let wanted: StdHashMap<EndpointKey, EndpointInfo> = want
            .remote
            .values()
            .map(|(info, _)| (EndpointKey { ip: info.ip }, *info))
            .collect();
        for k in have.keys() {
            if !wanted.contains_key(k) {
                let _ = self.endpoints.remove(k);
                n += 1;
            }
        }
        for (k, v) in &wanted {
            if have.get(k) == Some(v) {
                continue;
            }
            // Never over a local endpoint (a host-local network that
            // overlaps an overlay subnet).
            if matches!(self.endpoints.get(k, 0), Ok(cur) if cur.flags & EP_F_REMOTE == 0) {
                continue;
            }
            self.endpoints.insert(*k, *v, 0)?;
            n += 1;
        }
        n += sync_map(&mut self.nodes, &nodes)?;
        n += sync_map(&mut self.peers, &peers)?;
        n += sync_map(&mut self.vnis, &want.vnis)?;
        Ok(n)
    }
}

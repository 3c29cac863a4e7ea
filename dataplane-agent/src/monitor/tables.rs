//! Read-only handles on the pinned maps the monitor, `flows` and the
//! metrics read, opened from the pins (never through the engine's lock).

use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use dataplane_common::{
    map_names, monitor_map_names, overlay_map_names, Config, CtEntry, EndpointInfo, FlowKey,
    MonitorConfig, NatEntry, OverlayConfig, PortKey, PortTarget,
};

pub(crate) fn open_pinned<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    root: &Path,
    name: &str,
) -> Result<T> {
    let md = MapData::from_pin(root.join("maps").join(name))
        .with_context(|| format!("opening pinned map {name}"))?;
    let map = aya::maps::Map::from_map_data(md)?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// The maps the monitor reads (and `DP_MON_CONFIG`, which it writes).
pub struct Tables {
    pub(crate) if_endpoints: HashMap<MapData, u32, EndpointInfo>,
    pub(crate) config: Array<MapData, Config>,
    pub(crate) ov_config: Array<MapData, OverlayConfig>,
    pub(crate) ports: HashMap<MapData, PortKey, PortTarget>,
    pub(crate) nat_out: HashMap<MapData, FlowKey, NatEntry>,
    pub(crate) nat_in: HashMap<MapData, FlowKey, NatEntry>,
    pub(crate) ct: HashMap<MapData, FlowKey, CtEntry>,
    pub(crate) policy_ct: HashMap<MapData, FlowKey, u64>,
    pub(crate) mon_config: Array<MapData, MonitorConfig>,
    pub(crate) mon_stats: PerCpuArray<MapData, u64>,
}

/// Per-CPU sums of `DP_MON_STATS`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct MonitorCounters {
    pub emitted: u64,
    pub rate_limited: u64,
    pub ring_full: u64,
}

impl Tables {
    pub fn open(bpffs: &Path) -> Result<Tables> {
        Ok(Tables {
            if_endpoints: open_pinned(bpffs, map_names::IF_ENDPOINTS)?,
            config: open_pinned(bpffs, map_names::CONFIG)?,
            ov_config: open_pinned(bpffs, overlay_map_names::CONFIG)?,
            ports: open_pinned(bpffs, map_names::PORTS)?,
            nat_out: open_pinned(bpffs, map_names::NAT_OUT)?,
            nat_in: open_pinned(bpffs, map_names::NAT_IN)?,
            ct: open_pinned(bpffs, map_names::CT)?,
            policy_ct: open_pinned(bpffs, map_names::POLICY_CT)?,
            mon_config: open_pinned(bpffs, monitor_map_names::CONFIG)?,
            mon_stats: open_pinned(bpffs, monitor_map_names::STATS)?,
        })
    }

    pub fn if_endpoints(&self) -> Vec<(u32, EndpointInfo)> {
        self.if_endpoints.iter().filter_map(Result::ok).collect()
    }

    pub fn config(&self) -> Config {
        self.config.get(&0, 0).unwrap_or_default()
    }

    pub fn vxlan_ifindex(&self) -> u32 {
        self.ov_config.get(&0, 0).map_or(0, |c| c.vxlan_ifindex)
    }

    pub fn ports(&self) -> Vec<(PortKey, PortTarget)> {
        self.ports.iter().filter_map(Result::ok).collect()
    }

    pub fn nat_out(&self) -> Vec<(FlowKey, NatEntry)> {
        self.nat_out.iter().filter_map(Result::ok).collect()
    }

    pub fn nat_in(&self) -> Vec<(FlowKey, NatEntry)> {
        self.nat_in.iter().filter_map(Result::ok).collect()
    }

    pub fn ct(&self) -> Vec<(FlowKey, CtEntry)> {
        self.ct.iter().filter_map(Result::ok).collect()
    }

    pub fn policy_ct(&self) -> Vec<(FlowKey, u64)> {
        self.policy_ct.iter().filter_map(Result::ok).collect()
    }

    pub fn monitor_counters(&self) -> MonitorCounters {
        let sum = |slot: u32| -> u64 { self.mon_stats.get(&slot, 0).map_or(0, |v| v.iter().sum()) };
        MonitorCounters {
            emitted: sum(dataplane_common::MON_STAT_EMITTED),
            rate_limited: sum(dataplane_common::MON_STAT_RATE_LIMITED),
            ring_full: sum(dataplane_common::MON_STAT_RING_FULL),
        }
    }

    pub fn set_monitor(&mut self, cfg: MonitorConfig) -> Result<()> {
        self.mon_config
            .set(0, cfg, 0)
            .context("writing DP_MON_CONFIG")
    }

    pub fn monitor_mask(&self) -> u32 {
        self.mon_config.get(&0, 0).map_or(0, |c| c.mask)
    }
}

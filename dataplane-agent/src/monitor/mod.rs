//! The monitor: live drop and trace events of the datapath in Docker's
//! terms, the flow tables in words (`flows`), and Prometheus metrics.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Monitor`]: subscriptions (which flip `DP_MON_CONFIG`), the ring buffer reader |
//! | `decode.rs` | the events' packet bytes into tuples, codes into words |
//! | `names.rs` | container/network names of addresses, interfaces, published ports |
//! | `view.rs` | an event as the API streams it ([`EventView`]) |
//! | `flows.rs` | `DP_NAT_OUT`, `DP_CT`, `DP_POLICY_CT` as flows with names, age, state |
//! | `tables.rs` | read-only handles on the pinned maps |
//! | `api.rs` | `/v1/monitor` (a stream of JSON lines), `/v1/flows`, `/v1/monitor/stats` |
//! | `metrics.rs` | `/metrics` on `--metrics-addr` (prometheus-client) and the agent's own counters |
//!
//! The programs emit nothing while no monitor is attached: the agent sets
//! the mask of `DP_MON_CONFIG` to the union of what the attached monitors
//! want, and back to 0 when the last one leaves (also at start, in case an
//! agent died with one attached).

mod api;
pub mod decode;
pub mod flows;
pub mod metrics;
pub mod names;
pub mod tables;
pub mod view;

pub use api::router;
pub use view::EventView;

use std::{path::Path, sync::Arc};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use dataplane_common::{
    monitor_map_names, MonitorConfig, MON_DEFAULT_BURST, MON_DEFAULT_RATE, MON_F_DROPS,
    MON_F_TRACES,
};
use tokio::sync::broadcast;
use tracing::{info, warn};

use self::{decode::Decoded, tables::Tables};

/// Events buffered per subscriber before a slow one starts losing them.
const CHANNEL: usize = 4096;

pub struct Monitor {
    tables: std::sync::Mutex<Tables>,
    /// Attached monitors wanting drops, traces.
    subscribers: std::sync::Mutex<[usize; 2]>,
    tx: broadcast::Sender<Arc<Decoded>>,
    bpffs: std::path::PathBuf,
}

/// An attached monitor: events arrive on `rx`; dropping it detaches.
pub struct Subscription {
    monitor: Arc<Monitor>,
    mask: u32,
    pub rx: broadcast::Receiver<Arc<Decoded>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.monitor.release(self.mask);
    }
}

impl Monitor {
    /// Open the maps (pinned by the datapath) and clear a stale mask.
    pub fn open(bpffs: &Path) -> Result<Arc<Monitor>> {
        let mut tables = Tables::open(bpffs)?;
        tables.set_monitor(MonitorConfig::default())?;
        let (tx, _) = broadcast::channel(CHANNEL);
        Ok(Arc::new(Monitor {
            tables: std::sync::Mutex::new(tables),
            subscribers: std::sync::Mutex::new([0; 2]),
            tx,
            bpffs: bpffs.to_path_buf(),
        }))
    }

    /// Run `f` on the tables (a short, non-async section).
    pub fn with_tables<T>(&self, f: impl FnOnce(&Tables) -> T) -> T {
        let g = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&g)
    }

    /// Read the ring buffer for as long as the runtime lives, handing the
    /// decoded events to the subscribers.
    pub fn spawn_reader(self: &Arc<Self>) -> Result<()> {
        let ring: RingBuf<MapData> = tables::open_pinned(&self.bpffs, monitor_map_names::EVENTS)?;
        // SAFETY: the ring buffer owns its map's fd, which stays open (and
        // the same) for as long as the ring buffer lives, i.e. as long as
        // the AsyncFd that owns it.
        let mut fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
        }
        .map_err(|e| anyhow::anyhow!("polling the monitor's ring buffer: {e}"))?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                let Ok(mut guard) = fd.readable_mut().await else {
                    warn!("monitor ring buffer: polling failed, no more events");
                    return;
                };
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if let Some(ev) = decode::decode(&item) {
                        // No receiver: nobody is attached (the mask is
                        // being cleared); the event is dropped.
                        let _ = tx.send(Arc::new(ev));
                    }
                }
                guard.clear_ready();
            }
        });
        Ok(())
    }

    /// Attach a monitor wanting `mask` (`MON_F_*`).
    pub fn subscribe(self: &Arc<Self>, mask: u32) -> Result<Subscription> {
        let rx = self.tx.subscribe();
        {
            let mut s = self
                .subscribers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if mask & MON_F_DROPS != 0 {
                s[0] += 1;
            }
            if mask & MON_F_TRACES != 0 {
                s[1] += 1;
            }
            self.apply(&s)?;
        }
        info!(mask, "monitor attached");
        Ok(Subscription {
            monitor: Arc::clone(self),
            mask,
            rx,
        })
    }

    fn release(&self, mask: u32) {
        let mut s = self
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if mask & MON_F_DROPS != 0 {
            s[0] = s[0].saturating_sub(1);
        }
        if mask & MON_F_TRACES != 0 {
            s[1] = s[1].saturating_sub(1);
        }
        if let Err(e) = self.apply(&s) {
            warn!("detaching a monitor: {e:#}");
        }
        info!(mask, "monitor detached");
    }

    /// Write the union of the attached monitors' wishes.
    fn apply(&self, s: &[usize; 2]) -> Result<()> {
        let mut mask = 0;
        if s[0] > 0 {
            mask |= MON_F_DROPS;
        }
        if s[1] > 0 {
            mask |= MON_F_TRACES;
        }
        let mut t = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.set_monitor(MonitorConfig {
            mask,
            rate: MON_DEFAULT_RATE,
            burst: MON_DEFAULT_BURST,
            _pad: 0,
        })
    }

    /// The programs' event counters and the current mask.
    pub fn stats(&self) -> MonitorStats {
        self.with_tables(|t| {
            let c = t.monitor_counters();
            MonitorStats {
                attached: t.monitor_mask() != 0,
                emitted: c.emitted,
                rate_limited: c.rate_limited,
                ring_full: c.ring_full,
            }
        })
    }
}

/// `GET /v1/monitor/stats`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct MonitorStats {
    /// A monitor is attached (the programs emit events).
    pub attached: bool,
    /// Events the programs wrote to the ring buffer, ever.
    pub emitted: u64,
    /// Events suppressed by the per-CPU rate limit.
    pub rate_limited: u64,
    /// Events lost to a full ring buffer.
    pub ring_full: u64,
}

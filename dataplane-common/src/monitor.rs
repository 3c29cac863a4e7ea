//! The monitor's maps and records (live drop and trace events,
//! `dataplane monitor`): the ring buffer's event layout, its rate limit and
//! the per-CPU counters of what was emitted or lost.

/// Maps of the monitor, pinned like the others.
pub mod monitor_map_names {
    /// Ring buffer of `MonitorEvent`s.
    pub const EVENTS: &str = "DP_MON_EVENTS";
    /// `MonitorConfig` (slot 0): which events the programs emit, and how many.
    pub const CONFIG: &str = "DP_MON_CONFIG";
    /// Per-CPU token buckets (`MonitorBucket`, slot 0).
    pub const BUCKET: &str = "DP_MON_BUCKET";
    /// Per-CPU counters, indexed by `MON_STAT_*`.
    pub const STATS: &str = "DP_MON_STATS";
    /// Per-CPU copy of the packet's first bytes at a program's entry.
    pub const ORIG: &str = "DP_MON_ORIG";
    pub const ALL: [&str; 5] = [EVENTS, CONFIG, BUCKET, STATS, ORIG];
}

/// `DP_MON_EVENTS` size in bytes (a power of two, a multiple of the page).
pub const MON_RING_BYTES: u32 = 1 << 20;

/// Bytes of a packet an event carries: Ethernet, the largest IPv4 header
/// and the L4 ports. The agent parses them (the programs only copy).
pub const MON_CAPTURE: usize = 80;

/// `MonitorConfig::mask`: emit drop events.
pub const MON_F_DROPS: u32 = 1;
/// `MonitorConfig::mask`: emit trace events (forwarded or translated packets).
pub const MON_F_TRACES: u32 = 2;

/// Default events per second and CPU, and the burst a CPU may emit at once.
pub const MON_DEFAULT_RATE: u32 = 10_000;
pub const MON_DEFAULT_BURST: u32 = 1_000;

/// `DP_MON_CONFIG` slot 0, written by the agent while a monitor is attached
/// (`mask` 0: nothing is emitted and the programs do nothing beyond reading it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MonitorConfig {
    /// `MON_F_*`.
    pub mask: u32,
    /// Events per second and CPU (token bucket refill).
    pub rate: u32,
    /// Largest burst of events per CPU.
    pub burst: u32,
    pub _pad: u32,
}

/// `DP_MON_BUCKET`: a CPU's token bucket, kept as time credit: each event
/// costs `1e9 / rate` ns of credit, credit grows with time up to
/// `burst` events' worth.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MonitorBucket {
    pub credit_ns: u64,
    pub last_ns: u64,
}

/// `DP_MON_ORIG`: a CPU's copy of the packet's first bytes as a program got
/// it (while traces are wanted), for the trace event made when it is done.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorCapture {
    pub caplen: u32,
    pub _pad: u32,
    /// Bytes 26..42 (IPv4 addresses and ports of an untagged packet with a
    /// 20-byte header): the programs trace a packet these changed in.
    pub key: [u64; 2],
    pub bytes: [u8; MON_CAPTURE],
}

/// `DP_MON_STATS` slots: events written to the ring buffer.
pub const MON_STAT_EMITTED: u32 = 0;
/// Events suppressed by the rate limit.
pub const MON_STAT_RATE_LIMITED: u32 = 1;
/// Events lost because the ring buffer was full.
pub const MON_STAT_RING_FULL: u32 = 2;
pub const MON_STATS: u32 = 4;

/// `MonitorEvent::kind`.
pub const MON_EV_DROP: u8 = 1;
pub const MON_EV_TRACE: u8 = 2;

/// `MonitorEvent::point`: the program that saw the packet.
pub const MON_AT_FROM_CONTAINER: u8 = 1;
pub const MON_AT_TO_CONTAINER: u8 = 2;
pub const MON_AT_FROM_UPLINK: u8 = 3;
pub const MON_AT_XDP_UPLINK: u8 = 4;
pub const MON_AT_FROM_OVERLAY: u8 = 5;

/// `MonitorEvent::flags`: the packet was redirected to another interface.
pub const MON_EVF_REDIRECTED: u8 = 1;

/// One event of `DP_MON_EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// `MON_EV_*`.
    pub kind: u8,
    /// `MON_AT_*`.
    pub point: u8,
    /// `MON_EVF_*`.
    pub flags: u8,
    pub _pad: u8,
    /// Drops: the `DropReason`; traces: the program's return code.
    pub code: u32,
    /// The interface the program runs on (a container's host-side veth, the
    /// uplink, the VXLAN device).
    pub ifindex: u32,
    /// Packet length.
    pub len: u32,
    /// Bytes of `packet` and `orig` that were captured.
    pub caplen: u32,
    pub orig_caplen: u32,
    /// The packet's first bytes when the event was made (after translation).
    pub packet: [u8; MON_CAPTURE],
    /// Traces: its first bytes before the program ran.
    pub orig: [u8; MON_CAPTURE],
}

const _: () = assert!(core::mem::size_of::<MonitorConfig>() == 16);
const _: () = assert!(core::mem::size_of::<MonitorBucket>() == 16);
const _: () = assert!(core::mem::size_of::<MonitorCapture>() == 24 + MON_CAPTURE);
const _: () = assert!(core::mem::size_of::<MonitorEvent>() == 32 + 2 * MON_CAPTURE);

#[cfg(feature = "user")]
mod monitor_pod {
    use super::*;
    // SAFETY: #[repr(C)] plain data without padding or invalid bit patterns.
    unsafe impl aya::Pod for MonitorConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MonitorBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MonitorCapture {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MonitorEvent {}
}

//! Monitor events: drops (with their reason) and traces of forwarded or
//! translated packets, written to the `DP_MON_EVENTS` ring buffer for
//! `dataplane monitor`. An event carries the packet's first bytes
//! (`MON_CAPTURE`); the agent parses them, the programs only copy.
//!
//! Nothing is emitted unless the agent set a mask in `DP_MON_CONFIG` (it
//! does while a monitor is attached). With the mask 0 the per-packet cost is
//! the one array lookup of [`start`] at a program's entry (the verifier
//! inlines it) and a load of the mask when the program is done. The
//! reference [`start`] returns is all the program carries, so that the
//! verifier sees the same state whether or not a monitor is attached.
//! Each CPU emits at most `rate` events per second (bursts of `burst`)
//! through a token bucket in `DP_MON_BUCKET`, so that a flood cannot fill
//! the ring or starve the machine; `DP_MON_STATS` counts emitted,
//! rate-limited and lost events.

use aya_ebpf::{
    bindings::{xdp_action::XDP_REDIRECT, TC_ACT_REDIRECT, TC_ACT_SHOT},
    cty::c_void,
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use dataplane_common::{
    DropReason, MonitorConfig, MON_CAPTURE, MON_DEFAULT_BURST, MON_DEFAULT_RATE,
    MON_EVF_REDIRECTED, MON_EV_DROP, MON_EV_TRACE, MON_F_DROPS, MON_F_TRACES, MON_STAT_EMITTED,
    MON_STAT_RATE_LIMITED, MON_STAT_RING_FULL,
};

use crate::maps::{DP_MON_BUCKET, DP_MON_CONFIG, DP_MON_EVENTS, DP_MON_ORIG, DP_MON_STATS};

/// Where addresses and ports sit in an untagged IPv4 packet with a 20-byte
/// header: a trace is made only when these bytes changed (or the packet was
/// redirected). The agent compares the full headers.
const KEY_OFF: u32 = 14 + 12;

/// A program context the monitor copies packet bytes from.
pub trait Source {
    fn packet_len(&self) -> u32;
    /// Copy `n` bytes (a constant, 1..=MON_CAPTURE) at `off` to `dst`.
    fn load(&self, off: u32, dst: *mut u8, n: u32) -> bool;
}

impl Source for TcContext {
    #[inline(always)]
    fn packet_len(&self) -> u32 {
        self.len()
    }

    #[inline(always)]
    fn load(&self, off: u32, dst: *mut u8, n: u32) -> bool {
        // SAFETY: `dst` points to at least `n` writable bytes (callers pass
        // map or ring buffer memory of MON_CAPTURE bytes and n <= that).
        unsafe { bpf_skb_load_bytes(self.skb.skb as *const c_void, off, dst.cast(), n) == 0 }
    }
}

impl Source for XdpContext {
    #[inline(always)]
    fn packet_len(&self) -> u32 {
        (self.data_end() - self.data()) as u32
    }

    #[inline(always)]
    fn load(&self, off: u32, dst: *mut u8, n: u32) -> bool {
        // SAFETY: as above.
        unsafe { bpf_xdp_load_bytes(self.ctx, off, dst.cast(), n) == 0 }
    }
}

/// The monitor's settings (for a program that only drops).
#[inline(always)]
pub fn settings() -> Option<&'static MonitorConfig> {
    DP_MON_CONFIG.get(0)
}

/// At a program's entry: the monitor's settings. With traces wanted, the
/// packet's first bytes are kept for the trace made when it is done.
#[inline(always)]
pub fn start<C: Source>(ctx: &C) -> Option<&'static MonitorConfig> {
    let cfg = DP_MON_CONFIG.get(0)?;
    if cfg.mask & MON_F_TRACES != 0 {
        if let Some(c) = DP_MON_ORIG.get_ptr_mut(0) {
            // SAFETY: a per-CPU array slot, used only by this CPU.
            unsafe {
                (*c).caplen = capture(ctx, (*c).bytes.as_mut_ptr());
                if !ctx.load(KEY_OFF, (*c).key.as_mut_ptr().cast(), 16) {
                    (*c).key = [0; 2];
                }
            }
        }
    }
    Some(cfg)
}

/// A TC program is done with a packet (`action`).
#[inline(always)]
pub fn trace_tc(
    mon: Option<&MonitorConfig>,
    ctx: &TcContext,
    point: u8,
    ifindex: u32,
    action: i32,
) {
    trace(
        mon,
        ctx,
        point,
        ifindex,
        action as u32,
        action == TC_ACT_REDIRECT as i32,
    );
}

/// The end of a TC program's entry point: a drop is counted (globally and
/// for the endpoint behind `ifindex`) and reported to the monitor, an
/// action traced; returns the verdict.
#[inline(always)]
pub fn tc_verdict(
    mon: Option<&MonitorConfig>,
    ctx: &TcContext,
    point: u8,
    ifindex: u32,
    res: Result<i32, DropReason>,
) -> i32 {
    match res {
        Ok(action) => {
            trace_tc(mon, ctx, point, ifindex, action);
            action
        }
        Err(reason) => {
            crate::maps::count_drop(ifindex, reason);
            drop(mon, ctx, point, ifindex, reason);
            TC_ACT_SHOT as i32
        }
    }
}

/// The XDP program is done with a packet (`action`).
#[inline(always)]
pub fn trace_xdp(
    mon: Option<&MonitorConfig>,
    ctx: &XdpContext,
    point: u8,
    ifindex: u32,
    action: u32,
) {
    trace(mon, ctx, point, ifindex, action, action == XDP_REDIRECT);
}

/// A trace event when traces are wanted and the packet was redirected or
/// its addresses or ports changed (handed to the host's stack unchanged is
/// not the datapath's doing).
#[inline(always)]
fn trace<C: Source>(
    mon: Option<&MonitorConfig>,
    ctx: &C,
    point: u8,
    ifindex: u32,
    code: u32,
    redirected: bool,
) {
    let Some(cfg) = mon else {
        return;
    };
    if cfg.mask & MON_F_TRACES == 0 {
        return;
    }
    let Some(orig) = DP_MON_ORIG.get_ptr(0) else {
        return;
    };
    if !redirected {
        let mut key = [0u64; 2];
        if !ctx.load(KEY_OFF, key.as_mut_ptr().cast(), 16) {
            return;
        }
        // SAFETY: a per-CPU array slot, used only by this CPU.
        let was = unsafe { (*orig).key };
        if key[0] == was[0] && key[1] == was[1] {
            return;
        }
    }
    let flags = if redirected { MON_EVF_REDIRECTED } else { 0 };
    emit(
        cfg,
        ctx,
        MON_EV_TRACE,
        point,
        flags,
        code,
        ifindex,
        Some(orig),
    );
}

/// A program dropped a packet for `reason`.
#[inline(always)]
pub fn drop<C: Source>(
    mon: Option<&MonitorConfig>,
    ctx: &C,
    point: u8,
    ifindex: u32,
    reason: DropReason,
) {
    let Some(cfg) = mon else {
        return;
    };
    if cfg.mask & MON_F_DROPS == 0 {
        return;
    }
    emit(
        cfg,
        ctx,
        MON_EV_DROP,
        point,
        0,
        reason as u32,
        ifindex,
        None,
    );
}

/// Copy the packet's first bytes to `dst`: MON_CAPTURE of them, or fewer
/// for a shorter packet (fixed sizes: the verifier wants a bounded length,
/// and a computed one loses its bounds in the compiler's hands); how many.
#[inline(always)]
fn capture<C: Source>(ctx: &C, dst: *mut u8) -> u32 {
    const FULL: u32 = MON_CAPTURE as u32;
    if ctx.load(0, dst, FULL) {
        FULL
    } else if ctx.load(0, dst, 54) {
        // Ethernet, IPv4 and a TCP header without options.
        54
    } else if ctx.load(0, dst, 42) {
        // Ethernet, IPv4 and UDP or ICMP; an ARP packet.
        42
    } else if ctx.load(0, dst, 14) {
        14
    } else {
        0
    }
}

/// Write an event (stamped now) if this CPU's bucket has a token.
#[expect(clippy::too_many_arguments, reason = "the event's fields")]
#[inline(always)]
fn emit<C: Source>(
    cfg: &MonitorConfig,
    ctx: &C,
    kind: u8,
    point: u8,
    flags: u8,
    code: u32,
    ifindex: u32,
    orig: Option<*const dataplane_common::MonitorCapture>,
) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !take_token(cfg, now) {
        count(MON_STAT_RATE_LIMITED);
        return;
    }
    let Some(mut entry) = DP_MON_EVENTS.reserve(0) else {
        count(MON_STAT_RING_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the reserved ring buffer entry (MonitorEvent-sized);
    // `orig` is this CPU's slot of DP_MON_ORIG.
    unsafe {
        (*ev).ts_ns = now;
        (*ev).kind = kind;
        (*ev).point = point;
        (*ev).flags = flags;
        (*ev)._pad = 0;
        (*ev).code = code;
        (*ev).ifindex = ifindex;
        (*ev).len = ctx.packet_len();
        (*ev).caplen = capture(ctx, (*ev).packet.as_mut_ptr());
        match orig {
            Some(o) => {
                (*ev).orig_caplen = (*o).caplen;
                (*ev).orig = (*o).bytes;
            }
            None => (*ev).orig_caplen = 0,
        }
    }
    entry.submit(0);
    count(MON_STAT_EMITTED);
}

/// Token bucket kept as time credit: an event costs `1e9 / rate` ns.
#[inline(always)]
fn take_token(cfg: &MonitorConfig, now: u64) -> bool {
    let Some(b) = DP_MON_BUCKET.get_ptr_mut(0) else {
        return false;
    };
    let rate = if cfg.rate == 0 {
        MON_DEFAULT_RATE
    } else {
        cfg.rate
    };
    let burst = if cfg.burst == 0 {
        MON_DEFAULT_BURST
    } else {
        cfg.burst
    };
    let cost = 1_000_000_000u64 / rate as u64;
    let cap = cost * burst as u64;
    // SAFETY: a per-CPU array slot, used only by this CPU.
    unsafe {
        let elapsed = now.saturating_sub((*b).last_ns);
        let mut credit = (*b).credit_ns.saturating_add(elapsed);
        if credit > cap {
            credit = cap;
        }
        (*b).last_ns = now;
        if credit < cost {
            (*b).credit_ns = credit;
            return false;
        }
        (*b).credit_ns = credit - cost;
    }
    true
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(p) = DP_MON_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU array slot, written only by this CPU.
        unsafe { *p += 1 };
    }
}

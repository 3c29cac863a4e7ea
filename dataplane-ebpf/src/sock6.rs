//! cgroup sock_addr programs for IPv6: published ports reached from the
//! host itself, as `sock` does for IPv4. A process of the host namespace
//! connecting (TCP) or sending (UDP) to `[::1]:PORT` or `[HOST_V6]:PORT` of
//! a port published on IPv6 (`DP_PORTS6`) has the destination rewritten at
//! the socket to the container's IPv6 address and port; UDP replies are
//! shown as coming from the address it used (`DP_SOCK_NAT6`). Only sockets
//! of the agent's namespace (by netns cookie) are touched.

use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use dataplane_common::{SockKey6, SockOrig6};

use crate::{
    maps::{self, DP_HOST, DP_SOCK_NAT6},
    parse::{IPPROTO_TCP, IPPROTO_UDP},
};

const ALLOW: i32 = 1;

#[inline(always)]
fn ours(ctx: &SockAddrContext) -> bool {
    let Some(host) = DP_HOST.get(0) else {
        return false;
    };
    host.netns_cookie != 0
        // SAFETY: a BPF helper given this program's own context.
        && unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) } == host.netns_cookie
}

/// The address of the context (network order words) as bytes.
#[inline(always)]
fn addr(w: [u32; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0..4].copy_from_slice(&w[0].to_ne_bytes());
    a[4..8].copy_from_slice(&w[1].to_ne_bytes());
    a[8..12].copy_from_slice(&w[2].to_ne_bytes());
    a[12..16].copy_from_slice(&w[3].to_ne_bytes());
    a
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// Rewrite the destination of a connect/sendmsg to a published port.
#[inline(always)]
fn to_container(ctx: &SockAddrContext) {
    if !ours(ctx) {
        return;
    }
    let sa = ctx.sock_addr;
    // SAFETY: `sock_addr` is the context this program was called with; its
    // fields are plain context accesses.
    let p = unsafe { (*sa).protocol } as u8;
    if p != IPPROTO_TCP && p != IPPROTO_UDP {
        return;
    }
    // SAFETY: as above.
    let dst = addr(unsafe { (*sa).user_ip6 });
    // SAFETY: as above.
    let port = u16::from_be(unsafe { (*sa).user_port } as u16);
    let Some(t) = maps::port_lookup6(&dst, port, p) else {
        return;
    };
    let w = words(&t.ip);
    // SAFETY: as above (these fields are writable in these hooks).
    unsafe {
        (*sa).user_ip6 = w;
        (*sa).user_port = u32::from(t.port.to_be());
    }
    if p == IPPROTO_UDP {
        // SAFETY: a BPF helper given this program's own context.
        let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
        let key = SockKey6 {
            cookie,
            ip: t.ip,
            port: t.port,
            _pad: [0; 6],
        };
        let orig = SockOrig6 {
            ip: dst,
            port,
            _pad: 0,
        };
        let _ = DP_SOCK_NAT6.insert(&key, &orig, 0);
    }
}

#[cgroup_sock_addr(connect6)]
pub fn dp_sock_connect6(ctx: SockAddrContext) -> i32 {
    to_container(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn dp_sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    to_container(&ctx);
    ALLOW
}

/// UDP replies: show the published address the socket sent to.
#[cgroup_sock_addr(recvmsg6)]
pub fn dp_sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    if !ours(&ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: a BPF helper given this program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    let key = SockKey6 {
        cookie,
        // SAFETY: `sock_addr` is the context this program was called with;
        // its fields are plain context accesses.
        ip: addr(unsafe { (*sa).user_ip6 }),
        // SAFETY: as above.
        port: u16::from_be(unsafe { (*sa).user_port } as u16),
        _pad: [0; 6],
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(orig) = unsafe { DP_SOCK_NAT6.get(&key) } {
        let w = words(&orig.ip);
        // SAFETY: as above (writable in this hook).
        unsafe {
            (*sa).user_ip6 = w;
            (*sa).user_port = u32::from(orig.port.to_be());
        }
    }
    ALLOW
}

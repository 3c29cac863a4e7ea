//! cgroup sock_addr programs: published ports reached from the host itself.
//!
//! A process in the host namespace connecting (TCP) or sending (UDP) to
//! `HOST_IP:HOST_PORT` or `127.0.0.1:HOST_PORT` of a published port has the
//! destination rewritten at the socket to the container's address and port,
//! as Docker's OUTPUT DNAT rule or userland proxy would. UDP replies are shown
//! to the socket as coming from the address it used. The programs are
//! attached to a cgroup and only act on sockets of the agent's own network
//! namespace (by netns cookie).

use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use dataplane_common::{SockKey, SockOrig};

use crate::{
    maps::{self, DP_HOST, DP_SOCK_NAT},
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

#[inline(always)]
fn proto(ctx: &SockAddrContext) -> u8 {
    // SAFETY: `sock_addr` is the context this program was called with; its fields are plain context accesses.
    unsafe { (*ctx.sock_addr).protocol as u8 }
}

/// Rewrite the destination of a connect/sendmsg to a published port.
#[inline(always)]
fn to_container(ctx: &SockAddrContext) {
    if !ours(ctx) {
        return;
    }
    let p = proto(ctx);
    if p != IPPROTO_TCP && p != IPPROTO_UDP {
        return;
    }
    let sa = ctx.sock_addr;
    // SAFETY: `sock_addr` is the context this program was called with; its fields are plain context accesses.
    let dst = unsafe { (*sa).user_ip4 }.to_ne_bytes();
    // SAFETY: `sock_addr` is the context this program was called with; its fields are plain context accesses.
    let port = u16::from_be(unsafe { (*sa).user_port } as u16);
    let Some(t) = maps::port_lookup(dst, port, p) else {
        return;
    };
    // SAFETY: `sock_addr` is the context this program was called with; its fields are plain context accesses.
    unsafe {
        (*sa).user_ip4 = u32::from_ne_bytes(t.ip);
        (*sa).user_port = t.port.to_be() as u32;
    }
    if p == IPPROTO_UDP {
        // SAFETY: a BPF helper given this program's own context.
        let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
        let key = SockKey {
            cookie,
            ip: t.ip,
            port: t.port,
            _pad: 0,
        };
        let orig = SockOrig {
            ip: dst,
            port,
            _pad: 0,
        };
        let _ = DP_SOCK_NAT.insert(&key, &orig, 0);
    }
}

#[cgroup_sock_addr(connect4)]
pub fn dp_sock_connect4(ctx: SockAddrContext) -> i32 {
    to_container(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn dp_sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    to_container(&ctx);
    ALLOW
}

/// UDP replies: show the published address the socket sent to.
#[cgroup_sock_addr(recvmsg4)]
pub fn dp_sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    if !ours(&ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: a BPF helper given this program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    let key = SockKey {
        cookie,
        // SAFETY: `sock_addr` is the context this program was called with; its fields are plain context accesses.
        ip: unsafe { (*sa).user_ip4 }.to_ne_bytes(),
        // SAFETY: `sock_addr` is the context this program was called with; its fields are plain context accesses.
        port: u16::from_be(unsafe { (*sa).user_port } as u16),
        _pad: 0,
    };
    // SAFETY: map lookup; the value (plain data) is read at once and not kept.
    if let Some(orig) = unsafe { DP_SOCK_NAT.get(&key) } {
        // SAFETY: `sock_addr` is the context this program was called with; its fields are plain context accesses.
        unsafe {
            (*sa).user_ip4 = u32::from_ne_bytes(orig.ip);
            (*sa).user_port = orig.port.to_be() as u32;
        }
    }
    ALLOW
}

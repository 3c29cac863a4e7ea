//! dp-flood: send a flood of UDP/IPv4 frames out of an interface as fast as
//! one core allows (AF_PACKET, sendmmsg, qdisc bypass), for the early-drop
//! benchmark. Run it inside the namespace that owns the interface.
//!
//! `dp-flood IFACE DST_MAC SRC_IP DST_IP DST_PORT SECONDS`
//! prints `{"sent": N, "seconds": S}`.

use std::{
    ffi::CString,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

const BATCH: usize = 64;
const FRAME_LEN: usize = 14 + 20 + 8 + 18;

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = csum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&((FRAME_LEN - 34) as u16).to_be_bytes());
    // UDP checksum 0: not computed (valid for IPv4).
    f
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: dp-flood IFACE DST_MAC SRC_IP DST_IP DST_PORT SECONDS");
        std::process::exit(2);
    }
    let iface = &a[1];
    let dst_mac = parse_mac(&a[2]).expect("DST_MAC");
    let src: Ipv4Addr = a[3].parse().expect("SRC_IP");
    let dst: Ipv4Addr = a[4].parse().expect("DST_IP");
    let dport: u16 = a[5].parse().expect("DST_PORT");
    let secs: f64 = a[6].parse().expect("SECONDS");

    let cname = CString::new(iface.as_str()).unwrap();
    // SAFETY: a NUL-terminated name that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    assert!(ifindex != 0, "no interface {iface}");
    let src_mac = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .ok()
        .and_then(|s| parse_mac(s.trim()))
        .unwrap_or([2, 0, 0, 0, 0, 1]);

    // SAFETY: a plain syscall with integer arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&raw const one).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    // SAFETY: sockaddr_ll is plain C data: all zeroes is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst_mac);

    // Distinct source ports so the flood is not one flow.
    let frames: Vec<[u8; FRAME_LEN]> = (0..BATCH)
        .map(|i| frame(src_mac, dst_mac, src, dst, 10000 + i as u16, dport))
        .collect();
    let mut iov: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: FRAME_LEN,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain C data: all zeroes is valid.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = std::ptr::from_mut::<libc::iovec>(v);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = (&raw mut sll).cast::<libc::c_void>();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            h
        })
        .collect();

    let start = Instant::now();
    let end = Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    while start.elapsed() < end {
        // SAFETY: `msgs` holds BATCH headers whose buffers outlive the call.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!("{{\"sent\": {sent}, \"seconds\": {el:.3}}}");
}

//! Incremental Internet checksum updates (RFC 1624) on raw wire-order
//! values, for programs that rewrite packet memory directly (XDP has no
//! checksum helpers; TC programs write the IPv4 header this way too), and
//! the differences TC programs hand to `bpf_l4_csum_replace`.

/// Incremental checksum update (RFC 1624) for a 32-bit field, on raw
/// (wire-order) values: `check` is the checksum field as read from the packet.
#[inline(always)]
pub fn csum_replace4(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let o = u32::from_ne_bytes(old);
    let n = u32::from_ne_bytes(new);
    let mut sum: u32 = (!check) as u32;
    sum += (!(o as u16)) as u32 + (!((o >> 16) as u16)) as u32;
    sum += (n as u16) as u32 + ((n >> 16) as u16) as u32;
    fold(sum)
}

/// Incremental checksum update for a 16-bit field (raw wire-order values).
#[inline(always)]
pub fn csum_replace2(check: u16, old: [u8; 2], new: [u8; 2]) -> u16 {
    let mut sum: u32 = (!check) as u32;
    sum += (!u16::from_ne_bytes(old)) as u32;
    sum += u16::from_ne_bytes(new) as u32;
    fold(sum)
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Add the one's-complement change of replacing `old` by `new` (raw
/// wire-order values) to `acc`: the running difference `diff_fold` turns
/// into what `bpf_l4_csum_replace` takes in its diff mode.
#[inline(always)]
pub fn diff4(acc: u32, old: [u8; 4], new: [u8; 4]) -> u32 {
    let o = u32::from_ne_bytes(old);
    let n = u32::from_ne_bytes(new);
    acc + (!(o as u16)) as u32
        + (!((o >> 16) as u16)) as u32
        + (n as u16) as u32
        + ((n >> 16) as u16) as u32
}

/// `diff4` for a 16-bit field.
#[inline(always)]
pub fn diff2(acc: u32, old: [u8; 2], new: [u8; 2]) -> u32 {
    acc + (!u16::from_ne_bytes(old)) as u32 + u16::from_ne_bytes(new) as u32
}

/// A difference from `diff4`/`diff2`, folded to 16 bits (not complemented).
#[inline(always)]
pub fn diff_fold(mut sum: u32) -> u64 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u64
}

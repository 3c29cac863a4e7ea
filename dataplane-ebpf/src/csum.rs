//! Incremental Internet checksum updates (RFC 1624) on raw wire-order
//! values, for programs that rewrite packet memory directly (XDP has no
//! checksum helpers).

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

//! bpf() commands aya 0.14 has no API for.

use super::*;

pub(super) const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
pub(super) const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// `bpf_attr` for the BPF_MAP_*_BATCH commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// One bpf() call for many keys (aya 0.14 has no batch API).
pub(super) fn map_batch<K, V>(
    map: &MapData,
    cmd: libc::c_long,
    keys: &[K],
    vals: Option<&[V]>,
) -> Result<()> {
    let mut done = 0usize;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: vals.map_or(0, |v| v[done..].as_ptr() as u64),
            count: (keys.len() - done) as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: `attr` is a valid bpf_attr for the batch command; its key
        // and value pointers cover `count` elements of `keys`/`vals`, which
        // outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &raw mut attr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if attr.count == 0 {
            break;
        }
        done += attr.count as usize;
    }
    Ok(())
}

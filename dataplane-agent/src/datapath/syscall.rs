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

pub(super) const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Every entry of a (non-per-CPU) hash map, `chunk` entries per bpf() call
/// instead of two calls per entry: the reconciler reads `DP_PORTS` on every
/// pass. `K` and `V` must be the map's key and value types.
pub(super) fn map_lookup_all<K: Copy + Default, V: Copy + Default>(
    map: &MapData,
    chunk: usize,
) -> Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut keys = vec![K::default(); chunk];
    let mut vals = vec![V::default(); chunk];
    // The kernel's batch cursor (a bucket index for hash maps).
    let mut cursor: u64 = 0;
    let mut first = true;
    loop {
        let mut next: u64 = 0;
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw mut cursor as u64 },
            out_batch: &raw mut next as u64,
            keys: keys.as_mut_ptr() as u64,
            values: vals.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: `attr` is a valid bpf_attr for BPF_MAP_LOOKUP_BATCH: the
        // kernel writes at most `count` keys and values of the map's sizes
        // (those of `K` and `V`) into `keys`/`vals`, and the cursors are
        // 8-byte buffers; all outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(std::io::Error::last_os_error);
        let n = (attr.count as usize).min(chunk);
        out.extend(keys[..n].iter().copied().zip(vals[..n].iter().copied()));
        match err {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Some(e) => return Err(anyhow::Error::from(e).context("BPF_MAP_LOOKUP_BATCH")),
        }
        cursor = next;
        first = false;
    }
}

//! The API socket's permissions: owned by root, mode 0660, group root or
//! the one `--socket-group` names. The socket is bound under a temporary
//! name, given its owner and mode, then renamed into place, so there is no
//! moment in which it exists at its path with looser permissions.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

/// Mode of the API socket: read/write for its owner (root) and its group.
pub(crate) const SOCKET_MODE: u32 = 0o660;

/// The gid `--socket-group` names (a group name or a number); root's
/// group without the flag.
pub(crate) fn resolve_group(group: Option<&str>) -> Result<u32> {
    let Some(g) = group else {
        return Ok(0);
    };
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(gr)) => Ok(gr.gid.as_raw()),
        Ok(None) => bail!("--socket-group {g:?}: no such group"),
        Err(e) => bail!("--socket-group {g:?}: looking up the group: {e}"),
    }
}

/// Bind the API socket at `path` with owner root, group `gid` and
/// [`SOCKET_MODE`].
pub(crate) fn bind(path: &Path, gid: u32) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(&tmp)
        .with_context(|| format!("binding {}", tmp.display()))?;
    let placed = std::os::unix::fs::chown(&tmp, Some(0), Some(gid))
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE)))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("setting up the API socket {}", path.display()));
    }
    Ok(listener)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

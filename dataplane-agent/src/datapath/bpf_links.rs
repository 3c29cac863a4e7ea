//! Programs attached through bpf_links pinned as
//! `<bpffs>/links/<program>@<interface>` (`@cgroup` for the socket
//! programs): attach, re-adopt on restart, detach, and whether a pinned
//! link is still attached.

use super::*;

impl Datapath {
    fn link_path(&self, prog: &str, ifname: &str) -> PathBuf {
        self.root.join("links").join(format!("{prog}@{ifname}"))
    }

    /// Attach `prog` at TC ingress of `ifname` with a pinned TCX link.
    pub fn attach(&mut self, prog_name: &str, ifname: &str) -> Result<()> {
        self.attach_tc(prog_name, ifname, TcAttachType::Ingress)
    }

    /// Attach `prog` at TC ingress or egress of `ifname` with a pinned TCX link.
    pub fn attach_tc(&mut self, prog_name: &str, ifname: &str, at: TcAttachType) -> Result<()> {
        let pin = self.link_path(prog_name, ifname);
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(prog_name)
            .ok_or_else(|| anyhow!("program {prog_name} missing"))?
            .try_into()?;
        pinned_link(
            &pin,
            prog,
            |prog, fd| {
                let id = prog.attach_to_link(SchedClassifierLink::try_from(fd)?)?;
                Ok(prog.take_link(id)?.try_into()?)
            },
            |prog| {
                let id = prog
                    .attach(ifname, at)
                    .with_context(|| format!("attaching {prog_name} to {ifname}"))?;
                prog.take_link(id)?
                    .try_into()
                    .context("TCX link expected (kernel >= 6.6)")
            },
        )
    }

    /// Attach the XDP program to the uplink with a pinned link.
    pub fn attach_xdp(&mut self, ifname: &str, mode: XdpMode) -> Result<()> {
        let name = prog_names::XDP_UPLINK;
        let pin = self.link_path(name, ifname);
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        pinned_link(
            &pin,
            prog,
            |prog, fd| {
                let id = prog.attach_to_link(XdpLink::try_from(fd)?)?;
                Ok(prog.take_link(id)?.try_into()?)
            },
            |prog| {
                let id = prog
                    .attach(ifname, mode)
                    .with_context(|| format!("attaching XDP to {ifname}"))?;
                prog.take_link(id)?
                    .try_into()
                    .context("XDP bpf_link expected")
            },
        )
    }

    /// Attach the socket programs to a cgroup (v2) with pinned links. They
    /// act only on sockets of the namespace whose cookie is in `DP_HOST`.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<()> {
        let cg = std::fs::File::open(cgroup)
            .with_context(|| format!("opening cgroup {}", cgroup.display()))?;
        for name in [
            prog_names::SOCK_CONNECT4,
            prog_names::SOCK_SENDMSG4,
            prog_names::SOCK_RECVMSG4,
            dataplane_common::nat6_prog_names::SOCK_CONNECT6,
            dataplane_common::nat6_prog_names::SOCK_SENDMSG6,
            dataplane_common::nat6_prog_names::SOCK_RECVMSG6,
        ] {
            let pin = self.link_path(name, "cgroup");
            let prog: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            if pin.exists() {
                // aya 0.14 cannot update these links: BPF_LINK_UPDATE by hand,
                // so that the new program (and its maps) take over atomically.
                match link_update(&pin, prog.fd()?.as_fd().as_raw_fd()) {
                    Ok(()) => continue,
                    Err(e) => {
                        warn!(?pin, "stale link pin ({e:#}), attaching anew");
                        let _ = std::fs::remove_file(&pin);
                    }
                }
            }
            let id = prog
                // Single = flags 0: bpf_link attachments are multi by nature.
                .attach(cg.as_fd(), CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to {}", cgroup.display()))?;
            let link: FdLink = prog.take_link(id)?.try_into()?;
            link.pin(&pin)
                .with_context(|| format!("pinning link at {}", pin.display()))?;
        }
        Ok(())
    }

    /// Detach by removing the pinned link (the link dies with its last reference).
    pub fn detach(&mut self, prog_name: &str, ifname: &str) {
        let pin = self.link_path(prog_name, ifname);
        if let Ok(p) = PinnedLink::from_pin(&pin) {
            let _ = p.unpin();
        }
        let _ = std::fs::remove_file(&pin);
    }

    /// Whether the link of `prog_name` on `ifname` (or `cgroup`) is pinned
    /// and attached.
    pub fn bpf_link_attached(&self, prog_name: &str, ifname: &str) -> bool {
        link_is_attached(&self.link_path(prog_name, ifname), ifname == "cgroup")
    }

    /// Pinned links, as (program, ifname).
    pub fn pinned_bpf_links(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("links")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if let Some((p, i)) = n.split_once('@') {
                    out.push((p.to_string(), i.to_string()));
                }
            }
        }
        out
    }
}

/// Attach `prog` through the bpf_link pinned at `pin`. An existing pinned link
/// is re-adopted: `readopt` swaps the program it runs atomically for the one
/// just loaded, the attachment (and the traffic through it) stays. If that
/// fails (e.g. the interface was recreated while the agent was down), or
/// nothing is pinned, `attach` makes a new link, which is pinned.
pub(super) fn pinned_link<P>(
    pin: &Path,
    prog: &mut P,
    readopt: impl FnOnce(&mut P, FdLink) -> Result<FdLink>,
    attach: impl FnOnce(&mut P) -> Result<FdLink>,
) -> Result<()> {
    if pin.exists() {
        let res = PinnedLink::from_pin(pin)
            .map_err(anyhow::Error::from)
            .and_then(|p| readopt(prog, p.into()));
        match res {
            // Our handle goes; the pin keeps the link.
            Ok(_fd) => {
                debug!(?pin, "re-adopted pinned link");
                return Ok(());
            }
            Err(e) => {
                warn!(?pin, "stale link pin ({e:#}), attaching anew");
                let _ = std::fs::remove_file(pin);
            }
        }
    }
    attach(prog)?
        .pin(pin)
        .with_context(|| format!("pinning link at {}", pin.display()))?;
    Ok(())
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;

/// Open the bpf object pinned at `pin` (BPF_OBJ_GET).
fn obj_get(pin: &Path) -> Result<std::os::fd::OwnedFd> {
    #[repr(C)]
    #[derive(Default)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    let path = std::ffi::CString::new(pin.as_os_str().as_encoded_bytes())?;
    let mut get = ObjGet {
        pathname: path.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `get` is a valid bpf_attr prefix for BPF_OBJ_GET whose
    // pathname points to a NUL-terminated string that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &raw mut get,
            std::mem::size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_OBJ_GET");
    }
    let fd = i32::try_from(fd).context("BPF_OBJ_GET returned a bad fd")?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// Whether the bpf_link pinned at `pin` is still attached: a TCX or XDP
/// link detached (`bpftool link detach`, or its interface gone) keeps its
/// pin but reports ifindex 0; a detached cgroup link reports cgroup id 0.
fn link_is_attached(pin: &Path, cgroup: bool) -> bool {
    #[repr(C)]
    #[derive(Default)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let Ok(fd) = obj_get(pin) else {
        return false;
    };
    // struct bpf_link_info: type, id, prog_id (u32 each), then a union
    // aligned to 8: tcx/xdp start with `__u32 ifindex`, cgroup with
    // `__u64 cgroup_id`, at byte 16. Larger than any kernel's struct, zeroed.
    let mut info = [0u8; 256];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` is a valid bpf_attr for BPF_OBJ_GET_INFO_BY_FD; the
    // kernel writes at most `info_len` bytes into `info`, which lives
    // until after the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw mut attr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        return false;
    }
    if cgroup {
        u64::from_ne_bytes(info[16..24].try_into().unwrap_or_default()) != 0
    } else {
        u32::from_ne_bytes(info[16..20].try_into().unwrap_or_default()) != 0
    }
}

/// Point the pinned bpf_link at `pin` to another program (BPF_LINK_UPDATE).
pub(super) fn link_update(pin: &Path, prog_fd: i32) -> Result<()> {
    #[repr(C)]
    #[derive(Default)]
    struct LinkUpdate {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let link = obj_get(pin)?;
    let mut upd = LinkUpdate {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog_fd as u32,
        ..Default::default()
    };
    // SAFETY: `upd` is a valid bpf_attr for BPF_LINK_UPDATE that lives
    // until the call returns; the fds in it are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &raw mut upd,
            std::mem::size_of::<LinkUpdate>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_LINK_UPDATE");
    }
    Ok(())
}

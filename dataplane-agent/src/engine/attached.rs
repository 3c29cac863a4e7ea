//! Attached namespaces: network namespaces someone else made (`ip netns
//! add`, a plain process, a container runtime through the CNI plugin),
//! adopted by path or by process id (`container attach`).
//!
//! Such a container has mode [`NetworkMode::Attached`]. At attach the agent
//! bind-mounts the namespace at its own namespace path
//! (`<run-dir>/netns/<name>`), so every verb that works on the agent's own
//! containers (connect, disconnect, published ports, the reconciler's
//! repairs) works on it unchanged: endpoints are created inside it with the
//! interface name asked for (CNI_IFNAME) or the first free `ethN`.
//!
//! Detach (and `container rm`) removes only what the agent made (its veths,
//! map entries, ports) and unmounts its bind: the namespace itself and
//! everything else in it are left as they were. The reconciler collects an
//! attachment whose namespace is gone: the process exited (`--pid`; a pid
//! reused by another process is recognised by its start time), or the path
//! no longer names the same namespace (`ip netns del`, the runtime removed
//! it).

use std::os::fd::AsRawFd;

use super::*;
use nix::mount::{mount, MsFlags};

/// `ioctl(NS_GET_NSTYPE)` on a namespace file (linux/nsfs.h: `_IO(0xb7, 3)`).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

impl Engine {
    /// Adopt the namespace of `req.netns` or `req.pid` as container
    /// `req.name`. Attaching the same namespace again under the same name and
    /// owner answers the existing container (the CNI plugin retries).
    pub async fn attach_container(&self, req: AttachRequest) -> ApiResult<ContainerView> {
        super::containers::validate_container_name(&req.name)?;
        let owner = req.owner.clone().unwrap_or_else(|| "cli".to_string());
        let (source, pid) = match (&req.netns, req.pid) {
            (Some(p), None) if !p.is_empty() => (p.clone(), None),
            (None, Some(pid)) if pid > 0 => (format!("/proc/{pid}/ns/net"), Some(pid)),
            _ => return Err(bad("give exactly one of --netns PATH and --pid PID")),
        };
        let pid_start = match pid {
            Some(p) => {
                Some(process_start(p).ok_or_else(|| Error::NotFound(format!("no process {p}")))?)
            }
            None => None,
        };
        let (ns_dev, ns_ino) = netns_id(Path::new(&source))?;
        let attachment = Attachment {
            source: source.clone(),
            pid,
            pid_start,
            ns_dev,
            ns_ino,
            owner,
            runtime_holds_ports: false,
        };

        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if let Some(c) = g.containers.get(&req.name) {
            return match &c.network_mode {
                NetworkMode::Attached(a)
                    if (a.ns_dev, a.ns_ino) == (ns_dev, ns_ino) && a.owner == attachment.owner =>
                {
                    Ok(self.container_view(g, c))
                }
                _ => Err(Error::Conflict(format!(
                    "container {} already exists",
                    req.name
                ))),
            };
        }
        self.check_not_ours(&source, (ns_dev, ns_ino))?;
        let c = Container {
            id: super::containers::random_id(),
            name: req.name.clone(),
            network_mode: NetworkMode::Attached(attachment),
            hostname: None,
            endpoints: Vec::new(),
            ports: Vec::new(),
            expose: Vec::new(),
            links: Vec::new(),
            dns: crate::dns::files::DnsConfig::default(),
        };
        let bind = self.netns_path(&c.name);
        if bind.exists() {
            // Left over by a crash: not in the desired state.
            kernel::delete_netns(&bind)?;
        }
        bind_netns(Path::new(&source), &bind)?;
        // The bind must still be the namespace that was checked (a process
        // may have exited in between).
        if netns_id(&bind).ok() != Some((ns_dev, ns_ino)) {
            let _ = kernel::delete_netns(&bind);
            return Err(Error::NotFound(format!(
                "namespace {source} went away while attaching it"
            )));
        }
        if let Err(e) = g.store.apply(Change {
            put_containers: vec![&c],
            ..Default::default()
        }) {
            let _ = kernel::delete_netns(&bind);
            return Err(e.into());
        }
        g.containers.insert(c.name.clone(), c.clone());
        self.request_reconcile();
        info!(container = %c.name, netns = %source, "namespace attached");
        Ok(self.container_view(g, &c))
    }

    /// Give an attached namespace back: its endpoints (veths, map entries,
    /// published ports) and the agent's bind are removed, nothing else.
    pub async fn detach_container(&self, name: &str) -> ApiResult<()> {
        {
            let g = self.inner.lock().await;
            let c = g
                .containers
                .get(name)
                .ok_or_else(|| Error::NotFound(format!("container {name} not found")))?;
            if !matches!(c.network_mode, NetworkMode::Attached(_)) {
                return Err(bad(format!(
                    "container {name} was not attached (network mode {}); use `container rm`",
                    c.network_mode.describe()
                )));
            }
        }
        self.remove_container(name).await
    }

    /// Publish `specs` (`-p` syntax) for attached container `name`,
    /// replacing what it published before (the CNI plugin's
    /// `portMappings`: every network's ADD passes the same list, so they are
    /// published once). Returns the mappings.
    ///
    /// With `runtime_holds_ports` the runtime binds the host ports itself
    /// (Podman's `enable_port_reservation`): they must be exact, are checked
    /// against the agent's other mappings, and the agent binds none.
    pub async fn publish_attached(
        &self,
        name: &str,
        specs: &[String],
        runtime_holds_ports: bool,
    ) -> ApiResult<Vec<PortMapping>> {
        let specs = specs
            .iter()
            .map(|s| ports::parse_spec(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        let mut c = g
            .containers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {name} not found")))?;
        if !matches!(c.network_mode, NetworkMode::Attached(_)) {
            return Err(bad(format!(
                "container {name} was not attached; publish with `container create -p`"
            )));
        }
        if let Some(e) = c.endpoints.first() {
            if !specs.is_empty() && g.networks.get(&e.network).is_some_and(|n| n.internal) {
                return Err(bad(format!(
                    "cannot publish ports of a container on internal network {}",
                    e.network
                )));
            }
        }
        let original = c.clone();
        let old = std::mem::take(&mut c.ports);
        release_ports(g, &old);
        // Its own mappings are being replaced: not a conflict with them.
        g.containers.insert(c.name.clone(), c.clone());
        let default_ip = c
            .endpoints
            .first()
            .and_then(|e| g.networks.get(&e.network))
            .and_then(|n| n.host_binding)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let reserved = if runtime_holds_ports {
            runtime_held_mappings(g, &c.name, &specs, default_ip)
        } else {
            self.reserve_ports(g, &specs, default_ip).await
        };
        let new = match reserved {
            Ok(n) => n,
            Err(e) => {
                // The old mappings stand (their ports are held again).
                let _ = restore_reservations(g, &old);
                g.containers.insert(original.name.clone(), original);
                return Err(e);
            }
        };
        c.ports = new;
        if let NetworkMode::Attached(a) = &mut c.network_mode {
            a.runtime_holds_ports = runtime_holds_ports;
        }
        if let Err(e) = g.store.apply(Change {
            put_containers: vec![&c],
            ..Default::default()
        }) {
            release_ports(g, &c.ports);
            let _ = restore_reservations(g, &old);
            g.containers.insert(original.name.clone(), original);
            return Err(e.into());
        }
        after_commit(
            "remove_ports",
            g.dp.remove_ports(&old.iter().map(port_key).collect::<Vec<_>>()),
        );
        after_commit("add_ports", g.dp.add_ports(&port_entries(&c)));
        let out = c.ports.clone();
        g.containers.insert(c.name.clone(), c);
        self.request_reconcile();
        info!(
            container = name,
            ports = out.len(),
            "attached container published ports"
        );
        Ok(out)
    }

    /// Remove an attached container whose namespace is gone (the
    /// reconciler's collection), under the engine's lock.
    pub(crate) async fn drop_attached(&self, g: &mut Inner, name: &str) -> Result<()> {
        let Some(c) = g.containers.get(name).cloned() else {
            return Ok(());
        };
        g.store.apply(Change {
            del_containers: vec![name],
            ..Default::default()
        })?;
        after_commit("remove_ports", g.dp.remove_ports(&port_keys(&c)));
        release_ports(g, &c.ports);
        for ep in &c.endpoints {
            self.unplumb_endpoint(g, ep).await;
            g.dp.purge_ct(ep.ip.octets());
        }
        after_commit("delete_netns", kernel::delete_netns(&self.netns_path(name)));
        g.containers.remove(name);
        info!(
            container = name,
            "attached namespace gone: container removed"
        );
        Ok(())
    }

    /// Refuse a namespace the agent already holds: the host's, or one of
    /// its containers' (own or attached).
    fn check_not_ours(&self, source: &str, id: (u64, u64)) -> ApiResult<()> {
        if netns_id(&self.host_netns_path()).ok() == Some(id)
            || netns_id(Path::new("/proc/self/ns/net")).ok() == Some(id)
        {
            return Err(Error::Conflict(format!(
                "namespace {source} is the agent's host namespace"
            )));
        }
        let dir = self.cfg.run_dir.join("netns");
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if netns_id(&e.path()).ok() == Some(id) {
                    return Err(Error::Conflict(format!(
                        "namespace {source} already belongs to container {}",
                        e.file_name().to_string_lossy()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Hold the host ports of `mappings` again (after a failed replace).
fn restore_reservations(g: &mut Inner, mappings: &[PortMapping]) -> ApiResult<()> {
    for m in mappings {
        g.reservations.reserve(m.host_ip, m.host_port, m.proto)?;
    }
    Ok(())
}

/// Whether `c`'s runtime binds its published host ports (the agent holds
/// none of them).
pub(crate) fn runtime_holds_ports(c: &Container) -> bool {
    matches!(&c.network_mode, NetworkMode::Attached(a) if a.runtime_holds_ports)
}

/// The mappings of `specs` for container `name` whose runtime binds the
/// host ports: exact ports only, none published by another container.
fn runtime_held_mappings(
    g: &Inner,
    name: &str,
    specs: &[ports::PortSpec],
    default_ip: Ipv4Addr,
) -> ApiResult<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for spec in specs {
        if spec.proto == Proto::Sctp {
            return Err(bad(
                "publishing SCTP ports is not supported (the datapath translates TCP and UDP)",
            ));
        }
        let HostPorts::Exact(hports) = &spec.host_ports else {
            return Err(bad(
                "a runtime that holds its host ports must name them (no random host ports)",
            ));
        };
        let host_ip = spec.host_ip.unwrap_or(default_ip);
        for (cport, hport) in spec.container_ports.iter().zip(hports) {
            let clash = |m: &PortMapping| {
                m.proto == spec.proto
                    && m.host_port == *hport
                    && (m.host_ip == host_ip
                        || m.host_ip.is_unspecified()
                        || host_ip.is_unspecified())
            };
            let owner = g
                .containers
                .values()
                .filter(|o| o.name != name)
                .find(|o| o.ports.iter().any(clash))
                .map(|o| o.name.clone())
                .or_else(|| out.iter().any(clash).then(|| name.to_string()));
            if let Some(owner) = owner {
                return Err(Error::Conflict(format!(
                    "host port {host_ip}:{hport}/{} is already published by {owner}",
                    spec.proto.as_str()
                )));
            }
            out.push(PortMapping {
                host_ip,
                host_port: *hport,
                container_port: *cport,
                proto: spec.proto,
            });
        }
    }
    Ok(out)
}

/// The attached containers whose namespace is gone (see the module docs).
pub(crate) fn attached_gone(containers: &BTreeMap<String, Container>) -> BTreeSet<String> {
    containers
        .values()
        .filter(|c| match &c.network_mode {
            NetworkMode::Attached(a) => attachment_gone(a),
            _ => false,
        })
        .map(|c| c.name.clone())
        .collect()
}

fn attachment_gone(a: &Attachment) -> bool {
    if let Some(pid) = a.pid {
        return process_start(pid) != a.pid_start;
    }
    netns_id(Path::new(&a.source)).ok() != Some((a.ns_dev, a.ns_ino))
}

/// `network connect`'s `interface` and `mac` (the CNI plugin's CNI_IFNAME
/// and `mac`), checked and applied to the planned endpoint `ep` of `c`.
pub(crate) fn apply_connect_options(
    c: &Container,
    req: &ConnectRequest,
    ep: &mut Endpoint,
) -> ApiResult<()> {
    if let Some(name) = &req.interface {
        validate_ifname(name)?;
        if c.endpoints.iter().any(|e| &e.interface == name) {
            return Err(Error::Conflict(format!(
                "container {} already has an interface {name}",
                c.name
            )));
        }
        ep.interface.clone_from(name);
    }
    if let Some(m) = &req.mac {
        ep.mac = parse_mac(m)?;
    }
    Ok(())
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:` or whitespace, not
/// `.` or `..`.
pub(crate) fn validate_ifname(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid interface name {name:?}: 1 to 15 characters, no '/', ':' or spaces"
        )))
    }
}

/// A unicast MAC address `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(s: &str) -> ApiResult<[u8; 6]> {
    let err = || {
        bad(format!(
            "invalid MAC address {s:?}: expected a unicast aa:bb:cc:dd:ee:ff"
        ))
    };
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next().ok_or_else(err)?;
        if p.len() != 2 {
            return Err(err());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
    }
    if parts.next().is_some() || mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(err());
    }
    Ok(mac)
}

/// Device and inode of the network namespace at `path`; an error if `path`
/// is not a network namespace.
fn netns_id(path: &Path) -> ApiResult<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::open(path)
        .map_err(|e| Error::NotFound(format!("namespace {}: {e}", path.display())))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the open file
    // descriptor, which `f` keeps valid for the call.
    let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return Err(bad(format!(
            "{} is not a network namespace",
            path.display()
        )));
    }
    let md = f
        .metadata()
        .map_err(|e| Error::NotFound(format!("namespace {}: {e}", path.display())))?;
    Ok((md.dev(), md.ino()))
}

/// Bind-mount the namespace at `source` on `target` (a new file).
fn bind_netns(source: &Path, target: &Path) -> Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(target).with_context(|| format!("creating {}", target.display()))?;
    if let Err(e) = mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(target);
        return Err(anyhow!(e).context(format!(
            "bind-mounting {} on {}",
            source.display(),
            target.display()
        )));
    }
    Ok(())
}

/// Start time of process `pid` (clock ticks since boot, field 22 of
/// /proc/PID/stat); None if there is no such process or it is a zombie.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `state` is field 3; field 22 is 19 further.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("net1").is_ok());
        assert!(validate_ifname("").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("a b").is_err());
        assert!(validate_ifname("..").is_err());
        assert!(validate_ifname("sixteen-chars-xx").is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:42:0a:00:00:05").unwrap(),
            [2, 0x42, 10, 0, 0, 5]
        );
        assert!(parse_mac("01:00:5e:00:00:01").is_err(), "multicast");
        assert!(parse_mac("00:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42:0a:00:00").is_err());
        assert!(parse_mac("02:42:0a:00:00:05:06").is_err());
        assert!(parse_mac("zz:42:0a:00:00:05").is_err());
    }

    #[test]
    fn own_process_is_alive_and_its_namespace_is_a_netns() {
        let me = std::process::id();
        assert!(process_start(me).is_some());
        assert!(process_start(u32::MAX).is_none());
        let id = netns_id(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(
            netns_id(Path::new(&format!("/proc/{me}/ns/net"))).unwrap(),
            id
        );
        assert!(netns_id(Path::new("/proc/self/ns/mnt")).is_err());
        let a = Attachment {
            source: format!("/proc/{me}/ns/net"),
            pid: Some(me),
            pid_start: process_start(me),
            ns_dev: id.0,
            ns_ino: id.1,
            owner: "cli".into(),
            runtime_holds_ports: false,
        };
        assert!(!attachment_gone(&a));
        let reused = Attachment {
            pid_start: a.pid_start.map(|s| s + 1),
            ..a.clone()
        };
        assert!(attachment_gone(&reused), "a reused pid is not the process");
        let by_path = Attachment {
            pid: None,
            pid_start: None,
            source: "/proc/self/ns/net".into(),
            ..a
        };
        assert!(!attachment_gone(&by_path));
    }
}

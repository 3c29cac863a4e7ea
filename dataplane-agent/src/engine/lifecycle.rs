//! The engine's life cycle: start (bpffs, store, datapath, uplink, the
//! default network, the first reconcile) and `dataplane agent --cleanup`.

use super::*;

fn is_bpffs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

fn mount_bpf_at(p: &Path) -> Result<()> {
    nix::mount::mount(
        Some("bpf"),
        p,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting bpffs at {}", p.display()))
}

/// Make sure `path` is a directory on a bpffs: mount the system's bpffs at
/// /sys/fs/bpf when that is missing (as systemd does), or one at `path`.
fn mount_bpffs(path: &Path) -> Result<()> {
    let sys = Path::new("/sys/fs/bpf");
    if std::fs::create_dir_all(path).is_err() && path.starts_with(sys) && !is_bpffs(sys) {
        mount_bpf_at(sys)?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    if !is_bpffs(path) {
        mount_bpf_at(path)?;
    }
    Ok(())
}

impl Engine {
    /// Start: open the store, load (or re-adopt) the datapath and reconcile
    /// the kernel with the desired state.
    pub async fn start(cfg: AgentConfig) -> Result<Arc<Engine>> {
        datapath::check_bpffs_root(&cfg.bpffs)?;
        std::fs::create_dir_all(&cfg.state_dir)?;
        std::fs::create_dir_all(cfg.run_dir.join("netns"))?;
        mount_bpffs(&cfg.bpffs)?;
        let store = Store::open(&cfg.state_dir.join("state.redb"))?;
        let (networks, containers) = store.load()?;
        let p2p = store.load_p2p()?;
        let host = kernel::host_handle()?;
        kernel::bind_own_netns(&cfg.run_dir.join("host.netns"))?;
        let mut dp = Datapath::load(&cfg.bpffs)?;
        dp.spawn_logger();
        let uplink = kernel::find_uplink(&host, cfg.uplink.as_deref()).await?;
        let nat_range = cfg
            .nat_port_range
            .unwrap_or_else(|| default_nat_range(kernel::local_port_range()));
        let port_range = cfg.port_range.unwrap_or_else(kernel::local_port_range);
        if port_range.0 <= nat_range.1 && nat_range.0 <= port_range.1 {
            anyhow::bail!(
                "the published port range {}-{} overlaps the masquerade port range {}-{}",
                port_range.0,
                port_range.1,
                nat_range.0,
                nat_range.1
            );
        }
        let overlay = match &cfg.cluster {
            Some(o) => Some(overlay::Overlay::start(o, &host, uplink.as_ref(), &cfg.bpffs).await?),
            None => None,
        };
        let engine = Arc::new(Engine {
            inner: Mutex::new(Inner {
                networks,
                containers,
                store,
                host,
                dp,
                uplink,
                nat_range,
                ifindexes: HashMap::new(),
                reservations: Reservations::default(),
                port_range,
                fixed_links: BTreeSet::new(),
                overlay,
                p2p,
                host_ifs: Vec::new(),
                host_if_map: Some(crate::datapath::HostIfMap::open(&cfg.bpffs)?),
                uplink_mode: cfg.uplink_mode,
            }),
            wake: tokio::sync::Notify::new(),
            cfg,
            dns: crate::dns::DnsManager::new(crate::dns::Zone::default().into_handle()),
        });
        engine.bootstrap().await?;
        engine.reconcile().await?;
        Ok(engine)
    }

    /// Create the default network on first start, and re-create it when the
    /// daemon's flags for it (`--bip`, `--icc`, `--mtu`, `--fixed-cidr`,
    /// `--ip-masq`) changed and no container uses it (with containers on it,
    /// it keeps its settings until they are gone, and a warning says so).
    async fn bootstrap(&self) -> Result<()> {
        let want = self
            .cfg
            .defaults
            .default_network_request(&self.cfg.bip, self.cfg.icc)?;
        {
            let mut g = self.inner.lock().await;
            let g = &mut *g;
            if let Some(n) = g.networks.get(DEFAULT_NETWORK) {
                if daemon_options::default_network_matches(n, &want) {
                    return Ok(());
                }
                let users = g
                    .containers
                    .values()
                    .filter(|c| c.endpoints.iter().any(|e| e.network == DEFAULT_NETWORK))
                    .count();
                if users > 0 {
                    warn!(
                        containers = users,
                        "the default network's flags changed; it keeps its old settings until its containers are removed"
                    );
                    return Ok(());
                }
                info!("the default network's flags changed: re-creating it");
                self.remove_network_locked(g, DEFAULT_NETWORK, true)
                    .await
                    .map_err(|e| anyhow!("re-creating the default network: {e}"))?;
            }
        }
        self.create_network_as(want, true)
            .await
            .map_err(|e| anyhow!("creating the default network: {e}"))?;
        let mut g = self.inner.lock().await;
        if let Some(n) = g.networks.get_mut(DEFAULT_NETWORK) {
            n.builtin = true;
            let n = n.clone();
            g.store.apply(Change {
                put_networks: vec![&n],
                ..Default::default()
            })?;
        }
        Ok(())
    }

    /// Remove every kernel object the agent made (namespaces, veths, gateway
    /// device, pinned maps and links). Desired state is kept unless `purge`.
    pub async fn cleanup(cfg: &AgentConfig, purge: bool) -> Result<()> {
        datapath::check_bpffs_root(&cfg.bpffs)?;
        let host = kernel::host_handle()?;
        let store_path = cfg.state_dir.join("state.redb");
        if store_path.exists() {
            let store = Store::open(&store_path)?;
            let (_, containers) = store.load()?;
            drop(store);
            for c in containers.values() {
                for ep in &c.endpoints {
                    kernel::delete_netdev(&host, &ep.host_interface).await?;
                }
            }
        }
        for (_, name) in kernel::netdev_names(&host).await? {
            if is_endpoint_ifname(&name) {
                kernel::delete_netdev(&host, &name).await?;
            }
        }
        if let Ok(rd) = std::fs::read_dir(cfg.run_dir.join("netns")) {
            for e in rd.flatten() {
                kernel::delete_netns(&e.path())?;
            }
        }
        kernel::delete_netns(&cfg.run_dir.join("host.netns"))?;
        crate::dns::files::remove_dir(&cfg.run_dir.join("containers"))?;
        kernel::delete_gateway_dev(&host).await?;
        crate::vxlan::delete(&host).await?;
        // A bpffs the agent mounted at its root goes too (unmounting a
        // directory that is not a mount point fails harmlessly).
        let mounted_here = cfg
            .bpffs
            .parent()
            .is_some_and(|p| is_bpffs(&cfg.bpffs) && !is_bpffs(p));
        datapath::remove_pins(&cfg.bpffs)?;
        if mounted_here && nix::mount::umount2(&cfg.bpffs, nix::mount::MntFlags::MNT_DETACH).is_ok()
        {
            let _ = std::fs::remove_dir(&cfg.bpffs);
        }
        if purge {
            let _ = std::fs::remove_file(&store_path);
        }
        let _ = std::fs::remove_file(cfg.run_dir.join("dataplane.sock"));
        Ok(())
    }
}

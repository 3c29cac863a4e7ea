//! `lan` networks (`network create --driver lan --parent IFACE --subnet
//! LAN_CIDR --ip-range RANGE --gateway LAN_ROUTER`): containers with
//! addresses of the host's LAN, reachable from the LAN directly (no port
//! mapping, no masquerade, no Linux bridge). The datapath answers ARP for
//! them on the parent (proxy ARP in eBPF), delivers LAN traffic to them with
//! `bpf_redirect_peer` and sends theirs out of the parent untranslated
//! (`dataplane-ebpf/src/lan.rs`, `from_container.rs`). The gateway is the
//! LAN's router: it is not added to the host.

use std::collections::HashMap as StdHashMap;

use dataplane_common::LanParent;

use super::*;

/// The driver's name.
pub(crate) const LAN_DRIVER: &str = "lan";

impl Engine {
    pub(super) async fn create_lan_network(
        &self,
        mut req: NetworkCreate,
    ) -> ApiResult<NetworkView> {
        // Docker's macvlan/ipvlan spelling: `-o parent=IFACE`.
        if let Some(p) = req.options.remove("parent") {
            if req.parent.as_ref().is_some_and(|q| *q != p) {
                return Err(bad(format!("--parent and -o parent={p} disagree")));
            }
            req.parent = Some(p);
        }
        let parent = req
            .parent
            .clone()
            .ok_or_else(|| bad("--driver lan needs --parent IFACE (the interface on the LAN)"))?;
        let subnet = req
            .subnet
            .as_deref()
            .map(ipam::parse_subnet)
            .transpose()?
            .ok_or_else(|| bad("--driver lan needs --subnet (the LAN's)"))?;
        let gateway = req.gateway.as_deref().map(ipam::parse_ip).transpose()?;
        let range = req
            .ip_range
            .as_deref()
            .map(ipam::parse_subnet)
            .transpose()?;
        if req.internal {
            return Err(bad(
                "--internal has no meaning for --driver lan (the LAN is outside)",
            ));
        }
        // Masquerade options are moot: a lan network is never masqueraded.
        let opts = net_options(&req)?;
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if g.networks.contains_key(&req.name) {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let dev = kernel::netdev_by_name(&g.host, &parent)
            .await?
            .ok_or_else(|| Error::NotFound(format!("parent interface {parent} not found")))?;
        if is_endpoint_ifname(&parent) || parent == kernel::GATEWAY_DEV {
            return Err(bad(format!(
                "{parent} is the agent's own interface, not a LAN"
            )));
        }
        let addrs = kernel::interface_addresses(&g.host, dev.index).await?;
        let Some(host_addr) = addrs
            .iter()
            .find(|a| a.contains(&subnet.network()) && a.prefix_len() <= subnet.prefix_len())
        else {
            let have: Vec<String> = addrs.iter().map(|a| a.trunc().to_string()).collect();
            return Err(bad(format!(
                "subnet {subnet} is not a LAN of {parent} (its networks: {})",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )));
        };
        let pool = Pool::new(subnet, range, gateway)?;
        let window = pool.range.unwrap_or(subnet);
        if window.contains(&host_addr.addr()) {
            return Err(bad(format!(
                "the address range {window} holds the host's own address {} on {parent}: pass an --ip-range without it",
                host_addr.addr()
            )));
        }
        Pool::check_overlap(
            subnet,
            g.networks
                .values()
                .map(|n| (n.name.as_str(), n.pool.subnet)),
        )?;
        let id = g.networks.values().map(|n| n.id).max().unwrap_or(0) + 1;
        let net = Network {
            id,
            name: req.name.clone(),
            driver: LAN_DRIVER.into(),
            pool,
            mtu: req.mtu.unwrap_or(dev.mtu),
            internal: false,
            icc: opts.icc,
            last_ip: None,
            builtin: false,
            user_subnet: true,
            masquerade: false,
            host_binding: None,
            parent: Some(parent.clone()),
            ipv6: None,
        };
        ipam::validate_mtu(net.mtu)?;
        g.dp.upsert_network(id, network_info(&net))?;
        if let Err(e) = g.store.apply(Change {
            put_networks: vec![&net],
            ..Default::default()
        }) {
            g.dp.remove_network(id);
            return Err(e.into());
        }
        g.networks.insert(net.name.clone(), net.clone());
        after_commit(
            "syncing the lan parents",
            self.sync_lan_parents(g).await.map(|_| ()),
        );
        self.request_reconcile();
        info!(network = %net.name, subnet = %subnet, parent = %parent, "lan network created");
        Ok(Self::network_view(g, &net))
    }

    /// `DP_LAN_PARENTS` from the `lan` networks and their parents' current
    /// ifindex and MAC (a parent that is missing has no entry: its
    /// containers are unreachable from the LAN until it is back).
    pub(crate) async fn sync_lan_parents(&self, g: &mut Inner) -> Result<usize> {
        let mut want = StdHashMap::new();
        for n in g.networks.values().filter(|n| n.driver == LAN_DRIVER) {
            let Some(p) = &n.parent else { continue };
            if let Some(dev) = kernel::netdev_by_name(&g.host, p).await? {
                want.insert(
                    n.id,
                    LanParent {
                        ifindex: dev.index,
                        mac: dev.mac,
                        _pad: [0; 2],
                    },
                );
            }
        }
        g.dp.sync_lan_parents(&want)
    }
}

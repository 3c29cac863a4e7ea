//! Point-to-point links (`dataplane p2p create|ls|rm`), the Docker guide's
//! "Building a point-to-point connection" as a command: a veth pair of its
//! own between two containers' namespaces (or a container's and the host's),
//! each end with a /32 address and a host route to the other. The link is in
//! addition to the containers' networks and bypasses them: nothing else can
//! send into it, so there is nothing for the datapath to steer or police on
//! it. Persisted; the reconciler ([`crate::reconcile`]) re-makes a link whose
//! interfaces vanished and collects host-side ends no link owns.

use std::{fs::File, os::fd::AsRawFd};

use rtnetlink::{
    packet_route::{
        link::{InfoData, InfoVeth},
        route::RouteScope,
    },
    LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::*;
use crate::model::{P2pCreate, P2pLink, P2pView, P2P_HOST};

/// Addresses handed out in pairs when `p2p create` is given none: link-local,
/// never routed beyond the link.
const P2P_POOL: Ipv4Addr = Ipv4Addr::new(169, 254, 200, 0);
const P2P_POOL_PAIRS: u32 = 127;

/// Whether `name` is a host-side p2p interface (`dpp<id>`).
pub(crate) fn p2p_host_ifname_id(name: &str) -> Option<u32> {
    let id = name.strip_prefix("dpp")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

fn check_p2p_ip(what: &str, ip: Ipv4Addr) -> ApiResult<()> {
    if ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.octets()[0] == 0
        || ip.octets()[0] >= 240
    {
        return Err(bad(format!("{what} {ip} is not a unicast host address")));
    }
    Ok(())
}

impl Engine {
    /// The namespace an end of a link lives in.
    pub(crate) fn p2p_end_netns(&self, end: &str) -> PathBuf {
        if end == P2P_HOST {
            self.cfg.run_dir.join("host.netns")
        } else {
            self.netns_path(end)
        }
    }

    pub async fn create_p2p(&self, req: P2pCreate) -> ApiResult<P2pView> {
        let name = req
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", req.a, req.b));
        ipam::validate_name("p2p link", &name)?;
        if req.a == req.b {
            return Err(bad("a point-to-point link needs two different ends"));
        }
        let ips = match (req.ip.as_deref(), req.peer_ip.as_deref()) {
            (Some(a), Some(b)) => Some((ipam::parse_ip(a)?, ipam::parse_ip(b)?)),
            (None, None) => None,
            _ => return Err(bad("--ip and --peer-ip go together")),
        };
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if g.p2p.contains_key(&name) {
            return Err(Error::Conflict(format!("p2p link {name} already exists")));
        }
        for end in [&req.a, &req.b] {
            if end == P2P_HOST {
                continue;
            }
            let c = g
                .containers
                .get(end)
                .ok_or_else(|| Error::NotFound(format!("container {end} not found")))?;
            if !matches!(
                c.network_mode,
                NetworkMode::Bridge | NetworkMode::None | NetworkMode::Attached(_)
            ) {
                return Err(bad(format!(
                    "container {end} has network mode {}: link the container whose namespace it uses",
                    c.network_mode.describe()
                )));
            }
        }
        let used: BTreeSet<Ipv4Addr> = g.p2p.values().flat_map(|l| [l.a_ip, l.b_ip]).collect();
        let (a_ip, b_ip) = match ips {
            Some((a, b)) => {
                check_p2p_ip("--ip", a)?;
                check_p2p_ip("--peer-ip", b)?;
                if a == b {
                    return Err(bad("--ip and --peer-ip must differ"));
                }
                (a, b)
            }
            None => (0..P2P_POOL_PAIRS)
                .map(|k| {
                    let base = u32::from(P2P_POOL) + 2 * k;
                    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
                })
                .find(|(a, b)| !used.contains(a) && !used.contains(b))
                .ok_or_else(|| {
                    bad("no free address pair left in 169.254.200.0/24; pass --ip and --peer-ip")
                })?,
        };
        for ip in [a_ip, b_ip] {
            if let Some(l) = g.p2p.values().find(|l| l.a_ip == ip || l.b_ip == ip) {
                return Err(Error::Conflict(format!(
                    "address {ip} is already used by p2p link {}",
                    l.name
                )));
            }
            if let Some(n) = g.networks.values().find(|n| n.pool.subnet.contains(&ip)) {
                return Err(Error::Conflict(format!(
                    "address {ip} is inside network {}'s subnet {}",
                    n.name, n.pool.subnet
                )));
            }
        }
        let host_ips = kernel::host_addresses(&g.host).await?;
        if let Some(ip) = [a_ip, b_ip].into_iter().find(|ip| host_ips.contains(ip)) {
            return Err(Error::Conflict(format!(
                "address {ip} is already an address of this host"
            )));
        }
        // Lowest free id; `dpp<id>` must fit IFNAMSIZ (15).
        let id = (1..=9_999_999u32)
            .find(|i| !g.p2p.values().any(|l| l.id == *i))
            .ok_or_else(|| Error::Unavailable("no free p2p link id".into()))?;
        let link = P2pLink {
            id,
            name: name.clone(),
            a: req.a,
            b: req.b,
            a_ip,
            b_ip,
        };
        self.make_p2p(&link)
            .await
            .map_err(|e| Error::Internal(e.context(format!("creating p2p link {name}"))))?;
        if let Err(e) = g.store.apply(Change {
            put_p2p: vec![&link],
            ..Default::default()
        }) {
            let _ = self.unmake_p2p(&link).await;
            return Err(e.into());
        }
        let view = P2pView::from(&link);
        g.p2p.insert(name.clone(), link);
        info!(link = %name, "p2p link created");
        Ok(view)
    }

    pub async fn list_p2p(&self) -> Vec<P2pView> {
        let g = self.inner.lock().await;
        g.p2p.values().map(P2pView::from).collect()
    }

    pub async fn remove_p2p(&self, name: &str) -> ApiResult<()> {
        let mut g = self.inner.lock().await;
        let link = g
            .p2p
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("p2p link {name} not found")))?;
        g.store.apply(Change {
            del_p2p: vec![name],
            ..Default::default()
        })?;
        g.p2p.remove(name);
        after_commit("removing the p2p veth", self.unmake_p2p(&link).await);
        info!(link = %name, "p2p link removed");
        Ok(())
    }

    /// The links a container is an end of (`container inspect`).
    pub(crate) fn p2p_views_of(g: &Inner, container: &str) -> Vec<P2pView> {
        g.p2p
            .values()
            .filter(|l| l.a == container || l.b == container)
            .map(P2pView::from)
            .collect()
    }

    /// Create the veth pair and configure both ends (whatever is left of an
    /// earlier one is removed first).
    pub(crate) async fn make_p2p(&self, l: &P2pLink) -> Result<()> {
        self.unmake_p2p(l).await?;
        let (if_a, if_b) = (l.ifname(&l.a), l.ifname(&l.b));
        let ha = kernel::handle_in_netns(&self.p2p_end_netns(&l.a))?;
        let hb = kernel::handle_in_netns(&self.p2p_end_netns(&l.b))?;
        let fb = File::open(self.p2p_end_netns(&l.b))?;
        let peer = LinkUnspec::new_with_name(&if_b)
            .setns_by_fd(fb.as_raw_fd())
            .build();
        let msg = LinkVeth::new(&if_a, &if_b)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        ha.link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("creating veth {if_a}"))?;
        drop(fb);
        let res = async {
            configure_p2p_end(&ha, &if_a, l.a_ip, l.b_ip).await?;
            configure_p2p_end(&hb, &if_b, l.b_ip, l.a_ip).await
        }
        .await;
        if res.is_err() {
            let _ = self.unmake_p2p(l).await;
        }
        res
    }

    /// Delete both ends (deleting one deletes its peer; both are tried in
    /// case the pair was split).
    pub(crate) async fn unmake_p2p(&self, l: &P2pLink) -> Result<()> {
        for end in [&l.a, &l.b] {
            let ns = self.p2p_end_netns(end);
            if !ns.exists() {
                continue;
            }
            let h = kernel::handle_in_netns(&ns)?;
            kernel::delete_netdev(&h, &l.ifname(end)).await?;
        }
        Ok(())
    }

    /// Whether both ends of a link are present with their address.
    pub(crate) async fn p2p_intact(&self, l: &P2pLink) -> Result<bool> {
        for (end, ip) in [(&l.a, l.a_ip), (&l.b, l.b_ip)] {
            let h = kernel::handle_in_netns(&self.p2p_end_netns(end))?;
            if kernel::netdev_by_name(&h, &l.ifname(end)).await?.is_none()
                || !kernel::host_addresses(&h).await?.contains(&ip)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

async fn configure_p2p_end(h: &Handle, ifname: &str, ip: Ipv4Addr, peer: Ipv4Addr) -> Result<()> {
    let dev = kernel::netdev_by_name(h, ifname)
        .await?
        .ok_or_else(|| anyhow!("{ifname} vanished"))?;
    h.address()
        .add(dev.index, std::net::IpAddr::V4(ip), 32)
        .replace()
        .execute()
        .await
        .with_context(|| format!("adding {ip}/32 to {ifname}"))?;
    h.link()
        .set(LinkUnspec::new_with_index(dev.index).up().build())
        .execute()
        .await?;
    let r = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(peer, 32)
        .output_interface(dev.index)
        .scope(RouteScope::Link)
        .pref_source(ip)
        .build();
    h.route()
        .add(r)
        .replace()
        .execute()
        .await
        .with_context(|| format!("adding the route to {peer} on {ifname}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_names() {
        assert_eq!(p2p_host_ifname_id("dpp7"), Some(7));
        assert_eq!(p2p_host_ifname_id("dpp"), None);
        assert_eq!(p2p_host_ifname_id("dpp1a"), None);
        assert_eq!(p2p_host_ifname_id("dp00000001"), None);
        let l = P2pLink {
            id: 3,
            name: "x".into(),
            a: "host".into(),
            b: "web".into(),
            a_ip: Ipv4Addr::new(169, 254, 200, 1),
            b_ip: Ipv4Addr::new(169, 254, 200, 2),
        };
        assert_eq!(l.ifname(&l.a), "dpp3");
        assert_eq!(l.ifname(&l.b), "p2p3");
    }

    #[test]
    fn p2p_addresses_must_be_unicast() {
        assert!(check_p2p_ip("--ip", Ipv4Addr::new(10, 1, 1, 1)).is_ok());
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "0.1.2.3",
        ] {
            assert!(check_p2p_ip("--ip", bad.parse().unwrap()).is_err(), "{bad}");
        }
    }
}

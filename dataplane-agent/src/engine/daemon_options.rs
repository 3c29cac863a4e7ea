//! Daemon-wide defaults with dockerd's names and meaning: `--mtu`,
//! `--fixed-cidr`, `--ip-masq` (the default network), `--ip` (default host
//! address of published ports), `--dns`/`--dns-search` (containers' defaults)
//! `--default-address-pool` (where automatic subnets come from), and
//! `--ipv6`/`--fixed-cidr-v6` (the default network is dual stack).
//!
//! They are parsed and validated here once, before the agent starts, so that a
//! bad value stops the agent with one line and changes nothing.

use super::*;

/// Docker's default pools for user-defined networks: 172.18-31.0.0/16
/// (172.17.0.0/16 is the default network's), then 192.168.0-240.0/20.
fn docker_default_pools() -> Vec<AddressPool> {
    let b = (18..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok());
    b.map(|base| AddressPool { base, size: 16 })
        .chain(
            Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16)
                .ok()
                .map(|base| AddressPool { base, size: 20 }),
        )
        .collect()
}

/// One `--default-address-pool base=CIDR,size=N`: subnets of prefix `size`
/// carved out of `base`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Ipv4Net,
    pub size: u8,
}

impl AddressPool {
    /// Parse dockerd's syntax: `base=10.10.0.0/16,size=24` (keys in any order).
    pub fn parse(s: &str) -> Result<AddressPool> {
        let mut base = None;
        let mut size = None;
        for part in s.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                anyhow!("invalid --default-address-pool {s:?}: expected base=CIDR,size=N")
            })?;
            match k.trim() {
                "base" => {
                    let net: Ipv4Net = v.trim().parse().map_err(|_| {
                        anyhow!("invalid --default-address-pool base {v:?}: expected an IPv4 CIDR")
                    })?;
                    if net.trunc() != net {
                        bail!("invalid --default-address-pool base {v}: host bits are set");
                    }
                    base = Some(net);
                }
                "size" => {
                    size = Some(v.trim().parse::<u8>().map_err(|_| {
                        anyhow!(
                            "invalid --default-address-pool size {v:?}: expected a prefix length"
                        )
                    })?);
                }
                other => {
                    bail!("invalid --default-address-pool key {other:?}: expected base or size")
                }
            }
        }
        let (Some(base), Some(size)) = (base, size) else {
            bail!("invalid --default-address-pool {s:?}: both base= and size= are needed");
        };
        if size < base.prefix_len() || size > 30 {
            bail!(
                "invalid --default-address-pool {s:?}: size must be between the base's prefix ({}) and 30",
                base.prefix_len()
            );
        }
        Ok(AddressPool { base, size })
    }

    /// The subnets this pool hands out, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.base.subnets(self.size).into_iter().flatten()
    }
}

/// The daemon-wide defaults (see the module docs). `Default` is dockerd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonDefaults {
    /// `--mtu`: the default network's MTU.
    pub mtu: u32,
    /// `--fixed-cidr`: the default network hands out addresses from this
    /// sub-range of `--bip` only.
    pub fixed_cidr: Option<Ipv4Net>,
    /// `--ip-masq`: masquerade the default network's traffic leaving the host.
    pub ip_masq: bool,
    /// `--ip`: host address of published ports given without one (unless the
    /// network has its own `host_binding_ipv4`).
    pub bind_ip: Ipv4Addr,
    /// `--dns`: DNS servers of containers that give none.
    pub dns: Vec<String>,
    /// `--dns-search`: search domains of containers that give none.
    pub dns_search: Vec<String>,
    /// `--default-address-pool`: where automatic subnets come from.
    pub address_pools: Vec<AddressPool>,
    /// `--ipv6`: the default network is dual stack.
    pub ipv6: bool,
    /// `--fixed-cidr-v6`: the default network's IPv6 subnet (default: the
    /// first free `fd00:dead:N::/64`).
    pub fixed_cidr_v6: Option<ipnet::Ipv6Net>,
}

impl Default for DaemonDefaults {
    fn default() -> Self {
        DaemonDefaults {
            mtu: DEFAULT_MTU,
            fixed_cidr: None,
            ip_masq: true,
            bind_ip: Ipv4Addr::UNSPECIFIED,
            dns: Vec::new(),
            dns_search: Vec::new(),
            address_pools: docker_default_pools(),
            ipv6: false,
            fixed_cidr_v6: None,
        }
    }
}

impl DaemonDefaults {
    /// Check the defaults against each other and `--bip`: the errors dockerd
    /// gives (a `--fixed-cidr` outside `--bip`, a bad MTU, a bad server).
    pub fn validate(&self, bip: &str) -> Result<()> {
        let (_, subnet) = parse_bip(bip)?;
        if let Some(f) = self.fixed_cidr {
            if f.trunc() != f {
                bail!("invalid --fixed-cidr {f}: host bits are set");
            }
            if !subnet.contains(&f) {
                bail!("invalid --fixed-cidr {f}: not inside the default network's subnet {subnet} (--bip)");
            }
        }
        if let Some(f) = self.fixed_cidr_v6 {
            if !self.ipv6 {
                bail!("--fixed-cidr-v6 {f} needs --ipv6");
            }
            if f.trunc() != f {
                bail!("invalid --fixed-cidr-v6 {f}: host bits are set");
            }
            if f.prefix_len() > ipam::v6::MAX_PREFIX6 {
                bail!(
                    "invalid --fixed-cidr-v6 {f}: the prefix must be /{} or shorter",
                    ipam::v6::MAX_PREFIX6
                );
            }
        }
        ipam::validate_mtu(self.mtu).map_err(|e| anyhow!("invalid --mtu: {e}"))?;
        if self.bind_ip.is_multicast() || self.bind_ip.is_broadcast() {
            bail!("invalid --ip {}: not a host address", self.bind_ip);
        }
        crate::dns::files::DnsConfig::parse(&self.dns, &self.dns_search, &[], &[])
            .map_err(|e| anyhow!("invalid --dns/--dns-search: {e:#}"))?;
        if self
            .dns
            .iter()
            .any(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
        {
            bail!("invalid --dns: IPv6 servers are not supported (containers are IPv4-only)");
        }
        if self.address_pools.is_empty() {
            bail!("no --default-address-pool left");
        }
        Ok(())
    }

    /// The automatic subnets in the order they are handed out.
    pub fn pool_subnets(&self) -> Vec<Ipv4Net> {
        self.address_pools
            .iter()
            .flat_map(AddressPool::subnets)
            .collect()
    }

    /// What `network create` is asked for the default network.
    pub(crate) fn default_network_request(&self, bip: &str, icc: bool) -> Result<NetworkCreate> {
        let (gw, subnet) = parse_bip(bip)?;
        let mut options = std::collections::BTreeMap::new();
        if !self.ip_masq {
            options.insert(OPT_MASQ.to_string(), "false".to_string());
        }
        Ok(NetworkCreate {
            name: DEFAULT_NETWORK.into(),
            subnet: Some(subnet.to_string()),
            gateway: Some(gw.to_string()),
            ip_range: self.fixed_cidr.map(|f| f.to_string()),
            mtu: Some(self.mtu),
            icc: Some(icc),
            options,
            ipv6: self.ipv6,
            subnet6: self.fixed_cidr_v6.map(|f| f.to_string()),
            ..Default::default()
        })
    }

    /// Fill a container's DNS settings with the daemon's where it gives none
    /// (as dockerd does; `container:NAME` mode takes its peer's, so nothing).
    pub(crate) fn apply_to(&self, req: &mut ContainerCreate) {
        let joins_peer = req
            .network
            .as_deref()
            .is_some_and(|n| n.starts_with("container:"));
        if joins_peer {
            return;
        }
        if req.dns.is_empty() {
            req.dns.clone_from(&self.dns);
        }
        if req.dns_search.is_empty() {
            req.dns_search.clone_from(&self.dns_search);
        }
    }
}

/// True when the stored default network already is what the flags ask for.
pub(crate) fn default_network_matches(n: &Network, want: &NetworkCreate) -> bool {
    let range = want
        .ip_range
        .as_deref()
        .and_then(|r| r.parse::<Ipv4Net>().ok());
    Some(n.pool.subnet.to_string()) == want.subnet
        && Some(n.pool.gateway.to_string()) == want.gateway
        && n.pool.range == range
        && Some(n.mtu) == want.mtu
        && Some(n.icc) == want.icc
        && n.masquerade != want.options.contains_key(OPT_MASQ)
        && match (&n.ipv6, want.ipv6, &want.subnet6) {
            (None, false, _) | (Some(_), true, None) => true,
            (Some(p), true, Some(s)) => p.net().to_string() == *s,
            _ => false,
        }
}

impl Engine {
    /// The host address of a published port given without one: the
    /// network's `host_binding_ipv4`, else the daemon's `--ip`.
    pub(crate) fn default_host_ip(&self, net: Option<&Network>) -> Ipv4Addr {
        net.and_then(|n| n.host_binding)
            .unwrap_or(self.cfg.defaults.bind_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_pool_parsing() {
        let p = AddressPool::parse("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!(p.base.to_string(), "10.10.0.0/16");
        assert_eq!(p.size, 24);
        assert_eq!(p.subnets().count(), 256);
        assert_eq!(p.subnets().next().unwrap().to_string(), "10.10.0.0/24");
        assert_eq!(
            AddressPool::parse("size=20, base=10.0.0.0/8").unwrap().size,
            20
        );
        for bad in [
            "",
            "base=10.10.0.0/16",
            "size=24",
            "base=10.10.0.1/16,size=24",
            "base=10.10.0.0/16,size=8",
            "base=10.10.0.0/16,size=31",
            "base=fd00::/64,size=80",
            "base=10.10.0.0/16,size=24,color=red",
        ] {
            let e = AddressPool::parse(bad).unwrap_err().to_string();
            assert!(
                !e.contains('\n') && e.contains("--default-address-pool"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn docker_pools_skip_docker0() {
        let d = DaemonDefaults::default();
        let s = d.pool_subnets();
        assert_eq!(s[0].to_string(), "172.18.0.0/16");
        assert_eq!(s[13].to_string(), "172.31.0.0/16");
        assert_eq!(s[14].to_string(), "192.168.0.0/20");
        assert_eq!(s.len(), 30);
    }

    #[test]
    fn validation() {
        let mut d = DaemonDefaults::default();
        d.validate("172.17.0.1/16").unwrap();
        d.fixed_cidr = Some("172.17.5.0/24".parse().unwrap());
        d.validate("172.17.0.1/16").unwrap();
        d.fixed_cidr = Some("10.0.0.0/24".parse().unwrap());
        assert!(d
            .validate("172.17.0.1/16")
            .unwrap_err()
            .to_string()
            .contains("--fixed-cidr"));
        d.fixed_cidr = None;
        d.mtu = 10;
        assert!(d
            .validate("172.17.0.1/16")
            .unwrap_err()
            .to_string()
            .contains("--mtu"));
        d.mtu = 1400;
        d.dns = vec!["not-an-ip".into()];
        assert!(d.validate("172.17.0.1/16").is_err());
    }

    #[test]
    fn dns_defaults_fill_only_what_is_missing() {
        let d = DaemonDefaults {
            dns: vec!["10.0.0.53".into()],
            dns_search: vec!["corp.example".into()],
            ..Default::default()
        };
        let mut r = ContainerCreate {
            dns: vec!["9.9.9.9".into()],
            ..Default::default()
        };
        d.apply_to(&mut r);
        assert_eq!(r.dns, vec!["9.9.9.9".to_string()]);
        assert_eq!(r.dns_search, vec!["corp.example".to_string()]);
        let mut peer = ContainerCreate {
            network: Some("container:web".into()),
            ..Default::default()
        };
        d.apply_to(&mut peer);
        assert!(peer.dns.is_empty() && peer.dns_search.is_empty());
    }
}

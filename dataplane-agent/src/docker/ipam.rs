//! The plugin's persisted state: the IPAM driver's pools (one per Docker
//! network using `--ipam-driver NAME`) and the addresses handed out of
//! them, and which engine network each Docker network of the driver is
//! (Docker names its networks to a plugin only by id). Persisted in
//! `<state-dir>/docker-<name>.json` (written whole, atomically, on every
//! change: dockerd never replays its requests after a restart).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{error::Error, ipam};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    pub subnet: Ipv4Net,
    pub range: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub addresses: BTreeSet<Ipv4Addr>,
}

/// The engine network a Docker network is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerNetwork {
    /// The engine network's name (`-o dataplane.name`, else `docker-` +
    /// 12 hex digits of the id).
    pub network: String,
    /// A cluster (overlay) network this Docker network joined
    /// (`-o dataplane.overlay=true`).
    #[serde(default)]
    pub overlay: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IpamState {
    /// Pool id (the subnet, or `subnet/range`) -> pool.
    pub pools: BTreeMap<String, PoolState>,
    /// Docker network id -> engine network (only networks created since
    /// names were recorded; others are `docker-` + 12 hex digits).
    #[serde(default)]
    pub networks: BTreeMap<String, DockerNetwork>,
    #[serde(skip)]
    path: PathBuf,
}

/// Pools handed out when `docker network create` names no subnet (as
/// Docker's defaults, from the top of 172.16.0.0/12 down so that they rarely
/// meet the engine's own default networks).
fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    (18..=31)
        .rev()
        .filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok())
}

fn ipam_err(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

impl IpamState {
    pub fn load(path: &Path) -> Result<IpamState> {
        let mut s: IpamState = match std::fs::read(path) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("reading {}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IpamState::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        s.path = path.to_path_buf();
        Ok(s)
    }

    fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming {}", tmp.display()))?;
        Ok(())
    }

    /// Apply `f` to a copy, persist it, then keep it: a failed write changes
    /// nothing.
    fn change<T>(
        &mut self,
        f: impl FnOnce(&mut BTreeMap<String, PoolState>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut pools = self.pools.clone();
        let out = f(&mut pools)?;
        let old = std::mem::replace(&mut self.pools, pools);
        if let Err(e) = self.save() {
            self.pools = old;
            return Err(e.into());
        }
        Ok(out)
    }

    /// RequestPool: `pool` (empty: a free default pool), optionally with a
    /// sub-pool (`--ip-range`). `taken` are the subnets of the engine's
    /// networks; overlapping subnets are refused.
    pub fn request_pool(
        &mut self,
        pool: &str,
        sub_pool: &str,
        taken: &[(String, Ipv4Net)],
    ) -> Result<(String, Ipv4Net), Error> {
        let range = (!sub_pool.is_empty())
            .then(|| ipam::parse_subnet(sub_pool))
            .transpose()?;
        self.change(|pools| {
            let others: Vec<(String, Ipv4Net)> = pools
                .iter()
                .map(|(id, p)| (format!("pool {id}"), p.subnet))
                .chain(taken.iter().cloned())
                .collect();
            let subnet = if pool.is_empty() {
                default_pools()
                    .find(|s| {
                        ipam::Pool::check_overlap(*s, others.iter().map(|(n, s)| (n.as_str(), *s)))
                            .is_ok()
                    })
                    .ok_or_else(|| {
                        Error::Unavailable("no free subnet left in the default pools".into())
                    })?
            } else {
                let s = ipam::parse_subnet(pool)?;
                ipam::Pool::check_overlap(s, others.iter().map(|(n, s)| (n.as_str(), *s)))?;
                s
            };
            if let Some(r) = range {
                if !subnet.contains(&r) {
                    return Err(ipam_err(format!("ip range {r} is not inside {subnet}")));
                }
            }
            let id = match range {
                Some(r) => format!("{subnet}/{r}"),
                None => subnet.to_string(),
            };
            pools.insert(
                id.clone(),
                PoolState {
                    subnet,
                    range,
                    ..Default::default()
                },
            );
            Ok((id, subnet))
        })
    }

    /// The engine network of Docker network `id`.
    pub fn network_of(&self, id: &str) -> DockerNetwork {
        self.networks
            .get(id)
            .cloned()
            .unwrap_or_else(|| DockerNetwork {
                network: super::engine_name(id),
                overlay: false,
            })
    }

    /// Record (or with `None` forget) the engine network of Docker network
    /// `id`, persisted before it is kept.
    pub fn set_network(&mut self, id: &str, n: Option<DockerNetwork>) -> Result<(), Error> {
        let old = self.networks.clone();
        match n {
            Some(n) => self.networks.insert(id.to_string(), n),
            None => self.networks.remove(id),
        };
        if let Err(e) = self.save() {
            self.networks = old;
            return Err(e.into());
        }
        Ok(())
    }

    /// The subnet of pool `id`.
    pub fn pool_subnet(&self, id: &str) -> Option<Ipv4Net> {
        self.pools.get(id).map(|p| p.subnet)
    }

    pub fn release_pool(&mut self, id: &str) -> Result<(), Error> {
        self.change(|pools| {
            pools.remove(id);
            Ok(())
        })
    }

    /// RequestAddress: the gateway (`gateway`: the given address or the
    /// pool's first), a given address (`--ip`) or the lowest free one.
    pub fn request_address(
        &mut self,
        id: &str,
        address: &str,
        gateway: bool,
    ) -> Result<Ipv4Net, Error> {
        let want = (!address.is_empty())
            .then(|| ipam::parse_ip(address))
            .transpose()?;
        self.change(|pools| {
            let p = pools
                .get_mut(id)
                .ok_or_else(|| Error::NotFound(format!("pool {id} not found")))?;
            let first = p.subnet.hosts().next();
            let ip = match want {
                Some(ip) => {
                    if !p.subnet.contains(&ip)
                        || ip == p.subnet.network()
                        || (p.subnet.prefix_len() < 31 && ip == p.subnet.broadcast())
                    {
                        return Err(ipam_err(format!(
                            "requested address {ip} is out of range of {}",
                            p.subnet
                        )));
                    }
                    if p.addresses.contains(&ip) {
                        return Err(Error::Conflict(format!("Address already in use: {ip}")));
                    }
                    ip
                }
                None if gateway => first.ok_or_else(|| ipam_err("the pool has no address"))?,
                None => {
                    let within = p.range.unwrap_or(p.subnet);
                    within
                        .hosts()
                        .find(|ip| {
                            p.subnet.contains(ip)
                                && *ip != p.subnet.network()
                                && *ip != p.subnet.broadcast()
                                && !p.addresses.contains(ip)
                        })
                        .ok_or_else(|| {
                            Error::Unavailable(format!("no available addresses in pool {id}"))
                        })?
                }
            };
            p.addresses.insert(ip);
            if gateway {
                p.gateway = Some(ip);
            }
            Ipv4Net::new(ip, p.subnet.prefix_len()).map_err(|e| ipam_err(e.to_string()))
        })
    }

    pub fn release_address(&mut self, id: &str, address: &str) -> Result<(), Error> {
        let ip = ipam::parse_ip(address)?;
        self.change(|pools| {
            if let Some(p) = pools.get_mut(id) {
                p.addresses.remove(&ip);
                if p.gateway == Some(ip) {
                    p.gateway = None;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (IpamState, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "dp-docker-ipam-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker-t.json");
        (IpamState::load(&path).unwrap(), path)
    }

    #[test]
    fn pools_addresses_and_overlaps() {
        let (mut s, path) = state();
        let (id, subnet) = s.request_pool("10.80.0.0/24", "", &[]).unwrap();
        assert_eq!(subnet.to_string(), "10.80.0.0/24");
        assert!(s.request_pool("10.80.0.128/25", "", &[]).is_err());
        let gw = s.request_address(&id, "", true).unwrap();
        assert_eq!(gw.to_string(), "10.80.0.1/24");
        let a = s.request_address(&id, "", false).unwrap();
        assert_eq!(a.to_string(), "10.80.0.2/24");
        assert!(s.request_address(&id, "10.80.0.2", false).is_err());
        assert!(s.request_address(&id, "10.81.0.2", false).is_err());
        assert_eq!(
            s.request_address(&id, "10.80.0.50", false)
                .unwrap()
                .to_string(),
            "10.80.0.50/24"
        );
        // Persisted: a reload sees the same.
        let again = IpamState::load(&path).unwrap();
        assert_eq!(again.pools, s.pools);
        s.release_address(&id, "10.80.0.2").unwrap();
        assert_eq!(
            s.request_address(&id, "", false).unwrap().to_string(),
            "10.80.0.2/24"
        );
        s.release_pool(&id).unwrap();
        assert!(s.request_pool("10.80.0.128/25", "", &[]).is_ok());
        let taken = vec![("net".to_string(), "10.90.0.0/16".parse().unwrap())];
        assert!(s.request_pool("10.90.1.0/24", "", &taken).is_err());
        let (_, auto) = s.request_pool("", "", &[]).unwrap();
        assert_eq!(auto.to_string(), "172.31.0.0/16");
    }
}

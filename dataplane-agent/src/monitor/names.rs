//! Names for what the datapath sees: container and network of an address,
//! the endpoint of a host-side ifindex, the container behind a published
//! port. A snapshot of the engine's views and the pinned maps, taken when
//! a monitor starts and again at most once a second while events come.

use std::{collections::HashMap, net::Ipv4Addr};

use crate::{engine::Engine, model::ContainerView};

use super::tables::Tables;

/// Container and network of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub container: String,
    pub network: String,
}

#[derive(Debug, Default)]
pub struct Names {
    by_ip: HashMap<Ipv4Addr, Who>,
    by_ifindex: HashMap<u32, Who>,
    /// (host address or 0.0.0.0, port, protocol) -> container.
    ports: HashMap<(Ipv4Addr, u16, u8), String>,
    uplink_ifindex: u32,
    uplink_ip: Option<Ipv4Addr>,
    vxlan_ifindex: u32,
}

impl Names {
    pub async fn snapshot(engine: &Engine, tables: &Tables) -> Names {
        let containers = engine.list_containers().await;
        Names::build(&containers, tables)
    }

    pub fn build(containers: &[ContainerView], tables: &Tables) -> Names {
        let mut n = Names::default();
        for c in containers {
            for ep in &c.endpoints {
                n.by_ip.insert(
                    ep.ip,
                    Who {
                        container: c.name.clone(),
                        network: ep.network.clone(),
                    },
                );
            }
            for p in &c.ports {
                n.ports
                    .insert((p.host_ip, p.host_port, p.proto.number()), c.name.clone());
            }
        }
        for (ifindex, info) in tables.if_endpoints() {
            if let Some(w) = n.by_ip.get(&Ipv4Addr::from(info.ip)) {
                n.by_ifindex.insert(ifindex, w.clone());
            }
        }
        let cfg = tables.config();
        n.uplink_ifindex = cfg.uplink_ifindex;
        n.uplink_ip = (cfg.uplink_ip != [0; 4]).then(|| Ipv4Addr::from(cfg.uplink_ip));
        n.vxlan_ifindex = tables.vxlan_ifindex();
        n
    }

    /// The endpoint with this address.
    pub fn ip(&self, ip: Ipv4Addr) -> Option<&Who> {
        self.by_ip.get(&ip)
    }

    /// The endpoint whose host-side veth has this ifindex.
    pub fn ifindex(&self, ifindex: u32) -> Option<&Who> {
        self.by_ifindex.get(&ifindex)
    }

    /// What the interface is: `container@network`, `uplink`, `vxlan`.
    pub fn interface(&self, ifindex: u32) -> Option<String> {
        if let Some(w) = self.ifindex(ifindex) {
            return Some(format!("{}@{}", w.container, w.network));
        }
        if ifindex != 0 && ifindex == self.uplink_ifindex {
            return Some("uplink".into());
        }
        if ifindex != 0 && ifindex == self.vxlan_ifindex {
            return Some("vxlan".into());
        }
        None
    }

    /// The container a published port `ip:port/proto` leads to.
    pub fn published(&self, ip: Ipv4Addr, port: u16, proto: u8) -> Option<&String> {
        self.ports
            .get(&(ip, port, proto))
            .or_else(|| self.ports.get(&(Ipv4Addr::UNSPECIFIED, port, proto)))
    }

    pub fn uplink_ip(&self) -> Option<Ipv4Addr> {
        self.uplink_ip
    }
}

//! Published ports: choosing and reserving host ports, and the container's
//! `DP_PORTS` entries.

use super::*;

impl Engine {
    /// Choose and reserve host ports for `specs` (on `default_ip` where a
    /// spec names no host address). Nothing stays reserved if any of them
    /// fails. Any host port may be published, also one of the masquerade
    /// range: the datapath never masquerades to a published port.
    pub(super) async fn reserve_ports(
        &self,
        g: &mut Inner,
        specs: &[ports::PortSpec],
        default_ip: Ipv4Addr,
    ) -> ApiResult<Vec<PortMapping>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let host_ips = kernel::host_addresses(&g.host).await?;
        let mut out: Vec<PortMapping> = Vec::new();
        // (proto, port) -> (host ip, owner) of every published port: O(1)
        // conflict checks, also for ranges of thousands of ports.
        let mut published: HashMap<(Proto, u16), Vec<(Ipv4Addr, String)>> = HashMap::new();
        for c in g.containers.values() {
            for m in &c.ports {
                published
                    .entry((m.proto, m.host_port))
                    .or_default()
                    .push((m.host_ip, c.name.clone()));
            }
        }
        let res = (|| -> ApiResult<()> {
            for spec in specs {
                if spec.proto == Proto::Sctp {
                    return Err(bad(
                        "publishing SCTP ports is not supported (the datapath translates TCP and UDP)",
                    ));
                }
                let host_ip = spec.host_ip.unwrap_or(default_ip);
                if !host_ip.is_unspecified()
                    && !host_ip.is_loopback()
                    && !host_ips.contains(&host_ip)
                {
                    return Err(bad(format!(
                        "host IP {host_ip} is not an address of this host"
                    )));
                }
                for (i, cport) in spec.container_ports.iter().enumerate() {
                    let taken =
                        |p: u16, published: &HashMap<(Proto, u16), Vec<(Ipv4Addr, String)>>| {
                            published.get(&(spec.proto, p)).and_then(|v| {
                                v.iter()
                                    .find(|(ip, _)| {
                                        *ip == host_ip
                                            || ip.is_unspecified()
                                            || host_ip.is_unspecified()
                                    })
                                    .map(|(_, owner)| owner.clone())
                            })
                        };
                    let hport = match &spec.host_ports {
                        HostPorts::Exact(v) => {
                            let p = v[i];
                            if let Some(owner) = taken(p, &published) {
                                return Err(Error::Conflict(format!(
                                    "host port {host_ip}:{p}/{} is already published by {owner}",
                                    spec.proto.as_str()
                                )));
                            }
                            g.reservations.reserve(host_ip, p, spec.proto)?;
                            p
                        }
                        HostPorts::Random | HostPorts::OneOf(..) => {
                            let range = match spec.host_ports {
                                HostPorts::OneOf(a, b) => (a, b),
                                _ => g.port_range,
                            };
                            let mut skip: BTreeSet<u16> = BTreeSet::new();
                            let seed = rand::random::<u32>();
                            loop {
                                let Some(p) = ports::pick_port(range, &skip, seed) else {
                                    return Err(Error::Conflict(format!(
                                        "no free host port left in {}-{} for {cport}/{}",
                                        range.0,
                                        range.1,
                                        spec.proto.as_str()
                                    )));
                                };
                                skip.insert(p);
                                if taken(p, &published).is_some() {
                                    continue;
                                }
                                if g.reservations.reserve(host_ip, p, spec.proto).is_ok() {
                                    break p;
                                }
                            }
                        }
                    };
                    published
                        .entry((spec.proto, hport))
                        .or_default()
                        .push((host_ip, "this container".into()));
                    out.push(PortMapping {
                        host_ip,
                        host_port: hport,
                        container_port: *cport,
                        proto: spec.proto,
                    });
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            release_ports(g, &out);
            return Err(e);
        }
        Ok(out)
    }
}

pub(crate) fn release_ports(g: &mut Inner, mappings: &[PortMapping]) {
    for m in mappings {
        g.reservations.release(m.host_ip, m.host_port, m.proto);
    }
}

pub(crate) fn port_key(m: &PortMapping) -> PortKey {
    PortKey {
        ip: m.host_ip.octets(),
        port: m.host_port,
        proto: m.proto.number(),
        _pad: 0,
    }
}

/// DP_PORTS keys of a container's mappings (whether or not it has an
/// endpoint to lead them to).
pub(crate) fn port_keys(c: &Container) -> Vec<PortKey> {
    c.ports.iter().map(port_key).collect()
}

/// DP_PORTS entries of a container: its mappings, to its first endpoint.
pub(crate) fn port_entries(c: &Container) -> Vec<(PortKey, PortTarget)> {
    let Some(ep) = c.endpoints.first() else {
        return Vec::new();
    };
    c.ports
        .iter()
        .map(|m| {
            (
                port_key(m),
                PortTarget {
                    ip: ep.ip.octets(),
                    port: m.container_port,
                    _pad: 0,
                },
            )
        })
        .collect()
}

//! NetworkDriver calls: networks, endpoints, join/leave and published ports,
//! each a call of the engine.

use std::net::Ipv4Addr;

use axum::{body::Bytes, extract::State, response::Response};
use serde_json::{json, Value};

use super::{engine_name, ipam::DockerNetwork, parse, protocol::*, reply, P};
use crate::{
    error::{Error, ErrorKind},
    ipam as engine_ipam,
    model::{fmt_mac, NetworkCreate},
    ports::{HostPorts, PortSpec, Proto},
};

/// `10.80.0.1/24` or `10.80.0.1` -> the address.
fn addr_of(s: &str) -> Result<Ipv4Addr, Error> {
    let a = s.split('/').next().unwrap_or_default();
    engine_ipam::parse_ip(a).map_err(Error::from)
}

fn parse_mac(s: &str) -> Result<[u8; 6], Error> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(Error::invalid(format!("invalid MAC address {s:?}")));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| Error::invalid(format!("invalid MAC address {s:?}")))?;
    }
    Ok(mac)
}

/// A boolean option as dockerd sends it (bool or string).
fn opt_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `-o` options of `docker network create` this driver understands.
const ICC_OPT: &str = "com.docker.network.bridge.enable_icc";
/// The engine network's name (Docker passes only its network id).
pub(super) const NAME_OPT: &str = "dataplane.name";
/// A cluster-wide (overlay) network: needs the agent's cluster store and
/// [`NAME_OPT`], the name shared by every host.
pub(super) const OVERLAY_OPT: &str = "dataplane.overlay";

/// The engine network a `CreateNetwork` asks for, and what the plugin
/// records about it.
fn network_create(req: &CreateNetworkRequest) -> Result<(NetworkCreate, DockerNetwork), Error> {
    if req
        .ipv6_data
        .as_ref()
        .is_some_and(|v| v.iter().any(|d| !d.pool.is_empty()))
    {
        return Err(Error::invalid("IPv6 networks are not supported"));
    }
    let v4 = req.ipv4_data.as_deref().unwrap_or_default();
    let [data] = v4 else {
        return Err(Error::invalid(format!(
            "expected one IPv4 pool, got {}",
            v4.len()
        )));
    };
    let mut create = NetworkCreate {
        name: engine_name(&req.network_id),
        subnet: Some(data.pool.clone()),
        gateway: (!data.gateway.is_empty())
            .then(|| addr_of(&data.gateway).map(|a| a.to_string()))
            .transpose()?,
        internal: req.options.get(OPT_INTERNAL).and_then(opt_bool) == Some(true),
        ..Default::default()
    };
    let mut overlay = false;
    let mut name = None;
    if let Some(Value::Object(generic)) = req.options.get(OPT_GENERIC) {
        for (k, v) in generic {
            match k.as_str() {
                OPT_MTU => {
                    let mtu = match v {
                        Value::String(s) => s.parse::<u32>().ok(),
                        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                        _ => None,
                    }
                    .ok_or_else(|| Error::invalid(format!("invalid {OPT_MTU} {v}")))?;
                    create.mtu = Some(mtu);
                }
                ICC_OPT => {
                    create.icc = Some(
                        opt_bool(v)
                            .ok_or_else(|| Error::invalid(format!("invalid {ICC_OPT} {v}")))?,
                    );
                }
                NAME_OPT => match v {
                    Value::String(s) if !s.is_empty() => {
                        engine_ipam::validate_name("network", s)?;
                        name = Some(s.clone());
                    }
                    _ => return Err(Error::invalid(format!("invalid {NAME_OPT} {v}"))),
                },
                OVERLAY_OPT => {
                    overlay = opt_bool(v)
                        .ok_or_else(|| Error::invalid(format!("invalid {OVERLAY_OPT} {v}")))?;
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "unsupported option {k} (supported: {OPT_MTU}, {ICC_OPT}, {NAME_OPT}, {OVERLAY_OPT})"
                    )))
                }
            }
        }
    }
    if overlay {
        if name.is_none() {
            return Err(Error::invalid(format!(
                "{OVERLAY_OPT}=true needs -o {NAME_OPT}=NAME (the network's name on every host: Docker does not tell plugins its own)"
            )));
        }
        create.driver = Some("overlay".into());
        // The cluster chooses the gateway (the same on every host).
        create.gateway = None;
    }
    if let Some(n) = name {
        create.name = n;
    }
    let dn = DockerNetwork {
        network: create.name.clone(),
        overlay,
    };
    Ok((create, dn))
}

/// Whether engine network `name` is an overlay network of `subnet` (made by
/// this or another host), waiting up to 3 s for it to be materialised here
/// (the cluster watcher may not have seen another host's create yet).
async fn overlay_exists(p: &super::Plugin, name: &str, subnet: Option<&str>) -> bool {
    for _ in 0..30 {
        if let Some(n) = p
            .engine
            .list_networks()
            .await
            .into_iter()
            .find(|n| n.name == name)
        {
            return n.driver == "overlay" && n.subnet.map(|s| s.to_string()).as_deref() == subnet;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

pub(super) async fn create_network(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: CreateNetworkRequest = parse(&body)?;
        let (create, dn) = network_create(&req)?;
        let subnet = create.subnet.clone();
        match p.engine.create_network(create).await {
            Ok(_) => {}
            // The same cluster network, created by another host (or by this
            // one for another dockerd): this Docker network joins it.
            Err(e)
                if dn.overlay
                    && e.kind() == ErrorKind::Conflict
                    && overlay_exists(&p, &dn.network, subnet.as_deref()).await => {}
            Err(e) => return Err(e),
        }
        let recorded = p.ipam().set_network(&req.network_id, Some(dn.clone()));
        if let Err(e) = recorded {
            if !dn.overlay {
                let _ = p.engine.remove_network(&dn.network).await;
            }
            return Err(e);
        }
        tracing::info!(docker_network = %req.network_id, network = %dn.network, overlay = dn.overlay, "docker: network created");
        Ok(json!({}))
    }
    .await;
    reply(r)
}

pub(super) async fn delete_network(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: NetworkRequest = parse(&body)?;
        let dn = p.ipam().network_of(&req.network_id);
        // A cluster network stays for the other hosts (`dataplane network
        // rm` removes it when no host uses it); this Docker network leaves.
        if !dn.overlay {
            match p.engine.remove_network(&dn.network).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        p.ipam().set_network(&req.network_id, None)?;
        Ok(json!({}))
    }
    .await;
    reply(r)
}

pub(super) async fn create_endpoint(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: EndpointRequest = parse(&body)?;
        let iface = req.interface.unwrap_or_default();
        if iface.address.is_empty() {
            return Err(Error::invalid("the endpoint has no IPv4 address"));
        }
        let ip = addr_of(&iface.address)?;
        let mac = (!iface.mac_address.is_empty())
            .then(|| parse_mac(&iface.mac_address))
            .transpose()?;
        let network = p.ipam().network_of(&req.network_id).network;
        let ep = p
            .engine
            .create_external_endpoint(&engine_name(&req.endpoint_id), &network, ip, mac)
            .await?;
        // libnetwork refuses a value it supplied itself being answered.
        Ok(CreateEndpointResponse {
            interface: mac.is_none().then(|| EndpointInterface {
                mac_address: fmt_mac(&ep.mac),
                ..Default::default()
            }),
        })
    }
    .await;
    reply(r)
}

pub(super) async fn delete_endpoint(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: EndpointRequest = parse(&body)?;
        p.engine
            .delete_external(&engine_name(&req.endpoint_id))
            .await?;
        Ok(json!({}))
    }
    .await;
    reply(r)
}

pub(super) async fn endpoint_info(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: EndpointRequest = parse(&body)?;
        let c = p
            .engine
            .inspect_container(&engine_name(&req.endpoint_id))
            .await?;
        let value = c.endpoints.first().map_or_else(
            || json!({}),
            |e| {
                json!({
                    "ip": e.ip.to_string(),
                    "mac": e.mac,
                    "host_interface": e.host_interface,
                })
            },
        );
        Ok(json!({ "Value": value }))
    }
    .await;
    reply(r)
}

pub(super) async fn join(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: EndpointRequest = parse(&body)?;
        let info = p
            .engine
            .join_external(&engine_name(&req.endpoint_id), &req.sandbox_key)
            .await?;
        Ok(JoinResponse {
            interface_name: InterfaceName {
                src_name: info.interface,
                dst_prefix: "eth".into(),
            },
            gateway: info.gateway.map(|g| g.to_string()).unwrap_or_default(),
            disable_gateway_service: true,
        })
    }
    .await;
    reply(r)
}

pub(super) async fn leave(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: EndpointRequest = parse(&body)?;
        p.engine
            .leave_external(&engine_name(&req.endpoint_id))
            .await?;
        Ok(json!({}))
    }
    .await;
    reply(r)
}

/// Docker's port bindings as the engine's `-p` specs (IPv6 host addresses
/// are left out: the datapath is IPv4).
fn port_specs(bindings: &[PortBinding]) -> Result<Vec<PortSpec>, Error> {
    let mut out = Vec::new();
    for b in bindings {
        let proto = match b.proto {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            n => {
                return Err(Error::invalid(format!(
                    "unsupported protocol {} for port {}",
                    if n == 132 {
                        "sctp".to_string()
                    } else {
                        n.to_string()
                    },
                    b.port
                )))
            }
        };
        let host_ip = match b.host_ip.as_deref().unwrap_or_default() {
            "" => None,
            s if s.contains(':') => {
                if s == "::" {
                    continue;
                }
                return Err(Error::invalid(format!(
                    "IPv6 host address {s} is not supported"
                )));
            }
            s => Some(engine_ipam::parse_ip(s)?).filter(|ip| !ip.is_unspecified()),
        };
        let host_ports = match (b.host_port, b.host_port_end) {
            (0, _) => HostPorts::Random,
            (a, e) if e > a => HostPorts::OneOf(a, e),
            (a, _) => HostPorts::Exact(vec![a]),
        };
        out.push(PortSpec {
            host_ip,
            proto,
            container_ports: vec![b.port],
            host_ports,
        });
    }
    Ok(out)
}

/// Docker's wording for a host port that is taken.
fn docker_port_error(e: Error) -> Error {
    if e.kind() != ErrorKind::Conflict {
        return e;
    }
    let msg = e.to_string();
    // "host port 0.0.0.0:8080/tcp is already published by ..." / "... in use".
    match msg
        .strip_prefix("host port ")
        .and_then(|r| r.split('/').next())
    {
        Some(addr) => Error::Conflict(format!("Bind for {addr} failed: port is already allocated")),
        None => Error::Conflict(msg),
    }
}

pub(super) async fn program_external(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: EndpointRequest = parse(&body)?;
        let bindings: Vec<PortBinding> = match req.options.as_ref().and_then(|o| o.get(OPT_PORTMAP))
        {
            Some(v) if !v.is_null() => serde_json::from_value(v.clone())
                .map_err(|e| Error::invalid(format!("malformed {OPT_PORTMAP}: {e}")))?,
            _ => Vec::new(),
        };
        let specs = port_specs(&bindings)?;
        let name = engine_name(&req.endpoint_id);
        if specs.is_empty() {
            return Ok(json!({}));
        }
        let mapped = p
            .engine
            .publish_external(&name, &specs)
            .await
            .map_err(docker_port_error)?;
        tracing::info!(endpoint = %name, ports = ?mapped.iter().map(crate::ports::PortMapping::describe).collect::<Vec<_>>(), "docker: ports published");
        Ok(json!({}))
    }
    .await;
    reply(r)
}

pub(super) async fn revoke_external(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: EndpointRequest = parse(&body)?;
        match p
            .engine
            .publish_external(&engine_name(&req.endpoint_id), &[])
            .await
        {
            Ok(_) => Ok(json!({})),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(json!({})),
            Err(e) => Err(e),
        }
    }
    .await;
    reply(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_options() {
        let req: CreateNetworkRequest = serde_json::from_str(
            r#"{"NetworkID":"0123456789abcdef","Options":{"com.docker.network.internal":true,
            "com.docker.network.generic":{"com.docker.network.driver.mtu":"1400"}},
            "IPv4Data":[{"Pool":"10.80.0.0/24","Gateway":"10.80.0.1/24"}]}"#,
        )
        .unwrap();
        let (c, dn) = network_create(&req).unwrap();
        assert_eq!(c.name, "docker-0123456789ab");
        assert_eq!(dn.network, c.name);
        assert!(!dn.overlay);
        assert_eq!(c.mtu, Some(1400));
        assert!(c.internal);
        assert_eq!(c.gateway.as_deref(), Some("10.80.0.1"));
        let bad: CreateNetworkRequest = serde_json::from_str(
            r#"{"NetworkID":"x","Options":{"com.docker.network.generic":{"foo":"1"}},
            "IPv4Data":[{"Pool":"10.80.0.0/24"}]}"#,
        )
        .unwrap();
        assert!(network_create(&bad)
            .unwrap_err()
            .to_string()
            .contains("foo"));
        let named: CreateNetworkRequest = serde_json::from_str(
            r#"{"NetworkID":"x","Options":{"com.docker.network.generic":{"dataplane.name":"web",
            "dataplane.overlay":"true"}},"IPv4Data":[{"Pool":"10.90.0.0/24","Gateway":"10.90.0.1/24"}]}"#,
        )
        .unwrap();
        let (c, dn) = network_create(&named).unwrap();
        assert_eq!(
            (c.name.as_str(), c.driver.as_deref()),
            ("web", Some("overlay"))
        );
        assert_eq!(c.gateway, None);
        assert!(dn.overlay && dn.network == "web");
        let unnamed: CreateNetworkRequest = serde_json::from_str(
            r#"{"NetworkID":"x","Options":{"com.docker.network.generic":{"dataplane.overlay":"true"}},
            "IPv4Data":[{"Pool":"10.90.0.0/24"}]}"#,
        )
        .unwrap();
        assert!(network_create(&unnamed)
            .unwrap_err()
            .to_string()
            .contains("dataplane.name"));
    }

    #[test]
    fn bindings_to_specs() {
        let b = |proto, host_ip: &str, hp, hpe| PortBinding {
            proto,
            host_ip: Some(host_ip.into()),
            port: 80,
            host_port: hp,
            host_port_end: hpe,
            ..Default::default()
        };
        let s = port_specs(&[
            b(6, "", 8080, 8080),
            b(17, "127.0.0.1", 0, 0),
            b(6, "::", 8080, 8080),
            b(6, "0.0.0.0", 9000, 9010),
        ])
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].host_ports, HostPorts::Exact(vec![8080]));
        assert_eq!(s[1].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(s[1].proto, Proto::Udp);
        assert_eq!(s[2].host_ports, HostPorts::OneOf(9000, 9010));
        assert!(port_specs(&[b(132, "", 1, 1)]).is_err());
    }

    #[test]
    fn conflicts_in_dockers_words() {
        let e = docker_port_error(Error::Conflict(
            "host port 0.0.0.0:8080/tcp is already published by docker-x".into(),
        ));
        assert_eq!(
            e.to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
    }
}

//! The CNI commands (ADD, DEL, CHECK, GC, STATUS) as calls to the agent's
//! API (see the module docs of [`crate::cni`] for the mapping).

use std::{collections::BTreeMap, path::Path};

use serde_json::Value;

use super::{
    types::{self, AddResult, CniError, Code, Interface, IpConfig, NetConf, Route},
    Env,
};
use crate::{
    client::Client,
    error::{Error, ErrorKind},
    model::{
        AttachRequest, ConnectRequest, ContainerView, EndpointView, NetworkView, PublishRequest,
    },
    ports::PortMapping,
};

/// The agent's socket when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/dataplane/dataplane.sock";

/// The agent's container of a runtime's container id.
pub fn container_name(container_id: &str) -> String {
    let short: String = container_id.chars().take(12).collect();
    format!("cni-{short}")
}

/// One invocation's inputs.
pub struct Ctx<'a> {
    conf: &'a NetConf,
    env: &'a Env,
    args: BTreeMap<String, String>,
    client: Client,
    network: String,
}

impl<'a> Ctx<'a> {
    pub fn new(conf: &'a NetConf, env: &'a Env, args: BTreeMap<String, String>) -> Ctx<'a> {
        let socket = conf
            .socket
            .clone()
            .or_else(|| std::env::var("DATAPLANE_SOCKET").ok())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        Ctx {
            conf,
            env,
            args,
            client: Client::new(Path::new(&socket)),
            network: conf.network.clone().unwrap_or_else(|| conf.name.clone()),
        }
    }

    fn name(&self) -> String {
        container_name(&self.env.container_id)
    }

    /// The agent's network; a missing one is a configuration error.
    async fn network_view(&self) -> Result<NetworkView, CniError> {
        let path = format!("/v1/networks/{}", self.network);
        self.client.get(&path).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                CniError::new(
                    Code::InvalidConfig,
                    format!("network {} does not exist in the agent", self.network),
                )
            } else {
                agent_error(&e)
            }
        })
    }

    /// This runtime container's attachment, if the agent has it.
    async fn attached(&self) -> Result<Option<ContainerView>, CniError> {
        let path = format!("/v1/containers/{}", self.name());
        match self.client.get::<ContainerView>(&path).await {
            Ok(v) if v.owner.as_deref() == Some(self.env.container_id.as_str()) => Ok(Some(v)),
            Ok(v) => Err(CniError::new(
                Code::Conflict,
                format!(
                    "container {} belongs to {} in the agent",
                    v.name,
                    v.owner.as_deref().unwrap_or(&v.network_mode)
                ),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(agent_error(&e)),
        }
    }

    pub async fn add(&self) -> Result<Value, CniError> {
        let net = self.network_view().await?;
        let before = self.attached().await?;
        let req = AttachRequest {
            name: self.name(),
            netns: Some(self.env.netns.clone()),
            pid: None,
            owner: Some(self.env.container_id.clone()),
        };
        let view: ContainerView = self
            .client
            .post("/v1/attach", &req)
            .await
            .map_err(|e| agent_error(&e))?;
        let created = before.is_none();
        let ep = match view.endpoints.iter().find(|e| e.network == self.network) {
            // A repeated ADD.
            Some(e) if e.interface == self.env.ifname => e.clone(),
            Some(e) => {
                return Err(CniError::new(
                    Code::Conflict,
                    format!(
                        "container {} is already on network {} as {}",
                        self.env.container_id, self.network, e.interface
                    ),
                ))
            }
            None => match self.connect().await {
                Ok(e) => e,
                Err(e) => {
                    if created {
                        self.detach_quietly().await;
                    }
                    return Err(e);
                }
            },
        };
        if let Some(pm) = &self.conf.runtime_config.port_mappings {
            if let Err(e) = self.publish(pm).await {
                self.disconnect_quietly().await;
                if created {
                    self.detach_quietly().await;
                }
                return Err(e);
            }
        }
        Ok(self.result(&ep, &net))
    }

    async fn connect(&self) -> Result<EndpointView, CniError> {
        let rc = &self.conf.runtime_config;
        let ip = rc
            .ips
            .as_ref()
            .and_then(|v| v.first())
            .map(|s| s.split('/').next().unwrap_or_default().to_string())
            .or_else(|| self.args.get("IP").cloned());
        let mac = rc.mac.clone().or_else(|| self.args.get("MAC").cloned());
        let req = ConnectRequest {
            container: self.name(),
            ip,
            aliases: types::aliases_for(rc.aliases.as_ref(), &self.conf.name),
            interface: Some(self.env.ifname.clone()),
            mac,
            ..Default::default()
        };
        let path = format!("/v1/networks/{}/connect", self.network);
        let v: ContainerView = self
            .client
            .post(&path, &req)
            .await
            .map_err(|e| agent_error(&e))?;
        v.endpoints
            .into_iter()
            .find(|e| e.network == self.network)
            .ok_or_else(|| CniError::new(Code::Io, "the agent answered without the new endpoint"))
    }

    async fn publish(&self, pm: &[types::PortMapping]) -> Result<(), CniError> {
        let publish = pm
            .iter()
            .filter(|m| !m.is_ipv6())
            .map(types::PortMapping::spec)
            .collect::<Result<Vec<_>, _>>()?;
        let path = format!("/v1/containers/{}/publish", self.name());
        let _: Vec<PortMapping> = self
            .client
            .post(
                &path,
                &PublishRequest {
                    publish,
                    runtime_holds_ports: self.conf.port_reservation.as_deref() == Some("runtime"),
                },
            )
            .await
            .map_err(|e| agent_error(&e))?;
        Ok(())
    }

    fn result(&self, ep: &EndpointView, net: &NetworkView) -> Value {
        let v = &self.conf.cni_version;
        let gw = (!net.internal).then(|| ep.gateway.to_string());
        // Dual stack: the IPv6 address too, and its default route.
        let gw6 = (!net.internal && !ep.ipv6_gateway.is_empty()).then(|| ep.ipv6_gateway.clone());
        let mut ips = vec![IpConfig {
            version: types::pre_1_0(v).then(|| "4".to_string()),
            address: format!("{}/{}", ep.ip, ep.prefix_len),
            gateway: gw.clone(),
            interface: 1,
        }];
        if !ep.global_ipv6_address.is_empty() {
            ips.push(IpConfig {
                version: types::pre_1_0(v).then(|| "6".to_string()),
                address: format!("{}/{}", ep.global_ipv6_address, ep.global_ipv6_prefix_len),
                gateway: gw6.clone(),
                interface: 1,
            });
        }
        let r = AddResult {
            cni_version: v.clone(),
            interfaces: vec![
                Interface {
                    name: ep.host_interface.clone(),
                    mac: String::new(),
                    sandbox: String::new(),
                },
                Interface {
                    name: ep.interface.clone(),
                    mac: ep.mac.clone(),
                    sandbox: self.env.netns.clone(),
                },
            ],
            ips,
            routes: gw
                .map(|g| Route {
                    dst: "0.0.0.0/0".into(),
                    gw: Some(g),
                })
                .into_iter()
                .chain(gw6.map(|g| Route {
                    dst: "::/0".into(),
                    gw: Some(g),
                }))
                .collect(),
            dns: self
                .conf
                .dns
                .clone()
                .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
        };
        serde_json::to_value(r).unwrap_or(Value::Null)
    }

    /// DEL: idempotent; an unknown container or network is already deleted.
    pub async fn del(&self) -> Result<(), CniError> {
        let Some(view) = self.attached().await? else {
            return Ok(());
        };
        if view
            .endpoints
            .iter()
            .any(|e| e.network == self.network && e.interface == self.env.ifname)
        {
            self.disconnect().await?;
        }
        let left = view
            .endpoints
            .iter()
            .filter(|e| !(e.network == self.network && e.interface == self.env.ifname))
            .count();
        if left == 0 {
            self.detach(&self.name()).await?;
        }
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), CniError> {
        disconnect(&self.client, &self.network, &self.name()).await
    }

    async fn detach(&self, name: &str) -> Result<(), CniError> {
        detach(&self.client, name).await
    }

    async fn disconnect_quietly(&self) {
        let _ = self.disconnect().await;
    }

    async fn detach_quietly(&self) {
        let _ = self.detach(&self.name()).await;
    }

    /// CHECK: the attachment, its interface on this network and its veth.
    pub async fn check(&self) -> Result<(), CniError> {
        let unknown = |m: String| CniError::new(Code::UnknownContainer, m);
        let view = self.attached().await?.ok_or_else(|| {
            unknown(format!(
                "container {} is not attached",
                self.env.container_id
            ))
        })?;
        let ep = view
            .endpoints
            .iter()
            .find(|e| e.network == self.network && e.interface == self.env.ifname)
            .ok_or_else(|| {
                unknown(format!(
                    "container {} has no interface {} on network {}",
                    self.env.container_id, self.env.ifname, self.network
                ))
            })?;
        if ep.counters.is_none() {
            return Err(CniError::new(
                Code::Io,
                format!("the veth {} of {} is missing", ep.host_interface, view.name),
            ));
        }
        Ok(())
    }

    /// GC: this network's attachments the runtime no longer knows.
    pub async fn gc(&self) -> Result<(), CniError> {
        let valid = self.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                "GC needs cni.dev/valid-attachments in the configuration",
            )
        })?;
        let all: Vec<ContainerView> = self
            .client
            .get("/v1/containers")
            .await
            .map_err(|e| agent_error(&e))?;
        for c in all {
            let Some(owner) = c.owner.as_deref() else {
                continue;
            };
            if c.name != container_name(owner) {
                continue; // attached by hand (`container attach`)
            }
            let stale: Vec<&EndpointView> = c
                .endpoints
                .iter()
                .filter(|e| e.network == self.network)
                .filter(|e| {
                    !valid
                        .iter()
                        .any(|a| a.container_id == owner && a.ifname == e.interface)
                })
                .collect();
            if stale.is_empty() {
                continue;
            }
            disconnect(&self.client, &self.network, &c.name).await?;
            if c.endpoints.len() == stale.len() {
                detach(&self.client, &c.name).await?;
            }
        }
        Ok(())
    }

    /// STATUS: ready when the agent answers and has the network.
    pub async fn status(&self) -> Result<(), CniError> {
        let path = format!("/v1/networks/{}", self.network);
        self.client
            .get::<NetworkView>(&path)
            .await
            .map(|_| ())
            .map_err(|e| CniError::new(Code::NotAvailable, e.to_string()))
    }
}

async fn disconnect(client: &Client, network: &str, name: &str) -> Result<(), CniError> {
    let path = format!("/v1/networks/{network}/disconnect");
    let req = ConnectRequest {
        container: name.to_string(),
        ..Default::default()
    };
    match client.post::<_, Value>(&path, &req).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(agent_error(&e)),
    }
}

async fn detach(client: &Client, name: &str) -> Result<(), CniError> {
    let path = format!("/v1/containers/{name}/detach");
    match client.post::<_, Value>(&path, &serde_json::json!({})).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(agent_error(&e)),
    }
}

/// The agent's error as the spec's code.
fn agent_error(e: &Error) -> CniError {
    let code = match e.kind() {
        ErrorKind::InvalidArgument => Code::InvalidConfig,
        ErrorKind::NotFound => Code::UnknownContainer,
        ErrorKind::Conflict => Code::Conflict,
        ErrorKind::Unavailable => Code::TryAgainLater,
        ErrorKind::Internal => Code::Io,
    };
    CniError::new(code, e.to_string())
}

//! CNI's wire types: the network configuration on stdin (with the
//! capabilities' `runtimeConfig`), the result of ADD, errors, versions.
//! Field names are the spec's (camelCase).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Spec versions this plugin speaks (VERSION's `supportedVersions`).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The spec's well-known error codes (0-99) and this plugin's (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADD now (the agent is not ready).
    NotAvailable = 50,
    /// The agent refused the request: a name, address or port is taken.
    Conflict = 100,
}

/// A failed command: printed as the spec's error JSON on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    #[must_use]
    pub fn with_details(mut self, d: impl Into<String>) -> CniError {
        self.details = d.into();
        self
    }

    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code as u32,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

/// The plugin's network configuration (one entry of a conflist, with the
/// list's `name` and `cniVersion` filled in by the runtime).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// The agent's network (default: `name`).
    #[serde(default)]
    pub network: Option<String>,
    /// The agent's socket (default: the agent's default).
    #[serde(default)]
    pub socket: Option<String>,
    #[serde(default)]
    pub capabilities: BTreeMap<String, bool>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// DNS settings passed through to the result.
    #[serde(default)]
    pub dns: Option<Value>,
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// GC: the attachments the runtime still has.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// Who binds the published host ports: `agent` (default) or `runtime`
    /// (Podman with `enable_port_reservation = true`, its default).
    #[serde(default)]
    pub port_reservation: Option<String>,
    /// IPAM is the agent's: a delegated IPAM plugin is refused.
    #[serde(default)]
    pub ipam: Option<Value>,
}

/// Capability arguments (CONVENTIONS.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// `aliases`: by network name (Podman), or a plain list.
    #[serde(default)]
    pub aliases: Option<Value>,
    /// `ips`: static addresses, `A.B.C.D/N` or `A.B.C.D`.
    #[serde(default)]
    pub ips: Option<Vec<String>>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// `portMappings` capability entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u32,
    pub container_port: u32,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(rename = "hostIP", default)]
    pub host_ip: Option<String>,
}

impl PortMapping {
    /// The agent's `-p` spec for it.
    pub fn spec(&self) -> Result<String, CniError> {
        let bad = || {
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "invalid port mapping {}:{}",
                    self.host_port, self.container_port
                ),
            )
        };
        let hp = u16::try_from(self.host_port).map_err(|_| bad())?;
        let cp = u16::try_from(self.container_port).map_err(|_| bad())?;
        let proto = self
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("tcp")
            .to_ascii_lowercase();
        Ok(match self.host_ip.as_deref().filter(|h| !h.is_empty()) {
            Some(ip) => format!("{ip}:{hp}:{cp}/{proto}"),
            None => format!("{hp}:{cp}/{proto}"),
        })
    }

    /// IPv6 host addresses are not published (the datapath is IPv4).
    pub fn is_ipv6(&self) -> bool {
        self.host_ip.as_deref().is_some_and(|h| h.contains(':'))
    }
}

/// GC's `cni.dev/valid-attachments` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// ADD's (and the cached) result.
#[derive(Debug, Clone, Serialize)]
pub struct AddResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IpConfig {
    /// 0.3.x and 0.4.0 only (`"4"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub interface: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// Whether results in `v` carry the pre-1.0 `version` field of `ips`.
pub fn pre_1_0(v: &str) -> bool {
    v.starts_with("0.")
}

/// Whether `v` is at least 1.1.0 (GC and STATUS exist from there).
pub fn at_least_1_1(v: &str) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (1, 1)
}

/// `CNI_ARGS`: `K=V;K=V`.
pub fn parse_cni_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for kv in s.split(';').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            CniError::new(
                Code::InvalidEnvironment,
                format!("invalid CNI_ARGS entry {kv:?}: expected KEY=VALUE"),
            )
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The names in the `aliases` capability for `network`.
pub fn aliases_for(v: Option<&Value>, network: &str) -> Vec<String> {
    let list = match v {
        Some(Value::Object(m)) => m.get(network),
        Some(l @ Value::Array(_)) => Some(l),
        _ => None,
    };
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mapping_specs() {
        let m: PortMapping = serde_json::from_str(
            r#"{"hostPort":8080,"containerPort":80,"protocol":"TCP","hostIP":""}"#,
        )
        .unwrap();
        assert_eq!(m.spec().unwrap(), "8080:80/tcp");
        let m: PortMapping = serde_json::from_str(
            r#"{"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"127.0.0.1"}"#,
        )
        .unwrap();
        assert_eq!(m.spec().unwrap(), "127.0.0.1:53:5353/udp");
        let m: PortMapping =
            serde_json::from_str(r#"{"hostPort":70000,"containerPort":80}"#).unwrap();
        assert_eq!(m.spec().unwrap_err().code, Code::InvalidConfig);
    }

    #[test]
    fn versions_and_args() {
        assert!(pre_1_0("0.4.0") && !pre_1_0("1.0.0"));
        assert!(at_least_1_1("1.1.0") && !at_least_1_1("1.0.0") && !at_least_1_1("0.4.0"));
        let a = parse_cni_args("IP=10.0.0.5;IgnoreUnknown=1").unwrap();
        assert_eq!(a["IP"], "10.0.0.5");
        assert_eq!(
            parse_cni_args("oops").unwrap_err().code,
            Code::InvalidEnvironment
        );
    }

    #[test]
    fn aliases_by_network_or_list() {
        let v: Value = serde_json::json!({"pods": ["web", "abc"], "other": ["x"]});
        assert_eq!(aliases_for(Some(&v), "pods"), ["web", "abc"]);
        assert!(aliases_for(Some(&v), "none").is_empty());
        let l: Value = serde_json::json!(["a"]);
        assert_eq!(aliases_for(Some(&l), "pods"), ["a"]);
    }
}

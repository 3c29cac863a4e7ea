//! libnetwork's remote driver and IPAM protocol: the JSON bodies dockerd
//! sends and expects (field names as in libnetwork's `drivers/remote/api`
//! and `ipams/remote/api`). Fields dockerd may leave out default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Options of CreateNetwork, CreateEndpoint, Join, ProgramExternalConnectivity.
pub type Options = BTreeMap<String, Value>;

/// `-o key=value` of `docker network create`.
pub const OPT_GENERIC: &str = "com.docker.network.generic";
/// `--internal`.
pub const OPT_INTERNAL: &str = "com.docker.network.internal";
/// The MTU option (inside [`OPT_GENERIC`]).
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
/// Port bindings of ProgramExternalConnectivity.
pub const OPT_PORTMAP: &str = "com.docker.network.portmap";
/// RequestAddress for the gateway.
pub const OPT_REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
pub const GATEWAY_ADDRESS_TYPE: &str = "com.docker.network.gateway";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamData {
    pub address_space: String,
    pub pool: String,
    pub gateway: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateNetworkRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "Options")]
    pub options: Options,
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NetworkRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointInterface {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    pub address_ipv6: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Interface")]
    pub interface: Option<EndpointInterface>,
    #[serde(rename = "Options")]
    pub options: Option<Options>,
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<EndpointInterface>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    pub src_name: String,
    pub dst_prefix: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinResponse {
    pub interface_name: InterfaceName,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Never attach docker_gwbridge (its iptables rules): the gateway is
    /// ours, and an internal network has none.
    pub disable_gateway_service: bool,
}

/// One port binding of [`OPT_PORTMAP`] (libnetwork's `types.PortBinding`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// IP protocol number: 6 TCP, 17 UDP, 132 SCTP.
    pub proto: u8,
    #[serde(rename = "IP")]
    pub ip: Option<String>,
    pub port: u16,
    #[serde(rename = "HostIP")]
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub host_port_end: u16,
}

// ---- IPAM ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestPoolRequest {
    pub address_space: String,
    pub pool: String,
    pub sub_pool: String,
    pub options: Option<BTreeMap<String, String>>,
    #[serde(rename = "V6")]
    pub v6: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPoolResponse {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub pool: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddressResponse {
    pub address: String,
    pub data: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_network_request_from_dockerd() {
        let body = r#"{"NetworkID":"abc","Options":{"com.docker.network.enable_ipv6":false,
            "com.docker.network.generic":{"com.docker.network.driver.mtu":"1400"}},
            "IPv4Data":[{"AddressSpace":"dataplane","Gateway":"10.80.0.1/24","Pool":"10.80.0.0/24"}],
            "IPv6Data":[]}"#;
        let r: CreateNetworkRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.network_id, "abc");
        let v4 = r.ipv4_data.unwrap();
        assert_eq!(v4[0].pool, "10.80.0.0/24");
        assert_eq!(v4[0].gateway, "10.80.0.1/24");
    }

    #[test]
    fn join_response_as_dockerd_reads_it() {
        let r = JoinResponse {
            interface_name: InterfaceName {
                src_name: "dc01020304".into(),
                dst_prefix: "eth".into(),
            },
            gateway: "10.80.0.1".into(),
            disable_gateway_service: true,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"InterfaceName":{"SrcName":"dc01020304","DstPrefix":"eth"},"Gateway":"10.80.0.1","DisableGatewayService":true}"#
        );
    }

    #[test]
    fn port_bindings_from_dockerd() {
        let v: Vec<PortBinding> = serde_json::from_str(
            r#"[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080}]"#,
        )
        .unwrap();
        assert_eq!((v[0].proto, v[0].port, v[0].host_port), (6, 80, 8080));
    }
}

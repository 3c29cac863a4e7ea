//! The CNI plugin `dataplane-cni` (src/bin/dataplane-cni.rs): a CNI runtime
//! (Podman, containerd, CRI-O) execs it with the spec's environment
//! variables and the network configuration on stdin; it asks the agent over
//! its socket to put the container's namespace on one of the agent's
//! networks.
//!
//! Mapping onto the agent's model: the runtime's container (CNI_CONTAINERID)
//! is an attached container ([`crate::engine`]'s `attached.rs`) named
//! `cni-` + the id's first 12 characters, owner = the full id; each network
//! it is added to is one endpoint with the interface name CNI_IFNAME.
//! `portMappings` are the container's published ports (one set per
//! container, so the same list from several networks is published once).
//!
//! | command | does |
//! |---|---|
//! | ADD | attach the namespace, connect the network (`ips`/`IP=`, `mac`/`MAC=`, `aliases`), publish ports |
//! | DEL | disconnect; detach when no network is left; nothing to do is success |
//! | CHECK | the attachment exists with its interface and a live veth |
//! | GC | remove this network's attachments not in `cni.dev/valid-attachments` |
//! | STATUS | the agent answers and has the network |
//! | VERSION | supported versions, without the agent |

pub mod commands;
pub mod types;

use std::collections::BTreeMap;

use serde_json::Value;

use self::types::{CniError, Code, NetConf, SUPPORTED_VERSIONS};

/// The spec's environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

impl Env {
    /// Read `CNI_*` from the process environment.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
        }
    }
}

/// What the binary prints and its exit status.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stdout: Option<Value>,
    pub exit_code: i32,
}

/// Run one invocation. Never panics; every failure is the spec's error JSON.
pub async fn run(env: &Env, stdin: &[u8]) -> Outcome {
    // The version errors are reported in: the config's when it parses.
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(String::from))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "1.1.0".to_string());
    match dispatch(env, stdin, &asked).await {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
        },
        Err(e) => {
            // An unsupported version is answered in a version the runtime
            // understands.
            let v = if SUPPORTED_VERSIONS.contains(&asked.as_str()) {
                asked.as_str()
            } else {
                "1.1.0"
            };
            Outcome {
                stdout: Some(e.to_json(v)),
                exit_code: 1,
            }
        }
    }
}

async fn dispatch(env: &Env, stdin: &[u8], asked: &str) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(serde_json::json!({
            "cniVersion": if SUPPORTED_VERSIONS.contains(&asked) { asked } else { "1.1.0" },
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    if !matches!(
        env.command.as_str(),
        "ADD" | "DEL" | "CHECK" | "GC" | "STATUS"
    ) {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "CNI_COMMAND {:?} is not one of ADD, DEL, CHECK, GC, STATUS, VERSION",
                env.command
            ),
        ));
    }
    let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(Code::Decode, "cannot decode the network configuration")
            .with_details(e.to_string())
    })?;
    validate_conf(&conf)?;
    if matches!(env.command.as_str(), "GC" | "STATUS") && !types::at_least_1_1(&conf.cni_version) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "{} needs cniVersion 1.1.0 (the configuration has {})",
                env.command, conf.cni_version
            ),
        ));
    }
    let need = |what: &str, v: &str| {
        if v.is_empty() {
            Err(CniError::new(
                Code::InvalidEnvironment,
                format!("{what} is required for {}", env.command),
            ))
        } else {
            Ok(())
        }
    };
    match env.command.as_str() {
        "ADD" | "CHECK" => {
            need("CNI_CONTAINERID", &env.container_id)?;
            need("CNI_NETNS", &env.netns)?;
            need("CNI_IFNAME", &env.ifname)?;
        }
        "DEL" => {
            need("CNI_CONTAINERID", &env.container_id)?;
            need("CNI_IFNAME", &env.ifname)?;
        }
        _ => {}
    }
    if !env.container_id.is_empty() {
        check_container_id(&env.container_id)?;
    }
    let args: BTreeMap<String, String> = types::parse_cni_args(&env.args)?;
    let ctx = commands::Ctx::new(&conf, env, args);
    match env.command.as_str() {
        "ADD" => ctx.add().await.map(Some),
        "DEL" => ctx.del().await.map(|()| None),
        "CHECK" => ctx.check().await.map(|()| None),
        "GC" => ctx.gc().await.map(|()| None),
        _ => ctx.status().await.map(|()| None),
    }
}

fn validate_conf(conf: &NetConf) -> Result<(), CniError> {
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "cniVersion {:?} is not supported (supported: {})",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    if conf.name.is_empty() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "the network configuration has no name",
        ));
    }
    if !matches!(
        conf.port_reservation.as_deref(),
        None | Some("agent" | "runtime")
    ) {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "portReservation {:?} is neither \"agent\" nor \"runtime\"",
                conf.port_reservation.as_deref().unwrap_or_default()
            ),
        ));
    }
    if conf.ipam.is_some() {
        return Err(CniError::new(
            Code::UnsupportedField,
            "ipam is not supported: addresses come from the agent's network",
        ));
    }
    Ok(())
}

/// The spec's container ids: alphanumeric, then `_`, `.`, `-` too.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut b = id.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::InvalidEnvironment,
            format!("invalid CNI_CONTAINERID {id:?}"),
        ))
    }
}

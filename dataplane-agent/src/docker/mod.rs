//! The Docker network plugin: libnetwork's remote `NetworkDriver` and
//! `IpamDriver` (the legacy plugin protocol Docker 20.10 speaks) on one Unix
//! socket, `<dir>/<name>.sock` (`dataplane agent --docker-plugin NAME`;
//! dockerd discovers sockets in /run/docker/plugins).
//!
//! A Docker network of driver NAME is an engine network (named by
//! `-o dataplane.name=NAME`, else `docker-` + the first 12 hex digits of its
//! id: Docker tells plugins only the id; `-o dataplane.overlay=true` makes it
//! a cluster network shared by every host), each Docker endpoint an external
//! endpoint of the engine (`docker-` + 12 hex digits of the endpoint id, see
//! `engine/external.rs`): the datapath, isolation, `--internal`, published
//! ports and the reconciler treat them as the agent's own containers. The
//! handlers only call the engine (never dockerd) and answer at once; every
//! change is persisted before the answer (Docker never replays a request).
//!
//! | path | what |
//! |---|---|
//! | `protocol.rs` | request and response bodies |
//! | `driver.rs` | NetworkDriver calls |
//! | `ipam.rs` | IpamDriver state (pools, addresses), persisted |

mod driver;
pub mod ipam;
pub mod protocol;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context, Result};
use axum::{
    body::Bytes,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;
use tracing::{debug, info, warn};

use self::{ipam::IpamState, protocol::*};
use crate::{engine::Engine, error::Error};

/// Where dockerd looks for plugin sockets.
pub const DEFAULT_PLUGIN_DIR: &str = "/run/docker/plugins";

/// The plugin's state: the engine and the IPAM driver's pools.
pub struct Plugin {
    engine: Arc<Engine>,
    ipam: Mutex<IpamState>,
    name: String,
}

/// Engine name of a Docker network or endpoint id.
pub fn engine_name(docker_id: &str) -> String {
    let short: String = docker_id.chars().take(12).collect();
    format!("docker-{short}")
}

/// A plugin name dockerd accepts and that makes a file name.
pub fn validate_plugin_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if !ok {
        bail!("invalid --docker-plugin {name:?}: letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

/// The socket of plugin `name` in `dir`.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Serve plugin `name` on `<dir>/<name>.sock` until the runtime ends.
/// Returns the socket path.
pub fn serve(engine: Arc<Engine>, name: &str, dir: &Path) -> Result<PathBuf> {
    validate_plugin_name(name)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let state_file = engine
        .config()
        .state_dir
        .join(format!("docker-{name}.json"));
    let ipam = IpamState::load(&state_file)?;
    let sock = socket_path(dir, name);
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("binding {}", sock.display()))?;
    let plugin = Arc::new(Plugin {
        engine,
        ipam: Mutex::new(ipam),
        name: name.to_string(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(plugin)).await {
            warn!("docker plugin server stopped: {e:#}");
        }
    });
    info!(socket = %sock.display(), "docker network plugin ready");
    Ok(sock)
}

type P = State<Arc<Plugin>>;

fn router(p: Arc<Plugin>) -> Router {
    Router::new()
        .route(
            "/Plugin.Activate",
            post(|| async { reply(Ok(json!({"Implements": ["NetworkDriver", "IpamDriver"]}))) }),
        )
        .route(
            "/NetworkDriver.GetCapabilities",
            post(|| async { reply(Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))) }),
        )
        .route("/NetworkDriver.CreateNetwork", post(driver::create_network))
        .route("/NetworkDriver.DeleteNetwork", post(driver::delete_network))
        .route(
            "/NetworkDriver.CreateEndpoint",
            post(driver::create_endpoint),
        )
        .route(
            "/NetworkDriver.DeleteEndpoint",
            post(driver::delete_endpoint),
        )
        .route(
            "/NetworkDriver.EndpointOperInfo",
            post(driver::endpoint_info),
        )
        .route("/NetworkDriver.Join", post(driver::join))
        .route("/NetworkDriver.Leave", post(driver::leave))
        .route(
            "/NetworkDriver.ProgramExternalConnectivity",
            post(driver::program_external),
        )
        .route(
            "/NetworkDriver.RevokeExternalConnectivity",
            post(driver::revoke_external),
        )
        .route(
            "/NetworkDriver.DiscoverNew",
            post(|| async { reply(Ok(json!({}))) }),
        )
        .route(
            "/NetworkDriver.DiscoverDelete",
            post(|| async { reply(Ok(json!({}))) }),
        )
        .route(
            "/IpamDriver.GetCapabilities",
            post(|| async {
                reply(Ok(
                    json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}),
                ))
            }),
        )
        .route(
            "/IpamDriver.GetDefaultAddressSpaces",
            post(|| async {
                reply(Ok(json!({
                    "LocalDefaultAddressSpace": "dataplane-local",
                    "GlobalDefaultAddressSpace": "dataplane-global"
                })))
            }),
        )
        .route("/IpamDriver.RequestPool", post(request_pool))
        .route("/IpamDriver.ReleasePool", post(release_pool))
        .route("/IpamDriver.RequestAddress", post(request_address))
        .route("/IpamDriver.ReleaseAddress", post(release_address))
        .with_state(p)
}

/// A request body (dockerd sends `null` or nothing for calls without
/// arguments).
fn parse<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Error> {
    let t = body.trim_ascii();
    if t.is_empty() || t == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(t).map_err(|e| Error::invalid(format!("malformed request: {e}")))
}

/// The answer: the body, or `{"Err": "<one line>", "Error": ...}` (HTTP 200
/// either way: libnetwork's driver API reads `Err`, its IPAM API `Error`).
fn reply<T: Serialize>(r: Result<T, Error>) -> Response {
    let body = match r {
        Ok(v) => serde_json::to_value(v).unwrap_or_else(|e| json!({"Err": e.to_string()})),
        Err(e) => {
            debug!("docker plugin: {e}");
            json!({ "Err": e.to_string(), "Error": e.to_string() })
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/vnd.docker.plugins.v1+json",
        )],
        body.to_string(),
    )
        .into_response()
}

impl Plugin {
    fn ipam(&self) -> std::sync::MutexGuard<'_, IpamState> {
        // A panic while holding the lock cannot leave a half-made change:
        // every change is made on a copy.
        self.ipam
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn request_pool(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: RequestPoolRequest = parse(&body)?;
        if req.v6 {
            return Err(Error::invalid(format!(
                "IPv6 pools are not supported by {}",
                p.name
            )));
        }
        // An overlay network of exactly this subnet is not in the way: it
        // is the same network, created by another host.
        let taken: Vec<_> = p
            .engine
            .list_networks()
            .await
            .into_iter()
            .filter(|n| {
                !(n.driver == "overlay" && n.subnet.is_some_and(|s| s.to_string() == req.pool))
            })
            .filter_map(|n| Some((format!("network {}", n.name), n.subnet?)))
            .collect();
        let (id, subnet) = p.ipam().request_pool(&req.pool, &req.sub_pool, &taken)?;
        info!(pool = %id, "docker: pool requested");
        Ok(RequestPoolResponse {
            pool_id: id,
            pool: subnet.to_string(),
            data: BTreeMap::default(),
        })
    }
    .await;
    reply(r)
}

async fn release_pool(State(p): P, body: Bytes) -> Response {
    let r = (|| {
        let req: AddressRequest = parse(&body)?;
        p.ipam().release_pool(&req.pool_id)?;
        Ok(json!({}))
    })();
    reply(r)
}

/// The overlay network whose subnet pool `pool_id` is, if any: its
/// endpoints' addresses come from the cluster (unique on every host).
async fn overlay_of_pool(p: &Plugin, pool_id: &str) -> Option<String> {
    let subnet = p.ipam().pool_subnet(pool_id)?;
    p.engine
        .list_networks()
        .await
        .into_iter()
        .find(|n| n.driver == "overlay" && n.subnet == Some(subnet))
        .map(|n| n.name)
}

async fn request_address(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: AddressRequest = parse(&body)?;
        let gateway = req
            .options
            .as_ref()
            .and_then(|o| o.get(OPT_REQUEST_ADDRESS_TYPE))
            .is_some_and(|t| t == GATEWAY_ADDRESS_TYPE);
        if !gateway {
            if let Some(net) = overlay_of_pool(&p, &req.pool_id).await {
                let want = (!req.address.is_empty())
                    .then(|| crate::ipam::parse_ip(&req.address))
                    .transpose()?;
                let ip = p.engine.external_overlay_address(&net, want).await?;
                let prefix = p
                    .ipam()
                    .pool_subnet(&req.pool_id)
                    .map_or(32, |s| s.prefix_len());
                return Ok(RequestAddressResponse {
                    address: format!("{ip}/{prefix}"),
                    data: BTreeMap::default(),
                });
            }
        }
        let a = p
            .ipam()
            .request_address(&req.pool_id, &req.address, gateway)?;
        Ok(RequestAddressResponse {
            address: a.to_string(),
            data: BTreeMap::default(),
        })
    }
    .await;
    reply(r)
}

async fn release_address(State(p): P, body: Bytes) -> Response {
    let r = async {
        let req: AddressRequest = parse(&body)?;
        let gateway = p
            .ipam()
            .pools
            .get(&req.pool_id)
            .and_then(|s| s.gateway)
            .is_some_and(|g| g.to_string() == req.address);
        if !gateway {
            if let Some(net) = overlay_of_pool(&p, &req.pool_id).await {
                let ip = crate::ipam::parse_ip(&req.address)?;
                p.engine.release_external_overlay_address(&net, ip).await;
                return Ok(json!({}));
            }
        }
        p.ipam().release_address(&req.pool_id, &req.address)?;
        Ok(json!({}))
    }
    .await;
    reply(r)
}

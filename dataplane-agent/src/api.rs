//! HTTP/JSON API on a Unix socket: a thin layer over the engine.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | /v1/info | | AgentInfo |
//! | GET | /v1/drops | | drop counters by reason |
//! | GET, POST | /v1/networks | NetworkCreate | [NetworkView], NetworkView |
//! | GET, DELETE | /v1/networks/{name} | | NetworkView |
//! | POST | /v1/networks/{name}/connect | ConnectRequest | ContainerView |
//! | POST | /v1/networks/{name}/disconnect | ConnectRequest | |
//! | GET, POST | /v1/containers | ContainerCreate | [ContainerView], ContainerView |
//! | GET, DELETE | /v1/containers/{name} | | ContainerView |
//!
//! Attached namespaces have their routes in [`crate::api_attach`].
//!
//! Errors are `{"error": "<one line>", "kind": "<kind>"}` with the status of
//! the kind ([`ErrorKind::http_status`]): 400 `invalid_argument`, 404
//! `not_found`, 409 `conflict`, 503 `unavailable`, 500 `internal`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use serde_json::json;

use crate::{
    engine::Engine,
    error::{Error, ErrorKind},
    model::{ConnectRequest, ContainerCreate, NetworkCreate, P2pCreate},
};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let kind = self.kind();
        if kind == ErrorKind::Internal {
            tracing::error!("request failed: {self}");
        }
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({ "error": self.to_string(), "kind": kind })),
        )
            .into_response()
    }
}

type E = State<Arc<Engine>>;
type R<T> = Result<Json<T>, Error>;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route(
            "/v1/info",
            get(|State(e): E| async move { Json(e.info().await) }),
        )
        .route(
            "/v1/drops",
            get(|State(e): E| async move { Json(e.drops().await) }),
        )
        .route(
            "/v1/nodes",
            get(|State(e): E| async move { R::Ok(Json(e.list_nodes().await?)) }),
        )
        .route(
            "/v1/networks",
            get(|State(e): E| async move { Json(e.list_networks().await) }).post(
                |State(e): E, Json(req): Json<NetworkCreate>| async move {
                    R::Ok(Json(e.create_network(req).await?))
                },
            ),
        )
        .route(
            "/v1/networks/{name}",
            get(|State(e): E, Path(n): Path<String>| async move {
                R::Ok(Json(e.inspect_network(&n).await?))
            })
            .delete(|State(e): E, Path(n): Path<String>| async move {
                e.remove_network(&n).await?;
                R::Ok(Json(json!({})))
            }),
        )
        .route(
            "/v1/networks/{name}/connect",
            post(
                |State(e): E, Path(n): Path<String>, Json(req): Json<ConnectRequest>| async move {
                    R::Ok(Json(e.connect(&n, req).await?))
                },
            ),
        )
        .route(
            "/v1/networks/{name}/disconnect",
            post(
                |State(e): E, Path(n): Path<String>, Json(req): Json<ConnectRequest>| async move {
                    e.disconnect(&n, &req.container).await?;
                    R::Ok(Json(json!({})))
                },
            ),
        )
        .route(
            "/v1/containers",
            get(|State(e): E| async move { Json(e.list_containers().await) }).post(
                |State(e): E, Json(req): Json<ContainerCreate>| async move {
                    R::Ok(Json(e.create_container(req).await?))
                },
            ),
        )
        .route(
            "/v1/containers/{name}",
            get(|State(e): E, Path(n): Path<String>| async move {
                R::Ok(Json(e.inspect_container(&n).await?))
            })
            .delete(|State(e): E, Path(n): Path<String>| async move {
                e.remove_container(&n).await?;
                R::Ok(Json(json!({})))
            }),
        )
        .route(
            "/v1/p2p",
            get(|State(e): E| async move { Json(e.list_p2p().await) }).post(
                |State(e): E, Json(req): Json<P2pCreate>| async move {
                    R::Ok(Json(e.create_p2p(req).await?))
                },
            ),
        )
        .route(
            "/v1/p2p/{name}",
            delete(|State(e): E, Path(n): Path<String>| async move {
                e.remove_p2p(&n).await?;
                R::Ok(Json(json!({})))
            }),
        )
        .merge(crate::api_attach::routes())
        // Unknown routes and methods answer like every other error.
        .fallback(|m: axum::http::Method, u: axum::http::Uri| async move {
            api_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no such route: {m} {u}"),
            )
        })
        .method_not_allowed_fallback(|m: axum::http::Method, u: axum::http::Uri| async move {
            api_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_argument",
                &format!("method {m} not allowed on {u}"),
            )
        })
        .with_state(engine)
}

fn api_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    (status, Json(json!({ "error": msg, "kind": kind }))).into_response()
}

//! API routes of attached namespaces (`container attach`/`detach`, the CNI
//! plugin), merged into [`crate::api::router`]:
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | /v1/attach | AttachRequest | ContainerView |
//! | POST | /v1/containers/{name}/detach | | |
//! | POST | /v1/containers/{name}/publish | PublishRequest | [PortMapping] |

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    routing::post,
    Json, Router,
};
use serde_json::json;

use crate::{
    engine::Engine,
    error::Error,
    model::{AttachRequest, PublishRequest},
};

type E = State<Arc<Engine>>;
type R<T> = Result<Json<T>, Error>;

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route(
            "/v1/attach",
            post(|State(e): E, Json(req): Json<AttachRequest>| async move {
                R::Ok(Json(e.attach_container(req).await?))
            }),
        )
        .route(
            "/v1/containers/{name}/detach",
            post(|State(e): E, Path(n): Path<String>| async move {
                e.detach_container(&n).await?;
                R::Ok(Json(json!({})))
            }),
        )
        .route(
            "/v1/containers/{name}/publish",
            post(
                |State(e): E, Path(n): Path<String>, Json(req): Json<PublishRequest>| async move {
                    R::Ok(Json(
                        e.publish_attached(&n, &req.publish, req.runtime_holds_ports)
                            .await?,
                    ))
                },
            ),
        )
}

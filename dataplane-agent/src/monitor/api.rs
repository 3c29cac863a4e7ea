//! The monitor's routes on the agent's API socket:
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | /v1/monitor?type=drop\|trace\|all&container=NAME | a stream of [`EventView`] JSON lines |
//! | GET | /v1/flows?container=NAME | [`FlowView`] list |
//! | GET | /v1/monitor/stats | [`MonitorStats`] |
//!
//! The monitor is attached (the programs start emitting) before the
//! stream's headers are sent, and detached when the client goes away.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::header,
    response::Response,
    routing::get,
    Json, Router,
};
use bytes::Bytes;
use dataplane_common::{MON_F_DROPS, MON_F_TRACES};
use tokio::sync::broadcast::error::RecvError;

use super::{flows::FlowView, names::Names, EventView, Monitor, MonitorStats, Subscription};
use crate::{
    datapath::monotonic_ns,
    engine::Engine,
    error::{Error, Result},
};

type S = State<(Arc<Engine>, Arc<Monitor>)>;

pub fn router(engine: Arc<Engine>, monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/v1/monitor", get(stream))
        .route("/v1/monitor/stats", get(stats))
        .route("/v1/flows", get(flows))
        .with_state((engine, monitor))
}

/// `k=v&k=v` (names are plain: no percent-decoding needed).
fn param(q: Option<&str>, key: &str) -> Option<String> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// The mask of `type=`: drop (default), trace, all.
fn mask_of(t: Option<&str>) -> Result<u32> {
    match t {
        None | Some("drop") => Ok(MON_F_DROPS),
        Some("trace") => Ok(MON_F_TRACES),
        Some("all") => Ok(MON_F_DROPS | MON_F_TRACES),
        Some(other) => Err(Error::invalid(format!(
            "invalid event type {other:?}: expected drop, trace or all"
        ))),
    }
}

async fn check_container(engine: &Engine, c: Option<&str>) -> Result<()> {
    if let Some(c) = c {
        engine.inspect_container(c).await?;
    }
    Ok(())
}

async fn stats(State((_, m)): S) -> Json<MonitorStats> {
    Json(m.stats())
}

async fn flows(State((e, m)): S, RawQuery(q): RawQuery) -> Result<Json<Vec<FlowView>>> {
    let container = param(q.as_deref(), "container");
    check_container(&e, container.as_deref()).await?;
    let containers = e.list_containers().await;
    let list = m.with_tables(|t| {
        let names = Names::build(&containers, t);
        super::flows::list(t, &names, container.as_deref())
    });
    Ok(Json(list))
}

/// What a stream carries along: the subscription (dropped with the stream,
/// which detaches), the filter, and names refreshed at most once a second.
struct Streaming {
    sub: Subscription,
    engine: Arc<Engine>,
    monitor: Arc<Monitor>,
    container: Option<String>,
    names: Names,
    names_at: std::time::Instant,
}

impl Streaming {
    async fn refresh_names(&mut self) {
        if self.names_at.elapsed() >= Duration::from_secs(1) {
            let containers = self.engine.list_containers().await;
            self.names = self.monitor.with_tables(|t| Names::build(&containers, t));
            self.names_at = std::time::Instant::now();
        }
    }

    /// The next line to send (a lost-events note when the client was too slow).
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            let ev = match self.sub.rx.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged(n)) => {
                    let note = serde_json::json!({ "type": "lost", "events": n });
                    return Some(Bytes::from(format!("{note}\n")));
                }
                Err(RecvError::Closed) => return None,
            };
            let wanted = if ev.drop {
                self.sub.mask & MON_F_DROPS != 0
            } else {
                self.sub.mask & MON_F_TRACES != 0
            };
            if !wanted {
                continue;
            }
            self.refresh_names().await;
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let view = EventView::new(&ev, &self.names, monotonic_ns(), wall);
            if let Some(c) = &self.container {
                if !view.involves(c) {
                    continue;
                }
            }
            let mut line = serde_json::to_vec(&view).unwrap_or_default();
            line.push(b'\n');
            return Some(Bytes::from(line));
        }
    }
}

async fn stream(State((e, m)): S, RawQuery(q): RawQuery) -> Result<Response> {
    let mask = mask_of(param(q.as_deref(), "type").as_deref())?;
    let container = param(q.as_deref(), "container");
    check_container(&e, container.as_deref()).await?;
    let sub = m
        .subscribe(mask)
        .map_err(|e| Error::Internal(e.context("attaching the monitor")))?;
    let containers = e.list_containers().await;
    let names = m.with_tables(|t| Names::build(&containers, t));
    let st = Streaming {
        sub,
        engine: e,
        monitor: m,
        container,
        names,
        names_at: std::time::Instant::now(),
    };
    let body = futures::stream::unfold(st, |mut st| async move {
        let line = st.next_line().await?;
        Some((Ok::<_, std::convert::Infallible>(line), st))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|e| Error::Internal(anyhow::anyhow!("building the stream: {e}")))
}

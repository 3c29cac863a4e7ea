//! Prometheus metrics (`dataplane agent --metrics-addr ADDR`, `GET
//! /metrics`, OpenMetrics text from prometheus-client).
//!
//! The agent's own activity (API requests and their latency, reconcile
//! passes and repairs) is counted as it happens in [`agent()`]; the
//! datapath's figures (per-container and per-network packets, bytes and
//! drops by reason, flow tables, masquerade ports, published ports, the
//! monitor's event counters, cluster nodes) are read from the engine and
//! the maps at each scrape.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc, OnceLock},
    time::Instant,
};

use anyhow::{Context, Result};
use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use dataplane_common::{MAX_NAT_FLOWS, MAX_POLICY_FLOWS};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use super::{flows, Monitor};
use crate::engine::Engine;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpStatus {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabel {
    pass: String,
}

/// What the agent counts as it runs.
pub struct AgentMetrics {
    requests: Family<OpStatus, Counter>,
    latency: Family<Op, Histogram>,
    passes: Family<PassLabel, Counter>,
    steps: Family<PassLabel, Counter>,
    pass_seconds: Histogram,
    started: Instant,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The process's counters.
pub fn agent() -> &'static AgentMetrics {
    static M: OnceLock<AgentMetrics> = OnceLock::new();
    M.get_or_init(|| AgentMetrics {
        requests: Family::default(),
        latency: Family::new_with_constructor(latency_histogram),
        passes: Family::default(),
        steps: Family::default(),
        pass_seconds: latency_histogram(),
        started: Instant::now(),
    })
}

impl AgentMetrics {
    /// One reconcile pass (`start` or `repair`) that took `steps` steps.
    pub fn reconciled(&self, pass: &str, steps: usize, seconds: f64) {
        let l = PassLabel { pass: pass.into() };
        self.passes.get_or_create(&l).inc();
        self.steps.get_or_create(&l).inc_by(steps as u64);
        self.pass_seconds.observe(seconds);
    }
}

/// An API path with names replaced: `/v1/containers/{name}/...`.
fn route_of(path: &str) -> String {
    let mut out = Vec::new();
    for (i, seg) in path.split('/').enumerate() {
        let named =
            i == 3 && matches!(out.get(2), Some(&"networks" | &"containers")) && !seg.is_empty();
        out.push(if named { "{name}" } else { seg });
    }
    out.join("/")
}

/// API middleware: count each request and its latency by route.
pub async fn track(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = route_of(req.uri().path());
    let t = Instant::now();
    let resp = next.run(req).await;
    let m = agent();
    m.latency
        .get_or_create(&Op {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(t.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&OpStatus {
            method,
            route,
            status: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

/// Serve `/metrics` on `addr` (in the agent's namespace).
pub async fn serve(addr: SocketAddr, engine: Arc<Engine>, monitor: Arc<Monitor>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-addr {addr}"))?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state((engine, monitor));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("metrics server stopped: {e}");
        }
    });
    tracing::info!(%addr, "serving /metrics");
    Ok(())
}

async fn scrape(State((e, m)): State<(Arc<Engine>, Arc<Monitor>)>) -> Response {
    match render(&e, &m).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}\n")).into_response(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Ep {
    container: String,
    network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EpReason {
    container: String,
    network: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Net {
    network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetReason {
    network: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Table {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabel {
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeState {
    state: String,
}

/// Per-endpoint figures as counters, per network as sums.
fn endpoint_metrics(reg: &mut Registry, containers: &[crate::model::ContainerView]) {
    let tx_p = Family::<Ep, Counter>::default();
    let tx_b = Family::<Ep, Counter>::default();
    let rx_p = Family::<Ep, Counter>::default();
    let rx_b = Family::<Ep, Counter>::default();
    let drops = Family::<EpReason, Counter>::default();
    let net_p = Family::<Net, Counter>::default();
    let net_b = Family::<Net, Counter>::default();
    let net_d = Family::<NetReason, Counter>::default();
    let published = Family::<ContainerLabel, Gauge>::default();
    for c in containers {
        if !c.ports.is_empty() {
            published
                .get_or_create(&ContainerLabel {
                    container: c.name.clone(),
                })
                .set(c.ports.len() as i64);
        }
        for ep in &c.endpoints {
            let Some(s) = &ep.counters else { continue };
            let l = Ep {
                container: c.name.clone(),
                network: ep.network.clone(),
            };
            tx_p.get_or_create(&l).inc_by(s.tx_packets);
            tx_b.get_or_create(&l).inc_by(s.tx_bytes);
            rx_p.get_or_create(&l).inc_by(s.rx_packets);
            rx_b.get_or_create(&l).inc_by(s.rx_bytes);
            let n = Net {
                network: ep.network.clone(),
            };
            net_p.get_or_create(&n).inc_by(s.tx_packets + s.rx_packets);
            net_b.get_or_create(&n).inc_by(s.tx_bytes + s.rx_bytes);
            for (reason, v) in &s.drops {
                if *v == 0 {
                    continue;
                }
                drops
                    .get_or_create(&EpReason {
                        container: c.name.clone(),
                        network: ep.network.clone(),
                        reason: reason.clone(),
                    })
                    .inc_by(*v);
                net_d
                    .get_or_create(&NetReason {
                        network: ep.network.clone(),
                        reason: reason.clone(),
                    })
                    .inc_by(*v);
            }
        }
    }
    reg.register(
        "dataplane_endpoint_tx_packets",
        "Packets sent by a container's endpoint",
        tx_p,
    );
    reg.register(
        "dataplane_endpoint_tx_bytes",
        "Bytes sent by a container's endpoint",
        tx_b,
    );
    reg.register(
        "dataplane_endpoint_rx_packets",
        "Packets delivered to a container's endpoint",
        rx_p,
    );
    reg.register(
        "dataplane_endpoint_rx_bytes",
        "Bytes delivered to a container's endpoint",
        rx_b,
    );
    reg.register(
        "dataplane_endpoint_drops",
        "Packets from a container's endpoint dropped, by reason",
        drops,
    );
    reg.register(
        "dataplane_network_packets",
        "Packets sent and received by the network's endpoints",
        net_p,
    );
    reg.register(
        "dataplane_network_bytes",
        "Bytes sent and received by the network's endpoints",
        net_b,
    );
    reg.register(
        "dataplane_network_drops",
        "Packets of the network's endpoints dropped, by reason",
        net_d,
    );
    reg.register(
        "dataplane_published_ports",
        "Ports published to a container",
        published,
    );
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// The whole text of a scrape.
pub async fn render(engine: &Engine, monitor: &Monitor) -> Result<String> {
    let mut reg = Registry::default();
    let containers = engine.list_containers().await;
    let networks = engine.list_networks().await;
    gauge(
        &mut reg,
        "dataplane_containers",
        "Containers",
        containers.len() as i64,
    );
    gauge(
        &mut reg,
        "dataplane_networks",
        "Networks (with the predefined ones)",
        networks.len() as i64,
    );
    endpoint_metrics(&mut reg, &containers);

    let drops = Family::<Reason, Counter>::default();
    for (reason, v) in engine.drops().await {
        drops.get_or_create(&Reason { reason }).inc_by(v);
    }
    reg.register(
        "dataplane_drops",
        "Packets dropped by the datapath (every endpoint and the uplink), by reason",
        drops,
    );

    let (counts, cfg, mon) =
        monitor.with_tables(|t| (flows::counts(t), t.config(), t.monitor_counters()));
    let entries = Family::<Table, Gauge>::default();
    let capacity = Family::<Table, Gauge>::default();
    let occupancy = Family::<Table, Gauge<f64, AtomicU64>>::default();
    for (name, n, cap) in [
        ("DP_NAT_OUT", counts.nat_out, MAX_NAT_FLOWS),
        ("DP_NAT_IN", counts.nat_in, MAX_NAT_FLOWS),
        ("DP_CT", counts.ct, MAX_NAT_FLOWS),
        ("DP_POLICY_CT", counts.policy_ct, MAX_POLICY_FLOWS),
    ] {
        let l = Table { table: name.into() };
        entries.get_or_create(&l).set(n as i64);
        capacity.get_or_create(&l).set(i64::from(cap));
        occupancy.get_or_create(&l).set(n as f64 / f64::from(cap));
    }
    reg.register(
        "dataplane_flow_table_entries",
        "Entries of a flow table",
        entries,
    );
    reg.register(
        "dataplane_flow_table_capacity",
        "Entries a flow table holds (LRU: the oldest are evicted beyond)",
        capacity,
    );
    reg.register(
        "dataplane_flow_table_occupancy_ratio",
        "Entries over capacity",
        occupancy,
    );
    gauge(
        &mut reg,
        "dataplane_nat_ports_in_use",
        "Masquerade source ports in use (distinct port and protocol)",
        counts.nat_ports as i64,
    );
    let range = i64::from(cfg.nat_port_max) - i64::from(cfg.nat_port_min) + 1;
    gauge(
        &mut reg,
        "dataplane_nat_ports",
        "Masquerade source ports of --nat-port-range",
        range.max(0),
    );
    counter(
        &mut reg,
        "dataplane_monitor_events_emitted",
        "Monitor events the programs wrote (only while a monitor is attached)",
        mon.emitted,
    );
    counter(
        &mut reg,
        "dataplane_monitor_events_rate_limited",
        "Monitor events suppressed by the per-CPU rate limit",
        mon.rate_limited,
    );
    counter(
        &mut reg,
        "dataplane_monitor_events_lost",
        "Monitor events lost to a full ring buffer",
        mon.ring_full,
    );
    gauge(
        &mut reg,
        "dataplane_monitor_attached",
        "1 while a monitor is attached",
        i64::from(monitor.stats().attached),
    );

    if let Ok(nodes) = engine.list_nodes().await {
        let by_state = Family::<NodeState, Gauge>::default();
        let mut n: BTreeMap<String, i64> = BTreeMap::new();
        for node in nodes {
            *n.entry(node.state).or_default() += 1;
        }
        for (state, v) in n {
            by_state.get_or_create(&NodeState { state }).set(v);
        }
        reg.register(
            "dataplane_cluster_nodes",
            "Cluster nodes by liveness (with --cluster-store)",
            by_state,
        );
    }

    let a = agent();
    reg.register(
        "dataplane_api_requests",
        "API requests by route and status",
        a.requests.clone(),
    );
    reg.register(
        "dataplane_api_request_duration_seconds",
        "API request latency by route",
        a.latency.clone(),
    );
    reg.register(
        "dataplane_reconcile_passes",
        "Reconcile passes (start, repair)",
        a.passes.clone(),
    );
    reg.register(
        "dataplane_reconcile_steps",
        "Steps the reconciler took (repairs, for pass=repair)",
        a.steps.clone(),
    );
    reg.register(
        "dataplane_reconcile_duration_seconds",
        "Duration of reconcile passes",
        a.pass_seconds.clone(),
    );
    gauge(
        &mut reg,
        "dataplane_agent_uptime_seconds",
        "Seconds since the agent started",
        a.started.elapsed().as_secs() as i64,
    );
    let mut out = String::new();
    encode(&mut out, &reg).context("encoding the metrics")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_names() {
        assert_eq!(route_of("/v1/containers/web"), "/v1/containers/{name}");
        assert_eq!(
            route_of("/v1/networks/front/connect"),
            "/v1/networks/{name}/connect"
        );
        assert_eq!(route_of("/v1/containers"), "/v1/containers");
        assert_eq!(route_of("/v1/info"), "/v1/info");
    }
}

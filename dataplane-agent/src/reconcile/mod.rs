//! The reconciler: makes the kernel match the desired state, continuously.
//!
//! Each pass observes the kernel objects the agent may own
//! ([`observe::Observed`]: host interfaces, /32 routes and addresses,
//! namespace mounts in `<run-dir>/netns/`, pinned links and the entries of
//! its maps), computes the steps that make them match the desired state
//! ([`plan::plan`], pure) and applies them ([`apply`]). It runs at start
//! (where it also swaps the new programs into the pinned links), after every
//! change the engine commits, on netlink link and route events, and every
//! [`INTERVAL`]: a pass that finds nothing to do costs a few netlink dumps
//! and map walks.
//!
//! What it repairs: a missing namespace, veth, host route, map entry or
//! link (deleted, unpinned or detached behind the agent's back); what it
//! collects: namespace mounts, veths (`dp` + 8 hex digits), map entries and
//! pinned links that no container or network owns, such as the leftovers of
//! a crash in the middle of `container create`. Objects that are not the
//! agent's (other programs, interfaces, pins outside `<bpffs>/links`) are
//! never touched.

mod apply;
mod ip6;
mod lan;
mod observe;
mod overlay;
mod p2p;
mod plan;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use anyhow::Result;
use dataplane_common::{prog_names, HostInfo, PortKey, PortTarget};
use tracing::{debug, info, warn};

pub use self::{
    observe::Observed,
    plan::{owns_netns, plan, Desired, Step},
};
use crate::{
    engine::{
        attached_gone, datapath_config, link_policy_keys, port_entries, refresh_host_ips, Engine,
        Inner,
    },
    kernel,
};

/// Time between two passes when nothing asks for one.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// At start: load the new programs into every link, hold the published
    /// host ports again.
    Start,
    /// After a change, an event or on the timer.
    Repair,
}

impl Engine {
    /// Make the kernel match the desired state once (at start).
    pub async fn reconcile(&self) -> Result<()> {
        self.converge(Pass::Start).await.map(|_| ())
    }

    /// Ask the reconciler for a pass soon (after a change).
    pub fn request_reconcile(&self) {
        self.wake.notify_one();
    }

    /// Run the reconciler for as long as the runtime lives: on the timer,
    /// on requests and on netlink link/route events of the host namespace.
    pub fn spawn_reconciler(self: &Arc<Self>) -> Result<()> {
        use futures::StreamExt;
        let (conn, _handle, mut events) = rtnetlink::new_multicast_connection(&[
            rtnetlink::MulticastGroup::Link,
            rtnetlink::MulticastGroup::Ipv4Route,
        ])?;
        tokio::spawn(conn);
        let engine = Arc::clone(self);
        tokio::spawn(async move { engine.spawn_overlay_events().await });
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            while events.next().await.is_some() {
                engine.request_reconcile();
            }
        });
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = engine.wake.notified() => {
                        // Let a burst of events settle into one pass.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                match engine.converge(Pass::Repair).await {
                    Ok(0) => {}
                    Ok(n) => debug!(steps = n, "reconciled"),
                    Err(e) => warn!("reconcile pass failed (retried): {e:#}"),
                }
            }
        });
        Ok(())
    }

    /// One pass: observe, plan, apply. Returns the number of steps taken.
    pub(crate) async fn converge(&self, pass: Pass) -> Result<usize> {
        let started = std::time::Instant::now();
        let mut g = self.inner.lock().await;
        let g = &mut *g;
        if pass == Pass::Start {
            self.start_pass(g).await?;
        }
        match self.converge_overlay(g, pass).await {
            Ok(0) => {}
            Ok(n) => debug!(changes = n, "overlay reconciled"),
            Err(e) if pass == Pass::Start => return Err(e),
            Err(e) => warn!("overlay pass failed (retried): {e:#}"),
        }
        match self.converge_lan(g).await {
            Ok(0) => {}
            Ok(n) => debug!(changes = n, "lan parents reconciled"),
            Err(e) => warn!("lan pass failed (retried): {e:#}"),
        }
        let ports = desired_ports(g, pass == Pass::Start);
        let mut obs = Observed::read(&g.host, &g.dp, &self.cfg.run_dir.join("netns")).await?;
        obs.attached_gone = attached_gone(&g.containers);
        for c in g.containers.values() {
            for ep in &c.endpoints {
                if let Some(l) = obs.netdevs.get(&ep.host_interface) {
                    g.ifindexes.insert(ep.host_interface.clone(), l.index);
                }
            }
        }
        let steps = plan(
            &Desired {
                networks: &g.networks,
                containers: &g.containers,
                fixed_links: g.fixed_links.clone(),
                ports,
                replace_programs: pass == Pass::Start,
            },
            &obs,
        );
        for s in &steps {
            match (pass, s) {
                (Pass::Start, Step::Attach { .. }) => debug!("reconcile: {s}"),
                (Pass::Start, _) => info!("reconcile: {s}"),
                (Pass::Repair, _) => info!("repairing: {s}"),
            }
            if let Err(e) = self.apply(g, s).await {
                warn!("{s} failed (retried at the next pass): {e:#}");
            }
        }
        match self.converge_ip6(g).await {
            Ok(0) => {}
            Ok(n) => debug!(changes = n, "IPv6 reconciled"),
            Err(e) => warn!("IPv6 pass failed (retried): {e:#}"),
        }
        match self.converge_p2p(g).await {
            Ok(0) => {}
            Ok(n) => debug!(changes = n, "p2p links reconciled"),
            Err(e) => warn!("p2p pass failed (retried): {e:#}"),
        }
        let links = link_policy_keys(&g.containers, &g.networks);
        g.dp.sync_link_policy(&links)?;
        // Names, resolver files and the resolvers (restarting any that died
        // or whose namespace a step above recreated).
        self.sync_names(g).await;
        crate::monitor::metrics::agent().reconciled(
            if pass == Pass::Start {
                "start"
            } else {
                "repair"
            },
            steps.len(),
            started.elapsed().as_secs_f64(),
        );
        tracing::trace!(
            steps = steps.len(),
            elapsed_us = started.elapsed().as_micros(),
            "reconcile pass"
        );
        Ok(steps.len())
    }

    /// What only the start does: the datapath's configuration, and the
    /// uplink and socket programs swapped into their links.
    async fn start_pass(&self, g: &mut Inner) -> Result<()> {
        let cfg = datapath_config(g);
        g.dp.set_config(cfg)?;
        g.dp.set_host(HostInfo {
            netns_cookie: kernel::netns_cookie()?,
        })?;
        refresh_host_ips(g).await?;
        let mut fixed = BTreeSet::new();
        if let Some(cg) = self.cfg.cgroup.clone().or_else(kernel::cgroup2_mount) {
            match g.dp.attach_cgroup(&cg) {
                Ok(()) => {
                    for p in [
                        prog_names::SOCK_CONNECT4,
                        prog_names::SOCK_SENDMSG4,
                        prog_names::SOCK_RECVMSG4,
                        dataplane_common::nat6_prog_names::SOCK_CONNECT6,
                        dataplane_common::nat6_prog_names::SOCK_SENDMSG6,
                        dataplane_common::nat6_prog_names::SOCK_RECVMSG6,
                    ] {
                        fixed.insert((p.to_string(), "cgroup".to_string()));
                    }
                }
                Err(e) => {
                    warn!("published ports will not be reachable from the host itself: {e:#}");
                }
            }
        } else {
            warn!("no cgroup2 mount: published ports will not be reachable from the host itself");
        }
        if let Some(u) = g.uplink.clone() {
            let mode = crate::engine::host_ifs::mode(g, &u.name);
            for p in mode.programs() {
                apply::attach_uplink(g, p, &u.name)?;
                fixed.insert(((*p).to_string(), u.name.clone()));
            }
            info!(uplink = %u.name, ip = ?u.ip, ?mode, "uplink");
        } else {
            warn!("no uplink: containers have no outbound path");
        }
        g.fixed_links = fixed;
        crate::engine::host_ifs::set_links(g);
        Ok(())
    }
}

/// `DP_PORTS` as it should be: every container's mappings to its first
/// endpoint, except those whose host port the agent does not hold. At start
/// the ports are bound again first.
fn desired_ports(g: &mut Inner, reserve: bool) -> HashMap<PortKey, PortTarget> {
    let mut out = HashMap::new();
    for c in g.containers.values() {
        if crate::engine::runtime_holds_ports(c) {
            // Its runtime binds the host ports (a CNI runtime's reservation).
            out.extend(port_entries(c));
            continue;
        }
        if reserve {
            for m in &c.ports {
                if !g.reservations.is_held(m.host_ip, m.host_port, m.proto) {
                    if let Err(e) = g.reservations.reserve(m.host_ip, m.host_port, m.proto) {
                        // A host process took it while the agent was down:
                        // do not steal its traffic.
                        warn!(container = %c.name, "not publishing {}: {e}", m.describe());
                    }
                }
            }
        }
        out.extend(
            port_entries(c)
                .into_iter()
                .zip(&c.ports)
                .filter(|(_, m)| g.reservations.is_held(m.host_ip, m.host_port, m.proto))
                .map(|(e, _)| e),
        );
    }
    out
}

//! [`ClusterView`]: what this node knows of the cluster, built from etcd by
//! the watcher, and the [`ClusterEvent`]s that tell a consumer (the engine's
//! reconciler, later the overlay maps) what changed.
//!
//! The view applies one key change at a time ([`ClusterView::apply`]), for a
//! watch event and for a re-list alike: a re-list puts every listed key and
//! deletes every known key that was not listed (mark and sweep), and an
//! unchanged value emits nothing. Endpoints of a node that has been down
//! longer than the grace period are hidden (and reported removed); they come
//! back if the node does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::client::Kv;
use super::keys::{decode, EndpointRecord, KeyKind, Keys, NetworkRecord, NodeRecord};

/// A change the consumer applies, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node is alive (or its record changed while alive).
    NodeUp(NodeRecord),
    /// A node's lease expired or was revoked; its endpoints stay for the
    /// grace period.
    NodeDown(String),
    /// A node's record was deleted (reaped).
    NodeRemoved(String),
    NetworkAdded(NetworkRecord),
    NetworkRemoved(NetworkRecord),
    /// An endpoint appeared. A changed endpoint (same address, other node,
    /// MAC or container) is reported as removed, then added.
    EndpointAdded(EndpointRecord),
    EndpointRemoved(EndpointRecord),
    /// A full re-list was applied at this revision.
    Resynced(i64),
}

/// What is known of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub record: Option<NodeRecord>,
    pub alive: bool,
    /// Since when the node is down (as seen by this node).
    pub down_since: Option<Instant>,
    /// Down longer than the grace period: its endpoints are hidden.
    pub expired: bool,
}

/// One line of `node ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    pub name: String,
    pub address: Option<Ipv4Addr>,
    pub alive: bool,
    pub endpoints: usize,
}

type EpKey = (String, Ipv4Addr);

/// The node-local copy of the cluster state.
#[derive(Debug, Default, Clone)]
pub struct ClusterView {
    /// etcd revision the view reflects.
    pub revision: i64,
    /// Whether a full list has been applied at least once.
    pub synced: bool,
    nodes: BTreeMap<String, NodeState>,
    networks: BTreeMap<String, NetworkRecord>,
    /// Every endpoint in etcd (visible or hidden), with its mod revision.
    endpoints: BTreeMap<EpKey, (EndpointRecord, i64)>,
    by_node: BTreeMap<String, BTreeSet<EpKey>>,
    /// Raw keys known, for the sweep of a re-list.
    known: BTreeSet<String>,
}

/// A key change to apply.
pub enum Change<'a> {
    Put(&'a Kv),
    Delete(&'a str),
}

impl ClusterView {
    pub fn nodes(&self) -> &BTreeMap<String, NodeState> {
        &self.nodes
    }

    pub fn networks(&self) -> &BTreeMap<String, NetworkRecord> {
        &self.networks
    }

    /// Endpoints the datapath should know: those of nodes not expired.
    pub fn endpoints(&self) -> impl Iterator<Item = &EndpointRecord> {
        self.endpoints
            .values()
            .map(|(r, _)| r)
            .filter(|r| self.visible(r))
    }

    pub fn endpoint(&self, network: &str, ip: Ipv4Addr) -> Option<&EndpointRecord> {
        self.endpoints
            .get(&(network.to_string(), ip))
            .map(|(r, _)| r)
            .filter(|r| self.visible(r))
    }

    /// An endpoint as etcd holds it (visible or hidden), with the revision
    /// that guards its deletion.
    pub fn written_endpoint(
        &self,
        network: &str,
        ip: Ipv4Addr,
    ) -> Option<super::endpoints::WrittenEndpoint> {
        self.endpoints
            .get(&(network.to_string(), ip))
            .map(|(r, rev)| super::endpoints::WrittenEndpoint {
                record: r.clone(),
                mod_revision: *rev,
            })
    }

    /// Every endpoint etcd holds for `node` (visible or hidden).
    pub fn node_endpoints(&self, node: &str) -> Vec<super::endpoints::WrittenEndpoint> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|(n, ip)| self.written_endpoint(n, *ip))
            .collect()
    }

    /// Nodes with address, state and endpoint count (`node ls`).
    pub fn node_summaries(&self) -> Vec<NodeSummary> {
        self.nodes
            .iter()
            .map(|(name, n)| NodeSummary {
                name: name.clone(),
                address: n.record.as_ref().map(|r| r.address),
                alive: n.alive,
                endpoints: self.by_node.get(name).map_or(0, BTreeSet::len),
            })
            .collect()
    }

    fn visible(&self, ep: &EndpointRecord) -> bool {
        self.nodes.get(&ep.node).is_none_or(|n| !n.expired)
    }

    fn node_entry(&mut self, name: &str) -> &mut NodeState {
        self.nodes.entry(name.to_string()).or_insert(NodeState {
            record: None,
            alive: false,
            down_since: Some(Instant::now()),
            expired: false,
        })
    }

    /// Applies one key change; pushes the resulting events. Undecodable
    /// values are logged and treated as absent.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "a change is built for one call and applied once"
    )]
    pub fn apply(&mut self, keys: &Keys, change: Change<'_>, out: &mut Vec<ClusterEvent>) {
        let (key, value) = match change {
            Change::Put(kv) => (kv.key.as_str(), Some(kv)),
            Change::Delete(k) => (k, None),
        };
        let Some(kind) = keys.parse(key) else { return };
        if value.is_some() {
            self.known.insert(key.to_string());
        } else {
            self.known.remove(key);
        }
        match kind {
            KeyKind::Node(name) => {
                let rec = value.and_then(decoded::<NodeRecord>);
                self.set_node_record(&name, rec, out);
            }
            KeyKind::Alive(name) => self.set_alive(&name, value.is_some(), out),
            KeyKind::Network(name) => match value.and_then(decoded::<NetworkRecord>) {
                Some(rec) => {
                    if self.networks.get(&name) != Some(&rec) {
                        self.networks.insert(name, rec.clone());
                        out.push(ClusterEvent::NetworkAdded(rec));
                    }
                }
                None => {
                    if let Some(old) = self.networks.remove(&name) {
                        out.push(ClusterEvent::NetworkRemoved(old));
                    }
                }
            },
            KeyKind::Endpoint { network, ip } => {
                let new = value
                    .and_then(|kv| decoded::<EndpointRecord>(kv).map(|r| (r, kv.mod_revision)));
                self.set_endpoint((network, ip), new, out);
            }
            KeyKind::Vni(_) | KeyKind::Block { .. } => {}
        }
    }

    fn set_node_record(
        &mut self,
        name: &str,
        rec: Option<NodeRecord>,
        out: &mut Vec<ClusterEvent>,
    ) {
        if let Some(rec) = rec {
            let n = self.node_entry(name);
            if n.record.as_ref() != Some(&rec) {
                n.record = Some(rec.clone());
                if n.alive {
                    out.push(ClusterEvent::NodeUp(rec));
                }
            }
        } else {
            let has_endpoints = self.by_node.contains_key(name);
            if let Some(n) = self.nodes.get_mut(name) {
                if n.record.take().is_some() {
                    out.push(ClusterEvent::NodeRemoved(name.to_string()));
                }
                if !n.alive && !has_endpoints {
                    self.nodes.remove(name);
                }
            }
        }
    }

    fn set_alive(&mut self, name: &str, alive: bool, out: &mut Vec<ClusterEvent>) {
        let n = self.node_entry(name);
        if n.alive == alive {
            return;
        }
        n.alive = alive;
        if alive {
            let was_expired = n.expired;
            n.expired = false;
            n.down_since = None;
            if let Some(rec) = n.record.clone() {
                out.push(ClusterEvent::NodeUp(rec));
            }
            if was_expired {
                self.emit_node_endpoints(name, true, out);
            }
        } else {
            n.down_since = Some(Instant::now());
            out.push(ClusterEvent::NodeDown(name.to_string()));
        }
    }

    fn set_endpoint(
        &mut self,
        key: EpKey,
        new: Option<(EndpointRecord, i64)>,
        out: &mut Vec<ClusterEvent>,
    ) {
        let old = self.endpoints.get(&key).cloned();
        if old.as_ref().map(|(r, _)| r) == new.as_ref().map(|(r, _)| r) {
            if let (Some(n), Some(e)) = (new, self.endpoints.get_mut(&key)) {
                e.1 = n.1;
            }
            return;
        }
        if let Some((old, _)) = &old {
            if let Some(set) = self.by_node.get_mut(&old.node) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_node.remove(&old.node);
                    // A node known only through its endpoints is forgotten
                    // with the last of them.
                    if self
                        .nodes
                        .get(&old.node)
                        .is_some_and(|n| n.record.is_none() && !n.alive)
                    {
                        self.nodes.remove(&old.node);
                    }
                }
            }
            self.endpoints.remove(&key);
            if self.visible(old) {
                out.push(ClusterEvent::EndpointRemoved(old.clone()));
            }
        }
        if let Some((rec, rev)) = new {
            self.by_node
                .entry(rec.node.clone())
                .or_default()
                .insert(key.clone());
            if self.visible(&rec) {
                out.push(ClusterEvent::EndpointAdded(rec.clone()));
            }
            self.endpoints.insert(key, (rec, rev));
        }
    }

    fn emit_node_endpoints(&self, node: &str, added: bool, out: &mut Vec<ClusterEvent>) {
        for key in self.by_node.get(node).into_iter().flatten() {
            if let Some((rec, _)) = self.endpoints.get(key) {
                out.push(if added {
                    ClusterEvent::EndpointAdded(rec.clone())
                } else {
                    ClusterEvent::EndpointRemoved(rec.clone())
                });
            }
        }
    }

    /// Hides the endpoints of nodes down longer than `grace`; returns the
    /// nodes that just expired.
    pub fn expire(&mut self, grace: Duration, out: &mut Vec<ClusterEvent>) -> Vec<String> {
        let now = Instant::now();
        let due: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                !n.alive
                    && !n.expired
                    && n.down_since.is_some_and(|t| now.duration_since(t) >= grace)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &due {
            self.emit_node_endpoints(name, false, out);
            if let Some(n) = self.nodes.get_mut(name) {
                n.expired = true;
            }
        }
        due
    }

    /// Nodes down longer than the grace period that are still known (their
    /// entries have not been reaped yet).
    pub fn expired_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.expired)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Applies a full listing at `revision`: puts every listed key, then
    /// deletes every known key that was not listed (mark and sweep).
    pub fn resync(&mut self, keys: &Keys, revision: i64, kvs: &[Kv], out: &mut Vec<ClusterEvent>) {
        let listed: BTreeSet<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        // Liveness and node records first, so endpoint visibility is right.
        let rank = |kv: &&Kv| match keys.parse(&kv.key) {
            Some(KeyKind::Alive(_) | KeyKind::Node(_)) => 0,
            Some(KeyKind::Network(_)) => 1,
            _ => 2,
        };
        let mut ordered: Vec<&Kv> = kvs.iter().collect();
        ordered.sort_by_key(rank);
        for kv in ordered {
            self.apply(keys, Change::Put(kv), out);
        }
        let gone: Vec<String> = self
            .known
            .iter()
            .filter(|k| !listed.contains(k.as_str()))
            .cloned()
            .collect();
        for k in gone {
            self.apply(keys, Change::Delete(&k), out);
        }
        // Nodes seen only through endpoints or records are down.
        self.revision = revision;
        self.synced = true;
        out.push(ClusterEvent::Resynced(revision));
    }
}

fn decoded<T: serde::de::DeserializeOwned + super::keys::Versioned>(kv: &Kv) -> Option<T> {
    match decode::<T>(&kv.key, &kv.value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("cluster: ignoring {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::{encode, AliveRecord};

    fn kv<T: serde::Serialize>(key: String, v: &T, rev: i64) -> Kv {
        Kv {
            key,
            value: encode(v).unwrap(),
            mod_revision: rev,
            lease: 0,
        }
    }

    fn ep(node: &str, ip: &str) -> EndpointRecord {
        EndpointRecord {
            version: 1,
            network: "ov1".into(),
            ip: ip.parse().unwrap(),
            node: node.into(),
            mac: "02:00:00:00:00:01".into(),
            container: "c".into(),
            ip6: None,
        }
    }

    #[test]
    fn resync_sweeps_what_disappeared_and_is_quiet_for_the_rest() {
        let k = Keys::new("/t");
        let alive = AliveRecord {
            version: 1,
            lease: 7,
        };
        let a = ep("h1", "10.90.0.2");
        let b = ep("h1", "10.90.0.3");
        let list1 = vec![
            kv(k.alive("h1"), &alive, 1),
            kv(k.endpoint("ov1", a.ip), &a, 2),
            kv(k.endpoint("ov1", b.ip), &b, 3),
        ];
        let mut v = ClusterView::default();
        let mut out = Vec::new();
        v.resync(&k, 3, &list1, &mut out);
        assert_eq!(v.endpoints().count(), 2);
        out.clear();
        v.resync(&k, 9, &list1[..2], &mut out);
        assert_eq!(
            out,
            vec![ClusterEvent::EndpointRemoved(b), ClusterEvent::Resynced(9)]
        );
    }

    #[test]
    fn endpoints_of_a_dead_node_are_hidden_after_grace_and_return_with_it() {
        let k = Keys::new("/t");
        let alive = AliveRecord {
            version: 1,
            lease: 7,
        };
        let a = ep("h2", "10.90.0.2");
        let mut v = ClusterView::default();
        let mut out = Vec::new();
        v.apply(&k, Change::Put(&kv(k.alive("h2"), &alive, 1)), &mut out);
        v.apply(
            &k,
            Change::Put(&kv(k.endpoint("ov1", a.ip), &a, 2)),
            &mut out,
        );
        out.clear();
        v.apply(&k, Change::Delete(&k.alive("h2")), &mut out);
        assert_eq!(out, vec![ClusterEvent::NodeDown("h2".into())]);
        assert_eq!(v.endpoints().count(), 1, "kept during the grace period");
        out.clear();
        assert!(v.expire(Duration::from_hours(1), &mut out).is_empty());
        assert_eq!(v.expire(Duration::ZERO, &mut out), vec!["h2".to_string()]);
        assert_eq!(out, vec![ClusterEvent::EndpointRemoved(a.clone())]);
        assert_eq!(v.endpoints().count(), 0);
        out.clear();
        v.apply(&k, Change::Put(&kv(k.alive("h2"), &alive, 5)), &mut out);
        assert_eq!(out, vec![ClusterEvent::EndpointAdded(a)]);
    }
}

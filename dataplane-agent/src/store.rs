//! Desired state, persisted in an embedded redb database.
//!
//! Records are JSON documents keyed by name. Every change the engine makes is
//! written in a single write transaction, so a crash leaves either the old or
//! the new state, never half of one.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::model::{Container, Network, P2pLink};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const P2P: TableDefinition<&str, &[u8]> = TableDefinition::new("p2p");

pub struct Store {
    db: Database,
}

/// One atomic change to the desired state.
#[derive(Default)]
pub struct Change<'a> {
    pub put_networks: Vec<&'a Network>,
    pub del_networks: Vec<&'a str>,
    pub put_containers: Vec<&'a Container>,
    pub del_containers: Vec<&'a str>,
    pub put_p2p: Vec<&'a P2pLink>,
    pub del_p2p: Vec<&'a str>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path)
            .with_context(|| format!("opening state database {}", path.display()))?;
        // Make sure both tables exist so that readers never fail on a fresh file.
        let tx = db.begin_write()?;
        tx.open_table(NETWORKS)?;
        tx.open_table(CONTAINERS)?;
        tx.open_table(P2P)?;
        tx.commit()?;
        Ok(Store { db })
    }

    pub fn load(&self) -> Result<(BTreeMap<String, Network>, BTreeMap<String, Container>)> {
        let tx = self.db.begin_read()?;
        let mut networks = BTreeMap::new();
        for row in tx.open_table(NETWORKS)?.iter()? {
            let (k, v) = row?;
            let n: Network = serde_json::from_slice(v.value())
                .with_context(|| format!("decoding network record {}", k.value()))?;
            networks.insert(k.value().to_string(), n);
        }
        let mut containers = BTreeMap::new();
        for row in tx.open_table(CONTAINERS)?.iter()? {
            let (k, v) = row?;
            let c: Container = serde_json::from_slice(v.value())
                .with_context(|| format!("decoding container record {}", k.value()))?;
            containers.insert(k.value().to_string(), c);
        }
        Ok((networks, containers))
    }

    /// The point-to-point links, by name.
    pub fn load_p2p(&self) -> Result<BTreeMap<String, P2pLink>> {
        let tx = self.db.begin_read()?;
        let mut out = BTreeMap::new();
        for row in tx.open_table(P2P)?.iter()? {
            let (k, v) = row?;
            let l: P2pLink = serde_json::from_slice(v.value())
                .with_context(|| format!("decoding p2p record {}", k.value()))?;
            out.insert(k.value().to_string(), l);
        }
        Ok(out)
    }

    pub fn apply(&self, change: Change<'_>) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut nets = tx.open_table(NETWORKS)?;
            for n in change.put_networks {
                nets.insert(n.name.as_str(), serde_json::to_vec(n)?.as_slice())?;
            }
            for n in change.del_networks {
                nets.remove(n)?;
            }
            let mut ctrs = tx.open_table(CONTAINERS)?;
            for c in change.put_containers {
                ctrs.insert(c.name.as_str(), serde_json::to_vec(c)?.as_slice())?;
            }
            for c in change.del_containers {
                ctrs.remove(c)?;
            }
            if !change.put_p2p.is_empty() || !change.del_p2p.is_empty() {
                let mut links = tx.open_table(P2P)?;
                for l in change.put_p2p {
                    links.insert(l.name.as_str(), serde_json::to_vec(l)?.as_slice())?;
                }
                for l in change.del_p2p {
                    links.remove(l)?;
                }
            }
        }
        tx.commit().context("committing state change")?;
        Ok(())
    }
}

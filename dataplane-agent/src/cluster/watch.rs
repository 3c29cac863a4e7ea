//! The watcher: keeps a [`ClusterView`] converged with etcd.
//!
//! It lists the whole prefix at one revision, applies it (mark and sweep),
//! then watches from that revision + 1. When the watch reports a compacted
//! revision, is cancelled, or breaks (etcd restarted, connection lost), it
//! lists again and reconciles: it never resumes from a guessed revision.
//! While etcd is unreachable the view is kept as it is (the datapath keeps
//! forwarding between known endpoints) and listing is retried.
//! A tick hides the endpoints of nodes down longer than the grace period and
//! (optionally) reaps them from etcd.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::client::Kv;
use super::view::{Change, ClusterEvent, ClusterView};
use super::Cluster;

/// Watcher settings.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// How long a dead node's endpoints stay before they are removed.
    pub grace: Duration,
    /// Also delete a dead node's entries from etcd after the grace period.
    pub reap: bool,
    /// How often the grace period is checked.
    pub tick: Duration,
    /// Pause before listing again after an error.
    pub retry: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            grace: Duration::from_mins(1),
            reap: true,
            tick: Duration::from_millis(500),
            retry: Duration::from_secs(1),
        }
    }
}

struct Shared {
    view: RwLock<ClusterView>,
    generation: watch::Sender<u64>,
    relists: AtomicU64,
    compactions: AtomicU64,
    watching: AtomicBool,
}

/// The engine's side of the watcher: a snapshot of the view at any time and
/// a generation counter that moves on every change (events, if asked for,
/// arrive on the channel given to [`spawn_watcher`]). Dropping it stops the
/// watcher.
pub struct WatchHandle {
    shared: Arc<Shared>,
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WatchHandle {
    /// Runs `f` on the current view (under a read lock: keep it short).
    pub fn with_view<R>(&self, f: impl FnOnce(&ClusterView) -> R) -> R {
        match self.shared.view.read() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// A copy of the current view.
    pub fn snapshot(&self) -> ClusterView {
        self.with_view(Clone::clone)
    }

    /// How many full lists were applied (1 after the first sync).
    pub fn relists(&self) -> u64 {
        self.shared.relists.load(Ordering::SeqCst)
    }

    /// How many times the watch reported a compacted revision.
    pub fn compactions(&self) -> u64 {
        self.shared.compactions.load(Ordering::SeqCst)
    }

    /// Whether a watch is currently established.
    pub fn watching(&self) -> bool {
        self.shared.watching.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds for the view, or `timeout` passes (then
    /// returns false).
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ClusterView) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.with_view(&mut pred) {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.with_view(&mut pred),
            }
        }
    }
}

/// Starts the watcher for `cluster`; events go to `events` if given (the
/// watcher waits for the consumer when the channel is full).
pub fn spawn_watcher(
    cluster: Cluster,
    cfg: WatchConfig,
    events: Option<mpsc::Sender<ClusterEvent>>,
) -> WatchHandle {
    resume_watcher(cluster, cfg, events, ClusterView::default())
}

/// Starts a watcher from a view kept from an earlier watcher (e.g. across
/// a restart of the watch task): it watches from `view.revision + 1` at
/// once; if etcd compacted that revision meanwhile, it lists again and
/// reconciles the view (removals for what disappeared). A view that never
/// synced starts with a list.
pub fn resume_watcher(
    cluster: Cluster,
    cfg: WatchConfig,
    events: Option<mpsc::Sender<ClusterEvent>>,
    view: ClusterView,
) -> WatchHandle {
    let (generation, changed) = watch::channel(0);
    let resume = view.synced.then_some(view.revision);
    let shared = Arc::new(Shared {
        view: RwLock::new(view),
        generation,
        relists: AtomicU64::new(0),
        compactions: AtomicU64::new(0),
        watching: AtomicBool::new(false),
    });
    let task = tokio::spawn(run(cluster, cfg, shared.clone(), events, resume));
    WatchHandle {
        shared,
        changed,
        task,
    }
}

impl Shared {
    /// Changes the view under the lock, bumps the generation, then delivers
    /// the events.
    async fn update<R>(
        &self,
        cluster: &Cluster,
        events: Option<&mpsc::Sender<ClusterEvent>>,
        f: impl FnOnce(&mut ClusterView, &mut Vec<ClusterEvent>) -> R,
    ) -> R {
        let mut out = Vec::new();
        let r = match self.view.write() {
            Ok(mut v) => f(&mut v, &mut out),
            Err(poisoned) => f(&mut poisoned.into_inner(), &mut out),
        };
        // A removed network's cached IPAM state (blocks, used addresses)
        // must not outlive it: a network of the same name may follow.
        let removed: Vec<&str> = out
            .iter()
            .filter_map(|e| match e {
                ClusterEvent::NetworkRemoved(n) => Some(n.name.as_str()),
                _ => None,
            })
            .collect();
        if !removed.is_empty() {
            let mut ipam = cluster.ipam.lock().await;
            for name in removed {
                ipam.forget_network(name);
            }
        }
        // The view changed: tell its waiters before delivering the events,
        // which can wait for the consumer (a first list of 100k keys is more
        // events than the channel holds, and the agent starts consuming only
        // once it saw the listed view).
        self.generation.send_modify(|g| *g += 1);
        if let Some(tx) = events {
            for ev in out {
                // A dropped receiver only means nobody listens any more.
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        }
        r
    }
}

async fn run(
    cluster: Cluster,
    cfg: WatchConfig,
    shared: Arc<Shared>,
    events: Option<mpsc::Sender<ClusterEvent>>,
    mut resume: Option<i64>,
) {
    let keys = cluster.keys.clone();
    let root = keys.root();
    loop {
        let rev = match resume.take() {
            Some(rev) => rev,
            None => match cluster.list(&root).await {
                Ok((rev, kvs)) => {
                    shared
                        .update(&cluster, events.as_ref(), |v, out| {
                            v.resync(&keys, rev, &kvs, out);
                        })
                        .await;
                    shared.relists.fetch_add(1, Ordering::SeqCst);
                    rev
                }
                Err(e) => {
                    tracing::warn!("cluster: {e}; keeping the current view, retrying");
                    tokio::time::sleep(cfg.retry).await;
                    continue;
                }
            },
        };
        let mut wc = cluster.client.watch_client();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        let mut stream = match cluster
            .call("watch", wc.watch(root.clone(), Some(opts)))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cluster: {e}; listing again");
                tokio::time::sleep(cfg.retry).await;
                continue;
            }
        };
        shared.watching.store(true, Ordering::SeqCst);
        let mut tick = tokio::time::interval(cfg.tick);
        let mut last_reap = tokio::time::Instant::now();
        loop {
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 {
                            tracing::warn!(
                                compacted = resp.compact_revision(),
                                "cluster: watch fell behind a compaction; listing again"
                            );
                            shared.compactions.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if resp.canceled() {
                            tracing::warn!("cluster: watch cancelled ({}); listing again", resp.cancel_reason());
                            break;
                        }
                        let header_rev = resp.header().map(etcd_client::ResponseHeader::revision);
                        shared.update(&cluster, events.as_ref(), |v, out| {
                            for ev in resp.events() {
                                let Some(kv) = ev.kv().and_then(Kv::from_etcd) else { continue };
                                match ev.event_type() {
                                    EventType::Put => v.apply(&keys, Change::Put(&kv), out),
                                    EventType::Delete => v.apply(&keys, Change::Delete(&kv.key), out),
                                }
                                v.revision = v.revision.max(kv.mod_revision);
                            }
                            if let Some(r) = header_rev {
                                v.revision = v.revision.max(r);
                            }
                        }).await;
                    }
                    Ok(None) => {
                        tracing::warn!("cluster: watch closed by the store; listing again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("cluster: watch broken ({e}); listing again");
                        break;
                    }
                },
                _ = tick.tick() => {
                    let mut expired = shared.update(&cluster, events.as_ref(), |v, out| v.expire(cfg.grace, out)).await;
                    // Reaps that failed (etcd away) are retried once per grace period.
                    if last_reap.elapsed() >= cfg.grace {
                        last_reap = tokio::time::Instant::now();
                        expired = shared.view.read().map(|v| v.expired_nodes()).unwrap_or_default();
                    }
                    if cfg.reap {
                        for node in expired {
                            let c = cluster.clone();
                            tokio::spawn(async move {
                                match c.reap_node(&node).await {
                                    Ok(n) => tracing::info!(node, entries = n, "cluster: reaped dead node"),
                                    Err(e) => tracing::warn!(node, "cluster: reap: {e}"),
                                }
                            });
                        }
                    }
                }
            }
        }
        shared.watching.store(false, Ordering::SeqCst);
        tokio::time::sleep(cfg.retry.min(Duration::from_millis(200))).await;
    }
}

//! The cluster store against a real etcd (Debian's etcd-server) running in a
//! private network namespace: registration and liveness, networks created by
//! transaction, IPAM blocks, endpoints, the watcher's resync after a
//! compaction, and an etcd outage.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dataplane_agent::cluster::endpoints::WrittenEndpoint;
use dataplane_agent::cluster::networks::NetworkSpec;
use dataplane_agent::cluster::{
    spawn_watcher, Cluster, ClusterConfig, ClusterError, ClusterEvent, ClusterView, WatchConfig,
};
use etcd_client::GetOptions;
use support::{Etcd, NetNs, ETCD_STORE};
use tokio::sync::mpsc;

fn config(node: &str, last_octet: u8) -> ClusterConfig {
    let mut c = ClusterConfig::new(ETCD_STORE, node, Ipv4Addr::new(192, 0, 2, last_octet)).unwrap();
    c.lease_ttl = Duration::from_secs(2);
    c.op_timeout = Duration::from_secs(2);
    c
}

async fn connect(node: &str, last_octet: u8) -> Cluster {
    Cluster::connect(config(node, last_octet)).await.unwrap()
}

fn spec(name: &str, subnet: &str, vni: Option<u32>) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        subnet: subnet.parse().unwrap(),
        vni,
        options: BTreeMap::new(),
        subnet6: None,
    }
}

fn quick_watch() -> WatchConfig {
    WatchConfig {
        grace: Duration::from_secs(3),
        reap: true,
        tick: Duration::from_millis(100),
        retry: Duration::from_millis(200),
    }
}

const WAIT: Duration = Duration::from_secs(15);

fn alive(v: &ClusterView, node: &str) -> bool {
    v.nodes()
        .get(node)
        .is_some_and(|n| n.alive && n.record.is_some())
}

/// Counts the keys under a prefix directly in etcd.
async fn count(c: &Cluster, prefix: &str) -> usize {
    let mut e = c.etcd();
    let r = e
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    usize::try_from(r.count()).unwrap()
}

#[test]
fn two_nodes_register_see_each_other_and_share_networks() {
    let ns = NetNs::new();
    let _etcd = Etcd::start(&ns);
    ns.block_on(|| async {
        let h1 = connect("h1", 11).await;
        let h2 = connect("h2", 12).await;
        let _r1 = h1.register_node().await.unwrap();
        let _r2 = h2.register_node().await.unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let mut w1 = spawn_watcher(h1.clone(), quick_watch(), None);
        let mut w2 = spawn_watcher(h2.clone(), quick_watch(), Some(tx));
        for w in [&mut w1, &mut w2] {
            assert!(
                w.wait_until(WAIT, |v| alive(v, "h1") && alive(v, "h2"))
                    .await
            );
        }
        let addrs: Vec<_> = w2
            .snapshot()
            .node_summaries()
            .into_iter()
            .map(|n| (n.name, n.address))
            .collect();
        assert_eq!(
            addrs,
            vec![
                ("h1".to_string(), Some(Ipv4Addr::new(192, 0, 2, 11))),
                ("h2".to_string(), Some(Ipv4Addr::new(192, 0, 2, 12)))
            ]
        );

        let ov1 = h1
            .create_network(&spec("ov1", "10.90.0.0/16", None))
            .await
            .unwrap();
        assert_eq!(ov1.vni, 4096);
        assert_eq!(ov1.gateway, Ipv4Addr::new(10, 90, 0, 1));
        assert!(
            w2.wait_until(WAIT, |v| v.networks().get("ov1") == Some(&ov1))
                .await
        );

        // The second host cannot create it again, nor overlap it: one-line
        // errors and nothing changed.
        let e = h2
            .create_network(&spec("ov1", "10.91.0.0/16", None))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "cluster network ov1 already exists");
        let e = h2
            .create_network(&spec("ov2", "10.90.8.0/24", None))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 10.90.8.0/24 overlaps 10.90.0.0/16 of cluster network ov1"
        );
        let e = h2
            .create_network(&spec("ov2", "10.91.0.0/16", Some(4096)))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "VNI 4096 is already used by cluster network ov1"
        );
        let (_, nets) = h2.networks().await.unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(count(&h2, &format!("{}vnis/", h2.keys().root())).await, 1);

        // An endpoint written by h1 shows in h2's view and node counts.
        let ep = h1
            .add_endpoint("ov1", "02:00:0a:5a:00:02", "web")
            .await
            .unwrap();
        assert_eq!(
            ep.record.ip,
            Ipv4Addr::new(10, 90, 0, 2),
            "skips network and gateway"
        );
        assert!(
            w2.wait_until(WAIT, |v| v.endpoint("ov1", ep.record.ip)
                == Some(&ep.record))
                .await
        );
        let counts: Vec<_> = w2
            .snapshot()
            .node_summaries()
            .into_iter()
            .map(|n| (n.name, n.endpoints))
            .collect();
        assert_eq!(counts, vec![("h1".to_string(), 1), ("h2".to_string(), 0)]);

        // The network cannot go while it has endpoints.
        let e = h2.delete_network("ov1").await.unwrap_err();
        assert_eq!(e.to_string(), "cluster network ov1 still has 1 endpoint(s)");
        h1.delete_endpoint(&ep).await.unwrap();
        h2.delete_network("ov1").await.unwrap();
        assert!(
            w1.wait_until(WAIT, |v| v.networks().is_empty()
                && v.endpoints().count() == 0)
                .await
        );
        assert_eq!(
            count(&h1, &h1.keys().root()).await,
            4,
            "2 node records + 2 liveness keys"
        );

        // h2's consumer saw the whole story, in order.
        let mut seen = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            seen.push(ev);
        }
        let pos = |want: &dyn Fn(&ClusterEvent) -> bool| seen.iter().position(want).unwrap();
        let added = pos(&|e| matches!(e, ClusterEvent::NetworkAdded(n) if n.name == "ov1"));
        let ep_added =
            pos(&|e| matches!(e, ClusterEvent::EndpointAdded(r) if r.container == "web"));
        let ep_removed =
            pos(&|e| matches!(e, ClusterEvent::EndpointRemoved(r) if r.container == "web"));
        let removed = pos(&|e| matches!(e, ClusterEvent::NetworkRemoved(n) if n.name == "ov1"));
        assert!(
            added < ep_added && ep_added < ep_removed && ep_removed < removed,
            "{seen:?}"
        );
    });
}

#[test]
fn concurrent_network_creates_have_exactly_one_winner() {
    let ns = NetNs::new();
    let _etcd = Etcd::start(&ns);
    ns.block_on(|| async {
        let hosts = [connect("h1", 11).await, connect("h2", 12).await];
        let ok = |rs: &[Result<_, ClusterError>]| rs.iter().filter(|r| r.is_ok()).count();

        // Same name, different subnets and VNIs.
        let rs = futures::future::join_all((0..8u32).map(|i| {
            let h = hosts[i as usize % 2].clone();
            async move {
                h.create_network(&spec(
                    "same",
                    &format!("10.{}.0.0/16", 100 + i),
                    Some(100 + i),
                ))
                .await
            }
        }))
        .await;
        assert_eq!(ok(&rs), 1, "{rs:?}");
        assert!(rs
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, ClusterError::NetworkExists(_))));

        // Same VNI, different names and subnets.
        let rs = futures::future::join_all((0..8u32).map(|i| {
            let h = hosts[i as usize % 2].clone();
            async move {
                h.create_network(&spec(
                    &format!("v{i}"),
                    &format!("10.{}.0.0/16", 150 + i),
                    Some(7),
                ))
                .await
            }
        }))
        .await;
        assert_eq!(ok(&rs), 1, "{rs:?}");
        assert!(rs
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, ClusterError::VniInUse { vni: 7, .. })));

        // Overlapping subnets, different names, automatic VNIs.
        let rs = futures::future::join_all((0..8u32).map(|i| {
            let h = hosts[i as usize % 2].clone();
            async move {
                let subnet = if i % 2 == 0 {
                    "10.200.0.0/16"
                } else {
                    "10.200.3.0/24"
                };
                h.create_network(&spec(&format!("o{i}"), subnet, Some(300 + i)))
                    .await
            }
        }))
        .await;
        assert_eq!(ok(&rs), 1, "{rs:?}");
        assert!(rs
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, ClusterError::SubnetOverlap { .. })));

        let (_, nets) = hosts[0].networks().await.unwrap();
        assert_eq!(nets.len(), 3);
        let vnis: BTreeSet<u32> = nets.iter().map(|n| n.vni).collect();
        assert_eq!(vnis.len(), 3, "distinct VNIs: {nets:?}");
        assert_eq!(
            count(&hosts[0], &format!("{}vnis/", hosts[0].keys().root())).await,
            3
        );
    });
}

#[test]
fn concurrent_allocations_from_two_nodes_never_collide() {
    let ns = NetNs::new();
    let _etcd = Etcd::start(&ns);
    ns.block_on(|| async {
        let h1 = connect("h1", 11).await;
        let h2 = connect("h2", 12).await;
        h1.create_network(&spec("ov1", "10.90.0.0/22", None))
            .await
            .unwrap();
        let jobs = (0..200).map(|i| {
            let h = if i % 2 == 0 { h1.clone() } else { h2.clone() };
            async move {
                h.add_endpoint(
                    "ov1",
                    &format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
                    &format!("c{i}"),
                )
                .await
            }
        });
        let eps: Vec<WrittenEndpoint> = futures::future::join_all(jobs)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        let ips: BTreeSet<Ipv4Addr> = eps.iter().map(|e| e.record.ip).collect();
        assert_eq!(ips.len(), 200, "no address handed out twice");
        assert_eq!(count(&h1, &h1.keys().endpoints("ov1")).await, 200);

        // Each node's addresses lie in its own blocks, and blocks are disjoint.
        let b1 = h1.owned_blocks("ov1").await;
        let b2 = h2.owned_blocks("ov1").await;
        assert_eq!(
            b1.len(),
            2,
            "100 addresses need two /26 (62 usable in the first)"
        );
        assert!(b1.iter().all(|b| !b2.contains(b)));
        for ep in &eps {
            let own = if ep.record.node == "h1" { &b1 } else { &b2 };
            assert!(own.iter().any(|b| b.contains(&ep.record.ip)), "{ep:?}");
        }

        // A taken address cannot be written again; a stale delete is refused.
        let taken = eps[0].record.ip;
        let e = h2
            .create_endpoint("ov1", taken, "02:00:00:00:ff:ff", "dup")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("address {taken} of cluster network ov1 is already in use")
        );
        let mut stale = eps[1].clone();
        stale.mod_revision -= 1;
        assert!(matches!(
            h1.delete_endpoint(&stale).await,
            Err(ClusterError::EndpointChanged { .. })
        ));
        assert_eq!(count(&h1, &h1.keys().endpoints("ov1")).await, 200);

        // h2's addresses go away: its now empty blocks can be given back.
        for ep in eps.iter().filter(|e| e.record.node == "h2") {
            h2.delete_endpoint(ep).await.unwrap();
        }
        assert_eq!(h2.release_empty_blocks("ov1").await.unwrap(), 2);
        assert_eq!(count(&h1, &h1.keys().blocks("ov1")).await, 2);
        assert!(h2.owned_blocks("ov1").await.is_empty());

        // A network without room left says so.
        h1.create_network(&spec("tiny", "10.95.0.0/30", None))
            .await
            .unwrap();
        let ep = h1
            .add_endpoint("tiny", "02:00:00:00:00:01", "t1")
            .await
            .unwrap();
        assert_eq!(ep.record.ip, Ipv4Addr::new(10, 95, 0, 2));
        let e = h2
            .add_endpoint("tiny", "02:00:00:00:00:02", "t2")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cluster network tiny has no free address block left"
        );
    });
}

#[test]
fn watcher_relists_after_a_compaction_and_converges() {
    let ns = NetNs::new();
    let _etcd = Etcd::start(&ns);
    ns.block_on(|| async {
        let h1 = connect("h1", 11).await;
        let h2 = connect("h2", 12).await;
        let _r1 = h1.register_node().await.unwrap();
        h1.create_network(&spec("ov1", "10.90.0.0/16", None))
            .await
            .unwrap();
        let mut eps = Vec::new();
        for i in 0..10 {
            eps.push(
                h1.add_endpoint("ov1", "02:00:00:00:00:01", &format!("c{i}"))
                    .await
                    .unwrap(),
            );
        }
        let mut w = spawn_watcher(h2.clone(), quick_watch(), None);
        assert!(w.wait_until(WAIT, |v| v.endpoints().count() == 10).await);
        // A compaction while the watch is connected does not disturb it.
        let mut e = h1.etcd();
        let rev = w.snapshot().revision;
        e.compact(rev, None).await.unwrap();
        let extra = h1
            .add_endpoint("ov1", "02:00:00:00:00:02", "live")
            .await
            .unwrap();
        assert!(
            w.wait_until(WAIT, |v| v.endpoint("ov1", extra.record.ip).is_some())
                .await
        );
        assert_eq!((w.relists(), w.compactions()), (1, 0));

        // Disconnect the watcher, change things, compact past its revision.
        let view = w.snapshot();
        drop(w);
        for ep in &eps[..4] {
            h1.delete_endpoint(ep).await.unwrap();
        }
        let new = h1
            .add_endpoint("ov1", "02:00:00:00:00:03", "new")
            .await
            .unwrap();
        h1.create_network(&spec("ov2", "10.91.0.0/16", None))
            .await
            .unwrap();
        let head = e.get("x", None).await.unwrap().header().unwrap().revision();
        e.compact(head, None).await.unwrap();

        // It resumes from the revision it had, learns it was compacted,
        // lists again and sweeps what disappeared.
        let (tx, mut rx) = mpsc::channel(1024);
        let mut w = dataplane_agent::cluster::watch::resume_watcher(
            h2.clone(),
            quick_watch(),
            Some(tx),
            view,
        );
        assert!(
            w.wait_until(WAIT, |v| v.revision >= head && v.endpoints().count() == 8)
                .await
        );
        assert_eq!((w.relists(), w.compactions()), (1, 1));
        let mut removed = BTreeSet::new();
        let mut added = BTreeSet::new();
        let mut networks = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            match ev {
                ClusterEvent::EndpointRemoved(r) => {
                    removed.insert(r.container);
                }
                ClusterEvent::EndpointAdded(r) => {
                    added.insert(r.container);
                }
                ClusterEvent::NetworkAdded(n) => networks.push(n.name),
                _ => {}
            }
        }
        assert_eq!(removed, ["c0", "c1", "c2", "c3"].map(String::from).into());
        assert_eq!(
            added,
            ["new".to_string()].into(),
            "unchanged entries are not re-announced"
        );
        assert_eq!(networks, vec!["ov2"]);
        let v = w.snapshot();
        assert_eq!(v.endpoint("ov1", new.record.ip), Some(&new.record));
        let containers: BTreeSet<&str> = v.endpoints().map(|e| e.container.as_str()).collect();
        let want: BTreeSet<&str> = ["c4", "c5", "c6", "c7", "c8", "c9", "live", "new"].into();
        assert_eq!(containers, want);
    });
}

#[test]
fn dead_node_is_marked_down_and_its_endpoints_removed_after_grace() {
    let ns = NetNs::new();
    let _etcd = Etcd::start(&ns);
    ns.block_on(|| async {
        let h1 = connect("h1", 11).await;
        let h2 = connect("h2", 12).await;
        let _r1 = h1.register_node().await.unwrap();
        let r2 = h2.register_node().await.unwrap();
        h1.create_network(&spec("ov1", "10.90.0.0/16", None))
            .await
            .unwrap();
        let ep = h2
            .add_endpoint("ov1", "02:00:00:00:00:01", "db")
            .await
            .unwrap();
        let mine = h1
            .add_endpoint("ov1", "02:00:00:00:00:02", "web")
            .await
            .unwrap();
        let mut w = spawn_watcher(h1.clone(), quick_watch(), None);
        assert!(
            w.wait_until(WAIT, |v| alive(v, "h2") && v.endpoints().count() == 2)
                .await
        );

        // A lost lease (revoked here, as if it had expired while h2 was cut
        // off) is noticed by h2's keep-alive task, which registers again.
        let first = r2.lease_id();
        h1.etcd().lease_revoke(first).await.unwrap();
        // The down/up pair may come within one watch batch, so the watcher
        // need not be seen down: the new lease and liveness are what count.
        let deadline = Instant::now() + WAIT;
        while r2.lease_id() == first && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_ne!(r2.lease_id(), first, "h2 did not register again");
        assert!(w.wait_until(WAIT, |v| alive(v, "h2")).await);
        assert!(w.snapshot().endpoint("ov1", ep.record.ip).is_some());

        // h2 stops keeping its lease alive (crash): after the TTL it is
        // down, but its endpoint stays for the grace period.
        drop(r2);
        assert!(w.wait_until(WAIT, |v| !v.nodes()["h2"].alive).await);
        let down_at = Instant::now();
        let v = w.snapshot();
        assert!(
            v.endpoint("ov1", ep.record.ip).is_some(),
            "kept during grace"
        );
        assert_eq!(count(&h1, &h1.keys().alive("h2")).await, 0);

        assert!(
            w.wait_until(WAIT, |v| v.endpoint("ov1", ep.record.ip).is_none())
                .await
        );
        assert!(
            down_at.elapsed() >= Duration::from_secs(2),
            "removed only after the grace period"
        );
        assert!(w.snapshot().endpoint("ov1", mine.record.ip).is_some());
        // ... and reaped from etcd: endpoints, blocks and the node record.
        assert!(w.wait_until(WAIT, |v| !v.nodes().contains_key("h2")).await);
        assert_eq!(count(&h1, &h1.keys().endpoints("ov1")).await, 1);
        assert_eq!(count(&h1, &h1.keys().node("h2")).await, 0);
        assert_eq!(count(&h1, &h1.keys().blocks("ov1")).await, 1);
        assert!(alive(&w.snapshot(), "h1"));

        // A live node cannot be reaped.
        let e = h2.reap_node("h1").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "node h1 is alive: only a dead node can be reaped"
        );
    });
}

#[test]
fn etcd_outage_fails_fast_keeps_the_view_and_converges_after_restart() {
    let ns = NetNs::new();
    let mut etcd = Etcd::start(&ns);
    let etcd = &mut etcd;
    ns.block_on(|| async move {
        let h1 = connect("h1", 11).await;
        let h2 = connect("h2", 12).await;
        let _r1 = h1.register_node().await.unwrap();
        let _r2 = h2.register_node().await.unwrap();
        h1.create_network(&spec("ov1", "10.90.0.0/16", None))
            .await
            .unwrap();
        let a = h1
            .add_endpoint("ov1", "02:00:00:00:00:01", "a")
            .await
            .unwrap();
        let mut w = spawn_watcher(h2.clone(), quick_watch(), None);
        assert!(
            w.wait_until(WAIT, |v| alive(v, "h1") && v.endpoints().count() == 1)
                .await
        );

        etcd.stop();
        // Operations that need etcd fail quickly with a clear error.
        let t = Instant::now();
        let e = h1
            .create_network(&spec("ov2", "10.91.0.0/16", None))
            .await
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let msg = e.to_string();
        assert!(
            msg.starts_with("cluster store failed (read networks): "),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        // An address from a block h1 already owns needs no etcd.
        let local = h1.allocate_address("ov1").await.unwrap();
        assert_eq!(local, Ipv4Addr::new(10, 90, 0, 3));
        // The view (what the maps are built from) stays as it was.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let v = w.snapshot();
        assert!(v.endpoint("ov1", a.record.ip).is_some());
        assert!(
            alive(&v, "h1"),
            "an outage of the store is not a node failure"
        );

        etcd.restart();
        let b = h1
            .create_endpoint("ov1", local, "02:00:00:00:00:02", "b")
            .await
            .unwrap();
        assert!(
            w.wait_until(WAIT, |v| v.endpoint("ov1", b.record.ip).is_some())
                .await
        );
        assert!(
            w.relists() >= 2,
            "the broken watch was replaced by a fresh list"
        );
        let v = w.snapshot();
        assert!(alive(&v, "h1") && alive(&v, "h2"));
        h1.create_network(&spec("ov2", "10.91.0.0/16", None))
            .await
            .unwrap();
        assert!(
            w.wait_until(WAIT, |v| v.networks().contains_key("ov2"))
                .await
        );
        // Leases survived (or were renewed): both nodes keep their liveness keys.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(count(&h1, &format!("{}alive/", h1.keys().root())).await, 2);
    });
}

#[test]
fn unreachable_store_at_start_is_a_one_line_error() {
    let ns = NetNs::new();
    ns.block_on(|| async {
        let mut cfg = ClusterConfig::new(
            "etcd://127.0.0.1:2379,127.0.0.1:2390",
            "h1",
            Ipv4Addr::LOCALHOST,
        )
        .unwrap();
        cfg.op_timeout = Duration::from_secs(2);
        let t = Instant::now();
        let e = Cluster::connect(cfg).await.err().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "cluster store http://127.0.0.1:2379,http://127.0.0.1:2390 unreachable: "
            ) && msg.contains("Connection refused"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    });
}

/// Scale figure (not run by default; prints how long a fresh agent takes to
/// sync): 5,000 nodes x 20 endpoints written directly into etcd.
/// `cargo test -p dataplane-agent --test cluster_etcd -- --ignored --nocapture sync_of`
#[test]
#[ignore = "scale measurement: writes 100k keys into etcd"]
fn sync_of_5000_nodes_x_20_endpoints() {
    use dataplane_agent::cluster::keys::{AliveRecord, EndpointRecord, NodeRecord};
    use etcd_client::{Txn, TxnOp};
    const NODES: u32 = 5000;
    const PER_NODE: u32 = 20;
    let ns = NetNs::new();
    let _etcd = Etcd::start(&ns);
    ns.block_on(|| async {
        let h = connect("writer", 1).await;
        h.create_network(&spec("ov1", "10.0.0.0/8", None)).await.unwrap();
        let k = h.keys().clone();
        let t = Instant::now();
        let mut ops = Vec::new();
        for n in 0..NODES {
            let name = format!("n{n:05}");
            let node = NodeRecord {
                version: 1,
                name: name.clone(),
                address: Ipv4Addr::from(0xc000_0000 + n),
                vxlan_port: 4789,
            };
            ops.push(TxnOp::put(k.node(&name), serde_json::to_vec(&node).unwrap(), None));
            let alive = AliveRecord { version: 1, lease: 0 };
            ops.push(TxnOp::put(k.alive(&name), serde_json::to_vec(&alive).unwrap(), None));
            for e in 0..PER_NODE {
                let ip = Ipv4Addr::from(0x0a00_0000 + n * 64 + e + 2);
                let ep = EndpointRecord {
                    version: 1,
                    network: "ov1".into(),
                    ip,
                    node: name.clone(),
                    mac: format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", n >> 8, n & 0xff, 0, e),
                    container: format!("c{n}-{e}"),
                    ip6: None,
                };
                ops.push(TxnOp::put(k.endpoint("ov1", ip), serde_json::to_vec(&ep).unwrap(), None));
            }
        }
        let batches: Vec<Vec<TxnOp>> = ops.chunks(100).map(<[TxnOp]>::to_vec).collect();
        let total = batches.len();
        let mut it = batches.into_iter();
        loop {
            let group: Vec<_> = it.by_ref().take(16).collect();
            if group.is_empty() {
                break;
            }
            futures::future::join_all(group.into_iter().map(|b| {
                let mut e = h.etcd();
                async move { e.txn(Txn::new().and_then(b)).await.unwrap() }
            }))
            .await;
        }
        let written = t.elapsed();
        let t = Instant::now();
        let mut w = spawn_watcher(h.clone(), WatchConfig::default(), None);
        assert!(
            w.wait_until(Duration::from_mins(10), |v| v.synced).await,
            "sync"
        );
        let synced = t.elapsed();
        let v = w.snapshot();
        assert_eq!(v.endpoints().count(), (NODES * PER_NODE) as usize);
        assert_eq!(v.nodes().values().filter(|n| n.alive).count(), NODES as usize);
        println!(
            "cluster scale: wrote {} keys in {total} txns in {written:.2?}; a fresh watcher synced {} nodes x {} endpoints in {synced:.2?}",
            NODES * (PER_NODE + 2),
            NODES,
            PER_NODE
        );
    });
}

//! A node cut off from the cluster for longer than its lease and the grace
//! period is reaped by the others (its endpoints and IPAM blocks deleted
//! from etcd). When it comes back it registers again, publishes its
//! endpoints again and claims its address blocks again, so that no other
//! node hands out the addresses its containers still use. Takes ~2 min (the
//! agent's grace period is one minute).

use std::time::Duration;

use dataplane_tests::{multihost::Cluster, wait_until, Ns};

const ETCD: &str = "http://192.0.2.254:2379";

/// `etcdctl get --prefix PREFIX` in the underlay: (key, value) pairs.
fn etcd_get(c: &Cluster, prefix: &str) -> Vec<(String, String)> {
    let o = c
        .underlay_cmd(&["etcdctl", "--endpoints", ETCD, "get", "--prefix", prefix])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = s.lines().collect();
    lines
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].to_string(), p[1].to_string()))
        .collect()
}

/// The block keys of network `net` recorded for `node`.
fn blocks_of(c: &Cluster, net: &str, node: &str) -> Vec<String> {
    etcd_get(c, &format!("/dataplane/v1/blocks/{net}/"))
        .into_iter()
        .filter(|(_, v)| v.contains(&format!("\"node\":\"{node}\"")))
        .map(|(k, _)| k)
        .collect()
}

fn endpoint_node(c: &Cluster, net: &str, ip: &str) -> Option<String> {
    etcd_get(c, &format!("/dataplane/v1/endpoints/{net}/{ip}"))
        .into_iter()
        .find(|(k, _)| k.ends_with(&format!("/{ip}")))
        .and_then(|(_, v)| {
            let j: serde_json::Value = serde_json::from_str(&v).ok()?;
            j["node"].as_str().map(String::from)
        })
}

#[test]
fn node_reaped_after_a_long_partition_claims_its_address_block_again() {
    let c = Cluster::start(3, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.93.0.0/16",
        "ovp",
    ]);
    for i in 2..=3 {
        assert!(
            wait_until(Duration::from_secs(10), || c
                .h(i)
                .ls("network")
                .to_string()
                .contains("\"ovp\"")),
            "ovp not listed on h{i}"
        );
    }
    c.h(2)
        .ok(&["container", "create", "--network", "ovp", "p2"]);
    let ip2 = c.h(2).ip_of("p2");
    c.h(1)
        .ok(&["container", "create", "--network", "ovp", "p1"]);
    let p1 = Ns::c("p1");
    assert!(
        wait_until(Duration::from_secs(10), || c.h(1).ping_once(&p1, &ip2)),
        "p1 (h1) cannot reach p2 (h2) {ip2}"
    );
    let before = blocks_of(&c, "ovp", "h2");
    assert_eq!(before.len(), 1, "h2's blocks: {before:?}");
    assert_eq!(endpoint_node(&c, "ovp", &ip2).as_deref(), Some("h2"));

    // Cut h2 off (its port on the underlay switch) until the others reap it.
    let port = c.h(2).outside_if.clone();
    let set = |state: &str| {
        let st = c
            .underlay_cmd(&["ip", "link", "set", &port, state])
            .status()
            .unwrap();
        assert!(st.success());
    };
    set("down");
    let reaped = wait_until(Duration::from_secs(150), || {
        blocks_of(&c, "ovp", "h2").is_empty() && endpoint_node(&c, "ovp", &ip2).is_none()
    });
    if !reaped {
        set("up");
        panic!("h2 was not reaped within 150s; h1 log:\n{}", c.h(1).log());
    }

    // Back: h2 registers again, publishes p2 and claims the same block.
    set("up");
    assert!(
        wait_until(Duration::from_mins(1), || blocks_of(&c, "ovp", "h2")
            == before
            && endpoint_node(&c, "ovp", &ip2).as_deref() == Some("h2")),
        "h2 did not claim its block {before:?} again (now {:?}, endpoint {:?}); h2 log:\n{}",
        blocks_of(&c, "ovp", "h2"),
        endpoint_node(&c, "ovp", &ip2),
        c.h(2).log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || c.h(1).ping_once(&p1, &ip2)),
        "p1 (h1) cannot reach p2 (h2) {ip2} after the partition"
    );
}

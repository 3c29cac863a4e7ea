//! Store faults with etcd: established cross-host flows survive etcd being
//! stopped (and restarted), a compaction while one agent is disconnected,
//! and a network partition between one host and etcd; afterwards the
//! cluster converges (a container made after the fault is reachable across
//! hosts). Figures: lost flows and convergence times.

mod soak_support;

use std::time::{Duration, Instant};

use dataplane_tests::{multihost::Cluster, *};
use serde_json::Value;
use soak_support::{count, Figures, MULTI_CLIENT};

const URL: &str = "http://192.0.2.254:2379";

fn restart_agent(c: &mut Cluster, i: usize) {
    let name = format!("h{i}");
    c.h_mut(i).start_agent_with(&[
        "--cluster-store",
        dataplane_tests::multihost::STORE,
        "--node-name",
        &name,
    ]);
}

fn underlay(c: &Cluster, args: &[&str]) -> String {
    let o = run(&mut c.underlay_cmd(args));
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Seconds until `name` (new, on host `on`) serves TCP to host `from`'s
/// container `client`; creating it is retried until the store answers.
fn converge(
    c: &Cluster,
    on: usize,
    from: usize,
    client: &str,
    name: &str,
    port: u16,
) -> Option<f64> {
    let t0 = Instant::now();
    let created = wait_until(Duration::from_mins(1), || {
        c.h(on)
            .cli(&["container", "create", "--network", "ovs", name])
            .status
            .success()
    });
    if !created {
        return None;
    }
    let ip = c.h(on).ip_of(name);
    let _srv = c.h(on).tcp_server(&Ns::c(name), "0.0.0.0", port);
    wait_until(Duration::from_mins(1), || {
        c.h(from).tcp_ok(&Ns::c(client), &ip, port)
    })
    .then(|| t0.elapsed().as_secs_f64())
}

#[test]
fn etcd_outage_compaction_and_partition_lose_no_flow_and_converge() {
    let outage = Duration::from_secs(count(5, 60));
    let conns = count(4, 20);
    let mut fig = Figures::new("store_faults");
    let mut c = Cluster::start(2, &[]);
    c.h(1).ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.111.0.0/16",
        "ovs",
    ]);
    assert!(wait_until(Duration::from_secs(10), || c
        .h(2)
        .ok(&["network", "ls"])
        .contains("ovs")));
    c.h(1)
        .ok(&["container", "create", "--network", "ovs", "a1"]);
    c.h(2)
        .ok(&["container", "create", "--network", "ovs", "a2"]);
    let a2 = c.h(2).ip_of("a2");
    let _srv = c.h(2).tcp_server(&Ns::c("a2"), "0.0.0.0", 7600);
    assert!(wait_until(Duration::from_secs(20), || c.h(1).tcp_ok(
        &Ns::c("a1"),
        &a2,
        7600
    )));
    let stop = c.h(1).dir.join("stop").display().to_string();
    let report = c.h(1).dir.join("flows.json").display().to_string();
    let k = conns.to_string();
    let mut flows = c.h(1).spawn_in(
        &Ns::c("a1"),
        &[
            python(),
            "-c",
            MULTI_CLIENT,
            &a2,
            "7600",
            &k,
            &stop,
            &report,
        ],
    );
    flows.wait_line("STARTED", Duration::from_secs(30));
    let mut problems = Vec::new();

    // 1. etcd stopped for the outage, then restarted.
    c.stop_etcd();
    std::thread::sleep(outage);
    c.start_etcd();
    match converge(&c, 2, 1, "a1", "b1", 7601) {
        Some(s) => fig.set("converged_after_etcd_restart_s", s),
        None => problems.push("no convergence after the etcd restart".to_string()),
    }

    // 2. Compaction while h2's agent is disconnected (down): what changed
    // meanwhile reaches it when it returns.
    c.h_mut(2).stop_agent();
    c.h(1)
        .ok(&["container", "create", "--network", "ovs", "b2"]);
    c.h(1).ok(&["container", "rm", "b2"]);
    c.h(1)
        .ok(&["container", "create", "--network", "ovs", "b3"]);
    let st: Value = serde_json::from_str(&underlay(
        &c,
        &[
            "etcdctl",
            "--endpoints",
            URL,
            "endpoint",
            "status",
            "-w",
            "json",
        ],
    ))
    .unwrap();
    let rev = st[0]["Status"]["header"]["revision"].as_u64().unwrap();
    underlay(
        &c,
        &["etcdctl", "--endpoints", URL, "compact", &rev.to_string()],
    );
    restart_agent(&mut c, 2);
    let b3 = c.h(1).ip_of("b3");
    let _s3 = c.h(1).tcp_server(&Ns::c("b3"), "0.0.0.0", 7602);
    let t0 = Instant::now();
    if wait_until(Duration::from_mins(1), || {
        c.h(2).tcp_ok(&Ns::c("a2"), &b3, 7602)
    }) {
        fig.set("converged_after_compaction_s", t0.elapsed().as_secs_f64());
    } else {
        problems.push("h2 never reached b3 after the compaction".into());
    }

    // 3. h2 partitioned from etcd (not from h1) for the outage.
    let h2_ip = c.h(2).uplink_ip.clone();
    underlay(&c, &["nft", "add", "table", "inet", "dpsoak"]);
    underlay(
        &c,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "dpsoak",
            "in",
            "{ type filter hook input priority 0; }",
        ],
    );
    underlay(
        &c,
        &[
            "nft", "add", "rule", "inet", "dpsoak", "in", "ip", "saddr", &h2_ip, "tcp", "dport",
            "2379", "drop",
        ],
    );
    // Cut off, h2 refuses what needs the store, in one line, and keeps
    // nothing of the attempt.
    let t0 = Instant::now();
    let o = c
        .h(2)
        .cli(&["container", "create", "--network", "ovs", "cut"]);
    let refused = !o.status.success()
        && stderr(&o).trim().lines().count() == 1
        && stderr(&o).contains("cluster store");
    fig.set("partition_create_refused_in_one_line", refused);
    if !refused || c.h(2).ok(&["container", "ls"]).contains("cut") {
        problems.push(format!("create on the cut-off host: {o:?}"));
    }
    std::thread::sleep(outage.saturating_sub(t0.elapsed()));
    underlay(&c, &["nft", "delete", "table", "inet", "dpsoak"]);
    match converge(&c, 2, 1, "a1", "b4", 7603) {
        Some(s) => fig.set("converged_after_partition_s", s),
        None => problems.push("no convergence after the partition healed".into()),
    }

    std::fs::write(&stop, b"").unwrap();
    assert!(
        flows.wait(Duration::from_secs(30)).is_some(),
        "flows did not end"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let n = |f: &str| v[f].as_u64().unwrap_or(0);
    fig.set("outage_s", outage.as_secs());
    fig.set("established_flows", n("connected"));
    fig.set("exchanges", n("exchanges"));
    fig.set("lost_flows", n("failed") + n("resets"));
    fig.set("convergence_failures", problems.len() as u64);
    fig.write();
    assert_eq!(n("connected"), conns, "{v}");
    assert_eq!(n("failed") + n("resets"), 0, "flows lost: {v}");
    assert!(
        problems.is_empty(),
        "{problems:#?}\nh2 log:\n{}",
        c.h(2).log()
    );
}

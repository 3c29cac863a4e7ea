//! The Docker plugin's network names and overlay networks, with real
//! dockerds: `-o dataplane.name=NAME` names the engine network (Docker
//! tells plugins only its network id), and `-o dataplane.overlay=true` on
//! two Docker hosts (two simulated hosts, two agents, one etcd, two private
//! dockerds) makes one network across them: a container on host 1 reaches
//! one on host 2 by address. Skipped (with a message) where dockerd is not
//! installed.

use std::time::Duration;

use dataplane_tests::{
    docker::{client_addr, Dockerd, IMAGE},
    multihost::{Cluster, STORE},
    require_docker, wait_until, Host,
};
use serde_json::Value;

fn network_names(h: &Host) -> Vec<String> {
    h.ls("network")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str().map(String::from))
        .collect()
}

fn network(h: &Host, name: &str) -> Option<Value> {
    h.ls("network")
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .cloned()
}

/// Restart host `h`'s agent serving plugin `name`, with `extra` flags.
fn serve_plugin(h: &mut Host, name: &str, extra: &[&str]) {
    h.stop_agent();
    let mut args = Dockerd::plugin_args(h, name);
    args.extend(extra.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    h.start_agent_with(&args);
}

#[test]
fn docker_network_named_by_option_and_bad_overlay_options_change_nothing() {
    require_docker!();
    let mut h = Host::start_with(&[]);
    let name = h.id.clone();
    serve_plugin(&mut h, &name, &[]);
    let d = Dockerd::start(&h);
    let before = network_names(&h);

    // Named by the option: the engine network is `web`.
    d.ok(&[
        "network",
        "create",
        "-d",
        &name,
        "--ipam-driver",
        &name,
        "--subnet",
        "10.81.0.0/24",
        "-o",
        "dataplane.name=web",
        "dk-web",
    ]);
    let web = network(&h, "web").expect("network web listed");
    assert_eq!(web["subnet"], "10.81.0.0/24");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web-a",
        "--network",
        "dk-web",
        IMAGE,
        "sleep",
        "600",
    ]);
    let eps = h.ls("container");
    assert!(
        eps.as_array()
            .unwrap()
            .iter()
            .any(|c| c["network_mode"] == "external" && c["endpoints"][0]["network"] == "web"),
        "no endpoint on web: {eps}"
    );
    let ip_a = d.ok(&[
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Networks \"dk-web\").IPAddress}}",
        "web-a",
    ]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "dk-web",
        IMAGE,
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        &ip_a,
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    // The name is taken: a second Docker network cannot have it.
    let e = d.fail(&[
        "network",
        "create",
        "-d",
        &name,
        "--subnet",
        "10.82.0.0/24",
        "-o",
        "dataplane.name=web",
        "dk-web2",
    ]);
    assert!(e.contains("web"), "{e}");
    // Without the option: `docker-` + 12 hex digits of Docker's id.
    let id = d.ok(&[
        "network",
        "create",
        "-d",
        &name,
        "--subnet",
        "10.83.0.0/24",
        "dk-plain",
    ]);
    assert!(network_names(&h).contains(&format!("docker-{}", &id[..12])));

    // Bad overlay options: one line, nothing created.
    let listed = network_names(&h);
    let e = d.fail(&[
        "network",
        "create",
        "-d",
        &name,
        "--subnet",
        "10.84.0.0/24",
        "-o",
        "dataplane.overlay=true",
        "dk-ov",
    ]);
    assert!(e.contains("dataplane.name"), "{e}");
    let e = d.fail(&[
        "network",
        "create",
        "-d",
        &name,
        "--subnet",
        "10.84.0.0/24",
        "-o",
        "dataplane.overlay=true",
        "-o",
        "dataplane.name=ov",
        "dk-ov",
    ]);
    assert!(e.contains("cluster store"), "{e}");
    let e = d.fail(&[
        "network",
        "create",
        "-d",
        &name,
        "--subnet",
        "10.84.0.0/24",
        "-o",
        "dataplane.overlay=maybe",
        "dk-ov",
    ]);
    assert!(e.contains("dataplane.overlay"), "{e}");
    assert_eq!(network_names(&h), listed);

    // The id -> name record survives an agent crash: docker network rm
    // still removes the named network.
    h.kill_agent();
    let args = Dockerd::plugin_args(&h, &name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    h.start_agent_with(&args);
    d.ok(&["rm", "-f", "web-a"]);
    d.ok(&["network", "rm", "dk-web", "dk-plain"]);
    assert_eq!(network_names(&h), before);
}

#[test]
fn docker_overlay_network_spans_two_docker_hosts() {
    require_docker!();
    let mut c = Cluster::start(2, &[]);
    let name = c.h(1).id.clone();
    for i in 1..=2 {
        let node = format!("h{i}");
        serve_plugin(
            c.h_mut(i),
            &name,
            &["--cluster-store", STORE, "--node-name", &node],
        );
    }
    let d1 = Dockerd::start(c.h(1));
    let d2 = Dockerd::start(c.h(2));
    let create = |d: &Dockerd| {
        d.ok(&[
            "network",
            "create",
            "-d",
            &name,
            "--ipam-driver",
            &name,
            "--subnet",
            "10.91.0.0/24",
            "-o",
            "dataplane.overlay=true",
            "-o",
            "dataplane.name=web",
            "web",
        ])
    };
    create(&d1);
    assert!(
        wait_until(Duration::from_secs(10), || network(c.h(2), "web").is_some()),
        "web not materialised on h2; h2 log:\n{}",
        c.h(2).log()
    );
    // The same network on the second Docker host: joined, not refused.
    create(&d2);
    for i in 1..=2 {
        let n = network(c.h(i), "web").unwrap();
        assert_eq!(n["driver"], "overlay", "h{i}: {n}");
    }

    // An httpd on host 1, a client on host 2: by address across hosts.
    d1.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "web",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    d2.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "web",
        IMAGE,
        "sleep",
        "600",
    ]);
    let ip = |d: &Dockerd, n: &str| {
        d.ok(&[
            "inspect",
            "-f",
            "{{(index .NetworkSettings.Networks \"web\").IPAddress}}",
            n,
        ])
    };
    let (srv, peer) = (ip(&d1, "srv"), ip(&d2, "peer"));
    assert_ne!(srv, peer, "both hosts handed out the same address");
    let mut body = String::new();
    let reached = wait_until(Duration::from_secs(15), || {
        let o = d2.docker(&[
            "exec",
            "peer",
            "timeout",
            "5",
            "wget",
            "-qO-",
            &format!("http://{srv}/cgi-bin/addr"),
        ]);
        body = String::from_utf8_lossy(&o.stdout).to_string();
        o.status.success()
    });
    assert!(
        reached,
        "peer (h2) cannot reach srv {srv} (h1); h1 log:\n{}\nh2 log:\n{}",
        c.h(1).log(),
        c.h(2).log()
    );
    // The server sees the client's own address (no NAT between hosts).
    assert_eq!(client_addr(&body), peer);
    let o = d1.docker(&["exec", "srv", "ping", "-c", "1", "-W", "3", &peer]);
    assert!(o.status.success(), "srv (h1) cannot ping peer {peer} (h2)");

    // Docker's network rm on one host leaves the cluster network to the other.
    d2.ok(&["rm", "-f", "peer"]);
    d2.ok(&["network", "rm", "web"]);
    assert!(network(c.h(1), "web").is_some());
    d1.ok(&["rm", "-f", "srv"]);
    d1.ok(&["network", "rm", "web"]);
    drop(d2);
    drop(d1);
}

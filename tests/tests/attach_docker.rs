//! `container attach --pid` of a `docker run --network none` container (a
//! private dockerd, tests/src/docker.rs): it gets an endpoint on an agent
//! network, is given back with only its loopback at detach, and is
//! collected when Docker removes it.

use std::time::Duration;

use dataplane_tests::{
    docker::{Dockerd, IMAGE},
    require_docker, wait_until, Host, Ns,
};

/// Our pid of the process that is `docker_pid` in dockerd's pid namespace
/// and runs `sleep SECS` (the unique duration tells it from processes of
/// other dockerds whose namespaces use the same numbers).
fn host_pid(docker_pid: &str, secs: &str) -> Option<String> {
    let want_cmd = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let status = std::fs::read_to_string(e.path().join("status")).ok()?;
        let nspid: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))?
            .split_whitespace()
            .collect();
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        (nspid.get(1) == Some(&docker_pid) && cmd == want_cmd.as_bytes())
            .then(|| nspid[0].to_string())
    })
}

fn names(h: &Host) -> Vec<String> {
    h.ls("container")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_network_none_container_is_attached_by_pid_given_back_and_collected() {
    require_docker!();
    let h = Host::start();
    let d = Dockerd::start(&h);
    h.ok(&["network", "create", "--subnet", "10.238.0.0/24", "dn"]);
    h.ok(&["container", "create", "--network", "dn", "peer"]);
    let peer_ip = h.ip_of("peer");
    let secs = (7000 + std::process::id() % 2000).to_string();
    let cid = d
        .ok(&["run", "-d", "--network", "none", IMAGE, "sleep", &secs])
        .trim()
        .to_string();
    let dpid = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", &cid])
        .trim()
        .to_string();
    let pid = host_pid(&dpid, &secs).expect("the container's process in our pid namespace");

    h.ok(&["container", "attach", "--pid", &pid, "dock"]);
    h.ok(&["network", "connect", "dn", "dock"]);
    let ip = h.ip_of("dock");
    assert!(h.ping(&Ns::c("peer"), &ip));
    let addrs = d.ok(&["exec", &cid, "ip", "-4", "addr"]);
    assert!(addrs.contains(&ip), "{addrs}");
    d.ok(&["exec", &cid, "ping", "-c1", "-W2", &peer_ip]);

    // Detach: Docker's namespace keeps only what it had (lo).
    h.ok(&["container", "detach", "dock"]);
    let links = d.ok(&["exec", &cid, "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");

    // Attached again, then removed by Docker: the agent collects it.
    h.ok(&["container", "attach", "--pid", &pid, "dock"]);
    h.ok(&["network", "connect", "dn", "dock"]);
    d.ok(&["rm", "-f", &cid]);
    assert!(
        wait_until(Duration::from_secs(10), || !names(&h)
            .contains(&"dock".to_string())),
        "not collected after docker rm; log:\n{}",
        h.log()
    );
    assert!(!h.ping_once(&Ns::c("peer"), &ip));
}

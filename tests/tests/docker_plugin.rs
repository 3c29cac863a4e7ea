//! The Docker network plugin against a real dockerd (20.10, Debian's
//! docker.io) in the test's namespaces: `docker network create -d NAME
//! --ipam-driver NAME`, `docker run -p`, Docker's DNS, isolation,
//! `--internal`, MTU, `--ip`, connect/disconnect, port conflicts, restarts
//! of the agent and of dockerd, and no iptables rules. Skipped (with a
//! message) where dockerd is not installed.

use std::time::Duration;

use dataplane_tests::{
    docker::{client_addr, Dockerd, IMAGE},
    ip_bytes, python, require_docker, stdout, wait_until, Host, Ns, TCP_STREAM_CLIENT,
};
use serde_json::Value;

/// A host with an agent serving plugin `<test id>` and a dockerd that finds it.
fn world() -> (Host, Dockerd, String) {
    let mut h = Host::start_with(&[]);
    let name = h.id.clone();
    h.stop_agent();
    let args = Dockerd::plugin_args(&h, &name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    h.start_agent_with(&args);
    let d = Dockerd::start(&h);
    (h, d, name)
}

fn restart_agent_killed(h: &mut Host, name: &str) {
    h.kill_agent();
    let args = Dockerd::plugin_args(h, name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    h.start_agent_with(&args);
}

/// GET `url` from `ns` (python, 5 s): the body, or None.
fn http_get(h: &Host, ns: &Ns, url: &str) -> Option<String> {
    let script = "import sys, urllib.request\n\
                  print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())";
    let o = h.run_in(ns, &[python(), "-c", script, url]);
    o.status.success().then(|| client_addr(&stdout(&o)))
}

fn httpd(d: &Dockerd, name: &str, network: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    args.extend(extra);
    args.extend([IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]);
    d.ok(&args)
}

fn docker_ip(d: &Dockerd, container: &str, network: &str) -> String {
    let f = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    d.ok(&["inspect", "-f", &f, container])
}

fn external_endpoints(h: &Host) -> Vec<Value> {
    h.ls("container")
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["network_mode"] == "external")
        .cloned()
        .collect()
}

fn host_iptables_rules(h: &Host) -> Vec<String> {
    let mut rules = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let o = h.host_exec(&[tool]);
        rules.extend(
            stdout(&o)
                .lines()
                .filter(|l| l.starts_with("-A") || l.starts_with("-N"))
                .map(String::from),
        );
    }
    rules
}

#[test]
fn docker_run_publishes_ports_resolves_names_and_isolates() {
    require_docker!();
    let (h, d, p) = world();
    d.ok(&[
        "network",
        "create",
        "-d",
        &p,
        "--ipam-driver",
        &p,
        "--subnet",
        "10.80.0.0/24",
        "web",
    ]);
    let nets = h.ls("network");
    assert!(
        nets.as_array()
            .unwrap()
            .iter()
            .any(|n| n["subnet"] == "10.80.0.0/24"),
        "the Docker network is not a dataplane network: {nets}"
    );
    httpd(&d, "api", "web", &["-p", "8080:80"]);
    let api_ip = docker_ip(&d, "api", "web");

    // From outside, through the published port: the client's address kept.
    let url = format!("http://{}:8080/cgi-bin/addr", h.uplink_ip);
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = http_get(&h, &Ns::Outside, &url);
            seen.is_some()
        }),
        "published port unreachable from outside; agent log:\n{}",
        h.log()
    );
    assert_eq!(seen.as_deref(), Some(h.outside_ip.as_str()));
    // The agent shows the port (`docker port` cannot for remote drivers).
    let ls = h.ok(&["container", "ls"]);
    assert!(ls.contains("0.0.0.0:8080->80/tcp"), "{ls}");

    // By name through Docker's embedded DNS, on our datapath.
    let peer = client_addr(&d.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "web",
        IMAGE,
        "timeout",
        "5",
        "wget",
        "-qO-",
        "http://api/cgi-bin/addr",
    ]));
    assert!(peer.starts_with("10.80.0."), "api saw {peer:?}");

    // Hairpin: a container of the network through the host's published port
    // (its source becomes the network's gateway, as with Docker's NAT).
    let hairpin = client_addr(&d.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "web",
        IMAGE,
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{}:8080/cgi-bin/addr", h.uplink_ip),
    ]));
    assert_eq!(hairpin, "10.80.0.1");

    // A taken host port, in Docker's words; nothing of the failed
    // container stays in the datapath.
    let ports_before = h.map_entries("DP_PORTS").len();
    let err = d.fail(&[
        "run",
        "-d",
        "--name",
        "api2",
        "--network",
        "web",
        "-p",
        "8080:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    assert!(
        err.contains("Bind for 0.0.0.0:8080 failed: port is already allocated"),
        "{err}"
    );
    d.ok(&["rm", "-f", "api2"]);
    assert_eq!(h.map_entries("DP_PORTS").len(), ports_before);

    // --ip.
    let addr = d.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "web",
        "--ip",
        "10.80.0.50",
        IMAGE,
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(addr.contains("10.80.0.50/24"), "{addr}");

    // Another network (Docker's default IPAM, our driver): isolated.
    d.ok(&[
        "network",
        "create",
        "-d",
        &p,
        "--subnet",
        "10.81.0.0/24",
        "other",
    ]);
    let o = d.docker(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "other",
        IMAGE,
        "timeout",
        "3",
        "wget",
        "-qO-",
        &format!("http://{api_ip}/cgi-bin/addr"),
    ]);
    assert!(!o.status.success(), "crossed networks: {}", stdout(&o));
    let drops = h.global_drops();
    assert!(
        drops["cross_network"].as_u64().unwrap_or(0) > 0,
        "no cross_network drop counted: {drops}"
    );

    // Overlapping subnets are refused by the IPAM driver.
    let err = d.fail(&[
        "network",
        "create",
        "-d",
        &p,
        "--ipam-driver",
        &p,
        "--subnet",
        "10.80.0.128/25",
        "clash",
    ]);
    assert!(err.contains("overlaps"), "{err}");

    // No iptables rules in the host namespace.
    let rules = host_iptables_rules(&h);
    assert!(
        rules.is_empty(),
        "iptables rules in the host namespace: {rules:?}"
    );

    // docker rm -f removes every map entry of the container.
    d.ok(&["rm", "-f", "api"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            h.map_entries("DP_PORTS").is_empty()
                && !h
                    .map_entries("DP_ENDPOINTS")
                    .iter()
                    .any(|(k, _)| k["ip"] == ip_bytes(&api_ip))
                && external_endpoints(&h).is_empty()
        }),
        "left after docker rm -f: ports {:?}, endpoints {:?}",
        h.map_entries("DP_PORTS"),
        external_endpoints(&h)
    );
    // -P: a random host port from the agent's range, shown by the agent.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "pub",
        "--network",
        "web",
        "--expose",
        "90/udp",
        "-P",
        IMAGE,
        "sleep",
        "600",
    ]);
    let ls = h.ok(&["container", "ls"]);
    assert!(ls.contains("->90/udp"), "{ls}");
    assert_eq!(h.map_entries("DP_PORTS").len(), 1);
    d.ok(&["rm", "-f", "pub"]);
    d.ok(&["network", "rm", "web", "other"]);
    // Only the predefined networks (bridge, host, none) are left.
    let nets = h.ls("network");
    let left: Vec<&str> = nets
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .filter(|n| !matches!(*n, "bridge" | "host" | "none"))
        .collect();
    assert!(left.is_empty(), "{nets}");
}

#[test]
fn docker_internal_network_mtu_and_connect_disconnect() {
    require_docker!();
    let (h, d, p) = world();
    d.ok(&[
        "network",
        "create",
        "-d",
        &p,
        "--ipam-driver",
        &p,
        "--subnet",
        "10.80.0.0/24",
        "web",
    ]);
    // No subnet: the IPAM driver picks one.
    d.ok(&[
        "network",
        "create",
        "-d",
        &p,
        "--ipam-driver",
        &p,
        "--internal",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "back",
    ]);
    httpd(&d, "db", "back", &[]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "back",
        IMAGE,
        "sh",
        "-c",
        "ip link show eth0; ip route; timeout 5 wget -qO- http://db/cgi-bin/addr",
    ]);
    assert!(out.contains("mtu 1400"), "{out}");
    assert!(
        !out.contains("default"),
        "default route on an internal network: {out}"
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| client_addr(l).starts_with("172.")),
        "{out}"
    );
    // No way out of an internal network.
    let o = d.docker(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "back",
        IMAGE,
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &h.outside_ip,
    ]);
    assert!(!o.status.success(), "internal network reached outside");

    // connect / disconnect.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "web",
        IMAGE,
        "sleep",
        "600",
    ]);
    assert!(!d
        .docker(&[
            "exec",
            "app",
            "timeout",
            "2",
            "wget",
            "-qO-",
            "http://db/cgi-bin/addr"
        ])
        .status
        .success());
    d.ok(&["network", "connect", "back", "app"]);
    let app_back = docker_ip(&d, "app", "back");
    let seen = d.ok(&[
        "exec",
        "app",
        "timeout",
        "5",
        "wget",
        "-qO-",
        "http://db/cgi-bin/addr",
    ]);
    assert_eq!(client_addr(&seen), app_back);
    assert_eq!(external_endpoints(&h).len(), 3);
    d.ok(&["network", "disconnect", "back", "app"]);
    let links = d.ok(&["exec", "app", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
    assert!(!d
        .docker(&[
            "exec",
            "app",
            "timeout",
            "2",
            "wget",
            "-qO-",
            "http://db/cgi-bin/addr"
        ])
        .status
        .success());
    assert_eq!(external_endpoints(&h).len(), 2);
    // Still on its first network: out through the masquerade.
    d.ok(&["exec", "app", "ping", "-c", "1", "-W", "3", &h.outside_ip]);
}

#[test]
fn docker_containers_survive_agent_and_dockerd_restarts() {
    require_docker!();
    let (mut h, mut d, p) = world();
    d.ok(&[
        "network",
        "create",
        "-d",
        &p,
        "--ipam-driver",
        &p,
        "--subnet",
        "10.80.0.0/24",
        "web",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "--restart",
        "always",
        "--network",
        "web",
        "-p",
        "7000:7",
        IMAGE,
        "nc",
        "-ll",
        "-p",
        "7",
        "-e",
        "cat",
    ]);
    assert!(wait_until(Duration::from_secs(10), || h.tcp_ok(
        &Ns::Outside,
        &h.uplink_ip,
        7000
    )));

    // The agent SIGKILLed and restarted under a live connection.
    let report = h.dir.join("stream.json");
    let r = report.display().to_string();
    let mut client = h.spawn_in(
        &Ns::Outside,
        &[
            python(),
            "-c",
            TCP_STREAM_CLIENT,
            &h.uplink_ip,
            "7000",
            "5",
            &r,
        ],
    );
    client.wait_line("CONNECTED", Duration::from_secs(10));
    // Traffic flows before, during and after the downtime: the sleep is the
    // scenario.
    std::thread::sleep(Duration::from_secs(1));
    restart_agent_killed(&mut h, &p);
    assert!(client.wait(Duration::from_secs(20)).is_some());
    let res: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(res["error"], Value::Null, "{res}");
    assert_eq!(res["received"], res["sent"], "{res}");
    assert!(res["sent"].as_u64().unwrap() >= 20, "{res}");
    // The restarted agent serves dockerd.
    let hi = d.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "web",
        IMAGE,
        "sh",
        "-c",
        "echo hi | nc -w 3 echo 7",
    ]);
    assert_eq!(hi, "hi");

    // dockerd restarted: the restart-policy container comes back published.
    d.restart(false);
    assert!(
        wait_until(Duration::from_secs(30), || h.tcp_ok(
            &Ns::Outside,
            &h.uplink_ip,
            7000
        )),
        "not reachable after a dockerd restart; agent log:\n{}",
        h.log()
    );

    // dockerd killed with its containers (no Leave): the agent collects the
    // endpoints whose sandbox is gone.
    d.stop(true);
    assert!(
        wait_until(Duration::from_secs(15), || external_endpoints(&h)
            .is_empty()
            && h.map_entries("DP_PORTS").is_empty()),
        "endpoints of dead sandboxes not collected: {:?}",
        external_endpoints(&h)
    );
    d.restart(false);
    assert!(
        wait_until(Duration::from_secs(30), || h.tcp_ok(
            &Ns::Outside,
            &h.uplink_ip,
            7000
        )),
        "not reachable after dockerd was killed and started again; agent log:\n{}",
        h.log()
    );
    assert_eq!(external_endpoints(&h).len(), 1);
}

//! End to end with a real Podman 4.3 (CNI backend) and `dataplane-cni`:
//! addresses from the agent's network, container to container and to the
//! outside, a published port from an outside namespace with the client's
//! address kept, `podman rm` removing every map entry, no iptables rules.

use std::time::Duration;

use dataplane_tests::{
    docker::client_addr, ip_bytes, podman::Podman, podman::IMAGE, require_podman, stdout,
    wait_until, Host, Ns,
};

fn has_endpoint(h: &Host, ip: &str) -> bool {
    h.map_entries("DP_ENDPOINTS")
        .iter()
        .any(|(_, v)| v["ip"] == ip_bytes(ip))
}

fn attached(h: &Host) -> Vec<serde_json::Value> {
    h.ls("container")
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["network_mode"] == "attached")
        .cloned()
        .collect()
}

#[test]
fn podman_containers_on_a_dataplane_network_with_published_port() {
    require_podman!();
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.234.0.0/24", "pods"]);
    let p = Podman::start(&h, "pods");
    let if_endpoints_before = h.map_entries("DP_IF_ENDPOINTS").len();

    let web_id = p
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "pods",
            "-p",
            "8080:80",
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ])
        .trim()
        .to_string();
    p.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "pods",
        IMAGE,
        "sleep",
        "600",
    ]);
    let ip_of = |name: &str| {
        p.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.pods.IPAddress}}",
            name,
        ])
        .trim()
        .to_string()
    };
    let web_ip = ip_of("web");
    let client_ip = ip_of("client");
    assert!(web_ip.starts_with("10.234.0."), "{web_ip}");
    assert!(client_ip.starts_with("10.234.0."), "{client_ip}");
    assert!(has_endpoint(&h, &web_ip) && has_endpoint(&h, &client_ip));

    // The agent shows both with Podman's container ids.
    let att = attached(&h);
    assert_eq!(att.len(), 2, "{att:?}");
    assert!(att.iter().any(|c| c["owner"] == web_id.as_str()), "{att:?}");

    // Container to container (the server sees the client's own address),
    // and to the outside (masqueraded to the uplink).
    let body = p.ok(&[
        "exec",
        "client",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{web_ip}/cgi-bin/addr"),
    ]);
    assert_eq!(client_addr(&body), client_ip);
    p.ok(&["exec", "client", "ping", "-c1", "-W2", &h.outside_ip]);

    // The published port from outside the host, with the client's address.
    let url = format!("http://{}:8080/cgi-bin/addr", h.uplink_ip);
    let o = h.run_in(
        &Ns::Outside,
        &["busybox", "timeout", "5", "busybox", "wget", "-qO-", &url],
    );
    assert!(
        o.status.success(),
        "outside -> -p 8080: {}",
        dataplane_tests::stderr(&o)
    );
    assert_eq!(client_addr(&stdout(&o)), h.outside_ip);
    assert_eq!(h.map_entries("DP_PORTS").len(), 1);
    let o = h.run_in(
        &Ns::Host,
        &["busybox", "timeout", "5", "busybox", "wget", "-qO-", &url],
    );
    assert!(
        o.status.success(),
        "host -> -p 8080: {}",
        dataplane_tests::stderr(&o)
    );

    // No iptables or nftables rules were made for any of it.
    let rules = stdout(&h.run_in(&Ns::Host, &["iptables-save"]));
    assert!(
        !rules.lines().any(|l| l.starts_with("-A")),
        "iptables rules: {rules}"
    );
    let nft = stdout(&h.run_in(&Ns::Host, &["nft", "list", "ruleset"]));
    assert!(!nft.contains("rule") && !nft.contains("dnat"), "nft: {nft}");

    // podman rm removes every map entry of the containers.
    p.ok(&["rm", "-f", "-t", "0", "web", "client"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            h.map_entries("DP_PORTS").is_empty()
                && !has_endpoint(&h, &web_ip)
                && !has_endpoint(&h, &client_ip)
                && h.map_entries("DP_IF_ENDPOINTS").len() == if_endpoints_before
                && attached(&h).is_empty()
        }),
        "left after podman rm: ports {:?}, containers {:?}",
        h.map_entries("DP_PORTS"),
        attached(&h)
    );
    let o = h.run_in(
        &Ns::Outside,
        &["busybox", "timeout", "3", "busybox", "wget", "-qO-", &url],
    );
    assert!(
        !o.status.success(),
        "the port still answers after podman rm"
    );
}

#[test]
fn podman_port_reservation_holds_the_port_and_the_datapath_publishes_it() {
    require_podman!();
    let mut h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.235.0.0/24", "pods"]);
    // Podman's default: conmon binds the published host ports.
    let p = Podman::start_with(&h, "pods", true);
    p.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "pods",
        "-p",
        "8081:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let listening = stdout(&h.run_in(&Ns::Host, &["ss", "-Hltnp", "sport", "= :8081"]));
    assert!(
        listening.contains("conmon"),
        "conmon does not hold 8081: {listening:?}"
    );
    let url = format!("http://{}:8081/cgi-bin/addr", h.uplink_ip);
    let o = h.run_in(
        &Ns::Outside,
        &["busybox", "timeout", "5", "busybox", "wget", "-qO-", &url],
    );
    assert!(
        o.status.success(),
        "outside -> -p 8081: {}",
        dataplane_tests::stderr(&o)
    );
    assert_eq!(client_addr(&stdout(&o)), h.outside_ip);
    // A client on the host reaches it too (conmon's socket never answers).
    let o = h.run_in(
        &Ns::Host,
        &["busybox", "timeout", "5", "busybox", "wget", "-qO-", &url],
    );
    assert!(
        o.status.success(),
        "host -> -p 8081: {}",
        dataplane_tests::stderr(&o)
    );
    assert!(
        client_addr(&stdout(&o)).starts_with("10."),
        "{}",
        stdout(&o)
    );
    // The agent restarting keeps the mapping (nothing of its own to bind).
    h.stop_agent();
    h.start_agent();
    let o = h.run_in(
        &Ns::Outside,
        &["busybox", "timeout", "5", "busybox", "wget", "-qO-", &url],
    );
    assert!(
        o.status.success(),
        "after an agent restart: {}",
        dataplane_tests::stderr(&o)
    );
    p.ok(&["rm", "-f", "-t", "0", "web"]);
    assert!(wait_until(Duration::from_secs(10), || h
        .map_entries("DP_PORTS")
        .is_empty()
        && attached(&h).is_empty()));
}

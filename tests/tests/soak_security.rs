//! Security: the API socket is root's with mode 0660 (group configurable
//! with `--socket-group`), a non-root user changes nothing, and no
//! container reaches the host's loopback services or loopback-published
//! ports from its namespace (a port published on all addresses it does).

mod soak_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use dataplane_tests::*;
use soak_support::Figures;

/// Run the CLI as `nobody` (dropping every capability).
fn as_nobody(h: &Host, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ])
    .arg(dataplane_bin())
    .arg("--socket")
    .arg(&h.socket)
    .args(args);
    run(&mut c)
}

const CHANGES: [&[&str]; 5] = [
    &["container", "create", "intruder"],
    &["network", "create", "--subnet", "10.74.9.0/24", "intruder"],
    &["container", "rm", "a"],
    &["network", "disconnect", "sec", "a"],
    &["network", "rm", "sec"],
];

#[test]
fn api_socket_is_root_0660_and_nobody_changes_nothing() {
    let mut fig = Figures::new("security");
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.74.0.0/24", "sec"]);
    h.ok(&["container", "create", "--network", "sec", "a"]);
    let md = std::fs::metadata(&h.socket).unwrap();
    assert_eq!(md.uid(), 0, "socket owner");
    assert_eq!(md.gid(), 0, "socket group");
    assert_eq!(md.permissions().mode() & 0o777, 0o660, "socket mode");
    // The socket's directory is searchable, so only the socket's own
    // permissions keep nobody out.
    let before = h.snapshot();
    let mut refused = 0u64;
    for args in CHANGES {
        let o = as_nobody(&h, args);
        assert!(!o.status.success(), "nobody ran {args:?}: {}", stdout(&o));
        assert_error(&stderr(&o), &[]);
        refused += 1;
    }
    assert!(!as_nobody(&h, &["container", "ls"]).status.success());
    assert_eq!(h.snapshot(), before, "a refused request changed something");
    fig.set("socket_mode", "0660 root:root");
    fig.set("nonroot_changes_refused", refused);
    fig.set("nonroot_changes_applied", 0u64);
    fig.write();
}

#[test]
fn socket_group_lets_its_members_in() {
    let h = Host::start_with(&["--socket-group", "nogroup"]);
    let md = std::fs::metadata(&h.socket).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 65534));
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    let o = as_nobody(&h, &["network", "ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A group that does not exist: one line, the agent does not start (in
    // the test's host namespace, with the test's directories).
    let o = run(std::process::Command::new(dataplane_bin())
        .args(["agent", "--socket-group", "no-such-group-dp", "--netns"])
        .arg(h.netns_path())
        .arg("--state-dir")
        .arg(h.dir.join("other-state"))
        .arg("--run-dir")
        .arg(h.dir.join("other-run"))
        .arg("--bpffs")
        .arg(h.dir.join("other-bpffs"))
        .arg("--socket")
        .arg(h.dir.join("other.sock")));
    assert!(!o.status.success());
    assert_error(&stderr(&o), &["no-such-group-dp", "no such group"]);
    assert!(!h.dir.join("other.sock").exists() && !h.dir.join("other-state").exists());
}

#[test]
fn containers_reach_no_host_loopback_service_or_loopback_published_port() {
    let mut fig = Figures::new("security_reachability");
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.75.0.0/24", "reach"]);
    h.ok(&["container", "create", "--network", "reach", "c"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "reach",
        "-p",
        "127.0.0.1:8181:80",
        "-p",
        "8182:82",
        "s",
    ]);
    let log = h.dir.join("srv.log").display().to_string();
    let _host_lo = h.spawn_in(
        &Ns::Host,
        &[python(), "-c", TCP_SERVER, "127.0.0.1", "7070", &log],
    );
    let _s80 = h.spawn_in(
        &Ns::c("s"),
        &[python(), "-c", TCP_SERVER, "0.0.0.0", "80", &log],
    );
    let _s82 = h.spawn_in(
        &Ns::c("s"),
        &[python(), "-c", TCP_SERVER, "0.0.0.0", "82", &log],
    );
    // Controls: the services answer where they should.
    assert!(wait_until(std::time::Duration::from_secs(5), || h.tcp_ok(
        &Ns::Host,
        "127.0.0.1",
        7070
    )));
    assert!(
        h.tcp_ok(&Ns::Host, "127.0.0.1", 8181),
        "loopback-published port from the host"
    );
    assert!(
        h.tcp_ok(&Ns::c("c"), &h.uplink_ip, 8182),
        "published port from a container"
    );
    let gw = "10.75.0.1";
    let mut probes = 0u64;
    let mut leaks = Vec::new();
    for (ip, port) in [
        (gw, 7070),
        (h.uplink_ip.as_str(), 7070),
        ("127.0.0.1", 7070),
        (gw, 8181),
        (h.uplink_ip.as_str(), 8181),
        ("127.0.0.1", 8181),
    ] {
        probes += 1;
        if h.tcp_ok(&Ns::c("c"), ip, port) {
            leaks.push(format!("{ip}:{port}"));
        }
    }
    // No TCP API: the agent listens on no port of the host namespace.
    let listening = h.run_ok(&Ns::Host, &["ss", "-Htlnp"]);
    let agent_ports: Vec<&str> = listening
        .lines()
        .filter(|l| l.contains("dataplane"))
        .collect();
    fig.set("forbidden_probes", probes);
    fig.set("forbidden_probes_answered", leaks.len() as u64);
    fig.set("agent_tcp_listeners", agent_ports.len() as u64);
    fig.write();
    assert!(leaks.is_empty(), "a container reached {leaks:?}");
    assert!(
        agent_ports.is_empty(),
        "the agent listens on TCP: {agent_ports:?}"
    );
}

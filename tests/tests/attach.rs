//! `container attach` / `detach`: namespaces someone else made (`ip netns
//! add`, a plain process) get endpoints on the agent's networks, are
//! repaired and collected by the reconciler, and are given back untouched.

use std::{
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use dataplane_tests::{assert_error, ip_bytes, run, sh_ok, stdout, wait_until, Host, Ns};

/// A namespace made with `ip netns add`, deleted on drop.
struct NetnsGuard(String);

impl NetnsGuard {
    fn new(h: &Host) -> NetnsGuard {
        let name = format!("{}-att{}", h.id, h.next());
        sh_ok("ip", &["netns", "add", &name]);
        NetnsGuard(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// A process (killed and reaped on drop).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nsenter(ns: &str, args: &[&str]) -> Output {
    run(Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .arg("--")
        .args(args))
}

fn has_endpoint(h: &Host, ip: &str) -> bool {
    h.map_entries("DP_ENDPOINTS")
        .iter()
        .any(|(_, v)| v["ip"] == ip_bytes(ip))
}

fn container_names(h: &Host) -> Vec<String> {
    h.ls("container")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn attached_netns_reaches_containers_is_repaired_and_given_back_untouched() {
    let mut h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.231.0.0/24", "an"]);
    h.ok(&["container", "create", "--network", "an", "peer"]);
    let peer_ip = h.ip_of("peer");
    let ns = NetnsGuard::new(&h);
    // Something of the owner's that must survive the detach.
    sh_ok(
        "ip",
        &[
            "-n", &ns.0, "link", "add", "keep0", "type", "veth", "peer", "name", "keep1",
        ],
    );

    h.ok(&["container", "attach", "--netns", &ns.path(), "att"]);
    h.ok(&["network", "connect", "--ip", "10.231.0.77", "an", "att"]);
    let ep = h.endpoint("att", "an");
    assert_eq!(ep["interface"], "eth0");
    let addr = stdout(&nsenter(&ns.path(), &["ip", "-4", "addr", "show", "eth0"]));
    assert!(addr.contains("10.231.0.77/24"), "{addr}");
    assert!(h.ping(&Ns::c("peer"), "10.231.0.77"));
    let o = nsenter(&ns.path(), &["ping", "-c1", "-W2", &peer_ip]);
    assert!(o.status.success(), "attached -> peer: {}", stdout(&o));
    assert!(has_endpoint(&h, "10.231.0.77"));
    let ls = h.ok(&["container", "ls"]);
    assert!(ls.contains("attached:cli"), "{ls}");
    assert_eq!(h.inspect_container("att")["owner"], "cli");

    // Attaching it again, or a namespace of the agent's own, is refused
    // with one line and changes nothing.
    let before = container_names(&h);
    let e = h.fail(&["container", "attach", "--netns", &ns.path(), "again"]);
    assert_error(&e, &["already belongs to container att"]);
    let own = h.run_dir().join("netns").join("peer");
    let e = h.fail(&[
        "container",
        "attach",
        "--netns",
        own.to_str().unwrap(),
        "again",
    ]);
    assert_error(&e, &["already belongs to container peer"]);
    let e = h.fail(&[
        "container",
        "attach",
        "--netns",
        "/proc/self/ns/mnt",
        "again",
    ]);
    assert_error(&e, &["not a network namespace"]);
    let e = h.fail(&["container", "detach", "peer"]);
    assert_error(&e, &["was not attached"]);
    assert_eq!(container_names(&h), before);

    // The veth removed behind the agent's back is re-created in the
    // namespace; so is everything after an agent restart.
    let host_if = ep["host_interface"].as_str().unwrap().to_string();
    h.run_ok(&Ns::Host, &["ip", "link", "del", &host_if]);
    assert!(
        wait_until(Duration::from_secs(10), || h
            .ping_once(&Ns::c("peer"), "10.231.0.77")),
        "the attached endpoint was not repaired; log:\n{}",
        h.log()
    );
    h.stop_agent();
    h.start_agent();
    assert!(h.ping(&Ns::c("peer"), "10.231.0.77"));

    h.ok(&["container", "detach", "att"]);
    assert!(!container_names(&h).contains(&"att".to_string()));
    assert!(!has_endpoint(&h, "10.231.0.77"));
    let links = stdout(&nsenter(&ns.path(), &["ip", "-o", "link"]));
    assert!(
        links.contains("keep0"),
        "the owner's interface went: {links}"
    );
    assert!(!links.contains("eth0"), "our interface stayed: {links}");
    assert!(!h.run_dir().join("netns").join("att").exists());
    assert!(std::path::Path::new(&ns.path()).exists());
    // Removing the owner's namespace later is the owner's business; a new
    // attach of it works again.
    h.ok(&["container", "attach", "--netns", &ns.path(), "att2"]);
    h.ok(&["container", "rm", "att2"]);
    assert!(stdout(&nsenter(&ns.path(), &["ip", "-o", "link"])).contains("keep0"));
}

#[test]
fn attached_process_namespace_is_collected_when_the_process_exits() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.232.0.0/24", "pn"]);
    h.ok(&["container", "create", "--network", "pn", "peer"]);
    let child = Command::new("unshare")
        .args(["-n", "sleep", "600"])
        .spawn()
        .expect("unshare");
    let mut child = ChildGuard(child);
    let pid = child.0.id().to_string();
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l != own)
    }));

    h.ok(&["container", "attach", "--pid", &pid, "proc"]);
    h.ok(&["network", "connect", "pn", "proc"]);
    let ip = h.ip_of("proc");
    let host_if = h.endpoint("proc", "pn")["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(h.ping(&Ns::c("peer"), &ip));
    let e = h.fail(&["container", "attach", "--pid", &pid, "twice"]);
    assert_error(&e, &["already belongs to container proc"]);
    let e = h.fail(&["container", "attach", "--pid", "999999999", "ghost"]);
    assert_error(&e, &["no process 999999999"]);

    let _ = child.0.kill();
    let _ = child.0.wait();
    assert!(
        wait_until(Duration::from_secs(10), || !container_names(&h)
            .contains(&"proc".to_string())),
        "the agent did not notice the exit; log:\n{}",
        h.log()
    );
    assert!(!has_endpoint(&h, &ip));
    let links = stdout(&h.run_in(&Ns::Host, &["ip", "-o", "link"]));
    assert!(!links.contains(&host_if), "{links}");
    assert!(!h.run_dir().join("netns").join("proc").exists());
    assert!(h.log().contains("its namespace is gone"), "{}", h.log());
}

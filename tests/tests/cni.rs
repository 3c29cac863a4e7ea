//! The CNI plugin's protocol: `dataplane-cni` called as a runtime calls
//! it (the spec's environment variables, the configuration on stdin) for
//! every command, the error codes, repeated DEL, version negotiation, and
//! the packets that prove an ADD.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use dataplane_tests::{dataplane_bin, ip_bytes, sh_ok, wait_until, Host, Ns};
use serde_json::{json, Value};

fn cni_bin() -> PathBuf {
    dataplane_bin().with_file_name("dataplane-cni")
}

/// Run the plugin: (success, stdout as JSON or Null when empty).
fn cni(env: &[(&str, &str)], stdin: &str) -> (bool, Value) {
    let mut c = Command::new(cni_bin());
    c.env_remove("DATAPLANE_SOCKET")
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("dataplane-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let v = if out.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON: {out:?}: {e}"))
    };
    (o.status.success(), v)
}

fn conf(h: &Host, version: &str, network: &str, runtime: &Value) -> String {
    json!({
        "cniVersion": version, "name": network, "type": "dataplane-cni",
        "socket": h.socket, "runtimeConfig": runtime,
    })
    .to_string()
}

/// A runtime's sandbox namespace, deleted on drop.
struct Sandbox(String);

impl Sandbox {
    fn new(h: &Host) -> Sandbox {
        let name = format!("{}-cni{}", h.id, h.next());
        sh_ok("ip", &["netns", "add", &name]);
        Sandbox(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

fn env<'a>(cmd: &'a str, id: &'a str, netns: &'a str, ifname: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
    ]
}

fn code(v: &Value) -> u64 {
    v["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

fn has_endpoint(h: &Host, ip: &str) -> bool {
    h.map_entries("DP_ENDPOINTS")
        .iter()
        .any(|(_, v)| v["ip"] == ip_bytes(ip))
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
fn cni_version_answers_without_an_agent_and_negotiates() {
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let (ok, out) = cni(
            &[("CNI_COMMAND", "VERSION")],
            &json!({ "cniVersion": v }).to_string(),
        );
        assert!(ok, "{out}");
        assert_eq!(out["cniVersion"], v);
        let sup: Vec<&str> = out["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for want in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            assert!(sup.contains(&want), "{out}");
        }
    }
    let (ok, out) = cni(&[("CNI_COMMAND", "VERSION")], "");
    assert!(ok && out["supportedVersions"].is_array(), "{out}");

    // A version the plugin does not speak, commands and inputs it cannot use:
    // the spec's error JSON with its codes (no agent needed to say so).
    let base = json!({"cniVersion": "0.1.0", "name": "n", "type": "dataplane-cni"}).to_string();
    let (ok, out) = cni(&env("ADD", "c1", "/proc/self/ns/net", "eth0"), &base);
    assert!(!ok);
    assert_eq!(code(&out), 1, "{out}");
    assert!(out["msg"].as_str().unwrap().contains("0.1.0"), "{out}");
    let good = json!({"cniVersion": "1.0.0", "name": "n", "type": "dataplane-cni"}).to_string();
    let (_, out) = cni(&env("FROB", "c1", "/x", "eth0"), &good);
    assert_eq!(code(&out), 4, "{out}");
    assert_eq!(out["cniVersion"], "1.0.0");
    let (_, out) = cni(&[("CNI_COMMAND", "ADD")], &good);
    assert_eq!(code(&out), 4, "missing CNI_CONTAINERID etc.: {out}");
    let (_, out) = cni(&env("ADD", "c/1", "/x", "eth0"), &good);
    assert_eq!(code(&out), 4, "bad container id: {out}");
    let (_, out) = cni(&env("ADD", "c1", "/x", "eth0"), "{not json");
    assert_eq!(code(&out), 6, "{out}");
    let (_, out) = cni(
        &env("ADD", "c1", "/x", "eth0"),
        &json!({"cniVersion": "1.0.0", "type": "dataplane-cni"}).to_string(),
    );
    assert_eq!(code(&out), 7, "no name: {out}");
    let with_ipam = json!({"cniVersion": "1.0.0", "name": "n", "type": "dataplane-cni",
        "ipam": {"type": "host-local"}})
    .to_string();
    let (_, out) = cni(&env("ADD", "c1", "/x", "eth0"), &with_ipam);
    assert_eq!(code(&out), 2, "{out}");
    // GC and STATUS exist from 1.1.0 on.
    let (_, out) = cni(&[("CNI_COMMAND", "STATUS")], &good);
    assert_eq!(code(&out), 1, "{out}");
    // No agent: ADD is to be retried, STATUS says not available.
    let absent = json!({"cniVersion": "1.1.0", "name": "n", "type": "dataplane-cni",
        "socket": "/nonexistent/dataplane.sock"})
    .to_string();
    let (_, out) = cni(&env("ADD", "c1", "/proc/self/ns/net", "eth0"), &absent);
    assert_eq!(code(&out), 11, "{out}");
    let (_, out) = cni(&[("CNI_COMMAND", "STATUS")], &absent);
    assert_eq!(code(&out), 50, "{out}");
}

#[test]
fn cni_add_check_del_gc_status_drive_real_endpoints() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.233.0.0/24", "pods"]);
    h.ok(&["container", "create", "--network", "pods", "peer"]);
    let sb = Sandbox::new(&h);
    let id = "0123456789abcdef0123";
    let name = "cni-0123456789ab";
    let rt = json!({
        "portMappings": [{"hostPort": 8085, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
        "aliases": {"pods": ["web"]},
        "mac": "02:00:00:00:aa:01",
    });

    // STATUS: ready; a network the agent lacks is a config error at ADD.
    let (ok, out) = cni(
        &[("CNI_COMMAND", "STATUS")],
        &conf(&h, "1.1.0", "pods", &json!({})),
    );
    assert!(ok && out.is_null(), "{out}");
    let (_, out) = cni(
        &env("ADD", id, &sb.path(), "net1"),
        &conf(&h, "1.0.0", "nope", &json!({})),
    );
    assert_eq!(code(&out), 7, "{out}");

    let c = conf(&h, "1.0.0", "pods", &rt);
    // A namespace path that does not exist: unknown container, nothing left.
    let (ok, out) = cni(&env("ADD", id, "/run/netns/absent-dpt", "net1"), &c);
    assert!(!ok);
    assert_eq!(code(&out), 3, "{out}");
    assert!(!names(&h).contains(&name.to_string()));
    let (ok, out) = cni(&env("ADD", id, &sb.path(), "net1"), &c);
    assert!(ok, "ADD: {out}\n{}", h.log());
    assert_eq!(out["cniVersion"], "1.0.0");
    assert_eq!(out["interfaces"][1]["name"], "net1");
    assert_eq!(out["interfaces"][1]["mac"], "02:00:00:00:aa:01");
    assert_eq!(out["interfaces"][1]["sandbox"], sb.path().as_str());
    assert!(
        out["ips"][0].get("version").is_none(),
        "1.0.0 has no version: {out}"
    );
    assert_eq!(out["ips"][0]["gateway"], "10.233.0.1");
    assert_eq!(out["ips"][0]["interface"], 1);
    assert_eq!(out["routes"][0]["dst"], "0.0.0.0/0");
    let addr = out["ips"][0]["address"].as_str().unwrap().to_string();
    let ip = addr.split('/').next().unwrap().to_string();
    assert!(
        addr.starts_with("10.233.0.") && addr.ends_with("/24"),
        "{addr}"
    );

    // The agent shows it with the runtime's id; packets flow both ways and
    // the published port reaches it from outside with the client's address.
    let v = h.inspect_container(name);
    assert_eq!(v["owner"], id);
    assert_eq!(v["endpoints"][0]["interface"], "net1");
    assert_eq!(v["endpoints"][0]["aliases"], json!(["web"]));
    assert!(h.ping(&Ns::c("peer"), &ip));
    // The `aliases` capability names it in the embedded DNS.
    let hosts = h.exec_ok("peer", &["getent", "hosts", "web"]);
    assert!(hosts.contains(&ip), "web -> {hosts:?}");
    assert!(h.ping(&Ns::c(name), &h.ip_of("peer")));
    let mut srv = h.tcp_server(&Ns::c(name), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8085));
    assert!(
        wait_until(Duration::from_secs(3), || srv
            .lines()
            .contains(&h.outside_ip)),
        "client address not kept: {:?}",
        srv.lines()
    );
    srv.kill();
    assert_eq!(h.map_entries("DP_PORTS").len(), 1);

    // A repeated ADD answers the same; CHECK passes.
    let (ok, again) = cni(&env("ADD", id, &sb.path(), "net1"), &c);
    assert!(ok, "{again}");
    assert_eq!(again["ips"][0]["address"], addr.as_str());
    let (ok, out) = cni(&env("CHECK", id, &sb.path(), "net1"), &c);
    assert!(ok && out.is_null(), "CHECK: {out}");
    let (ok, out) = cni(&env("CHECK", id, &sb.path(), "eth9"), &c);
    assert!(!ok);
    assert_eq!(code(&out), 3, "{out}");

    // A 0.4.0 runtime (Podman's generated configs) with a static address
    // from CNI_ARGS; the taken one is a conflict.
    let sb2 = Sandbox::new(&h);
    let id2 = "feedfacefeedface";
    let c04 = conf(&h, "0.4.0", "pods", &json!({}));
    let p2 = sb2.path();
    let mut e2 = env("ADD", id2, &p2, "eth0");
    e2.push(("CNI_ARGS", "IgnoreUnknown=1;IP=10.233.0.200"));
    let (ok, out) = cni(&e2, &c04);
    assert!(ok, "{out}");
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["ips"][0]["version"], "4");
    assert_eq!(out["ips"][0]["address"], "10.233.0.200/24");
    let sb3 = Sandbox::new(&h);
    let p3 = sb3.path();
    let mut e3 = env("ADD", "c3", &p3, "eth0");
    e3.push(("CNI_ARGS", "IP=10.233.0.200"));
    let (ok, out) = cni(&e3, &c04);
    assert!(!ok);
    assert_eq!(code(&out), 100, "{out}");
    assert!(
        !names(&h).contains(&"cni-c3".to_string()),
        "a failed ADD left its attachment"
    );

    // GC: only what the runtime still lists stays.
    let gc = json!({"cniVersion": "1.1.0", "name": "pods", "type": "dataplane-cni",
        "socket": h.socket,
        "cni.dev/valid-attachments": [{"containerID": id, "ifname": "net1"}]})
    .to_string();
    let (ok, out) = cni(&[("CNI_COMMAND", "GC")], &gc);
    assert!(ok, "GC: {out}");
    let n = names(&h);
    assert!(
        n.contains(&name.to_string()) && !n.contains(&"cni-feedfacefeed".to_string()),
        "{n:?}"
    );
    assert!(!has_endpoint(&h, "10.233.0.200"));

    // DEL removes every map entry; repeated DEL and DEL of an unknown
    // container succeed; DEL works after the namespace is gone.
    let (ok, out) = cni(&env("DEL", id, &sb.path(), "net1"), &c);
    assert!(ok && out.is_null(), "DEL: {out}");
    assert!(!names(&h).contains(&name.to_string()));
    assert!(!has_endpoint(&h, &ip));
    assert!(h.map_entries("DP_PORTS").is_empty());
    assert!(!h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8085));
    let (ok, out) = cni(&env("DEL", id, &sb.path(), "net1"), &c);
    assert!(ok, "repeated DEL: {out}");
    let (ok, out) = cni(&env("DEL", "never-added", "", "eth0"), &c);
    assert!(ok, "DEL of an unknown container: {out}");
    let (ok, out) = cni(&env("CHECK", id, &sb.path(), "net1"), &c);
    assert!(!ok);
    assert_eq!(code(&out), 3, "{out}");

    let (ok, out) = cni(&env("ADD", id, &sb.path(), "net1"), &c);
    assert!(ok, "{out}");
    drop(sb);
    let (ok, out) = cni(&env("DEL", id, "", "net1"), &c);
    assert!(ok, "DEL without its namespace: {out}");
    assert!(!names(&h).contains(&name.to_string()));
}

#[test]
fn cni_two_networks_publish_once_and_survive_an_agent_restart() {
    let mut h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.236.0.0/24", "pods"]);
    h.ok(&["network", "create", "--subnet", "10.237.0.0/24", "pods2"]);
    let sb = Sandbox::new(&h);
    let id = "twonets0000000001";
    let name = "cni-twonets00000";
    let rt = json!({"portMappings": [{"hostPort": 8086, "containerPort": 80, "protocol": "tcp"}]});
    let c1 = conf(&h, "1.1.0", "pods", &rt);
    let c2 = conf(&h, "1.1.0", "pods2", &rt);
    let (ok, out) = cni(&env("ADD", id, &sb.path(), "eth0"), &c1);
    assert!(ok, "{out}");
    let (ok, out) = cni(&env("ADD", id, &sb.path(), "eth1"), &c2);
    assert!(ok, "{out}");
    assert_eq!(out["interfaces"][1]["name"], "eth1");
    let v = h.inspect_container(name);
    let ifs: Vec<&str> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["interface"].as_str().unwrap())
        .collect();
    assert_eq!(ifs, ["eth0", "eth1"]);
    // The same mappings from both networks are published once.
    assert_eq!(h.map_entries("DP_PORTS").len(), 1);
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);

    h.stop_agent();
    h.start_agent();
    for (ifname, c) in [("eth0", &c1), ("eth1", &c2)] {
        let (ok, out) = cni(&env("CHECK", id, &sb.path(), ifname), c);
        assert!(ok, "CHECK {ifname} after a restart: {out}");
    }
    let mut srv = h.tcp_server(&Ns::c(name), "0.0.0.0", 80);
    assert!(h.tcp_ok(&Ns::Outside, &h.uplink_ip, 8086));
    srv.kill();

    // DEL of one network keeps the other (and the port); the last DEL
    // detaches.
    let (ok, out) = cni(&env("DEL", id, &sb.path(), "eth0"), &c1);
    assert!(ok, "{out}");
    let v = h.inspect_container(name);
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 1);
    assert_eq!(v["endpoints"][0]["network"], "pods2");
    assert_eq!(h.map_entries("DP_PORTS").len(), 1);
    let (ok, out) = cni(&env("DEL", id, &sb.path(), "eth1"), &c2);
    assert!(ok, "{out}");
    assert!(!names(&h).contains(&name.to_string()));
    assert!(h.map_entries("DP_PORTS").is_empty());
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-n", &sb.0, "-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        !links.contains("eth0") && !links.contains("eth1"),
        "{links}"
    );
}

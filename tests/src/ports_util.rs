//! Helpers of the port-publishing tests (`ports*.rs`): the published
//! mappings of a container, the state a rejected request must leave, host
//! socket binds and drop counters.

use serde_json::Value;

use crate::{python, Host, Ns, Snapshot};

/// `container port NAME --format json`.
pub fn ports_json(h: &Host, name: &str) -> Vec<Value> {
    let out = h.ok(&["--format", "json", "container", "port", name]);
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("container port json {out:?}: {e}"))
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("container port json is not an array: {out}"))
}

/// `container port NAME` lines.
pub fn port_lines(h: &Host, name: &str) -> Vec<String> {
    h.ok(&["container", "port", name])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The host port a container's `cport/proto` is published on.
pub fn host_port(h: &Host, name: &str, cport: u16, proto: &str) -> u16 {
    let ports = ports_json(h, name);
    let m = ports
        .iter()
        .find(|m| m["container_port"] == cport && m["proto"] == proto)
        .unwrap_or_else(|| panic!("{name} does not publish {cport}/{proto}: {ports:?}"));
    m["host_port"].as_u64().unwrap() as u16
}

/// The host namespace's ephemeral port range.
pub fn local_port_range(h: &Host) -> (u16, u16) {
    let out = h.run_ok(
        &Ns::Host,
        &["cat", "/proc/sys/net/ipv4/ip_local_port_range"],
    );
    let v: Vec<u16> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

/// Everything a rejected request must leave as it was: the harness snapshot
/// plus the published ports (DP_PORTS and every container's mappings).
#[derive(Debug, PartialEq)]
pub struct State {
    pub snap: Snapshot,
    pub dp_ports: Vec<String>,
}

pub fn state(h: &Host) -> State {
    let mut dp_ports: Vec<String> = h
        .map_entries("DP_PORTS")
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    dp_ports.sort();
    State {
        snap: h.snapshot(),
        dp_ports,
    }
}

/// Try to bind `ip:port` from a host-namespace process (TCP: bind + listen).
/// `Ok(())` or `Err(errno name)`.
pub fn host_bind(h: &Host, ip: &str, port: u16, proto: &str) -> Result<(), String> {
    const BIND: &str = r#"
import errno, socket, sys
kind = socket.SOCK_STREAM if sys.argv[3] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
    if kind == socket.SOCK_STREAM:
        s.listen(1)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
    sys.exit(1)
print("OK")
"#;
    let p = port.to_string();
    let o = h.host_exec(&[python(), "-c", BIND, ip, &p, proto]);
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if o.status.success() && out == "OK" {
        Ok(())
    } else {
        Err(format!(
            "{out} {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

pub fn assert_bind_in_use(h: &Host, ip: &str, port: u16, proto: &str) {
    let r = host_bind(h, ip, port, proto);
    match r {
        Err(e) if e.starts_with("EADDRINUSE") => {}
        other => panic!("host bind {ip}:{port}/{proto}: expected EADDRINUSE, got {other:?}"),
    }
}

pub fn drop_count(h: &Host, reason: &str) -> u64 {
    let d = h.global_drops();
    d[reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason} in {d}"))
}

/// The uplink /24 with another last octet.
pub fn same_subnet(ip: &str, last: u8) -> String {
    let mut o: Vec<&str> = ip.split('.').collect();
    let l = last.to_string();
    o[3] = &l;
    o.join(".")
}

//! The bad-input catalogue, beyond `agent.rs`'s `bad_inputs_change_nothing`:
//! the HTTP API fed malformed JSON, huge and deeply nested bodies, unknown
//! fields, names with `/`, NUL or `..`, out-of-range numbers, wrong types,
//! wrong methods and routes; the CLI fed bad values of every flag of
//! `network create`, `container create`, `network connect` and `agent`.
//! Every case gets a one-line error (4xx from the API) and changes nothing.

mod soak_support;

use std::{
    fmt::Write as _,
    io::{Read, Write},
    os::unix::net::UnixStream,
    time::Duration,
};

use dataplane_tests::*;
use soak_support::Figures;

/// One raw HTTP/1.1 request on the API socket: (status, body).
fn http(
    h: &Host,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut s = UnixStream::connect(&h.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        let _ = write!(req, "Content-Type: {ct}\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) before reading a huge body.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(h: &Host, method: &str, path: &str, body: &str) -> (u16, String) {
    http(h, method, path, Some("application/json"), body.as_bytes())
}

/// The API's error: a 4xx status and a one-line message.
fn api_refused(case: &str, (status, body): &(u16, String)) -> Result<(), String> {
    if !(400..500).contains(status) {
        return Err(format!("{case}: status {status}, body {body:?}"));
    }
    let msg = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.clone());
    let lines = msg.trim().lines().count();
    if lines != 1 {
        return Err(format!("{case}: {lines}-line error {msg:?}"));
    }
    Ok(())
}

fn api_cases() -> Vec<(&'static str, &'static str, &'static str, String)> {
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(3 << 20));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let long_host = format!(
        "{{\"name\":\"lh\",\"network\":\"base\",\"hostname\":\"{}\"}}",
        "h".repeat(300)
    );
    let n = "/v1/networks";
    let c = "/v1/containers";
    vec![
        ("truncated JSON", "POST", n, r#"{"name":"#.into()),
        ("not JSON", "POST", n, "hello".into()),
        ("JSON array", "POST", n, "[]".into()),
        ("name of the wrong type", "POST", n, r#"{"name":5}"#.into()),
        ("missing name", "POST", n, "{}".into()),
        (
            "unknown field (network)",
            "POST",
            n,
            r#"{"name":"u1","sbunet":"10.1.0.0/24"}"#.into(),
        ),
        ("huge body", "POST", n, big),
        ("deeply nested body", "POST", n, deep),
        ("network name with /", "POST", n, r#"{"name":"a/b"}"#.into()),
        (
            "network name with NUL",
            "POST",
            n,
            "{\"name\":\"a\\u0000b\"}".into(),
        ),
        ("network name ..", "POST", n, r#"{"name":".."}"#.into()),
        ("empty network name", "POST", n, r#"{"name":""}"#.into()),
        (
            "negative MTU",
            "POST",
            n,
            r#"{"name":"m1","mtu":-1}"#.into(),
        ),
        (
            "MTU beyond u32",
            "POST",
            n,
            r#"{"name":"m2","mtu":4294967296}"#.into(),
        ),
        (
            "MTU 70000",
            "POST",
            n,
            r#"{"name":"m3","mtu":70000}"#.into(),
        ),
        (
            "prefix /33",
            "POST",
            n,
            r#"{"name":"s1","subnet":"10.0.0.0/33"}"#.into(),
        ),
        (
            "icc of the wrong type",
            "POST",
            n,
            r#"{"name":"i1","icc":"yes"}"#.into(),
        ),
        (
            "unknown option key",
            "POST",
            n,
            r#"{"name":"o1","options":{"foo":"bar"}}"#.into(),
        ),
        (
            "unknown driver",
            "POST",
            n,
            r#"{"name":"d1","driver":"macvlan"}"#.into(),
        ),
        (
            "unknown field (container)",
            "POST",
            c,
            r#"{"name":"u2","netwrok":"base"}"#.into(),
        ),
        (
            "container name with /",
            "POST",
            c,
            r#"{"name":"a/b","network":"base"}"#.into(),
        ),
        (
            "container name with NUL",
            "POST",
            c,
            "{\"name\":\"a\\u0000b\",\"network\":\"base\"}".into(),
        ),
        (
            "container name ../etc",
            "POST",
            c,
            r#"{"name":"../etc","network":"base"}"#.into(),
        ),
        (
            "host port 99999",
            "POST",
            c,
            r#"{"name":"p1","network":"base","publish":["99999:80"]}"#.into(),
        ),
        (
            "container port 0",
            "POST",
            c,
            r#"{"name":"p2","network":"base","publish":["80:0"]}"#.into(),
        ),
        (
            "port spec abc",
            "POST",
            c,
            r#"{"name":"p3","network":"base","publish":["abc"]}"#.into(),
        ),
        (
            "exposed port 70000",
            "POST",
            c,
            r#"{"name":"p4","network":"base","expose":["70000"]}"#.into(),
        ),
        (
            "static IP 300.1.1.1",
            "POST",
            c,
            r#"{"name":"ip1","network":"base","ip":"300.1.1.1"}"#.into(),
        ),
        (
            "unknown network",
            "POST",
            c,
            r#"{"name":"nn","network":"nope"}"#.into(),
        ),
        ("hostname of 300 characters", "POST", c, long_host),
        (
            "DNS server not an IP",
            "POST",
            c,
            r#"{"name":"dn","network":"base","dns":["not-an-ip"]}"#.into(),
        ),
        (
            "add-host without an IP",
            "POST",
            c,
            r#"{"name":"ah","network":"base","add_hosts":["noip"]}"#.into(),
        ),
        (
            "link to a missing container",
            "POST",
            c,
            r#"{"name":"lk","links":["ghost:alias"]}"#.into(),
        ),
        (
            "alias on the default bridge",
            "POST",
            c,
            r#"{"name":"al","network_aliases":["x"]}"#.into(),
        ),
        (
            "publish of the wrong type",
            "POST",
            c,
            r#"{"name":"pt","network":"base","publish":"80"}"#.into(),
        ),
        (
            "connect a missing container",
            "POST",
            "/v1/networks/base/connect",
            r#"{"container":"ghost"}"#.into(),
        ),
        (
            "connect with an unknown field",
            "POST",
            "/v1/networks/base/connect",
            r#"{"container":"c1","ipp":"1.2.3.4"}"#.into(),
        ),
        (
            "connect to a missing network",
            "POST",
            "/v1/networks/nope/connect",
            r#"{"container":"c1"}"#.into(),
        ),
        (
            "connect with IP 10.70.0.999",
            "POST",
            "/v1/networks/other/connect",
            r#"{"container":"c1","ip":"10.70.0.999"}"#.into(),
        ),
        (
            "disconnect what is not connected",
            "POST",
            "/v1/networks/other/disconnect",
            r#"{"container":"c1"}"#.into(),
        ),
        (
            "remove network ..",
            "DELETE",
            "/v1/networks/..",
            String::new(),
        ),
        (
            "remove network %2e%2e",
            "DELETE",
            "/v1/networks/%2e%2e",
            String::new(),
        ),
        (
            "remove container a%00b",
            "DELETE",
            "/v1/containers/a%00b",
            String::new(),
        ),
        (
            "remove container a%2Fb",
            "DELETE",
            "/v1/containers/a%2Fb",
            String::new(),
        ),
        ("POST to info", "POST", "/v1/info", "{}".into()),
        ("unknown route", "POST", "/v1/nope", "{}".into()),
    ]
}

#[test]
fn api_bad_inputs_get_one_line_4xx_and_change_nothing() {
    let mut fig = Figures::new("bad_inputs_api");
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.70.0.0/24", "base"]);
    h.ok(&["network", "create", "--subnet", "10.69.0.0/24", "other"]);
    h.ok(&["container", "create", "--network", "base", "c1"]);
    let mut problems = Vec::new();
    let mut cases = api_cases()
        .into_iter()
        .map(|(what, m, p, b)| {
            (
                what.to_string(),
                m,
                p,
                Some("application/json"),
                b.into_bytes(),
            )
        })
        .collect::<Vec<_>>();
    cases.push((
        "no content type".into(),
        "POST",
        "/v1/networks",
        None,
        br#"{"name":"ct"}"#.to_vec(),
    ));
    cases.push((
        "body not UTF-8".into(),
        "POST",
        "/v1/networks",
        Some("application/json"),
        vec![b'{', 0xff, 0xfe, b'}'],
    ));
    for (what, method, path, ct, body) in &cases {
        let before = h.snapshot();
        let r = http(&h, method, path, *ct, body);
        if let Err(e) = api_refused(what, &r) {
            problems.push(e);
        }
        if h.snapshot() != before {
            problems.push(format!("{what}: changed something"));
        }
    }
    // The agent still serves.
    let ok = json(
        &h,
        "POST",
        "/v1/containers",
        r#"{"name":"after","network":"base"}"#,
    );
    assert_eq!(ok.0, 200, "{ok:?}");
    fig.set("api_cases", cases.len() as u64);
    fig.set("api_cases_mishandled", problems.len() as u64);
    fig.write();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn cli_bad_flag_values_get_one_line_errors_and_change_nothing() {
    let mut fig = Figures::new("bad_inputs_cli");
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.68.0.0/24", "base"]);
    h.ok(&["container", "create", "--network", "base", "c1"]);
    let long = "h".repeat(300);
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "container",
            "create",
            "--network",
            "base",
            "-p",
            "70000:80",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "-p",
            "80:80/sctp",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "-p",
            "1-5:1-3",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "-p",
            "300.0.0.1:80:80",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--expose",
            "0",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--expose",
            "80/icmp",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--dns",
            "bad",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--add-host",
            "nocolon",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--add-host",
            "h:1.2.3",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--hostname",
            &long,
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--hostname",
            "a b",
            "x",
        ],
        vec!["container", "create", "--network-alias", "a", "x"],
        vec!["container", "create", "--link", "ghost", "x"],
        vec!["container", "create", "--network", "container:ghost", "x"],
        vec![
            "container",
            "create",
            "--network",
            "host",
            "-p",
            "80:80",
            "x",
        ],
        vec!["container", "create", "--network", "base", "a/b"],
        vec!["container", "create", "--network", "base", ".."],
        vec!["container", "port", "ghost"],
        vec!["container", "port", "c1", "80/xyz"],
        vec!["container", "inspect", "ghost"],
        vec![
            "network",
            "create",
            "--subnet",
            "10.9.0.0/24",
            "--ip-range",
            "10.9.0.0/23",
            "x",
        ],
        vec!["network", "create", "-o", "foo=bar", "x"],
        vec![
            "network",
            "create",
            "-o",
            "com.docker.network.driver.mtu=abc",
            "x",
        ],
        vec!["network", "create", "-o", "noequals", "x"],
        vec!["network", "create", "--icc", "maybe", "x"],
        vec!["network", "create", "--mtu", "-5", "x"],
        vec!["network", "create", "a/b"],
        vec!["network", "connect", "--ip", "10.68.0.999", "base", "c1"],
        vec!["network", "connect", "base", "c1"],
        vec!["network", "disconnect", "bridge", "c1"],
        vec!["network", "inspect", "ghost"],
        vec!["agent", "--nat-port-range", "5-2"],
        vec!["agent", "--port-range", "abc"],
        vec!["agent", "--vxlan-port", "0"],
        vec!["agent", "--xdp-mode", "fast"],
        vec!["agent", "--uplink-mode", "fast"],
        vec!["agent", "--uplink-mode", "tcx", "--xdp-mode", "native"],
        vec!["agent", "--icc", "perhaps"],
        // IPv6 (dual stack).
        vec!["network", "create", "--subnet", "fd00:9::/64", "x"],
        vec![
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:9::1/64",
            "x",
        ],
        vec![
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:9::/127",
            "x",
        ],
        vec![
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:9::/64",
            "--gateway",
            "fd00:8::1",
            "x",
        ],
        vec![
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:9::/64",
            "--subnet",
            "fd00:8::/64",
            "x",
        ],
        vec![
            "container",
            "create",
            "--network",
            "base",
            "--ip6",
            "fd00:9::2",
            "x",
        ],
        vec!["network", "connect", "--ip6", "not-an-ip", "base", "c1"],
        vec!["agent", "--fixed-cidr-v6", "fd00:9::/64"],
    ];
    let mut problems = Vec::new();
    for args in &cases {
        let before = h.snapshot();
        let o = h.cli(args);
        if o.status.success() {
            problems.push(format!("{args:?} succeeded"));
        } else {
            let e = stderr(&o);
            // clap's usage errors end with a hint line; the agent's own are one line.
            let first: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
            let one_line = first.len() == 1
                || (o.status.code() == Some(2)
                    && first.first().is_some_and(|l| l.starts_with("error: ")));
            if !one_line {
                problems.push(format!("{args:?}: error {e:?}"));
            }
        }
        if h.snapshot() != before {
            problems.push(format!("{args:?} changed something"));
        }
    }
    fig.set("cli_cases", cases.len() as u64);
    fig.set("cli_cases_mishandled", problems.len() as u64);
    fig.write();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// One POST on the Docker plugin's socket: (status, body).
fn plugin_post(sock: &std::path::Path, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Type: application/vnd.docker.plugins.v1+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn docker_plugin_bad_inputs_get_one_line_errors_and_change_nothing() {
    let mut fig = Figures::new("bad_inputs_docker_plugin");
    let plugin_dir = std::env::temp_dir().join(format!("dpt-plugins-{}", std::process::id()));
    let dir = plugin_dir.display().to_string();
    let h = Host::start_with(&["--docker-plugin", "dpbad", "--docker-plugin-dir", &dir]);
    let sock = plugin_dir.join("dpbad.sock");
    let big = format!("{{\"NetworkID\":\"{}\"}}", "a".repeat(3 << 20));
    let id = "0123456789abcdef".repeat(4);
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "malformed CreateNetwork",
            "/NetworkDriver.CreateNetwork",
            r#"{"NetworkID":"#.into(),
        ),
        (
            "CreateNetwork without an id",
            "/NetworkDriver.CreateNetwork",
            "{}".into(),
        ),
        (
            "network id with /",
            "/NetworkDriver.CreateNetwork",
            r#"{"NetworkID":"../../etc"}"#.into(),
        ),
        (
            "network id with NUL",
            "/NetworkDriver.CreateNetwork",
            "{\"NetworkID\":\"a\\u0000b\"}".into(),
        ),
        (
            "pool /33",
            "/NetworkDriver.CreateNetwork",
            format!(
                r#"{{"NetworkID":"{id}","IPv4Data":[{{"Pool":"10.0.0.0/33","Gateway":"10.0.0.1/24"}}]}}"#
            ),
        ),
        (
            "gateway outside the pool",
            "/NetworkDriver.CreateNetwork",
            format!(
                r#"{{"NetworkID":"{id}","IPv4Data":[{{"Pool":"10.88.0.0/24","Gateway":"10.99.0.1/24"}}]}}"#
            ),
        ),
        ("huge body", "/NetworkDriver.CreateNetwork", big),
        (
            "options of the wrong type",
            "/NetworkDriver.CreateNetwork",
            format!(r#"{{"NetworkID":"{id}","Options":5}}"#),
        ),
        (
            "delete an unknown network",
            "/NetworkDriver.DeleteNetwork",
            format!(r#"{{"NetworkID":"{id}"}}"#),
        ),
        (
            "endpoint on an unknown network",
            "/NetworkDriver.CreateEndpoint",
            format!(
                r#"{{"NetworkID":"{id}","EndpointID":"{id}","Interface":{{"Address":"10.88.0.5/24"}}}}"#
            ),
        ),
        (
            "join of an unknown endpoint",
            "/NetworkDriver.Join",
            format!(r#"{{"NetworkID":"{id}","EndpointID":"{id}","SandboxKey":"/etc/passwd"}}"#),
        ),
        (
            "malformed RequestPool",
            "/IpamDriver.RequestPool",
            "[1,2".into(),
        ),
        (
            "pool 300.0.0.0/24",
            "/IpamDriver.RequestPool",
            r#"{"Pool":"300.0.0.0/24"}"#.into(),
        ),
        (
            "IPv6 pool",
            "/IpamDriver.RequestPool",
            r#"{"V6":true}"#.into(),
        ),
        (
            "address in an unknown pool",
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"nope","Address":"10.1.1.1"}"#.into(),
        ),
        (
            "release from an unknown pool",
            "/IpamDriver.ReleaseAddress",
            r#"{"PoolID":"nope","Address":"abc"}"#.into(),
        ),
    ];
    let mut problems = Vec::new();
    for (what, path, body) in &cases {
        let before = h.snapshot();
        let (status, resp) = plugin_post(&sock, path, body.as_bytes());
        let err = serde_json::from_str::<serde_json::Value>(&resp)
            .ok()
            .and_then(|v| v["Err"].as_str().map(str::to_string))
            .unwrap_or_else(|| resp.clone());
        if status == 200 && err.trim().is_empty() {
            problems.push(format!("{what}: accepted ({resp:?})"));
        } else if err.trim().lines().count() != 1 {
            problems.push(format!("{what}: error {err:?} (HTTP {status})"));
        }
        if h.snapshot() != before {
            problems.push(format!("{what}: changed something"));
        }
    }
    drop(h);
    let _ = std::fs::remove_dir_all(&plugin_dir);
    fig.set("docker_plugin_cases", cases.len() as u64);
    fig.set("docker_plugin_cases_mishandled", problems.len() as u64);
    fig.write();
    assert!(problems.is_empty(), "{problems:#?}");
}

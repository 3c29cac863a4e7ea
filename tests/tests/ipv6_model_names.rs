//! IPv6 (dual stack) through the name service and the CNI plugin: AAAA
//! and ip6.arpa answers of the embedded resolver (real queries to
//! 127.0.0.11 from inside a container), and `dataplane-cni ADD` on a
//! dual-stack network (its result and its plumbing).

use std::process::Command;

use dataplane_tests::{ipv6::*, *};
use serde_json::{json, Value};

/// `dig TYPE NAME` (or `dig -x ADDR`) in container `c` against 127.0.0.11:
/// (status, answer data).
fn dig(h: &Host, c: &str, args: &[&str]) -> (String, Vec<String>) {
    let mut a = vec![
        "dig",
        "+noall",
        "+comments",
        "+answer",
        "+tries=1",
        "+timeout=4",
        "@127.0.0.11",
    ];
    a.extend_from_slice(args);
    let out = stdout(&h.exec(c, &a));
    let status = out
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let data = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    (status, data)
}

#[test]
fn embedded_dns_answers_aaaa_and_ip6_arpa_ptr() {
    let h = Host::start();
    dual(&h, "dual", "10.72.0.0/24", "fd00:72::/64");
    h.ok(&["network", "create", "--subnet", "10.73.0.0/24", "plain"]);
    h.ok(&["container", "create", "--network", "dual", "a"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "dual",
        "--network-alias",
        "www",
        "b",
    ]);
    h.ok(&["container", "create", "--network", "plain", "c"]);
    h.ok(&["network", "connect", "plain", "a"]);
    let b4 = h.ip_of("b");
    let b6 = "fd00:72::3";
    assert_eq!(h.endpoint("b", "dual")["GlobalIPv6Address"], b6);
    for name in ["b", "www", "b.dual"] {
        assert_eq!(
            dig(&h, "a", &[name, "AAAA"]),
            ("NOERROR".into(), vec![b6.to_string()]),
            "AAAA {name}"
        );
        assert_eq!(
            dig(&h, "a", &[name, "A"]),
            ("NOERROR".into(), vec![b4.clone()]),
            "A {name}"
        );
    }
    // A name without an IPv6 address: NOERROR, no answers (Docker's).
    assert_eq!(dig(&h, "a", &["c", "AAAA"]), ("NOERROR".into(), vec![]));
    assert_eq!(dig(&h, "a", &["c", "A"]).1, vec![h.ip_of("c")]);
    // PTR of the IPv6 address.
    assert_eq!(
        dig(&h, "a", &["-x", b6]),
        ("NOERROR".into(), vec!["b.dual.".to_string()])
    );
}

/// `dataplane-cni ADD` for a sandbox namespace on `network`: its result.
fn cni_add(h: &Host, network: &str, netns: &str) -> Value {
    use std::{io::Write, process::Stdio};
    let conf = json!({
        "cniVersion": "1.0.0", "name": network, "type": "dataplane-cni",
        "socket": h.socket,
    })
    .to_string();
    let mut child = Command::new(dataplane_bin().with_file_name("dataplane-cni"))
        .env_remove("DATAPLANE_SOCKET")
        .env("CNI_PATH", "/nonexistent")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "cni6")
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn cni_add_on_a_dual_stack_network_reports_and_plumbs_ipv6() {
    let h = Host::start();
    dual(&h, "dual", "10.81.0.0/24", "fd00:81::/64");
    let sandbox = format!("{}-cni6", h.id);
    sh_ok("ip", &["netns", "add", &sandbox]);
    let netns = format!("/run/netns/{sandbox}");
    let res = std::panic::catch_unwind(|| {
        let r = cni_add(&h, "dual", &netns);
        let ips = r["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 2, "{r}");
        assert_eq!(ips[1]["address"], "fd00:81::2/64", "{r}");
        assert_eq!(ips[1]["gateway"], "fd00:81::1");
        assert!(
            r["routes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["dst"] == "::/0" && x["gw"] == "fd00:81::1"),
            "{r}"
        );
        let addr = sh_ok("ip", &["-n", &sandbox, "-6", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains("fd00:81::2/64"), "{addr}");
        assert!(endpoints6_entry(&h, "fd00:81::2").is_some());
        assert!(h.ping(&Ns::Host, "fd00:81::2"));
    });
    let _ = Command::new("ip").args(["netns", "del", &sandbox]).status();
    if let Err(e) = res {
        std::panic::resume_unwind(e);
    }
}

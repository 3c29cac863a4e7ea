//! Names (embedded DNS) through the real agent: real queries with dig over
//! UDP and TCP to 127.0.0.11 inside containers, `container exec` with
//! getent/python reading the container's files, forwarding to a fake
//! upstream DNS server in the "outside" namespace (or on the host's
//! loopback), SERVFAIL, names following connect/disconnect/rm, restarts and
//! a recreated namespace, and bad input that changes nothing.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use dataplane_tests::{assert_error, python, stdout, wait_until, Bg, Host, Ns};

/// A fake upstream DNS server (UDP and TCP on argv[1]:53). It logs
/// "udp|tcp NAME" to argv[2] and answers A queries: `big.*` with 100
/// addresses (truncated over UDP), `*.ext.test` and `hostonly.test` with
/// argv[3]; everything else NXDOMAIN.
const FAKE_DNS: &str = r#"
import socket, struct, sys, threading
bind, log, addr = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
def answer(q, tcp):
    qid = struct.unpack(">H", q[:2])[0]
    off, labels = 12, []
    while q[off]:
        labels.append(q[off + 1:off + 1 + q[off]].decode())
        off += 1 + q[off]
    off += 1
    name = ".".join(labels).lower()
    qtype = struct.unpack(">H", q[off:off + 2])[0]
    question = q[12:off + 4]
    with lock, open(log, "a") as f:
        f.write(("tcp " if tcp else "udp ") + name + "\n")
    rcode, ips = 0, []
    if name.startswith("big."):
        ips = ["192.0.2.%d" % i for i in range(1, 101)]
    elif name.endswith(".ext.test") or name == "hostonly.test":
        ips = [addr]
    else:
        rcode = 3
    if qtype != 1:
        ips = []
    tc = 0
    if not tcp and len(ips) * 16 + len(question) + 12 > 512:
        ips, tc = [], 1
    out = struct.pack(">HHHHHH", qid, 0x8180 | (tc << 9) | rcode, 1, len(ips), 0, 0) + question
    for ip in ips:
        out += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)
    return out
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, 53))
    ready.release()
    while True:
        q, a = s.recvfrom(4096)
        s.sendto(answer(q, False), a)
def tcp_client(c):
    f = c.makefile("rb")
    while True:
        n = f.read(2)
        if len(n) < 2:
            break
        q = f.read(struct.unpack(">H", n)[0])
        r = answer(q, True)
        c.sendall(struct.pack(">H", len(r)) + r)
    c.close()
def tcp():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, 53))
    s.listen(16)
    ready.release()
    while True:
        c, _ = s.accept()
        threading.Thread(target=tcp_client, args=(c,), daemon=True).start()
ready = threading.Semaphore(0)
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
ready.acquire(); ready.acquire()
print("READY", flush=True)
threading.Event().wait()
"#;

/// A fake upstream in `ns` on `bind`:53 answering with `addr`; its query
/// log is `Bg::lines`.
fn fake_dns(h: &Host, ns: &Ns, bind: &str, addr: &str) -> Bg {
    let file = h.dir.join(format!("dns-queries-{}", h.next()));
    let f = file.display().to_string();
    let mut bg = h.spawn_in(ns, &[python(), "-c", FAKE_DNS, bind, &f, addr]);
    bg.file = Some(file);
    bg.wait_line("READY", Duration::from_secs(10));
    bg
}

/// One dig answer: the response code ("" without a reply) and the answer
/// records as (ttl, type, data).
#[derive(Debug)]
struct Dig {
    status: String,
    answers: Vec<(u64, String, String)>,
}

impl Dig {
    fn data(&self) -> BTreeSet<String> {
        self.answers.iter().map(|a| a.2.clone()).collect()
    }
}

/// `dig` inside container `c` against the embedded resolver.
fn dig(h: &Host, c: &str, args: &[&str]) -> Dig {
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
    let answers = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[1].parse().unwrap(), w[3].to_string(), w[4].to_string())
        })
        .collect();
    Dig { status, answers }
}

/// The A addresses `c` gets for `name` (UDP, or TCP with `+tcp`).
fn resolve(h: &Host, c: &str, name: &str, tcp: bool) -> BTreeSet<String> {
    let mut args = vec![name];
    if tcp {
        args.push("+tcp");
    }
    let d = dig(h, c, &args);
    assert_eq!(d.status, "NOERROR", "{c} asking {name}: {d:?}");
    d.data()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn names_resolve_by_docker_rules_over_udp_and_tcp_and_others_are_forwarded() {
    let h = Host::start();
    let out = h.outside_ip.clone();
    let up = fake_dns(&h, &Ns::Outside, &out, "192.0.2.1");
    h.ok(&["network", "create", "--subnet", "10.210.0.0/24", "app"]);
    h.ok(&["network", "create", "--subnet", "10.211.0.0/24", "other"]);
    let dns = ["--dns", out.as_str()];
    for w in ["web1", "web2"] {
        h.ok(&[
            "container",
            "create",
            "--network",
            "app",
            "--network-alias",
            "www",
            dns[0],
            dns[1],
            w,
        ]);
    }
    h.ok(&[
        "container",
        "create",
        "--network",
        "app",
        "--dns",
        &out,
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
        "--add-host",
        "printer:10.0.0.9",
        "--hostname",
        "cli.local",
        "client",
    ]);
    h.ok(&["container", "create", "--network", "other", "far"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "app",
        "--link",
        "web1:db1",
        dns[0],
        dns[1],
        "linker",
    ]);
    let (w1, w2) = (h.ip_of("web1"), h.ip_of("web2"));
    let web2_id = h.inspect_container("web2")["id"]
        .as_str()
        .unwrap()
        .to_string();

    for tcp in [false, true] {
        let d = dig(&h, "client", &["web1", if tcp { "+tcp" } else { "+notcp" }]);
        assert_eq!(d.status, "NOERROR", "{d:?}");
        assert_eq!(d.answers, [(600, "A".to_string(), w1.clone())], "tcp={tcp}");
        assert_eq!(resolve(&h, "client", "WEB1", tcp), set(&[&w1]));
        assert_eq!(resolve(&h, "client", "web1.app", tcp), set(&[&w1]));
        assert_eq!(resolve(&h, "client", &web2_id[..12], tcp), set(&[&w2]));
        assert_eq!(resolve(&h, "client", "www", tcp), set(&[&w1, &w2]));
    }
    // AAAA of a local name: empty NOERROR. PTR: NAME.NETWORK.
    let d = dig(&h, "client", &["web1", "AAAA"]);
    assert_eq!(
        (d.status.as_str(), d.answers.len()),
        ("NOERROR", 0),
        "{d:?}"
    );
    let d = dig(&h, "client", &["-x", &w1]);
    assert_eq!(d.answers[0].2, "web1.app.", "{d:?}");
    // A container on another network is not visible: the name is forwarded.
    assert_eq!(dig(&h, "client", &["far"]).status, "NXDOMAIN");
    assert!(
        up.lines().contains(&"udp far".to_string()),
        "{:?}",
        up.lines()
    );
    // --link alias: for the linking container only.
    assert_eq!(resolve(&h, "linker", "db1", false), set(&[&w1]));
    assert_eq!(dig(&h, "client", &["db1"]).status, "NXDOMAIN");

    // Forwarding: UDP, and TCP when the upstream truncates.
    assert_eq!(
        resolve(&h, "client", "host1.ext.test", false),
        set(&["192.0.2.1"])
    );
    let big = dig(&h, "client", &["big.ext.test"]);
    assert_eq!((big.status.as_str(), big.answers.len()), ("NOERROR", 100));
    assert!(up.lines().contains(&"tcp big.ext.test".to_string()));
    let big = dig(&h, "client", &["big.ext.test", "+tcp"]);
    assert_eq!(big.answers.len(), 100);

    // Ordinary tools through `container exec`.
    let g = h.exec_ok("client", &["getent", "hosts", "web1"]);
    assert!(g.starts_with(&format!("{w1} ")), "{g}");
    let g = h.exec_ok("client", &["getent", "hosts", "printer"]);
    assert!(g.starts_with("10.0.0.9 "), "{g}");
    let py = "import socket; print(socket.gethostbyname('web2'))";
    assert_eq!(h.exec_ok("client", &[python(), "-c", py]).trim(), w2);
    let rc = h.exec_ok("client", &["cat", "/etc/resolv.conf"]);
    for want in [
        "nameserver 127.0.0.11\n",
        "search corp.example\n",
        "options ndots:2\n",
    ] {
        assert!(rc.contains(want), "{rc}");
    }
    assert_eq!(rc.matches("nameserver").count(), 1, "{rc}");
    assert_eq!(
        h.exec_ok("client", &["cat", "/etc/hostname"]).trim(),
        "cli.local"
    );
    let rc = h.exec_ok("web1", &["cat", "/etc/resolv.conf"]);
    assert!(rc.contains("options ndots:0\n"), "Docker's default: {rc}");

    // inspect shows the settings and aliases.
    let v = h.inspect_container("client");
    assert_eq!(v["dns"]["servers"][0], out.as_str());
    assert_eq!(v["dns"]["search"][0], "corp.example");
    assert_eq!(v["dns"]["options"][0], "ndots:2");
    assert_eq!(v["dns"]["extra_hosts"][0]["name"], "printer");
    assert_eq!(v["embedded_dns"], true);
    assert_eq!(h.endpoint("web1", "app")["aliases"][0], "www");

    // A dead upstream: SERVFAIL, well within dig's 4 s.
    h.ok(&[
        "container",
        "create",
        "--network",
        "app",
        "--dns",
        "192.0.2.99",
        "lost",
    ]);
    assert_eq!(dig(&h, "lost", &["x.ext.test"]).status, "SERVFAIL");
    assert_eq!(resolve(&h, "lost", "web2", false), set(&[&w2]));

    // The default bridge: no embedded resolver; --link aliases in /etc/hosts.
    h.ok(&["container", "create", "b1"]);
    h.ok(&["container", "create", "--link", "b1:buddy", "b2"]);
    let b1 = h.ip_of("b1");
    let hosts = h.exec_ok("b2", &["cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&format!("{b1}\tbuddy"))),
        "{hosts}"
    );
    let g = h.exec_ok("b2", &["getent", "hosts", "buddy"]);
    assert!(g.starts_with(&format!("{b1} ")), "{g}");
    let rc = h.exec_ok("b2", &["cat", "/etc/resolv.conf"]);
    assert!(!rc.contains("127.0.0.11"), "{rc}");
    assert_eq!(h.inspect_container("b2")["embedded_dns"], false);
    assert_eq!(dig(&h, "b2", &["b1"]).status, "", "no resolver on bridge");
}

#[test]
fn host_resolv_conf_servers_are_upstreams_and_loopback_ones_are_asked_from_the_host() {
    let dir = std::env::temp_dir().join(format!("dp-dns-resolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let resolv: PathBuf = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.53\nsearch host.example\n").unwrap();
    let r = resolv.display().to_string();
    let h = Host::start_with(&["--resolv-conf", &r]);
    let _lo = fake_dns(&h, &Ns::Host, "127.0.0.53", "192.0.2.53");
    h.ok(&["network", "create", "--subnet", "10.212.0.0/24", "app"]);
    h.ok(&["container", "create", "--network", "app", "c"]);
    assert_eq!(
        resolve(&h, "c", "hostonly.test", false),
        set(&["192.0.2.53"])
    );
    assert_eq!(
        resolve(&h, "c", "hostonly.test", true),
        set(&["192.0.2.53"])
    );
    let rc = h.exec_ok("c", &["cat", "/etc/resolv.conf"]);
    assert!(
        rc.contains("nameserver 127.0.0.11\nsearch host.example\noptions ndots:0\n"),
        "{rc}"
    );

    // The host's servers change: the resolvers follow within a pass.
    let _out = fake_dns(&h, &Ns::Outside, &h.outside_ip, "192.0.2.1");
    std::fs::write(&resolv, format!("nameserver {}\n", h.outside_ip)).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            dig(&h, "c", &["hostonly.test"]).data() == set(&["192.0.2.1"])
        }),
        "upstream did not follow the host's resolv.conf"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_follow_connect_disconnect_rm_restart_and_a_recreated_namespace() {
    let mut h = Host::start();
    let out = h.outside_ip.clone();
    let _up = fake_dns(&h, &Ns::Outside, &out, "192.0.2.1");
    h.ok(&["network", "create", "--subnet", "10.213.0.0/24", "app"]);
    h.ok(&["network", "create", "--subnet", "10.214.0.0/24", "back"]);
    let create = |name: &str, net: &str| {
        h.ok(&["container", "create", "--network", net, "--dns", &out, name]);
    };
    create("alpha", "app");
    create("beta", "back");
    assert_eq!(dig(&h, "alpha", &["beta"]).status, "NXDOMAIN");

    // connect --alias: b becomes visible on app under both names.
    h.ok(&["network", "connect", "--alias", "api", "app", "beta"]);
    let b_app = h.endpoint("beta", "app")["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.endpoint("beta", "app")["aliases"][0], "api");
    assert_eq!(resolve(&h, "alpha", "beta", false), set(&[&b_app]));
    assert_eq!(resolve(&h, "alpha", "api", true), set(&[&b_app]));
    assert_eq!(
        resolve(&h, "beta", "alpha", false),
        set(&[&h.ip_of("alpha")])
    );

    // disconnect: gone at once.
    h.ok(&["network", "disconnect", "app", "beta"]);
    assert_eq!(dig(&h, "alpha", &["beta"]).status, "NXDOMAIN");
    assert_eq!(dig(&h, "alpha", &["api"]).status, "NXDOMAIN");

    // rm: the name and the files go.
    create("gamma", "app");
    let c_ip = h.ip_of("gamma");
    assert_eq!(resolve(&h, "alpha", "gamma", false), set(&[&c_ip]));
    let files = PathBuf::from(
        h.inspect_container("gamma")["files_dir"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    assert!(files.join("resolv.conf").is_file());
    h.ok(&["container", "rm", "gamma"]);
    assert_eq!(dig(&h, "alpha", &["gamma"]).status, "NXDOMAIN");
    assert!(!files.exists(), "files of a removed container are removed");

    // Restart (clean stop, then a crash): the resolvers come back.
    create("delta", "app");
    let d_ip = h.ip_of("delta");
    h.stop_agent();
    h.start_agent();
    assert_eq!(resolve(&h, "alpha", "delta", false), set(&[&d_ip]));
    assert_eq!(
        resolve(&h, "delta", "alpha", true),
        set(&[&h.ip_of("alpha")])
    );
    h.kill_agent();
    h.start_agent();
    assert_eq!(resolve(&h, "alpha", "delta", true), set(&[&d_ip]));

    // A namespace deleted behind the agent's back is recreated by the
    // reconciler, and the resolver is restarted in the new one.
    let ns = h.run_dir().join("netns").join("delta");
    dataplane_tests::sh_ok("umount", &["-l", ns.to_str().unwrap()]);
    std::fs::remove_file(&ns).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            dig(&h, "delta", &["alpha"]).data() == set(&[&h.ip_of("alpha")])
        }),
        "no resolver in the recreated namespace; log:\n{}",
        h.log()
    );
    assert!(h.log().contains("dns: restarting the resolver"));
}

#[test]
fn bad_dns_inputs_are_one_line_errors_and_change_nothing() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.215.0.0/24", "app"]);
    h.ok(&["network", "create", "--subnet", "10.216.0.0/24", "back"]);
    h.ok(&["container", "create", "--network", "back", "web"]);
    let files = |h: &Host| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(h.run_dir().join("containers"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = (h.snapshot(), files(&h));
    let long_search = vec!["a".repeat(63); 4].join(".");
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["--dns", "10.0.0.300"], &["--dns", "not an ip address"]),
        (vec!["--dns", "ns.example"], &["--dns"]),
        (
            vec!["--add-host", "printer"],
            &["--add-host", "NAME:ADDRESS"],
        ),
        (
            vec!["--add-host", "printer:"],
            &["--add-host", "no address"],
        ),
        (
            vec!["--network-alias", "bad alias"],
            &["--network-alias", "DNS label"],
        ),
        (vec!["--network-alias=-x"], &["--network-alias"]),
        (vec!["--dns-search", &long_search], &["--dns-search", "253"]),
        (vec!["--dns-option", "ndots"], &["--dns-option"]),
    ];
    for (flags, needles) in &cases {
        let mut args = vec!["container", "create", "--network", "app"];
        args.extend_from_slice(flags);
        args.push("x");
        let o = h.cli(&args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {o:?}");
        assert_error(&dataplane_tests::stderr(&o), needles);
    }
    // Aliases on the default bridge, and a bad alias on connect.
    let o = h.cli(&["container", "create", "--network-alias", "www", "x"]);
    assert_eq!(o.status.code(), Some(3));
    assert_error(&dataplane_tests::stderr(&o), &["user-defined networks"]);
    let o = h.cli(&["network", "connect", "--alias", "no!", "app", "web"]);
    assert_eq!(o.status.code(), Some(3));
    assert_error(&dataplane_tests::stderr(&o), &["not a DNS label"]);
    assert_eq!((h.snapshot(), files(&h)), before);
}

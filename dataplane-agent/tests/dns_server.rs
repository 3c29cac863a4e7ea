//! The embedded resolver answering real DNS packets on 127.0.0.11:53 inside
//! throw-away network namespaces (see `dns_support` for the topology).

mod dns_support;

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    os::unix::process::CommandExt,
    process::Command,
    time::{Duration, Instant},
};

use dataplane_agent::dns::{
    files::{
        container_dir, hostname_content, hosts_content, parse_add_host, resolv_conf_content,
        upstreams, ContainerFiles, DnsConfig, ExecMounts, HostResolv, HostsSpec, ResolvMode,
    },
    Upstream, Zone, ZoneContainer, ZoneEndpoint,
};
use dns_support::*;
use hickory_proto::{
    op::ResponseCode,
    rr::{rdata::PTR, Name, RData, RecordType},
};
use nix::sched::{setns, CloneFlags};

#[test]
fn local_names_resolve_over_udp_and_tcp_by_docker_rules() {
    let w = World::new();
    w.start_default();
    let web = Ipv4Addr::new(10, 88, 0, 2);
    for name in ["web.", "WEB.", "wEb.front.", "0123456789ab.", "www."] {
        let (r, _) = udp_query(&w.c, &ask(name, RecordType::A, None)).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(a_records(&r), [web], "{name}");
        assert_eq!(r.answers[0].ttl, 600);
        let r = tcp_query(&w.c, &ask(name, RecordType::A, None)).unwrap();
        assert_eq!(a_records(&r), [web], "{name} over TCP");
    }
    // --link alias of the asker.
    let (r, _) = udp_query(&w.c, &ask("database.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [Ipv4Addr::new(10, 89, 0, 5)]);
    // A shared alias: every address, in both orders over a few queries.
    let mut orders = HashSet::new();
    for _ in 0..40 {
        let (r, _) = udp_query(&w.c, &ask("pool.", RecordType::A, None)).unwrap();
        assert_eq!(
            sorted(a_records(&r)),
            [Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 3)]
        );
        orders.insert(a_records(&r));
    }
    assert_eq!(orders.len(), 2, "answers are shuffled");
    // AAAA of a known name without IPv6: empty NOERROR, not forwarded.
    let (r, _) = udp_query(&w.c, &ask("web.", RecordType::AAAA, None)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    // PTR of a primary name.
    let (r, _) = udp_query(&w.c, &ask("2.0.88.10.in-addr.arpa.", RecordType::PTR, None)).unwrap();
    assert_eq!(
        r.answers[0].data,
        RData::PTR(PTR(Name::from_ascii("web.front.").unwrap()))
    );
    assert!(
        w.log.lock().unwrap().is_empty(),
        "nothing local was forwarded"
    );
}

#[test]
fn names_on_networks_not_shared_are_forwarded_and_get_nxdomain() {
    let w = World::new();
    w.start_default();
    for name in ["other", "other.elsewhere", "web.back"] {
        let (r, _) = udp_query(&w.c, &ask(&format!("{name}."), RecordType::A, None)).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(r.answers.is_empty());
        assert_eq!(
            w.logged(name),
            [false],
            "{name} went to the upstream over UDP"
        );
    }
}

#[test]
fn big_local_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let w = World::new();
    w.start_default();
    let (r, size) = udp_query(&w.c, &ask("big.", RecordType::A, None)).unwrap();
    assert!(r.metadata.truncation, "TC set without EDNS");
    assert!(size <= 512);
    assert!(r.answers.is_empty());
    let r = tcp_query(&w.c, &ask("big.", RecordType::A, None)).unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(a_records(&r).len(), 40);
    // With EDNS (4096) the same answer fits in UDP.
    let (r, size) = udp_query(&w.c, &ask("big.", RecordType::A, Some(4096))).unwrap();
    assert!(!r.metadata.truncation);
    assert!(size > 512);
    assert_eq!(a_records(&r).len(), 40);
}

#[test]
fn forwarded_names_use_the_container_namespace_and_tcp_on_truncation() {
    let w = World::new();
    w.start_default();
    let (r, _) = udp_query(&w.c, &ask("example.test.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [EXAMPLE]);
    let r = tcp_query(&w.c, &ask("Example.Test.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [EXAMPLE]);
    assert_eq!(
        w.logged("example.test"),
        [false, true],
        "UDP then TCP upstream"
    );

    // 60 records: the upstream truncates over UDP, the resolver retries over TCP
    // and a client with a 4096-byte EDNS buffer gets everything over UDP.
    let (r, _) = udp_query(&w.c, &ask("big.test.", RecordType::A, Some(4096))).unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(a_records(&r).len(), 60);
    assert_eq!(w.logged("big.test"), [false, true]);
    // A client without EDNS gets TC over UDP, then everything over TCP.
    let (r, size) = udp_query(&w.c, &ask("big.test.", RecordType::A, None)).unwrap();
    assert!(r.metadata.truncation && size <= 512);
    let r = tcp_query(&w.c, &ask("big.test.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r).len(), 60);
    // The host's upstream was never asked.
    assert!(w.host_log.lock().unwrap().is_empty());
}

#[test]
fn loopback_upstream_is_asked_from_the_host_namespace() {
    let w = World::new();
    w.start(vec![Upstream::new(HOST_UPSTREAM.into())]);
    assert!(Upstream::new(HOST_UPSTREAM.into()).from_host);
    let (r, _) = udp_query(&w.c, &ask("hostonly.test.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [HOSTONLY]);
    let r = tcp_query(&w.c, &ask("hostonly.test.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [HOSTONLY]);
    assert_eq!(w.host_log.lock().unwrap().len(), 2);
    assert!(w.log.lock().unwrap().is_empty());
}

#[test]
fn dead_upstream_gives_servfail_within_two_seconds() {
    let w = World::new();
    // Nobody at .3; a closed port at the upstream's address.
    let dead = vec![
        Upstream::new(Ipv4Addr::new(10, 77, 0, 3).into()),
        Upstream::at((UPSTREAM, 5353).into()),
    ];
    w.start(dead);
    for tcp in [false, true] {
        let q = ask("example.test.", RecordType::A, None);
        let t = Instant::now();
        let r = if tcp {
            tcp_query(&w.c, &q).unwrap()
        } else {
            udp_query(&w.c, &q).unwrap().0
        };
        let took = t.elapsed();
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::ServFail,
            "tcp={tcp}"
        );
        assert!(
            took < Duration::from_millis(2600),
            "answered after {took:?}"
        );
    }
    // No upstream at all: SERVFAIL at once; local names still work.
    w.start(vec![]);
    let (r, _) = udp_query(&w.c, &ask("example.test.", RecordType::A, None)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let (r, _) = udp_query(&w.c, &ask("web.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [Ipv4Addr::new(10, 88, 0, 2)]);
}

#[test]
fn zone_changes_apply_to_the_next_query_and_stop_closes_the_sockets() {
    let w = World::new();
    w.start_default();
    let mut cs = sample_containers();
    cs.push(ZoneContainer {
        name: "newcomer".into(),
        id: "9999999999999999".into(),
        endpoints: vec![ZoneEndpoint {
            network: "front".into(),
            ip: Ipv4Addr::new(10, 88, 0, 77),
            aliases: vec![],
            ip6: None,
        }],
        links: vec![],
    });
    cs.retain(|c| c.name != "web2");
    w.mgr.set_zone(Zone::new(&cs));
    let (r, _) = udp_query(&w.c, &ask("newcomer.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [Ipv4Addr::new(10, 88, 0, 77)]);
    let (r, _) = udp_query(&w.c, &ask("pool.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [Ipv4Addr::new(10, 88, 0, 2)]);
    let (r, _) = udp_query(&w.c, &ask("web2.", RecordType::A, None)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    w.stop();
    // The port is closed: refused (a process forked by a parallel test may
    // hold the socket for a moment between its fork and exec: ask again).
    let refused = (0..10).any(|_| {
        let r = udp_query_within(
            &w.c,
            &ask("web.", RecordType::A, None),
            Duration::from_millis(300),
        );
        matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(refused, "UDP 127.0.0.11:53 is closed after stop");
    let r = tcp_query(&w.c, &ask("web.", RecordType::A, None));
    assert!(matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused));
    // Started again (e.g. after an agent restart) it binds and answers.
    w.start_default();
    let (r, _) = udp_query(&w.c, &ask("web.", RecordType::A, None)).unwrap();
    assert_eq!(a_records(&r), [Ipv4Addr::new(10, 88, 0, 2)]);
    let mgr = w.mgr.clone();
    assert_eq!(w.on(async move { mgr.running().await }).len(), 1);
}

#[test]
fn dig_gets_answers_over_udp_and_tcp() {
    let w = World::new();
    w.start_default();
    let path = w.c.path();
    let ns = format!("--net={}", path.display());
    for extra in [&[][..], &["+tcp"][..], &["+noedns"][..]] {
        let mut args = vec![
            ns.as_str(),
            "dig",
            "@127.0.0.11",
            "+short",
            "+time=3",
            "web2",
        ];
        args.extend_from_slice(extra);
        let out = Command::new("nsenter").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "10.88.0.3",
            "{extra:?}"
        );
    }
    let out = Command::new("nsenter")
        .args([
            ns.as_str(),
            "dig",
            "@127.0.0.11",
            "+time=3",
            "-x",
            "10.88.0.3",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PTR\tweb2.front."), "{text}");
    // dig +noedns big: TC, dig retries over TCP by itself and prints all 40.
    let out = Command::new("nsenter")
        .args([
            ns.as_str(),
            "dig",
            "@127.0.0.11",
            "+short",
            "+noedns",
            "big",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 40);
}

/// Run `cmd` in the container namespace with its files mounted over /etc.
fn exec_in(w: &World, mounts: &ExecMounts, cmd: &[&str]) -> String {
    let ns = w.c.file();
    let mounts = mounts.clone();
    let mut c = Command::new(cmd[0]);
    c.args(&cmd[1..]);
    // SAFETY: between fork and exec the closure only makes system calls
    // (setns, unshare, mount) on data prepared before the fork.
    unsafe {
        c.pre_exec(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            mounts.apply().map_err(std::io::Error::from)
        });
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ordinary_tools_resolve_through_the_exec_mounts() {
    let w = World::new();
    w.start_default();
    let run_dir = std::env::temp_dir().join(format!("dp-dns-exec-{}", w.c.name));
    let dir = container_dir(&run_dir, "client");
    let cfg = DnsConfig {
        search: vec!["test".into()],
        extra_hosts: vec![
            parse_add_host("pinned.example:203.0.113.7").unwrap(),
            parse_add_host("gw:host-gateway").unwrap(),
        ],
        ..Default::default()
    };
    let host = HostResolv {
        nameservers: vec![UPSTREAM.into()],
        ..Default::default()
    };
    assert_eq!(upstreams(&cfg, &host), [Upstream::new(UPSTREAM.into())]);
    let files = ContainerFiles {
        hosts: hosts_content(&HostsSpec {
            hostname: "clienthost",
            ip: Some(Ipv4Addr::new(10, 88, 0, 9)),
            extra_hosts: &cfg.extra_hosts,
            gateway: Some(Ipv4Addr::new(10, 88, 0, 1)),
            links: &[],
        })
        .unwrap(),
        resolv_conf: resolv_conf_content(ResolvMode::Embedded, &cfg, &host),
        hostname: hostname_content("clienthost"),
    };
    files.write(&dir).unwrap();
    let mounts = ExecMounts::prepare(&dir).unwrap();

    let getent = |name: &str| exec_in(&w, &mounts, &["getent", "ahostsv4", name]);
    assert!(getent("web").starts_with("10.88.0.2 "), "{}", getent("web"));
    assert!(getent("database").starts_with("10.89.0.5 "));
    // ndots:0 + search test: "example" is tried as is, then as example.test.
    assert!(
        getent("example").starts_with("192.0.2.1 "),
        "{}",
        getent("example")
    );
    assert!(getent("pinned.example").starts_with("203.0.113.7 "));
    assert!(getent("gw").starts_with("10.88.0.1 "));
    assert!(getent("clienthost").starts_with("10.88.0.9 "));
    let py = exec_in(
        &w,
        &mounts,
        &[
            "/usr/bin/python3",
            "-c",
            "import socket; print(socket.gethostbyname('www'))",
        ],
    );
    assert_eq!(py.trim(), "10.88.0.2");
    assert_eq!(
        exec_in(&w, &mounts, &["cat", "/etc/hostname"]),
        "clienthost\n"
    );
    let resolv = exec_in(&w, &mounts, &["cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11\n") && resolv.contains("ndots:0"));
    // The test's own mount namespace is untouched.
    let own = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    assert!(!own.contains("127.0.0.11"));
    let _ = std::fs::remove_dir_all(&run_dir);
}

#[test]
fn load_generator_counts_answers_for_local_and_forwarded_names() {
    use dataplane_agent::dns::bench::{run, Load};
    let w = World::new();
    w.start_default();
    for (names, kind) in [
        (vec!["web", "pool", "WWW.front"], "local"),
        (vec!["example.test"], "forwarded"),
    ] {
        let load = Load {
            target: RESOLVER,
            names: names.iter().map(std::string::ToString::to_string).collect(),
            clients: 4,
            duration: Duration::from_millis(700),
        };
        let ns = w.c.file();
        let r = w.on(async move { run(Some(&ns), &load).await }).unwrap();
        eprintln!("{kind}: {r:?}");
        assert!(r.answered > 10, "{kind}: {r:?}");
        assert_eq!((r.not_noerror, r.timeouts), (0, 0), "{kind}: {r:?}");
        assert!(r.p50 <= r.p99 && r.p99 > Duration::ZERO);
    }
    // Every answer of an unknown name is counted as not NOERROR.
    let load = Load {
        target: RESOLVER,
        names: vec!["nothing.test".into()],
        clients: 1,
        duration: Duration::from_millis(200),
    };
    let ns = w.c.file();
    let r = w.on(async move { run(Some(&ns), &load).await }).unwrap();
    assert!(r.answered > 0 && r.not_noerror == r.answered, "{r:?}");
}

//! Helpers of the embedded DNS tests: throw-away namespaces, a runtime
//! whose threads live in a test "host" namespace (the agent's), a fake
//! upstream DNS server, and a small DNS client built on hickory-proto.
//!
//! Topology of a [`World`]:
//! - `h`: the agent's namespace (the runtime's threads are in it); a fake
//!   upstream on 127.0.0.53 answers `hostonly.test`.
//! - `c`: the container namespace served by the resolver; veth `c0`
//!   10.77.0.1/24 to `u`.
//! - `u`: the upstream namespace: a fake upstream on 10.77.0.2:53.

#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use dataplane_agent::dns::{
    sock::{in_netns, read_framed, tcp_listener, udp_bound, write_framed},
    DnsManager, Upstream, Zone, ZoneContainer, ZoneEndpoint, ZoneLink,
};
use hickory_proto::{
    op::{Edns, Message, MessageType, Query, ResponseCode},
    rr::{rdata::A, Name, RData, Record, RecordType},
};
use nix::sched::{setns, CloneFlags};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub(crate) fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn new(tag: &str) -> Netns {
        let name = format!(
            "dpdns{}x{}{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub(crate) fn file(&self) -> File {
        File::open(self.path()).unwrap()
    }

    pub(crate) fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        sh("ip", &a);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// What the fake upstreams were asked: (lowercase name, over TCP).
pub(crate) type Log = Arc<Mutex<Vec<(String, bool)>>>;

pub(crate) struct World {
    pub(crate) h: Netns,
    pub(crate) c: Netns,
    pub(crate) u: Netns,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) mgr: Arc<DnsManager>,
    pub(crate) log: Log,
    pub(crate) host_log: Log,
}

pub(crate) const UPSTREAM: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub(crate) const HOST_UPSTREAM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
pub(crate) const EXAMPLE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(crate) const HOSTONLY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

fn ep(network: &str, ip: Ipv4Addr, aliases: &[&str]) -> ZoneEndpoint {
    ZoneEndpoint {
        network: network.into(),
        ip,
        aliases: aliases
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        ip6: None,
    }
}

/// client on front+back (link db:database), web/web2 (alias pool) on front,
/// db on back, other on elsewhere, 40 containers with alias `big` on front.
pub(crate) fn sample_containers() -> Vec<ZoneContainer> {
    let c = |name: &str, id: &str, endpoints| ZoneContainer {
        name: name.into(),
        id: id.into(),
        endpoints,
        links: vec![],
    };
    let mut client = c(
        "client",
        "c1c1c1c1c1c1c1c1",
        vec![
            ep("front", Ipv4Addr::new(10, 88, 0, 9), &[]),
            ep("back", Ipv4Addr::new(10, 89, 0, 9), &[]),
        ],
    );
    client.links.push(ZoneLink {
        target: "db".into(),
        alias: "database".into(),
    });
    let mut v = vec![
        c(
            "web",
            "0123456789abcdef",
            vec![ep("front", Ipv4Addr::new(10, 88, 0, 2), &["pool", "www"])],
        ),
        c(
            "web2",
            "fedcba9876543210",
            vec![ep("front", Ipv4Addr::new(10, 88, 0, 3), &["pool"])],
        ),
        c(
            "db",
            "dbdbdbdbdbdbdbdb",
            vec![ep("back", Ipv4Addr::new(10, 89, 0, 5), &[])],
        ),
        c(
            "other",
            "abababababababab",
            vec![ep("elsewhere", Ipv4Addr::new(10, 90, 0, 2), &[])],
        ),
        client,
    ];
    for i in 0..40u8 {
        v.push(c(
            &format!("b{i}"),
            &format!("{i:016}"),
            vec![ep("front", Ipv4Addr::new(10, 88, 1, i), &["big"])],
        ));
    }
    v
}

impl World {
    pub(crate) fn new() -> World {
        let (h, c, u) = (Netns::new("h"), Netns::new("c"), Netns::new("u"));
        c.ip(&[
            "link", "add", "c0", "type", "veth", "peer", "name", "u0", "netns", &u.name,
        ]);
        c.ip(&["addr", "add", "10.77.0.1/24", "dev", "c0"]);
        c.ip(&["link", "set", "c0", "up"]);
        u.ip(&["addr", "add", "10.77.0.2/24", "dev", "u0"]);
        u.ip(&["link", "set", "u0", "up"]);
        let hfile = Arc::new(h.file());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                setns(&*hfile, CloneFlags::CLONE_NEWNET).expect("runtime thread enters h");
            })
            .build()
            .unwrap();
        let mgr = Arc::new(DnsManager::new(
            Zone::new(&sample_containers()).into_handle(),
        ));
        let log: Log = Arc::default();
        let host_log: Log = Arc::default();
        let mut names = HashMap::new();
        names.insert("example.test".to_string(), vec![EXAMPLE]);
        names.insert(
            "big.test".to_string(),
            (0..60).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect(),
        );
        let w = World {
            h,
            c,
            u,
            rt,
            mgr,
            log,
            host_log,
        };
        w.fake_upstream(&w.u, SocketAddr::from((UPSTREAM, 53)), names, w.log.clone());
        let mut host_names = HashMap::new();
        host_names.insert("hostonly.test".to_string(), vec![HOSTONLY]);
        w.fake_upstream(
            &w.h,
            SocketAddr::from((HOST_UPSTREAM, 53)),
            host_names,
            w.host_log.clone(),
        );
        w
    }

    /// Run `f` as a task of the runtime (on its threads, in `h`).
    pub(crate) fn on<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.rt.block_on(self.rt.spawn(f)).unwrap()
    }

    pub(crate) fn start(&self, upstreams: Vec<Upstream>) {
        let (mgr, path) = (self.mgr.clone(), self.c.path());
        self.on(async move { mgr.start("client", &path, upstreams).await })
            .unwrap();
    }

    pub(crate) fn start_default(&self) {
        self.start(vec![Upstream::new(UPSTREAM.into())]);
    }

    pub(crate) fn stop(&self) {
        let mgr = self.mgr.clone();
        self.on(async move { mgr.stop("client").await });
    }

    fn fake_upstream(
        &self,
        ns: &Netns,
        addr: SocketAddr,
        names: HashMap<String, Vec<Ipv4Addr>>,
        log: Log,
    ) {
        let (udp, tcp) =
            in_netns(&ns.file(), || Ok((udp_bound(addr)?, tcp_listener(addr)?))).unwrap();
        let names = Arc::new(names);
        let (n2, l2) = (names.clone(), log.clone());
        self.rt.spawn(async move {
            let udp = tokio::net::UdpSocket::from_std(udp).unwrap();
            let mut buf = vec![0u8; 65535];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                if let Some(r) = upstream_answer(&n2, &l2, &buf[..n], false) {
                    let _ = udp.send_to(&r, peer).await;
                }
            }
        });
        self.rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(tcp).unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let (names, log) = (names.clone(), log.clone());
                tokio::spawn(async move {
                    while let Ok(Some(q)) = read_framed(&mut s).await {
                        if let Some(r) = upstream_answer(&names, &log, &q, true) {
                            let _ = write_framed(&mut s, &r).await;
                        }
                    }
                });
            }
        });
    }

    pub(crate) fn logged(&self, name: &str) -> Vec<bool> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, tcp)| *tcp)
            .collect()
    }
}

/// The fake upstream: A records for its names, NXDOMAIN otherwise; over
/// UDP it truncates at 512 bytes whatever the client's EDNS says.
fn upstream_answer(
    names: &HashMap<String, Vec<Ipv4Addr>>,
    log: &Log,
    raw: &[u8],
    tcp: bool,
) -> Option<Vec<u8>> {
    let q = Message::from_vec(raw).ok()?;
    let query = q.queries.first()?.clone();
    let name = query
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    log.lock().unwrap().push((name.clone(), tcp));
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(query.clone());
    match names.get(&name) {
        Some(ips) if query.query_type() == RecordType::A => {
            for ip in ips {
                r.add_answer(Record::from_rdata(
                    query.name().clone(),
                    30,
                    RData::A(A(*ip)),
                ));
            }
        }
        Some(_) => {}
        None => r.metadata.response_code = ResponseCode::NXDomain,
    }
    let v = r.to_vec().ok()?;
    if !tcp && v.len() > 512 {
        return r.truncate().to_vec().ok();
    }
    Some(v)
}

pub(crate) fn ask(name: &str, t: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

fn check(q: &Message, raw: &[u8]) -> Message {
    let r = Message::from_vec(raw).unwrap();
    assert_eq!(r.metadata.id, q.metadata.id);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert_eq!(r.queries, q.queries);
    r
}

pub(crate) const RESOLVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

/// Query the resolver over UDP from inside `ns`; returns the reply and its size.
pub(crate) fn udp_query(ns: &Netns, q: &Message) -> std::io::Result<(Message, usize)> {
    udp_query_within(ns, q, Duration::from_secs(5))
}

/// [`udp_query`] with a reply timeout.
pub(crate) fn udp_query_within(
    ns: &Netns,
    q: &Message,
    t: Duration,
) -> std::io::Result<(Message, usize)> {
    let s: UdpSocket = in_netns(&ns.file(), || UdpSocket::bind("127.0.0.1:0"))?;
    s.set_read_timeout(Some(t))?;
    s.connect(RESOLVER)?;
    s.send(&q.to_vec().unwrap())?;
    let mut buf = vec![0u8; 65535];
    // SO_RCVTIMEO makes recv return EINTR on any signal, even with SA_RESTART.
    let n = loop {
        match s.recv(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => break r?,
        }
    };
    Ok((check(q, &buf[..n]), n))
}

/// Query the resolver over TCP from inside `ns`.
pub(crate) fn tcp_query(ns: &Netns, q: &Message) -> std::io::Result<Message> {
    let mut s: TcpStream = in_netns(&ns.file(), || TcpStream::connect(RESOLVER))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = q.to_vec().unwrap();
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    s.write_all(&out)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(check(q, &buf))
}

pub(crate) fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

pub(crate) fn sorted(mut v: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    v.sort();
    v
}

//! A DNS load generator for the benchmarks: closed-loop UDP clients (each
//! with its own socket, one query in flight) asking a resolver for a list
//! of names in turn; it reports queries per second and latency percentiles.
//! Used against the embedded resolver and against a baseline (Docker's) in
//! the same run.

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Header, Message, MessageType, Query, ResponseCode},
    rr::{Name, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};

use super::sock::{in_netns, udp_bound};

/// A query that got no reply in this long counts as an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// What one load run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Answered queries (any response code).
    pub answered: u64,
    /// Answers that were not NOERROR (NXDOMAIN, SERVFAIL, ...).
    pub not_noerror: u64,
    /// Queries without a reply within a second.
    pub timeouts: u64,
    pub elapsed: Duration,
    pub qps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Load parameters.
#[derive(Debug, Clone)]
pub struct Load {
    pub target: SocketAddr,
    /// Names asked in turn (A queries).
    pub names: Vec<String>,
    /// Clients, each with one query in flight.
    pub clients: usize,
    pub duration: Duration,
}

fn queries(names: &[String]) -> io::Result<Vec<Vec<u8>>> {
    names
        .iter()
        .map(|n| {
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            let name = Name::from_ascii(n).map_err(io::Error::other)?;
            m.add_query(Query::query(name, RecordType::A));
            m.to_vec().map_err(io::Error::other)
        })
        .collect()
}

/// Run `load` from the namespace `ns` (the client sockets are opened
/// there; `None`: the caller's). Needs a tokio runtime.
pub async fn run(ns: Option<&File>, load: &Load) -> io::Result<LoadReport> {
    let qs = std::sync::Arc::new(queries(&load.names)?);
    if qs.is_empty() || load.clients == 0 {
        return Err(io::Error::other("no names or no clients"));
    }
    let open = || -> io::Result<Vec<std::net::UdpSocket>> {
        (0..load.clients)
            .map(|_| udp_bound(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
            .collect()
    };
    let socks = match ns {
        Some(ns) => in_netns(ns, open)?,
        None => open()?,
    };
    let start = Instant::now();
    let end = start + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in socks.into_iter().enumerate() {
        let sock = tokio::net::UdpSocket::from_std(s)?;
        sock.connect(load.target).await?;
        let qs = qs.clone();
        tasks.spawn(client(sock, qs, i, end));
    }
    let mut lat: Vec<Duration> = Vec::new();
    let mut report = LoadReport::default();
    while let Some(r) = tasks.join_next().await {
        let (l, not_ok, timeouts) = r.map_err(io::Error::other)??;
        lat.extend(l);
        report.not_noerror += not_ok;
        report.timeouts += timeouts;
    }
    report.elapsed = start.elapsed();
    report.answered = lat.len() as u64;
    report.qps = report.answered as f64 / report.elapsed.as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> Duration {
        if lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i]
    };
    report.p50 = pct(0.50);
    report.p99 = pct(0.99);
    Ok(report)
}

type ClientResult = io::Result<(Vec<Duration>, u64, u64)>;

async fn client(
    sock: tokio::net::UdpSocket,
    qs: std::sync::Arc<Vec<Vec<u8>>>,
    first: usize,
    end: Instant,
) -> ClientResult {
    let mut lat = Vec::new();
    let (mut not_ok, mut timeouts) = (0u64, 0u64);
    let mut buf = vec![0u8; 4096];
    let mut k = first;
    let mut id: u16 = rand::random();
    while Instant::now() < end {
        let mut q = qs[k % qs.len()].clone();
        k += 1;
        id = id.wrapping_add(1);
        // The id is the first header field; the rest is hickory's encoding.
        q[..2].copy_from_slice(&id.to_be_bytes());
        let t = Instant::now();
        sock.send(&q).await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, async {
            loop {
                let n = sock.recv(&mut buf).await?;
                match Header::read(&mut BinDecoder::new(&buf[..n])) {
                    Ok(h)
                        if h.metadata.id == id
                            && h.metadata.message_type == MessageType::Response =>
                    {
                        return io::Result::Ok(h.metadata.response_code);
                    }
                    _ => {}
                }
            }
        })
        .await;
        match reply {
            Ok(Ok(code)) => {
                lat.push(t.elapsed());
                if code != ResponseCode::NoError {
                    not_ok += 1;
                }
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => timeouts += 1,
        }
    }
    Ok((lat, not_ok, timeouts))
}

/// [`run`] on a runtime of its own (for tools without one), from the
/// caller's namespace.
pub fn run_blocking(load: &Load) -> io::Result<LoadReport> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(None, load))
}

/// A stand-in upstream for the benchmarks' forwarded names: answers every
/// A query on `sock` with `addr` (TTL 30), anything else with an empty
/// NOERROR. Serves until the socket fails.
pub fn serve_fixed(sock: &std::net::UdpSocket, addr: Ipv4Addr) -> io::Result<()> {
    use hickory_proto::rr::{rdata::A, RData, Record};
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = sock.recv_from(&mut buf)?;
        let Ok(q) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.add_queries(q.queries.iter().cloned());
        for question in &q.queries {
            if question.query_type() == RecordType::A {
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    30,
                    RData::A(A(addr)),
                ));
            }
        }
        if let Ok(v) = r.to_vec() {
            sock.send_to(&v, peer)?;
        }
    }
}

//! Forwarding of names that are not local to the upstream servers.
//!
//! A [`Forwarder`] owns one UDP socket (opened in a container's namespace,
//! or an ordinary socket of the agent for loopback upstreams, which live in
//! the host namespace) shared by all queries it forwards: each query goes
//! out with a fresh random id and its reply is matched by (id, upstream)
//! and checked against the question. Truncated UDP replies are retried over
//! TCP. All upstreams together get [`FORWARD_TIMEOUT`]: when none answers in
//! time the caller answers SERVFAIL.

use std::{
    collections::HashMap,
    fs::File,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};

use super::sock::{in_netns, read_framed, tcp_socket, with_timeout, write_framed};

/// Total time for one forwarded query over all upstreams.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// An upstream DNS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Asked from the host namespace (loopback servers, as Docker does),
    /// else from the container's namespace.
    pub from_host: bool,
}

impl Upstream {
    /// A server on port 53; loopback addresses are asked from the host.
    pub fn new(ip: IpAddr) -> Upstream {
        Upstream::at(SocketAddr::new(ip, 53))
    }

    pub fn at(addr: SocketAddr) -> Upstream {
        Upstream {
            addr,
            from_host: addr.ip().is_loopback(),
        }
    }
}

type Pending = HashMap<u16, (SocketAddr, oneshot::Sender<Vec<u8>>)>;

/// One UDP socket for forwarded queries, with its in-flight table.
pub struct Forwarder {
    sock: tokio::net::UdpSocket,
    pending: Mutex<Pending>,
    /// Namespace for TCP sockets (`None`: the agent's own).
    netns: Option<Arc<File>>,
}

/// Removes a query from the in-flight table however the exchange ends.
struct PendingGuard<'a> {
    fwd: &'a Forwarder,
    id: u16,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.fwd.pending.lock() {
            p.remove(&self.id);
        }
    }
}

impl Forwarder {
    /// Wrap a bound UDP socket (created in `netns`, or in the agent's own
    /// namespace for `None`) and start its receive loop. Abort the returned
    /// task to stop it.
    pub fn spawn(
        sock: std::net::UdpSocket,
        netns: Option<Arc<File>>,
    ) -> io::Result<(Arc<Forwarder>, JoinHandle<()>)> {
        sock.set_nonblocking(true)?;
        let fwd = Arc::new(Forwarder {
            sock: tokio::net::UdpSocket::from_std(sock)?,
            pending: Mutex::new(HashMap::new()),
            netns,
        });
        let task = tokio::spawn(recv_loop(fwd.clone()));
        Ok((fwd, task))
    }

    fn register(&self, up: SocketAddr) -> io::Result<(u16, oneshot::Receiver<Vec<u8>>)> {
        let mut p = self
            .pending
            .lock()
            .map_err(|_| io::Error::other("forwarder lock poisoned"))?;
        for _ in 0..64 {
            let id: u16 = rand::random();
            if let std::collections::hash_map::Entry::Vacant(e) = p.entry(id) {
                let (tx, rx) = oneshot::channel();
                e.insert((up, tx));
                return Ok((id, rx));
            }
        }
        Err(io::Error::other("too many queries in flight"))
    }

    /// One UDP exchange; returns the raw reply (with the upstream's id).
    async fn exchange_udp(
        &self,
        up: SocketAddr,
        query: &Message,
        t: Duration,
    ) -> io::Result<Vec<u8>> {
        let (id, rx) = self.register(up)?;
        let _guard = PendingGuard { fwd: self, id };
        let mut q = query.clone();
        q.metadata.id = id;
        let bytes = q.to_vec().map_err(io::Error::other)?;
        with_timeout(t, async {
            self.sock.send_to(&bytes, up).await?;
            rx.await.map_err(|_| io::Error::other("forwarder stopped"))
        })
        .await
    }

    /// One TCP exchange from this forwarder's namespace.
    async fn exchange_tcp(
        &self,
        up: SocketAddr,
        query: &Message,
        t: Duration,
    ) -> io::Result<Vec<u8>> {
        let sock = match &self.netns {
            None => tcp_socket(up)?,
            Some(ns) => {
                let ns = ns.clone();
                let std_sock = tokio::task::spawn_blocking(move || {
                    in_netns(&ns, || {
                        let s = socket2::Socket::new(
                            socket2::Domain::for_address(up),
                            socket2::Type::STREAM,
                            Some(socket2::Protocol::TCP),
                        )?;
                        s.set_nonblocking(true)?;
                        Ok(std::net::TcpStream::from(s))
                    })
                })
                .await
                .map_err(io::Error::other)??;
                tokio::net::TcpSocket::from_std_stream(std_sock)
            }
        };
        let mut q = query.clone();
        q.metadata.id = rand::random();
        let bytes = q.to_vec().map_err(io::Error::other)?;
        let id = q.metadata.id;
        with_timeout(t, async move {
            let mut stream = sock.connect(up).await?;
            write_framed(&mut stream, &bytes).await?;
            loop {
                let reply = read_framed(&mut stream)
                    .await?
                    .ok_or_else(|| io::Error::other("upstream closed the connection"))?;
                if reply.len() >= 2 && u16::from_be_bytes([reply[0], reply[1]]) == id {
                    return Ok(reply);
                }
            }
        })
        .await
    }
}

async fn recv_loop(fwd: Arc<Forwarder>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from) = match fwd.sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("dns forwarder: recv: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if n < 2 {
            continue;
        }
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        let waiter = match fwd.pending.lock() {
            Ok(mut p) => match p.get(&id) {
                Some((up, _)) if *up == from => p.remove(&id).map(|(_, tx)| tx),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(tx) = waiter {
            let _ = tx.send(buf[..n].to_vec());
        }
    }
}

/// A checked upstream reply: a response to exactly our question.
fn check_reply(query: &Message, raw: &[u8]) -> io::Result<Message> {
    let m = Message::from_vec(raw).map_err(io::Error::other)?;
    if m.metadata.message_type != MessageType::Response || m.queries != query.queries {
        return Err(io::Error::other("upstream reply does not match the query"));
    }
    Ok(m)
}

/// Where a forwarded query goes: the container namespace's forwarder and
/// the host's.
pub struct Forwarders<'a> {
    pub container: &'a Forwarder,
    pub host: &'a Forwarder,
}

/// Forward `query` to `upstreams` in order within [`FORWARD_TIMEOUT`].
/// Returns the reply with the client's id, or `None` when no upstream gave
/// a usable one (the caller answers SERVFAIL). A client that came over TCP
/// is forwarded over TCP; over UDP a truncated reply is retried over TCP.
pub async fn forward(
    fwd: Forwarders<'_>,
    upstreams: &[Upstream],
    query: &Message,
    client_tcp: bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + FORWARD_TIMEOUT;
    let mut fallback: Option<Vec<u8>> = None;
    for (i, up) in upstreams.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Share what is left among the upstreams not tried yet.
        let budget = left / u32::try_from(upstreams.len() - i).unwrap_or(1);
        let f = if up.from_host {
            fwd.host
        } else {
            fwd.container
        };
        let try_end = Instant::now() + budget;
        let mut reply = if client_tcp {
            f.exchange_tcp(up.addr, query, budget).await
        } else {
            f.exchange_udp(up.addr, query, budget).await
        };
        if let Ok(raw) = &reply {
            if !client_tcp && matches!(check_reply(query, raw), Ok(m) if m.metadata.truncation) {
                let rest = try_end.saturating_duration_since(Instant::now());
                if let Ok(full) = f.exchange_tcp(up.addr, query, rest).await {
                    reply = Ok(full);
                }
            }
        }
        let Ok(mut raw) = reply else {
            tracing::debug!("dns: upstream {} failed", up.addr);
            continue;
        };
        let Ok(m) = check_reply(query, &raw) else {
            continue;
        };
        raw[..2].copy_from_slice(&query.metadata.id.to_be_bytes());
        match m.metadata.response_code {
            ResponseCode::ServFail | ResponseCode::Refused => fallback = Some(raw),
            _ => return Some(raw),
        }
    }
    fallback
}

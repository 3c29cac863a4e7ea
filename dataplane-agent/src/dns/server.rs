//! The per-namespace resolvers on 127.0.0.11:53 and their manager.
//!
//! [`DnsManager::start`] opens, on a thread that entered the container's
//! namespace, a UDP socket and a TCP listener on 127.0.0.11:53 and a UDP
//! socket for forwarded queries; then tokio tasks of the agent serve them.
//! A resolver costs three sockets and three idle tasks. Every query reads
//! the current zone, so name changes need no restart. The namespace's `lo`
//! must be up (the engine brings it up when it creates the namespace):
//! 127.0.0.11 is local through lo's 127.0.0.0/8, no address is added.

use std::{
    collections::HashMap,
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Mutex,
    task::{JoinHandle, JoinSet},
};

use super::{
    forward::{forward, Forwarder, Forwarders, Upstream},
    handler::{fit_udp, handle, servfail, udp_limit, Handled},
    sock::{in_netns, read_framed, tcp_listener, udp_bound, write_framed},
    zone::{Zone, ZoneHandle},
};

/// The embedded resolver's address in every container namespace.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// An idle TCP client is dropped after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP clients served at once per resolver; more are refused.
const MAX_TCP_CLIENTS: usize = 64;

/// What the tasks of one resolver share.
struct Ctx {
    container: String,
    zone: ZoneHandle,
    upstreams: Vec<Upstream>,
    fwd: Arc<Forwarder>,
    host_fwd: Arc<Forwarder>,
}

impl Ctx {
    async fn forward(&self, query: &hickory_proto::op::Message, tcp: bool) -> Vec<u8> {
        let f = Forwarders {
            container: &self.fwd,
            host: &self.host_fwd,
        };
        match forward(f, &self.upstreams, query, tcp).await {
            Some(r) => r,
            None => servfail(query),
        }
    }
}

struct Resolver {
    netns: PathBuf,
    /// (device, inode) of the namespace the sockets were opened in.
    ns_id: (u64, u64),
    upstreams: Vec<Upstream>,
    tasks: Vec<JoinHandle<()>>,
}

/// (device, inode) of a namespace file: the namespace's identity.
fn ns_identity(f: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Why a running resolver no longer serves what it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Serving the namespace now bound at its path.
    Serving,
    /// A task ended (it should not): restart it.
    Died,
    /// The path now holds another namespace (recreated), or none.
    Moved,
}

/// One running resolver, as [`DnsManager::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverStatus {
    pub container: String,
    pub netns: PathBuf,
    pub upstreams: Vec<Upstream>,
    pub health: Health,
}

impl Resolver {
    /// Stop the tasks and wait until they (and their sockets) are gone.
    async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts and stops one resolver per container namespace.
pub struct DnsManager {
    zone: ZoneHandle,
    port: u16,
    host_fwd: Mutex<Option<(Arc<Forwarder>, JoinHandle<()>)>>,
    resolvers: Mutex<HashMap<String, Resolver>>,
}

impl DnsManager {
    /// Resolvers on port 53, answering from `zone`.
    pub fn new(zone: ZoneHandle) -> DnsManager {
        DnsManager::with_port(zone, 53)
    }

    /// Resolvers on another port (tests and benchmarks).
    pub fn with_port(zone: ZoneHandle, port: u16) -> DnsManager {
        DnsManager {
            zone,
            port,
            host_fwd: Mutex::new(None),
            resolvers: Mutex::new(HashMap::new()),
        }
    }

    /// The zone every resolver reads.
    pub fn zone(&self) -> &ZoneHandle {
        &self.zone
    }

    /// Replace the names; the next query of every resolver sees them.
    pub fn set_zone(&self, zone: Zone) {
        self.zone.store(Arc::new(zone));
    }

    /// The resolver's address in the namespaces.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(RESOLVER_IP, self.port))
    }

    async fn host_forwarder(&self) -> Result<Arc<Forwarder>> {
        let mut h = self.host_fwd.lock().await;
        if let Some((f, _)) = h.as_ref() {
            return Ok(f.clone());
        }
        // An ordinary socket of the agent: its namespace is the host's.
        let sock = udp_bound(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            .context("opening the host-side DNS forwarding socket")?;
        let (f, task) = Forwarder::spawn(sock, None)?;
        *h = Some((f.clone(), task));
        Ok(f)
    }

    /// Serve `container`'s namespace (bound at `netns`), forwarding other
    /// names to `upstreams` in order. Starting a running container's
    /// resolver again replaces it (e.g. new upstreams).
    pub async fn start(
        &self,
        container: &str,
        netns: &Path,
        upstreams: Vec<Upstream>,
    ) -> Result<()> {
        let host_fwd = self.host_forwarder().await?;
        let mut resolvers = self.resolvers.lock().await;
        if let Some(old) = resolvers.remove(container) {
            old.shutdown().await;
        }
        let ns = Arc::new(
            File::open(netns).with_context(|| format!("opening netns {}", netns.display()))?,
        );
        let ns_id = ns_identity(&ns).with_context(|| format!("fstat {}", netns.display()))?;
        let addr = self.addr();
        let ns2 = ns.clone();
        let (udp, tcp, fwd_sock) = tokio::task::spawn_blocking(move || {
            in_netns(&ns2, || {
                Ok((
                    udp_bound(addr)?,
                    tcp_listener(addr)?,
                    udp_bound(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?,
                ))
            })
        })
        .await
        .context("namespace thread")?
        .with_context(|| format!("binding {addr} in {}", netns.display()))?;
        let (fwd, fwd_task) = Forwarder::spawn(fwd_sock, Some(ns))?;
        let ctx = Arc::new(Ctx {
            container: container.to_string(),
            zone: self.zone.clone(),
            upstreams: upstreams.clone(),
            fwd,
            host_fwd,
        });
        let udp = Arc::new(UdpSocket::from_std(udp)?);
        let tcp = TcpListener::from_std(tcp)?;
        let tasks = vec![
            fwd_task,
            tokio::spawn(serve_udp(udp, ctx.clone())),
            tokio::spawn(serve_tcp(tcp, ctx)),
        ];
        resolvers.insert(
            container.to_string(),
            Resolver {
                netns: netns.to_path_buf(),
                ns_id,
                upstreams,
                tasks,
            },
        );
        tracing::debug!("dns: resolver for {container} on {addr}");
        Ok(())
    }

    /// Stop `container`'s resolver (its sockets are closed on return).
    pub async fn stop(&self, container: &str) {
        let old = self.resolvers.lock().await.remove(container);
        if let Some(r) = old {
            r.shutdown().await;
        }
    }

    /// Stop every resolver.
    pub async fn stop_all(&self) {
        let all: Vec<Resolver> = self
            .resolvers
            .lock()
            .await
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in all {
            r.shutdown().await;
        }
        if let Some((_, t)) = self.host_fwd.lock().await.take() {
            t.abort();
        }
    }

    /// Containers with a running resolver, and their namespaces.
    pub async fn running(&self) -> Vec<(String, PathBuf)> {
        let mut v: Vec<_> = self
            .resolvers
            .lock()
            .await
            .iter()
            .map(|(c, r)| (c.clone(), r.netns.clone()))
            .collect();
        v.sort();
        v
    }
}

impl DnsManager {
    /// Every running resolver with its upstreams and whether it still
    /// serves its namespace (a task that ended, or a namespace recreated
    /// under the same path, needs a restart): what the reconciler checks.
    pub async fn status(&self) -> Vec<ResolverStatus> {
        let resolvers = self.resolvers.lock().await;
        let mut v: Vec<ResolverStatus> = resolvers
            .iter()
            .map(|(c, r)| {
                let health = if r.tasks.iter().any(JoinHandle::is_finished) {
                    Health::Died
                } else {
                    match File::open(&r.netns).and_then(|f| ns_identity(&f)) {
                        Ok(id) if id == r.ns_id => Health::Serving,
                        _ => Health::Moved,
                    }
                };
                ResolverStatus {
                    container: c.clone(),
                    netns: r.netns.clone(),
                    upstreams: r.upstreams.clone(),
                    health,
                }
            })
            .collect();
        v.sort_by(|a, b| a.container.cmp(&b.container));
        v
    }
}

impl Drop for DnsManager {
    fn drop(&mut self) {
        if let Some((_, t)) = self.host_fwd.get_mut().take() {
            t.abort();
        }
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, ctx: Arc<Ctx>) {
    // Forwarded queries run here so that stopping the resolver ends them.
    let mut inflight = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        while inflight.try_join_next().is_some() {}
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("dns {}: udp recv: {e}", ctx.container);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let decision = handle(&ctx.zone.load(), &ctx.container, &buf[..n], true);
        match decision {
            Handled::Reply(r) => {
                let _ = sock.send_to(&r, peer).await;
            }
            Handled::Forward(q) => {
                let (sock, ctx) = (sock.clone(), ctx.clone());
                inflight.spawn(async move {
                    let r = ctx.forward(&q, false).await;
                    let _ = sock.send_to(&fit_udp(r, udp_limit(&q)), peer).await;
                });
            }
            Handled::Drop => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<Ctx>) {
    let mut clients = JoinSet::new();
    loop {
        while clients.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("dns {}: tcp accept: {e}", ctx.container);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if clients.len() >= MAX_TCP_CLIENTS {
            continue;
        }
        clients.spawn(serve_tcp_client(stream, ctx.clone()));
    }
}

async fn serve_tcp_client(mut stream: TcpStream, ctx: Arc<Ctx>) {
    let res: io::Result<()> = async {
        loop {
            let Ok(msg) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await else {
                return Ok(());
            };
            let Some(msg) = msg? else {
                return Ok(());
            };
            let reply = match handle(&ctx.zone.load(), &ctx.container, &msg, false) {
                Handled::Reply(r) => r,
                Handled::Forward(q) => ctx.forward(&q, true).await,
                Handled::Drop => continue,
            };
            write_framed(&mut stream, &reply).await?;
        }
    }
    .await;
    if let Err(e) = res {
        tracing::debug!("dns {}: tcp client: {e}", ctx.container);
    }
}

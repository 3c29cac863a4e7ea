//! Sockets in other network namespaces and DNS-over-TCP framing.
//!
//! A socket belongs to the namespace of the thread that created it, for its
//! whole life. [`in_netns`] runs socket creation on a short-lived thread
//! that entered the namespace (a tokio worker never changes namespace); the
//! sockets are then handed to tokio in the agent's threads.

use std::{
    fs::File,
    io,
    net::{SocketAddr, TcpListener, UdpSocket},
    time::Duration,
};

use nix::sched::{setns, CloneFlags};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest DNS message over TCP (the 2-byte length prefix).
pub const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// Run `f` on a fresh thread that entered the network namespace `ns`.
pub fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    })
}

/// A non-blocking UDP socket bound to `addr`.
pub fn udp_bound(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A non-blocking TCP listener on `addr` (SO_REUSEADDR, so that a restarted
/// resolver can bind while old connections linger in TIME_WAIT).
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

/// An unconnected non-blocking TCP socket for `peer`'s address family.
pub fn tcp_socket(peer: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let s = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    Ok(tokio::net::TcpSocket::from_std_stream(s.into()))
}

/// Read one length-prefixed DNS message; `None` at a clean end of stream.
pub async fn read_framed<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// Write one length-prefixed DNS message.
pub async fn write_framed<W: AsyncWriteExt + Unpin>(w: &mut W, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message over 65535 bytes"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    w.write_all(&out).await
}

/// `tokio::time::timeout` with an io error.
pub async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}

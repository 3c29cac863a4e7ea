//! The embedded DNS resolver and the containers' resolver files.
//!
//! - `zone`: the local names as a plain value built from the engine's state,
//!   and who may see whom.
//! - `handler`: one query to one answer or one forward (hickory-proto wire format).
//! - `forward`: upstream forwarding (UDP, TCP on truncation, SERVFAIL on failure).
//! - `server`: a resolver per container namespace on 127.0.0.11:53 and the
//!   `DnsManager` that starts and stops them.
//! - `sock`: sockets opened inside other namespaces, TCP framing.
//! - `bench`: a load generator (qps, p50/p99) for the benchmarks.
//! - `files`: hosts / resolv.conf / hostname per container, flag validation,
//!   and the mounts `container exec` makes.
//!
//! How the engine drives it: one `DnsManager` per agent; after every change
//! of containers or endpoints it calls `set_zone(Zone::new(..))` with the
//! containers' endpoints on user-defined networks (the default `bridge` has
//! no embedded DNS, as in Docker) and rewrites the affected containers'
//! files (`files::ContainerFiles::write`); `start(name, netns, upstreams)`
//! when a container gets its first user-network endpoint (also for every
//! such container at agent start), `stop(name)` when it loses the last one
//! or is removed, `stop_all()` at shutdown.

pub mod bench;
pub mod files;
pub mod forward;
pub mod handler;
pub mod server;
pub mod sock;
pub mod zone;

pub use forward::Upstream;
pub use server::{DnsManager, Health, ResolverStatus, RESOLVER_IP};
pub use zone::{Zone, ZoneContainer, ZoneEndpoint, ZoneHandle, ZoneLink};

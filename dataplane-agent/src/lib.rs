//! dataplane: a container network dataplane with eBPF instead of iptables.
//!
//! - `model`, `ipam`: the core model and address management (pure).
//! - `engine`: the agent's core, used by every front end.
//! - `error`: the error type every verb returns, with its kind.
//! - `kernel`: namespaces, veths, addresses and routes over netlink;
//!   `kernel6`: their IPv6 side (dual stack).
//! - `datapath`: the eBPF programs and their pinned maps and links.
//! - `endpoint_progs`: the programs on a container's host-side veth.
//! - `store`: desired state in redb.
//! - `dns`: the embedded resolver (127.0.0.11) and the containers' resolver files.
//! - `api`, `client`: HTTP/JSON over a Unix socket.
//! - `monitor`: live drop/trace events, `flows`, Prometheus metrics.
//! - `docker`: the Docker network plugin (libnetwork remote NetworkDriver and IpamDriver).
//! - `cni`: the CNI plugin `dataplane-cni` (spec types, commands, talking to the agent).
pub mod api;
pub mod api_attach;
pub mod client;
pub mod cluster;
pub mod cni;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod endpoint_progs;
pub mod engine;
pub mod error;
pub mod ipam;
pub mod kernel;
pub mod kernel6;
pub mod model;
pub mod monitor;
pub mod ports;
pub mod reconcile;
pub mod store;
pub mod vxlan;

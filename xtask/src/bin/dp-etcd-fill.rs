//! The overlay benchmark's cluster simulator (`cargo xtask bench`, section
//! "Overlay", 5,000-node sync): writes NODES simulated nodes straight into
//! etcd, each with its liveness key (one shared lease), one IPAM block of
//! the cluster network NETWORK and EPN endpoints in that block, with the
//! agent's own key schema and records (`dataplane_agent::cluster::keys`),
//! in transactions of at most 128 operations (etcd's default limit).
//!
//! `dp-etcd-fill URL PREFIX NETWORK FROM TO EPN LEASE_TTL_SECS` writes the
//! simulated nodes FROM..TO (so a cluster grows in steps); prints one JSON
//! line (nodes, endpoints, keys, seconds). Run in the underlay namespace
//! with `nsenter`.

use std::{net::Ipv4Addr, process::ExitCode, time::Instant};

use dataplane_agent::cluster::keys::{
    decode, encode, AliveRecord, BlockRecord, EndpointRecord, Keys, NetworkRecord, NodeRecord,
    RECORD_VERSION,
};
use etcd_client::{Client, PutOptions, Txn, TxnOp};
use ipnet::Ipv4Net;

/// etcd's default `--max-txn-ops`.
const TXN_OPS: usize = 128;
/// Underlay addresses of the simulated nodes (RFC 2544 benchmark range).
const NODE_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(try_main(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what}: {s:?}"))
}

async fn try_main(args: &[String]) -> Result<(), String> {
    let [url, prefix, network, from, nodes, epn, ttl] = args else {
        return Err("usage: dp-etcd-fill URL PREFIX NETWORK FROM TO EPN LEASE_TTL_SECS".into());
    };
    let from: u32 = num(from, "FROM")?;
    let (nodes, epn, ttl): (u32, u32, i64) = (
        num(nodes, "TO")?,
        num(epn, "EPN")?,
        num(ttl, "LEASE_TTL_SECS")?,
    );
    let keys = Keys::new(prefix);
    let mut client = Client::connect([url.as_str()], None)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let key = keys.network(network);
    let resp = client
        .get(key.as_str(), None)
        .await
        .map_err(|e| format!("reading {key}: {e}"))?;
    let kv = resp
        .kvs()
        .first()
        .ok_or_else(|| format!("no cluster network {network} ({key})"))?;
    let net: NetworkRecord = decode(&key, kv.value()).map_err(|e| e.to_string())?;
    let block_size = 1u32 << (32 - u32::from(net.block_len));
    if epn >= block_size {
        return Err(format!(
            "{epn} endpoints do not fit a /{} block",
            net.block_len
        ));
    }
    let base = u32::from(net.subnet.network());
    // Block 0 holds the gateway and the real nodes claim from the start of
    // the subnet: the simulated nodes take blocks from the end.
    let blocks =
        1u32 << (32 - u32::from(net.subnet.prefix_len()) - (32 - u32::from(net.block_len)));
    if nodes + 1 > blocks / 2 {
        return Err(format!(
            "{} has room for {} blocks; {nodes} nodes need the upper half",
            net.subnet, blocks
        ));
    }
    let lease = client
        .lease_grant(ttl, None)
        .await
        .map_err(|e| format!("lease grant: {e}"))?
        .id();
    let started = Instant::now();
    let mut ops: Vec<TxnOp> = Vec::with_capacity(TXN_OPS);
    let mut written = 0u64;
    for n in from..nodes {
        let mut node_ops: Vec<TxnOp> = Vec::with_capacity(3 + epn as usize);
        let name = format!("sim-{n:05}");
        let addr = Ipv4Addr::from(u32::from(NODE_BASE) + 1 + n);
        let node = NodeRecord {
            version: RECORD_VERSION,
            name: name.clone(),
            address: addr,
            vxlan_port: 4789,
        };
        node_ops.push(TxnOp::put(
            keys.node(&name),
            encode(&node).map_err(|e| e.to_string())?,
            None,
        ));
        let alive = AliveRecord {
            version: RECORD_VERSION,
            lease,
        };
        node_ops.push(TxnOp::put(
            keys.alive(&name),
            encode(&alive).map_err(|e| e.to_string())?,
            Some(PutOptions::new().with_lease(lease)),
        ));
        let start = base + (blocks - 1 - n) * block_size;
        let cidr = Ipv4Net::new(Ipv4Addr::from(start), net.block_len)
            .map_err(|e| format!("block: {e}"))?;
        let block = BlockRecord {
            version: RECORD_VERSION,
            network: network.clone(),
            cidr,
            node: name.clone(),
        };
        node_ops.push(TxnOp::put(
            keys.block(network, cidr),
            encode(&block).map_err(|e| e.to_string())?,
            None,
        ));
        for i in 0..epn {
            let ip = Ipv4Addr::from(start + 1 + i);
            let o = ip.octets();
            let ep = EndpointRecord {
                version: RECORD_VERSION,
                network: network.clone(),
                ip,
                node: name.clone(),
                mac: format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
                container: format!("{name}-c{i}"),
                ip6: None,
            };
            node_ops.push(TxnOp::put(
                keys.endpoint(network, ip),
                encode(&ep).map_err(|e| e.to_string())?,
                None,
            ));
        }
        for op in node_ops {
            ops.push(op);
            if ops.len() == TXN_OPS {
                written += flush(&mut client, &mut ops).await?;
            }
        }
    }
    written += flush(&mut client, &mut ops).await?;
    println!(
        "{{\"nodes\":{},\"endpoints\":{},\"keys\":{written},\"seconds\":{:.3}}}",
        nodes.saturating_sub(from),
        u64::from(nodes.saturating_sub(from)) * u64::from(epn),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn flush(client: &mut Client, ops: &mut Vec<TxnOp>) -> Result<u64, String> {
    if ops.is_empty() {
        return Ok(0);
    }
    let n = ops.len() as u64;
    let txn = Txn::new().and_then(std::mem::take(ops));
    client
        .txn(txn)
        .await
        .map_err(|e| format!("writing {n} keys: {e}"))?;
    Ok(n)
}

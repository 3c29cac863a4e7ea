//! Docker's legacy `--link` policy: which connections a linking container
//! may open to the linked one on `--icc=false` networks (`DP_LINKS`). Not to
//! be confused with kernel links (netdevs) or bpf_links.

use super::*;

/// DP_LINKS from the model: for every link, on every default-bridge network
/// the two share, the linked container's exposed ports (and the container
/// ports it publishes) are open to the linking one. On user-defined networks
/// a link is a name alias only and opens nothing (as Docker).
pub(crate) fn link_policy_keys(
    containers: &BTreeMap<String, Container>,
    networks: &BTreeMap<String, Network>,
) -> BTreeSet<LinkKey> {
    let mut out = BTreeSet::new();
    for c in containers.values() {
        for l in &c.links {
            let Some(t) = containers.get(&l.name) else {
                continue;
            };
            let mut open: BTreeSet<(u16, Proto)> =
                t.expose.iter().map(|e| (e.port, e.proto)).collect();
            open.extend(t.ports.iter().map(|m| (m.container_port, m.proto)));
            // Links matter only where icc is off: elsewhere all is allowed.
            let no_icc = |n: &str| networks.get(n).is_some_and(|n| !n.icc && n.builtin);
            for a in c.endpoints.iter().filter(|a| no_icc(&a.network)) {
                for b in t.endpoints.iter().filter(|b| b.network == a.network) {
                    let (src, dst) = (a.ip.octets(), b.ip.octets());
                    out.insert(LinkKey {
                        src,
                        dst,
                        port: 0,
                        proto: 0,
                        _pad: 0,
                    });
                    for (port, proto) in &open {
                        out.insert(LinkKey {
                            src,
                            dst,
                            port: *port,
                            proto: proto.number(),
                            _pad: 0,
                        });
                    }
                }
            }
        }
    }
    out
}

/// `NAME[:ALIAS]`.
pub(crate) fn parse_legacy_link(s: &str) -> ApiResult<LegacyLink> {
    let (name, alias) = match s.split_once(':') {
        Some((n, a)) => (n, a),
        None => (s, s),
    };
    ipam::validate_name("container", name).map_err(|e| bad(format!("--link: {e}")))?;
    if alias.is_empty() {
        return Err(bad(format!("--link {s:?}: empty alias")));
    }
    Ok(LegacyLink {
        name: name.into(),
        alias: alias.into(),
    })
}

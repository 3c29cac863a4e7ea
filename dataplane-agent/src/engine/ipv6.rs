//! Dual stack on the engine's side: a network's IPv6 subnet and gateway
//! (`network create --ipv6`), an endpoint's IPv6 address (`--ip6` or the
//! lowest free one), the host's IPv6 gateway addresses and the IPv6 maps
//! (`DP_ENDPOINTS6`, `DP_IF_ENDPOINTS6`, `DP_NETWORKS6`) as they should be.
//! The reconciler (`reconcile/ip6.rs`) converges the kernel to [`want`].

use std::net::Ipv6Addr;

use dataplane_common::{Endpoint6, Endpoint6Key, Network6Info, NET6_F_MASQ};
use ipnet::Ipv6Net;

use super::*;
use crate::{
    datapath::Ip6Want,
    ipam::v6::{
        check_overlap6, default_subnet6, is_v6_text, masquerade_for, parse_ip6, parse_subnet6,
        DEFAULT_POOL6_BASE, OPT_GATEWAY_MODE6,
    },
    kernel6,
};

/// The IPv6 part of a `network create`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V6Request {
    subnet: Option<Ipv6Net>,
    gateway: Option<Ipv6Addr>,
    range: Option<Ipv6Net>,
    mode: Option<String>,
}

/// Move an IPv6 value given in an IPv4 field (`subnet`, ...) to its IPv6
/// twin.
fn sort_family(v4: &mut Option<String>, v6: &mut Option<String>, flag: &str) -> ApiResult<()> {
    if v4.as_deref().is_some_and(is_v6_text) {
        if v6.is_some() {
            return Err(bad(format!("more than one IPv6 {flag} given")));
        }
        *v6 = v4.take();
    }
    if v6.as_deref().is_some_and(|s| !is_v6_text(s)) {
        return Err(bad(format!(
            "{flag} {:?} is not IPv6",
            v6.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Parse and check the IPv6 side of `req` (before any state is looked at).
/// IPv6 values need `--ipv6`, as Docker's.
pub(crate) fn parse_request(req: &mut NetworkCreate) -> ApiResult<Option<V6Request>> {
    sort_family(&mut req.subnet, &mut req.subnet6, "--subnet")?;
    sort_family(&mut req.gateway, &mut req.gateway6, "--gateway")?;
    sort_family(&mut req.ip_range, &mut req.ip_range6, "--ip-range")?;
    let any6 = req.subnet6.is_some() || req.gateway6.is_some() || req.ip_range6.is_some();
    if !req.ipv6 {
        if any6 {
            return Err(bad(
                "an IPv6 --subnet, --gateway or --ip-range needs --ipv6",
            ));
        }
        return Ok(None);
    }
    let subnet = req.subnet6.as_deref().map(parse_subnet6).transpose()?;
    let gateway = req.gateway6.as_deref().map(parse_ip6).transpose()?;
    let range = req.ip_range6.as_deref().map(parse_subnet6).transpose()?;
    if subnet.is_none() && (gateway.is_some() || range.is_some()) {
        return Err(bad(
            "an IPv6 --gateway or --ip-range needs an IPv6 --subnet",
        ));
    }
    let mode = req.options.get(OPT_GATEWAY_MODE6).cloned();
    if let Some(s) = subnet {
        // Checked here already, so that a bad option changes nothing.
        masquerade_for(s, mode.as_deref())?;
    }
    Ok(Some(V6Request {
        subnet,
        gateway,
        range,
        mode,
    }))
}

/// The IPv6 subnets of the networks, by name.
fn subnets6(g: &Inner) -> Vec<(String, Ipv6Net)> {
    g.networks
        .values()
        .filter_map(|n| n.ipv6.as_ref().map(|p| (n.name.clone(), p.net())))
        .collect()
}

/// The network's IPv6 pool: the subnet asked for (not overlapping another
/// network's, nor an address or route of the host: as for IPv4), or the
/// first free default one (never one the host uses).
pub(crate) async fn plan_pool(
    g: &Inner,
    r: Option<V6Request>,
    builtin: bool,
) -> ApiResult<Option<Ipv6Pool>> {
    let Some(r) = r else {
        return Ok(None);
    };
    let others = subnets6(g);
    let ours: Vec<Ipv6Net> = others.iter().map(|(_, s)| *s).collect();
    // The host's own prefixes, minus what our networks put there (their
    // gateways and /128 routes).
    let host: Vec<Ipv6Net> = kernel6::host_networks6(&g.host)
        .await?
        .into_iter()
        .filter(|h| !ours.iter().any(|o| o.contains(h)))
        .collect();
    let subnet = match r.subnet {
        Some(s) => {
            check_overlap6(s, others.iter().map(|(n, s)| (n.as_str(), *s)))?;
            if let Some(h) = host
                .iter()
                .find(|h| !builtin && (h.contains(&s) || s.contains(*h)))
            {
                return Err(Error::Conflict(format!(
                    "IPv6 subnet {s} overlaps {h}, an address or route of this host"
                )));
            }
            s
        }
        None => default_subnet6(&ours.iter().chain(&host).copied().collect::<Vec<_>>())?,
    };
    let masq = masquerade_for(subnet, r.mode.as_deref())?;
    Ok(Some(Ipv6Pool::new(subnet, r.range, r.gateway, masq)?))
}

/// Whether the network's IPv6 subnet came from the user (not from the
/// default `fd00:dead::/32` pool nor the default network).
fn user_subnet6(net: &Network) -> bool {
    let [a, b] = DEFAULT_POOL6_BASE;
    net.ipv6.as_ref().is_some_and(|p| {
        let s = p.subnet.segments();
        let default_pool = s[0] == a && s[1] == b;
        !(net.builtin || default_pool)
    })
}

/// `--ip6` is granted on dual-stack networks whose IPv6 subnet the user
/// configured, as Docker grants `--ip`.
pub(crate) fn parse_static(
    net: Option<&Network>,
    ip6: Option<&str>,
) -> ApiResult<Option<Ipv6Addr>> {
    let Some(s) = ip6 else {
        return Ok(None);
    };
    let ip = parse_ip6(s)?;
    let Some(net) = net else {
        return Err(bad(format!("--ip6 {ip}: needs a network")));
    };
    if net.ipv6.is_none() {
        return Err(bad(format!(
            "--ip6 {ip}: network {} has no IPv6 (create it with --ipv6)",
            net.name
        )));
    }
    if net.builtin {
        return Err(bad(format!(
            "--ip6 {ip}: user specified IP address is supported on user defined networks only"
        )));
    }
    if !user_subnet6(net) {
        return Err(bad(format!(
            "--ip6 {ip}: user specified IP address is supported only when connecting to networks with user configured subnets"
        )));
    }
    Ok(Some(ip))
}

/// Give `ep` its IPv6 address on `net` (static or the lowest free one) and
/// move `net_after`'s IPv6 cursor. Nothing on IPv4-only networks.
pub(crate) fn plan_endpoint6(
    g: &Inner,
    net: &Network,
    ip6: Option<Ipv6Addr>,
    ep: &mut Endpoint,
    net_after: &mut Network,
) -> ApiResult<()> {
    let Some(pool) = &net.ipv6 else {
        return match ip6 {
            Some(ip) => Err(bad(format!("--ip6 {ip}: network {} has no IPv6", net.name))),
            None => Ok(()),
        };
    };
    let used: BTreeSet<Ipv6Addr> = g
        .containers
        .values()
        .flat_map(|c| c.endpoints.iter())
        .filter(|e| e.network == net.name)
        .filter_map(|e| e.ip6)
        .collect();
    let ip = match ip6 {
        Some(ip) => {
            pool.check_static(ip, &used)?;
            ip
        }
        None => pool.allocate(&used)?,
    };
    ep.ip6 = Some(ip);
    ep.prefix_len6 = pool.prefix_len;
    ep.gateway6 = Some(pool.gateway);
    if let Some(p) = net_after.ipv6.as_mut() {
        p.last_ip = Some(ip);
    }
    Ok(())
}

/// The `DP_NETWORKS6` value of a dual-stack network.
pub(crate) fn network6_info(p: &Ipv6Pool) -> Network6Info {
    Network6Info {
        subnet: p.subnet.octets(),
        gateway: p.gateway.octets(),
        prefix_len: u32::from(p.prefix_len),
        flags: if p.masquerade { NET6_F_MASQ } else { 0 },
    }
}

/// Host side of a new dual-stack network: its gateway on `dp0` and its
/// `DP_NETWORKS6` entry.
pub(crate) async fn add_network6(g: &mut Inner, net: &Network) -> Result<()> {
    let Some(p) = &net.ipv6 else {
        return Ok(());
    };
    kernel6::add_gateway6(&g.host, p.gateway).await?;
    g.dp.ip6.upsert_network6(net.id, network6_info(p))
}

/// Undo [`add_network6`].
pub(crate) async fn remove_network6(g: &mut Inner, net: &Network) {
    let Some(p) = &net.ipv6 else {
        return;
    };
    g.dp.ip6.remove_network6(net.id);
    if let Err(e) = kernel6::del_gateway6(&g.host, p.gateway).await {
        warn!(network = %net.name, "removing IPv6 gateway {}: {e:#}", p.gateway);
    }
}

/// The endpoint's `DP_ENDPOINTS6`/`DP_IF_ENDPOINTS6` entries (its IPv4
/// record `info` under its IPv6 address).
pub(crate) fn add_endpoint6(g: &mut Inner, ep: &Endpoint, info: EndpointInfo) -> Result<()> {
    match ep.ip6 {
        Some(ip) => g.dp.ip6.upsert_endpoint6(ip, info),
        None => Ok(()),
    }
}

/// Undo [`add_endpoint6`] (before the ifindex is forgotten).
pub(crate) fn remove_endpoint6(g: &mut Inner, ep: &Endpoint) {
    if let Some(ip) = ep.ip6 {
        let ifindex = g.ifindexes.get(&ep.host_interface).copied();
        g.dp.ip6.remove_endpoint6(ip, ifindex);
    }
}

/// What the IPv6 maps should hold, from the networks, the endpoints with
/// an IPv6 address whose host veth exists, and their `DP_ENDPOINTS`
/// records (`v4`, by IPv4 address).
pub(crate) fn want(g: &Inner, v4: &HashMap<[u8; 4], EndpointInfo>) -> Ip6Want {
    let mut w = Ip6Want::default();
    for n in g.networks.values() {
        if let Some(p) = &n.ipv6 {
            w.networks6.insert(n.id, network6_info(p));
        }
    }
    for ep in g.containers.values().flat_map(|c| c.endpoints.iter()) {
        let Some(ip6) = ep.ip6 else { continue };
        let Some(ifindex) = g.ifindexes.get(&ep.host_interface).copied() else {
            continue;
        };
        let Some(info) = v4.get(&ep.ip.octets()).filter(|i| i.ifindex == ifindex) else {
            continue;
        };
        w.endpoints6
            .insert(Endpoint6Key { ip: ip6.octets() }, *info);
        w.if_endpoints6
            .insert(ifindex, Endpoint6 { ip: ip6.octets() });
    }
    w
}

/// The IPv6 gateways the host should hold, and the /128 routes to the
/// endpoints (IPv6 address -> (host veth ifindex, gateway)).
pub(crate) fn want_host(g: &Inner) -> (BTreeSet<Ipv6Addr>, Vec<(Ipv6Addr, u32, Ipv6Addr)>) {
    let gws = g
        .networks
        .values()
        .filter_map(|n| n.ipv6.as_ref().map(|p| p.gateway))
        .collect();
    let routes = g
        .containers
        .values()
        .flat_map(|c| c.endpoints.iter())
        .filter_map(|ep| {
            let idx = g.ifindexes.get(&ep.host_interface)?;
            Some((ep.ip6?, *idx, ep.gateway6?))
        })
        .collect();
    (gws, routes)
}

/// The IPv6 view of a network: `EnableIPv6`, the `IPAM.Config` entries
/// and the IPv6 egress mode.
pub(crate) fn fill_view(n: &Network, v: &mut NetworkView) {
    v.enable_ipv6 = n.ipv6.is_some();
    v.ipam.driver = "default".into();
    v.ipam.config.push(IpamConfigView {
        subnet: n.pool.subnet.to_string(),
        gateway: n.pool.gateway.to_string(),
        ip_range: n.pool.range.map(|r| r.to_string()).unwrap_or_default(),
    });
    if let Some(p) = &n.ipv6 {
        v.ipam.config.push(IpamConfigView {
            subnet: p.net().to_string(),
            gateway: p.gateway.to_string(),
            ip_range: p.range_net().map(|r| r.to_string()).unwrap_or_default(),
        });
        v.gateway_mode_ipv6 = Some(if p.masquerade { "nat" } else { "routed" }.into());
    }
}

/// Fill the Docker-named IPv6 fields of an endpoint's view.
pub(crate) fn fill_endpoint_view(e: &Endpoint, v: &mut EndpointView) {
    if let Some(ip) = e.ip6 {
        v.global_ipv6_address = ip.to_string();
        v.global_ipv6_prefix_len = e.prefix_len6;
    }
    if let Some(gw) = e.gateway6 {
        v.ipv6_gateway = gw.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(subnets: &[&str], ipv6: bool) -> NetworkCreate {
        let mut r = NetworkCreate {
            name: "n".into(),
            ipv6,
            ..Default::default()
        };
        for s in subnets {
            if r.subnet.is_none() {
                r.subnet = Some((*s).into());
            } else {
                r.subnet6 = Some((*s).into());
            }
        }
        r
    }

    #[test]
    fn networks_stored_before_ipv6_still_load() {
        let mut n = Network {
            id: 3,
            name: "old".into(),
            driver: "bridge".into(),
            pool: Pool::new("10.9.0.0/24".parse().unwrap(), None, None).unwrap(),
            mtu: 1500,
            internal: false,
            icc: true,
            last_ip: None,
            builtin: false,
            user_subnet: true,
            masquerade: true,
            host_binding: None,
            parent: None,
            ipv6: None,
        };
        let mut v = serde_json::to_value(&n).unwrap();
        v.as_object_mut().unwrap().remove("ipv6");
        assert_eq!(serde_json::from_value::<Network>(v).unwrap(), n);
        // And a dual-stack one round-trips (masquerade defaults to true).
        n.ipv6 = Some(Ipv6Pool::new("fd00:1::/64".parse().unwrap(), None, None, true).unwrap());
        let mut v = serde_json::to_value(&n).unwrap();
        v["ipv6"].as_object_mut().unwrap().remove("masquerade");
        assert_eq!(serde_json::from_value::<Network>(v).unwrap(), n);
    }

    #[test]
    fn families_are_sorted_and_need_ipv6() {
        let mut r = req(&["fd00:1::/64"], true);
        let v = parse_request(&mut r).unwrap().unwrap();
        assert_eq!(r.subnet, None);
        assert_eq!(v.subnet, Some("fd00:1::/64".parse().unwrap()));
        let mut r = req(&["fd00:1::/64"], false);
        assert!(parse_request(&mut r)
            .unwrap_err()
            .to_string()
            .contains("needs --ipv6"));
        let mut r = req(&["10.0.0.0/24"], false);
        assert_eq!(parse_request(&mut r).unwrap(), None);
        let mut r = req(&["10.0.0.0/24"], true);
        assert_eq!(parse_request(&mut r).unwrap().unwrap().subnet, None);
        let mut r = req(&["10.0.0.0/24", "10.1.0.0/24"], true);
        assert!(parse_request(&mut r).is_err());
        let mut r = req(&["10.0.0.0/24"], true);
        r.gateway6 = Some("fd00::1".into());
        assert!(parse_request(&mut r).is_err());
        let mut r = req(&["fd00:1::/64"], true);
        r.options
            .insert(OPT_GATEWAY_MODE6.into(), "sideways".into());
        assert!(parse_request(&mut r).is_err());
    }
}

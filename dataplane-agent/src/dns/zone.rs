//! The names the embedded resolver answers, as a plain value.
//!
//! The engine builds a [`Zone`] from its state (every container with its
//! endpoints on networks that have embedded DNS, its network aliases and its
//! `--link` aliases) and publishes it through a [`ZoneHandle`]; resolvers
//! read the current zone for every query, so a new zone applies to the next
//! query without restarting anything.
//!
//! Visibility follows Docker's rules: a container sees the containers that
//! share a user-defined network with it, by container name, network alias,
//! 12-character id and `NAME.NETWORK`, plus the aliases of its own `--link`s.
//! Names are case-insensitive. The asker's networks are tried in endpoint
//! order and the first network that knows the name answers; several
//! containers with one alias all answer, in random order.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use arc_swap::ArcSwap;
use rand::seq::SliceRandom;

/// TTL of local answers, as Docker's.
pub const LOCAL_TTL: u32 = 600;

/// Length of the short container id that resolves like a name.
pub const SHORT_ID_LEN: usize = 12;

/// The zone shared by all resolvers; `store` a new one to change names.
pub type ZoneHandle = Arc<ArcSwap<Zone>>;

/// One container as the resolver sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneContainer {
    pub name: String,
    /// The full id (its first 12 characters resolve too).
    pub id: String,
    /// Endpoints on networks with embedded DNS, the primary one first.
    pub endpoints: Vec<ZoneEndpoint>,
    /// `--link TARGET:ALIAS` made by this container (visible to it only).
    pub links: Vec<ZoneLink>,
}

/// A container's address on one network, with its `--network-alias`es there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneEndpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    pub aliases: Vec<String>,
    /// Its IPv6 address on a dual-stack network (AAAA answers).
    pub ip6: Option<Ipv6Addr>,
}

/// `--link TARGET:ALIAS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneLink {
    pub target: String,
    pub alias: String,
}

/// Result of a forward lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A local name: its IPv4 addresses (shuffled when several).
    Local(Vec<Ipv4Addr>),
    /// Not a name this asker can see: forward it upstream.
    NotLocal,
}

#[derive(Debug, Default)]
struct NetworkNames {
    /// Lowercase name, alias or short id -> addresses (no duplicates).
    names: HashMap<String, Vec<Ipv4Addr>>,
    /// Address -> the container's name as given (for PTR).
    reverse: HashMap<Ipv4Addr, String>,
    /// Lowercase container name -> its address on this network.
    containers: HashMap<String, Ipv4Addr>,
}

/// Every local name, indexed for lookups by asker.
#[derive(Debug, Default)]
pub struct Zone {
    /// Network name -> its names. Only networks with embedded DNS.
    networks: HashMap<String, NetworkNames>,
    /// Lowercase container name -> its DNS networks, in endpoint order.
    membership: HashMap<String, Vec<String>>,
    /// Lowercase container name -> (lowercase alias, lowercase target).
    links: HashMap<String, Vec<(String, String)>>,
    /// Dual stack: an endpoint's IPv4 address (its identity in the zone)
    /// -> its IPv6 address, and back.
    ip6_of: HashMap<Ipv4Addr, Ipv6Addr>,
    ip4_of: HashMap<Ipv6Addr, Ipv4Addr>,
}

fn push_unique(v: &mut Vec<Ipv4Addr>, ip: Ipv4Addr) {
    if !v.contains(&ip) {
        v.push(ip);
    }
}

impl Zone {
    /// Build the zone from the containers' DNS view. Endpoints on networks
    /// without embedded DNS must be left out by the caller.
    pub fn new(containers: &[ZoneContainer]) -> Zone {
        let mut zone = Zone::default();
        for c in containers {
            let cname = c.name.to_ascii_lowercase();
            let short_id: String =
                c.id.chars()
                    .take(SHORT_ID_LEN)
                    .collect::<String>()
                    .to_ascii_lowercase();
            let mut nets = Vec::new();
            for ep in &c.endpoints {
                let n = zone.networks.entry(ep.network.clone()).or_default();
                let mut keys = vec![cname.clone()];
                if !short_id.is_empty() {
                    keys.push(short_id.clone());
                }
                keys.extend(ep.aliases.iter().map(|a| a.to_ascii_lowercase()));
                for k in keys {
                    push_unique(n.names.entry(k).or_default(), ep.ip);
                }
                n.reverse.insert(ep.ip, c.name.clone());
                if let Some(ip6) = ep.ip6 {
                    zone.ip6_of.insert(ep.ip, ip6);
                    zone.ip4_of.insert(ip6, ep.ip);
                }
                n.containers.insert(cname.clone(), ep.ip);
                if !nets.contains(&ep.network) {
                    nets.push(ep.network.clone());
                }
            }
            zone.membership.insert(cname.clone(), nets);
            let links = c
                .links
                .iter()
                .map(|l| (l.alias.to_ascii_lowercase(), l.target.to_ascii_lowercase()))
                .collect::<Vec<_>>();
            if !links.is_empty() {
                zone.links.insert(cname, links);
            }
        }
        zone
    }

    /// A new handle holding this zone.
    pub fn into_handle(self) -> ZoneHandle {
        Arc::new(ArcSwap::from_pointee(self))
    }

    /// The DNS networks of `asker` (lowercase name), in endpoint order.
    fn networks_of(&self, asker: &str) -> impl Iterator<Item = (&str, &NetworkNames)> {
        self.membership
            .get(asker)
            .into_iter()
            .flatten()
            .filter_map(|n| self.networks.get(n).map(|names| (n.as_str(), names)))
    }

    /// Addresses of `qname` (any case, with or without the final dot) as
    /// seen by the container `asker`.
    pub fn lookup(&self, asker: &str, qname: &str) -> Answer {
        let asker = asker.to_ascii_lowercase();
        let q = normalize(qname);
        if q.is_empty() {
            return Answer::NotLocal;
        }
        let link_target = self
            .links
            .get(&asker)
            .and_then(|l| l.iter().find(|(alias, _)| *alias == q))
            .map(|(_, target)| target.as_str());
        // Link aliases and names, network by network (Docker's order).
        for (_, n) in self.networks_of(&asker) {
            if let Some(ip) = link_target.and_then(|t| n.containers.get(t)) {
                return Answer::Local(vec![*ip]);
            }
            if let Some(ips) = n.names.get(&q) {
                return Answer::Local(shuffled(ips));
            }
        }
        // NAME.NETWORK for the asker's own networks.
        for (net, n) in self.networks_of(&asker) {
            let net_lc = net.to_ascii_lowercase();
            let Some(prefix) = q
                .strip_suffix(net_lc.as_str())
                .and_then(|p| p.strip_suffix('.'))
            else {
                continue;
            };
            if let Some(ips) = n.names.get(prefix) {
                return Answer::Local(shuffled(ips));
            }
        }
        Answer::NotLocal
    }

    /// The name of `ip` for PTR (`NAME.NETWORK`), if a network shared with
    /// `asker` holds it.
    pub fn reverse(&self, asker: &str, ip: Ipv4Addr) -> Option<String> {
        let asker = asker.to_ascii_lowercase();
        self.networks_of(&asker)
            .find_map(|(net, n)| n.reverse.get(&ip).map(|name| format!("{name}.{net}")))
    }

    /// The IPv6 address of the endpoint whose IPv4 address is `ip` (AAAA:
    /// the names resolve as for A, then map to IPv6; a name without one
    /// has no AAAA data, as in Docker's resolver).
    pub fn ip6_of(&self, ip: Ipv4Addr) -> Option<Ipv6Addr> {
        self.ip6_of.get(&ip).copied()
    }

    /// The name of the IPv6 address `ip` for PTR (ip6.arpa).
    pub fn reverse6(&self, asker: &str, ip: Ipv6Addr) -> Option<String> {
        let v4 = *self.ip4_of.get(&ip)?;
        self.reverse(asker, v4)
    }

    /// Number of containers in the zone.
    pub fn len(&self) -> usize {
        self.membership.len()
    }

    pub fn is_empty(&self) -> bool {
        self.membership.is_empty()
    }
}

fn normalize(qname: &str) -> String {
    qname
        .strip_suffix('.')
        .unwrap_or(qname)
        .to_ascii_lowercase()
}

fn shuffled(ips: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mut v = ips.to_vec();
    if v.len() > 1 {
        v.shuffle(&mut rand::rng());
    }
    v
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ep(network: &str, ip: [u8; 4], aliases: &[&str]) -> ZoneEndpoint {
        ZoneEndpoint {
            network: network.into(),
            ip: Ipv4Addr::from(ip),
            aliases: aliases
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            ip6: None,
        }
    }

    fn c(name: &str, id: &str, endpoints: Vec<ZoneEndpoint>) -> ZoneContainer {
        ZoneContainer {
            name: name.into(),
            id: id.into(),
            endpoints,
            links: vec![],
        }
    }

    fn sample() -> Zone {
        let mut client = c(
            "client",
            "cccccccccccccccccccccc",
            vec![
                ep("front", [10, 1, 0, 9], &[]),
                ep("back", [10, 2, 0, 9], &[]),
            ],
        );
        client.links.push(ZoneLink {
            target: "db".into(),
            alias: "Database".into(),
        });
        Zone::new(&[
            c(
                "Web",
                "0123456789abcdef0123",
                vec![ep("front", [10, 1, 0, 2], &["www", "pool"])],
            ),
            c(
                "web2",
                "1111111111112222",
                vec![ep("front", [10, 1, 0, 3], &["pool"])],
            ),
            c("db", "dddddddddddd99", vec![ep("back", [10, 2, 0, 5], &[])]),
            c(
                "other",
                "eeeeeeeeeeee",
                vec![ep("elsewhere", [10, 3, 0, 2], &[])],
            ),
            client,
            c("lonely", "ffffffffffff", vec![]),
        ])
    }

    fn ips(a: Answer) -> Vec<Ipv4Addr> {
        match a {
            Answer::Local(mut v) => {
                v.sort();
                v
            }
            Answer::NotLocal => vec![],
        }
    }

    #[test]
    fn ipv6_addresses_follow_the_names_and_reverse() {
        let mut a = ep("dual", [10, 5, 0, 2], &["www"]);
        a.ip6 = Some("fd00:5::2".parse().unwrap());
        let z = Zone::new(&[
            c("a", "aaaaaaaaaaaaaa", vec![a]),
            c("b", "bbbbbbbbbbbbbb", vec![ep("dual", [10, 5, 0, 3], &[])]),
        ]);
        let Answer::Local(ips) = z.lookup("b", "www") else {
            panic!("www unknown");
        };
        assert_eq!(ips, vec![Ipv4Addr::new(10, 5, 0, 2)]);
        assert_eq!(z.ip6_of(ips[0]), Some("fd00:5::2".parse().unwrap()));
        assert_eq!(z.ip6_of(Ipv4Addr::new(10, 5, 0, 3)), None);
        assert_eq!(
            z.reverse6("b", "fd00:5::2".parse().unwrap()).as_deref(),
            Some("a.dual")
        );
        assert_eq!(z.reverse6("b", "fd00:5::9".parse().unwrap()), None);
        // Not visible to a container on no shared network.
        assert_eq!(z.reverse6("nobody", "fd00:5::2".parse().unwrap()), None);
    }

    #[test]
    fn container_name_resolves_case_insensitively_with_or_without_dot() {
        let z = sample();
        for q in ["web", "WEB", "Web.", "wEb"] {
            assert_eq!(
                z.lookup("client", q),
                Answer::Local(vec![Ipv4Addr::new(10, 1, 0, 2)])
            );
        }
        // The asker's name is case-insensitive too.
        assert_eq!(ips(z.lookup("CLIENT", "web")), [Ipv4Addr::new(10, 1, 0, 2)]);
    }

    #[test]
    fn alias_and_short_id_resolve() {
        let z = sample();
        assert_eq!(ips(z.lookup("client", "www")), [Ipv4Addr::new(10, 1, 0, 2)]);
        assert_eq!(
            ips(z.lookup("client", "0123456789AB")),
            [Ipv4Addr::new(10, 1, 0, 2)]
        );
        // Only the 12-character form, not longer prefixes or the full id.
        assert_eq!(z.lookup("client", "0123456789abc"), Answer::NotLocal);
        assert_eq!(z.lookup("client", "0123456789abcdef0123"), Answer::NotLocal);
    }

    #[test]
    fn shared_alias_returns_every_address_shuffled() {
        let z = sample();
        assert_eq!(
            ips(z.lookup("client", "pool")),
            [Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3)]
        );
        let mut orders = HashSet::new();
        for _ in 0..200 {
            if let Answer::Local(v) = z.lookup("client", "pool") {
                orders.insert(v);
            }
        }
        assert_eq!(orders.len(), 2, "both orders appear over 200 lookups");
    }

    #[test]
    fn only_containers_sharing_a_network_are_visible() {
        let z = sample();
        assert_eq!(z.lookup("client", "other"), Answer::NotLocal);
        assert_eq!(z.lookup("other", "web"), Answer::NotLocal);
        assert_eq!(z.lookup("web", "db"), Answer::NotLocal);
        assert_eq!(ips(z.lookup("db", "client")), [Ipv4Addr::new(10, 2, 0, 9)]);
        // A container without DNS networks sees nothing, and an unknown asker neither.
        assert_eq!(z.lookup("lonely", "web"), Answer::NotLocal);
        assert_eq!(z.lookup("nobody", "web"), Answer::NotLocal);
        // Its own name resolves.
        assert_eq!(ips(z.lookup("web", "web")), [Ipv4Addr::new(10, 1, 0, 2)]);
    }

    #[test]
    fn first_shared_network_in_endpoint_order_answers() {
        let z = sample();
        // client is on front (first) and back: its own name resolves to front's address
        // for web (front only) and to back's for db (back only).
        assert_eq!(ips(z.lookup("web", "client")), [Ipv4Addr::new(10, 1, 0, 9)]);
        assert_eq!(
            ips(z.lookup("client", "client")),
            [Ipv4Addr::new(10, 1, 0, 9)]
        );
    }

    #[test]
    fn link_alias_is_visible_to_the_linking_container_only() {
        let z = sample();
        assert_eq!(
            ips(z.lookup("client", "database")),
            [Ipv4Addr::new(10, 2, 0, 5)]
        );
        assert_eq!(
            ips(z.lookup("client", "DATABASE.")),
            [Ipv4Addr::new(10, 2, 0, 5)]
        );
        assert_eq!(z.lookup("web", "database"), Answer::NotLocal);
        assert_eq!(z.lookup("db", "database"), Answer::NotLocal);
    }

    #[test]
    fn name_dot_network_resolves_on_that_network() {
        let z = sample();
        assert_eq!(
            ips(z.lookup("client", "web.front")),
            [Ipv4Addr::new(10, 1, 0, 2)]
        );
        assert_eq!(
            ips(z.lookup("client", "Client.Back.")),
            [Ipv4Addr::new(10, 2, 0, 9)]
        );
        assert_eq!(
            ips(z.lookup("client", "pool.front")),
            [Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3)]
        );
        // Wrong network for the name, or a network the asker is not on.
        assert_eq!(z.lookup("client", "web.back"), Answer::NotLocal);
        assert_eq!(z.lookup("client", "other.elsewhere"), Answer::NotLocal);
        assert_eq!(z.lookup("client", "web.example.com"), Answer::NotLocal);
    }

    #[test]
    fn ptr_names_the_primary_name_on_shared_networks_only() {
        let z = sample();
        assert_eq!(
            z.reverse("client", Ipv4Addr::new(10, 1, 0, 2)).as_deref(),
            Some("Web.front")
        );
        assert_eq!(
            z.reverse("db", Ipv4Addr::new(10, 2, 0, 9)).as_deref(),
            Some("client.back")
        );
        assert_eq!(z.reverse("client", Ipv4Addr::new(10, 3, 0, 2)), None);
        assert_eq!(z.reverse("client", Ipv4Addr::new(10, 1, 0, 200)), None);
    }

    #[test]
    fn handle_swaps_the_zone_for_the_next_lookup() {
        let h = sample().into_handle();
        assert_eq!(ips(h.load().lookup("client", "web")).len(), 1);
        h.store(Arc::new(Zone::new(&[])));
        assert_eq!(h.load().lookup("client", "web"), Answer::NotLocal);
        assert!(h.load().is_empty());
    }

    #[test]
    fn empty_name_is_not_local() {
        assert_eq!(sample().lookup("client", "."), Answer::NotLocal);
    }
}

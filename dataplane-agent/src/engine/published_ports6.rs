//! Published ports on IPv6: a mapping published on every host address
//! (`-p 8080:80`, host address 0.0.0.0) of a container with an IPv6
//! address is also published on every host IPv6 address (`[::]:8080`,
//! as Docker does with ip6tables), to the container's IPv6 address on its
//! first endpoint. Mappings bound to one IPv4 address (or 127.0.0.1) have
//! no IPv6 side.

use std::collections::HashMap;

use dataplane_common::{PortKey6, PortTarget6};

use super::Inner;

/// `DP_PORTS6` as the containers' mappings say.
pub(crate) fn entries(g: &Inner) -> HashMap<PortKey6, PortTarget6> {
    let mut out = HashMap::new();
    for c in g.containers.values() {
        let Some(ip6) = c.endpoints.first().and_then(|e| e.ip6) else {
            continue;
        };
        for m in c.ports.iter().filter(|m| m.host_ip.is_unspecified()) {
            out.insert(
                PortKey6 {
                    ip: [0; 16],
                    port: m.host_port,
                    proto: m.proto.number(),
                    _pad: 0,
                },
                PortTarget6 {
                    ip: ip6.octets(),
                    port: m.container_port,
                    _pad: 0,
                },
            );
        }
    }
    out
}

//! The iptables rule set Docker programs for a bridge network with published
//! ports, rendered for `iptables-restore`.
//!
//! Source: Docker's libnetwork bridge driver, iptables firewaller, as
//! programmed by docker 28 with its defaults (iptables=true, ip-forward=true,
//! userland-proxy=true, icc=true, ip-masq=true): the nat table jumps from
//! PREROUTING (dst-type LOCAL) and OUTPUT (dst-type LOCAL, not 127/8) to a
//! DOCKER chain that holds one DNAT rule per published port; POSTROUTING
//! masquerades the bridge subnet leaving through another interface; the
//! filter FORWARD chain (policy DROP) jumps to DOCKER-USER then
//! DOCKER-FORWARD, which runs DOCKER-CT (conntrack RELATED,ESTABLISHED
//! ACCEPT), DOCKER-ISOLATION-STAGE-1/2 (traffic between different bridge
//! networks), DOCKER-BRIDGE -> DOCKER (one ACCEPT per published port, then a
//! DROP of everything else entering the bridge from outside) and finally
//! accepts what leaves the bridge; the raw table drops packets addressed
//! directly to a container IP that did not come from the bridge (docker 28's
//! "direct routing" protection, one rule per container).

use std::fmt::Write as _;

/// One published port: host port -> container IP:port (TCP).
#[derive(Clone, Debug)]
pub(super) struct PortMap {
    pub host_port: u16,
    pub container_ip: String,
    pub container_port: u16,
}

/// A legacy `--link`: `client` may open TCP connections to `server` on
/// `ports` (the server's exposed ports).
#[derive(Clone, Debug)]
pub(super) struct Link {
    pub client_ip: String,
    pub server_ip: String,
    pub ports: Vec<u16>,
}

pub(super) struct DockerRules<'a> {
    pub bridge: &'a str,
    pub subnet: &'a str,
    pub container_ips: &'a [String],
    pub ports: &'a [PortMap],
    /// Inter-container communication on the bridge (docker's `icc`).
    pub icc: bool,
    pub links: &'a [Link],
}

impl DockerRules<'_> {
    /// The whole `iptables-restore` input (raw, nat and filter tables).
    pub(super) fn render(&self) -> String {
        self.render_family(false)
    }

    /// The same rule set for `ip6tables-restore`, as Docker 27+ programs it
    /// with `ip6tables=true` (addresses are IPv6: /128 host masks, `::1`
    /// instead of 127.0.0.0/8, `[addr]:port` DNAT targets).
    pub(super) fn render6(&self) -> String {
        self.render_family(true)
    }

    fn render_family(&self, v6: bool) -> String {
        let br = self.bridge;
        let host = if v6 { "128" } else { "32" };
        let to = |ip: &str, port: u16| {
            if v6 {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        let mut s = String::with_capacity(200 * self.ports.len() + 4096);
        s.push_str("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        for ip in self.container_ips {
            let _ = writeln!(s, "-A PREROUTING -d {ip}/{host} ! -i {br} -j DROP");
        }
        s.push_str("COMMIT\n");

        s.push_str(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n",
        );
        s.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n");
        let loopback = if v6 { "::1/128" } else { "127.0.0.0/8" };
        let _ = writeln!(
            s,
            "-A OUTPUT ! -d {loopback} -m addrtype --dst-type LOCAL -j DOCKER"
        );
        let _ = writeln!(
            s,
            "-A POSTROUTING -s {} ! -o {br} -j MASQUERADE",
            self.subnet
        );
        let _ = writeln!(s, "-A DOCKER -i {br} -j RETURN");
        for p in self.ports {
            let _ = writeln!(
                s,
                "-A DOCKER ! -i {br} -p tcp -m tcp --dport {} -j DNAT --to-destination {}",
                p.host_port,
                to(&p.container_ip, p.container_port)
            );
        }
        s.push_str("COMMIT\n");

        s.push_str(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :DOCKER - [0:0]\n:DOCKER-BRIDGE - [0:0]\n:DOCKER-CT - [0:0]\n\
             :DOCKER-FORWARD - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n\
             :DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n",
        );
        s.push_str("-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n");
        // Links come first in DOCKER: the pair of ACCEPT rules Docker's
        // legacy-link code installs per exposed port (request and reply).
        for l in self.links {
            for p in &l.ports {
                let _ = writeln!(
                    s,
                    "-A DOCKER -s {}/{host} -d {}/{host} -i {br} -o {br} -p tcp -m tcp --dport {p} -j ACCEPT",
                    l.client_ip, l.server_ip
                );
                let _ = writeln!(
                    s,
                    "-A DOCKER -s {}/{host} -d {}/{host} -i {br} -o {br} -p tcp -m tcp --sport {p} -j ACCEPT",
                    l.server_ip, l.client_ip
                );
            }
        }
        for p in self.ports {
            let _ = writeln!(
                s,
                "-A DOCKER -d {}/{host} ! -i {br} -o {br} -p tcp -m tcp --dport {} -j ACCEPT",
                p.container_ip, p.container_port
            );
        }
        let _ = writeln!(s, "-A DOCKER ! -i {br} -o {br} -j DROP");
        let _ = writeln!(s, "-A DOCKER-BRIDGE -o {br} -j DOCKER");
        let _ = writeln!(
            s,
            "-A DOCKER-CT -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        s.push_str("-A DOCKER-FORWARD -j DOCKER-CT\n");
        s.push_str("-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1\n");
        s.push_str("-A DOCKER-FORWARD -j DOCKER-BRIDGE\n");
        if self.icc {
            let _ = writeln!(s, "-A DOCKER-FORWARD -i {br} -j ACCEPT");
        } else {
            // docker 28 setIcc(false): drop bridge-to-itself, accept the rest
            // leaving the bridge.
            let _ = writeln!(s, "-A DOCKER-FORWARD -i {br} -o {br} -j DROP");
            let _ = writeln!(s, "-A DOCKER-FORWARD -i {br} ! -o {br} -j ACCEPT");
        }
        let _ = writeln!(
            s,
            "-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"
        );
        let _ = writeln!(s, "-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP");
        s.push_str("-A DOCKER-USER -j RETURN\n");
        s.push_str("COMMIT\n");
        s
    }
}

/// The rule set with two example ports, for the report.
pub(super) fn example(bridge: &str, subnet: &str, c_ip: &str) -> String {
    DockerRules {
        bridge,
        subnet,
        container_ips: &[c_ip.to_string()],
        ports: &[PortMap {
            host_port: 7000,
            container_ip: c_ip.to_string(),
            container_port: 7000,
        }],
        icc: true,
        links: &[],
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_port_is_last_in_both_chains() {
        let ports: Vec<PortMap> = (0..3)
            .map(|i| PortMap {
                host_port: 20000 + i,
                container_ip: "172.18.0.4".into(),
                container_port: 20000 + i,
            })
            .collect();
        let r = DockerRules {
            bridge: "br-bench",
            subnet: "172.18.0.0/16",
            container_ips: &["172.18.0.4".into()],
            ports: &ports,
            icc: true,
            links: &[],
        }
        .render();
        let dnat: Vec<&str> = r.lines().filter(|l| l.contains("-j DNAT")).collect();
        assert_eq!(dnat.len(), 3);
        assert!(dnat[2].contains("--dport 20002"));
        let acc: Vec<&str> = r
            .lines()
            .filter(|l| l.starts_with("-A DOCKER -d"))
            .collect();
        assert!(acc[2].contains("--dport 20002"));
        assert_eq!(r.matches("COMMIT").count(), 3);
        for chain in [
            "DOCKER-USER",
            "DOCKER-ISOLATION-STAGE-1",
            "DOCKER-ISOLATION-STAGE-2",
            "DOCKER-CT",
        ] {
            assert!(r.contains(&format!("-A {chain} ")), "{chain}");
        }
    }

    #[test]
    fn ipv6_rules_use_host_masks_and_bracketed_targets() {
        let r = DockerRules {
            bridge: "br-bench",
            subnet: "fd00:18::/64",
            container_ips: &["fd00:18::3".into()],
            ports: &[PortMap {
                host_port: 15201,
                container_ip: "fd00:18::3".into(),
                container_port: 5201,
            }],
            icc: true,
            links: &[],
        }
        .render6();
        assert!(r.contains("-A PREROUTING -d fd00:18::3/128 ! -i br-bench -j DROP"));
        assert!(r.contains("--dport 15201 -j DNAT --to-destination [fd00:18::3]:5201"));
        assert!(r.contains("-A OUTPUT ! -d ::1/128 -m addrtype"));
        assert!(r.contains("-A POSTROUTING -s fd00:18::/64 ! -o br-bench -j MASQUERADE"));
        assert!(!r.contains("/32") && !r.contains("127.0.0.0"));
    }

    #[test]
    fn icc_off_drops_bridge_to_bridge_after_link_accepts() {
        let links = [Link {
            client_ip: "172.18.0.2".into(),
            server_ip: "172.18.0.3".into(),
            ports: vec![5201, 7000],
        }];
        let r = DockerRules {
            bridge: "br-bench",
            subnet: "172.18.0.0/16",
            container_ips: &["172.18.0.3".into()],
            ports: &[],
            icc: false,
            links: &links,
        }
        .render();
        let lines: Vec<&str> = r.lines().collect();
        let pos = |needle: &str| {
            lines
                .iter()
                .position(|l| *l == needle)
                .unwrap_or_else(|| panic!("no {needle:?} in\n{r}"))
        };
        let fwd = pos("-A DOCKER-FORWARD -i br-bench -o br-bench -j DROP");
        let bridge = pos("-A DOCKER-FORWARD -j DOCKER-BRIDGE");
        let link = pos("-A DOCKER -s 172.18.0.2/32 -d 172.18.0.3/32 -i br-bench -o br-bench -p tcp -m tcp --dport 7000 -j ACCEPT");
        pos("-A DOCKER -s 172.18.0.3/32 -d 172.18.0.2/32 -i br-bench -o br-bench -p tcp -m tcp --sport 5201 -j ACCEPT");
        pos("-A DOCKER-FORWARD -i br-bench ! -o br-bench -j ACCEPT");
        assert!(bridge < fwd && link < fwd);
        assert!(!r.contains("-A DOCKER-FORWARD -i br-bench -j ACCEPT"));
    }
}

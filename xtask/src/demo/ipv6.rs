//! The demo's dual-stack scene: a network with an IPv6 subnet beside its
//! IPv4 one; containers reach each other over IPv6 (neighbour discovery
//! answered in eBPF), the outside reaches a published port on the host's
//! IPv6 address, and a container's IPv6 traffic leaves masqueraded to it
//! (a ULA subnet, as Docker 27+ does with ip6tables).

use super::*;

pub(super) const HOST_UPLINK_ADDR6: &str = "fd00:201::2";
pub(super) const OUTSIDE_ADDR6: &str = "fd00:201::1";
const DUAL_SUBNET4: &str = "10.220.0.0/24";
const DUAL_SUBNET6: &str = "fd00:220::/64";
const WEB6: &str = "fd00:220::10";

impl Demo {
    pub(super) fn ipv6_scene(&mut self) -> Result<()> {
        self.header("a dual-stack network: IPv6 beside IPv4");
        self.show(self.dp().args([
            "network",
            "create",
            "--ipv6",
            "--subnet",
            DUAL_SUBNET4,
            "--subnet",
            DUAL_SUBNET6,
            "dual",
        ]))?;
        self.show(self.dp().args([
            "container",
            "create",
            "--network",
            "dual",
            "--ip6",
            WEB6,
            "-p",
            "8086:8080",
            "web6",
        ]))?;
        self.show(
            self.dp()
                .args(["container", "create", "--network", "dual", "cli6"]),
        )?;
        self.show(
            self.dp()
                .args(["container", "exec", "cli6", "--", "ip", "-6", "addr"]),
        )?;

        self.header(&format!("ping cli6 -> web6 over IPv6 ({WEB6})"));
        self.until_output(
            self.dp().args([
                "container",
                "exec",
                "cli6",
                "--",
                "ping",
                "-6",
                "-c1",
                "-W1",
                WEB6,
            ]),
            "1 received",
        )?;
        println!("ok: neighbour solicitations answered in eBPF, delivered with bpf_redirect_peer");

        self.header("a TCP server in web6 on [::]:8080, published as 8086");
        self.spawn_background(self.dp().args([
            "container",
            "exec",
            "web6",
            "--",
            "socat",
            "TCP6-LISTEN:8080,reuseaddr,fork",
            "SYSTEM:echo hello over IPv6 from web6",
        ]))?;
        let to_web = format!("TCP6:[{WEB6}]:8080");
        self.until_output(
            self.dp().args([
                "container",
                "exec",
                "cli6",
                "--",
                "socat",
                "-T",
                "5",
                "-u",
                &to_web,
                "STDOUT",
            ]),
            "hello over IPv6",
        )?;
        let out_ns = self.out_ns.clone();
        let published = format!("TCP6:[{HOST_UPLINK_ADDR6}]:8086");
        self.header(&format!(
            "outside -> [{HOST_UPLINK_ADDR6}]:8086 (the host's IPv6 address) -> web6"
        ));
        self.until_output(
            Command::new("nsenter").args([
                &format!("--net=/run/netns/{out_ns}"),
                "socat",
                "-T",
                "5",
                "-u",
                &published,
                "STDOUT",
            ]),
            "hello over IPv6",
        )?;

        self.header(&format!(
            "outbound over IPv6: cli6 -> a server in the outside namespace ([{OUTSIDE_ADDR6}]:9006)"
        ));
        self.spawn_background(Command::new("nsenter").args([
            &format!("--net=/run/netns/{out_ns}"),
            "socat",
            "TCP6-LISTEN:9006,reuseaddr,fork",
            "SYSTEM:echo you are $SOCAT_PEERADDR",
        ]))?;
        let to_out = format!("TCP6:[{OUTSIDE_ADDR6}]:9006");
        let seen = self.until_output(
            self.dp().args([
                "container",
                "exec",
                "cli6",
                "--",
                "socat",
                "-T",
                "5",
                "-u",
                &to_out,
                "STDOUT",
            ]),
            "you are",
        )?;
        // socat prints the peer address in full ("[fd00:0201:0000:...]"):
        // compare addresses, not strings.
        let peer = seen
            .split(['[', ']'])
            .nth(1)
            .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok());
        if peer != HOST_UPLINK_ADDR6.parse().ok() {
            bail!("the outside saw {seen:?}, not the host's IPv6 address (masquerade)");
        }
        println!("ok: the ULA subnet leaves masqueraded to the host's IPv6 address");
        Ok(())
    }
}
